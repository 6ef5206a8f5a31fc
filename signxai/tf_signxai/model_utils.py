"""Keras model helpers."""
from __future__ import annotations

import keras


def remove_softmax(model):
    """A copy of ``model`` whose softmax/log-softmax activations are linear; ``model`` itself is not touched."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for layer in clone._flatten_layers(include_self=False, recursive=True):
        if getattr(layer, "activation", None) in (keras.activations.softmax, keras.activations.log_softmax):
            layer.activation = keras.activations.linear
    if any(isinstance(layer, keras.layers.Softmax) for layer in clone._flatten_layers(include_self=False)):
        raise ValueError("the model contains a separate Softmax layer; rebuild it without that layer "
                         "(remove_softmax only replaces softmax activations of layers)")
    return clone
