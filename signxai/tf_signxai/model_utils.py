"""Keras model helpers."""
from __future__ import annotations

import keras

from signxai.tf_signxai.backend import _deterministic_config

_SOFTMAX = (keras.activations.softmax, keras.activations.log_softmax)


def remove_softmax(model):
    """A copy of ``model`` without softmax: softmax/log-softmax activations become linear and ``Softmax`` layers
    identities. ``model`` itself is not touched."""
    def clone_layer(layer):
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=clone_layer)
        if isinstance(layer, keras.layers.Softmax):
            return keras.layers.Identity(name=layer.name)
        clone = layer.__class__.from_config(_deterministic_config(layer))
        if getattr(clone, "activation", None) in _SOFTMAX:
            clone.activation = keras.activations.linear
        return clone

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    clone.set_weights(model.get_weights())
    return clone
