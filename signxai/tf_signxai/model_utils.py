"""Keras model helpers."""
from __future__ import annotations

import keras

from signxai.tf_signxai.backend import _deterministic_config, sigmoid_output_layer

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


def remove_sigmoid(model):
    """A copy of ``model`` whose output is the logit: the sigmoid that produces the output (a fused
    ``activation="sigmoid"``/``"log_sigmoid"`` or an ``Activation`` layer, possibly followed by Reshape/Flatten)
    becomes linear; sigmoid gates inside the model are kept (docs/api.md#targets, D22). ``model`` is not touched."""
    output = sigmoid_output_layer(model)
    if output is None:
        raise ValueError(f"the output of the Keras model {model.name!r} is not produced by a sigmoid: nothing to "
                         f"remove")
    if not isinstance(output, keras.layers.Layer):
        raise ValueError(f"the model's output sigmoid {output.name!r} is a keras.ops call, which cannot be cloned "
                         f"without it: build the model so that it returns the logit")

    def clone_layer(layer):
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=clone_layer)
        if not isinstance(layer, keras.layers.Layer):
            return layer.__class__.from_config(layer.get_config())
        clone = layer.__class__.from_config(_deterministic_config(layer))
        if layer is output:
            clone.activation = keras.activations.linear
        return clone

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    clone.set_weights(model.get_weights())
    return clone
