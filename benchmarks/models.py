"""The benchmark networks as identical Keras/PyTorch twins with random weights.

``vgg16``: the VGG16 topology of ``tests/twins.py`` (``spec_models.vgg16_spec``: 224×224×3, 1000 classes), built by
``signxai.converters.spec_models`` from one spec and one set of Keras-layout weights. ``resnet50``: torchvision's
ResNet-50 with its own random initialisation (fixed seed, no download); its Keras twin is converted from it by
``signxai.converters.torch_to_tf.convert_torch_to_tf_direct`` (same graph and weights). ``ecg``: a Conv1D ECG-style
net (length×12 leads, four Conv1D+ReLU blocks with max pooling, global average pooling, Dense).

This module is light to import; frameworks are imported inside the functions (torch before TensorFlow).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from signxai._keras_torch import channels_first
from signxai.converters.spec_models import vgg16_spec

ROOT = Path(__file__).resolve().parents[1]
BATCHES = {"vgg16": (1, 8), "resnet50": (1, 8), "ecg": (1, 32)}


def ecg_spec(length: int = 2000, leads: int = 12, classes: int = 5) -> dict:
    layers = []
    for block, (filters, kernel) in enumerate([(32, 7), (64, 5), (128, 5), (128, 3)], start=1):
        layers.append({"kind": "conv1d", "filters": filters, "kernel": kernel, "padding": "same",
                       "activation": "relu", "name": f"conv{block}"})
        if block < 4:
            layers.append({"kind": "maxpool1d", "pool": 2, "name": f"pool{block}"})
    layers += [{"kind": "gap1d", "name": "gap"}, {"kind": "dense", "units": classes, "name": "predictions"}]
    return {"input_shape": [length, leads], "layers": layers}


def spec(name: str, vgg_size: int = 224, ecg_length: int = 2000) -> dict:
    if name == "vgg16":
        return vgg16_spec(size=vgg_size)
    if name == "ecg":
        return ecg_spec(ecg_length)
    raise ValueError(f"unknown spec model {name!r}")


class Bench:
    """One benchmark network for one framework: fresh model objects on demand, inputs, and targets."""

    def __init__(self, framework: str, name: str, vgg_size: int = 224, ecg_length: int = 2000):
        self.framework, self.name = framework, name
        self.size = vgg_size
        self._inputs: dict[int, np.ndarray] = {}  # per instance: released with the instance
        if name == "resnet50":
            self.spec = {"input_shape": [vgg_size, vgg_size, 3]}
            self._base = None
        else:
            from signxai.converters.spec_models import random_weights

            self.spec = spec(name, vgg_size, ecg_length)
            self.weights = random_weights(self.spec, seed=3)

    def _torch_resnet50(self):
        import torch
        import torchvision

        with torch.random.fork_rng():  # torchvision initialises from the global generator: a private, seeded fork
            torch.manual_seed(3)
            return torchvision.models.resnet50(weights=None).eval()

    def model(self):
        """A fresh model object (no signxai cache has seen it)."""
        if self.name == "resnet50":
            if self.framework == "pytorch":
                return self._torch_resnet50()
            import keras

            if self._base is None:
                from signxai.converters.torch_to_tf import convert_torch_to_tf_direct

                self._base = convert_torch_to_tf_direct(self._torch_resnet50(), (3, self.size, self.size))
            fresh = keras.models.clone_model(self._base)
            fresh.set_weights(self._base.get_weights())
            return fresh
        from signxai.converters import spec_models

        build = spec_models.build_torch_model if self.framework == "pytorch" else spec_models.build_keras_model
        return build(self.spec, self.weights)

    def inputs(self, batch: int) -> np.ndarray:
        """A random batch in the framework's layout (PyTorch channels-first); the same array on every call."""
        if batch not in self._inputs:
            rng = np.random.RandomState(100 + batch)
            shape = (batch, *self.spec["input_shape"])
            x = (rng.uniform(-120, 150, size=shape) if self.name == "vgg16" else rng.normal(0, 1, size=shape))
            x = x.astype(np.float32)
            self._inputs[batch] = channels_first(x) if self.framework == "pytorch" else x
        return self._inputs[batch]

    def targets(self, model, x: np.ndarray) -> np.ndarray:
        """The argmax class per sample (computed once, outside every timing)."""
        if self.framework == "pytorch":
            import torch

            with torch.no_grad():
                return model(torch.from_numpy(x)).argmax(1).numpy()
        return np.asarray(model(x, training=False)).argmax(1)
