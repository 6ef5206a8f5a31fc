"""Keras/PyTorch twin networks for the cross-framework tests (docs/equivalence.md#model-equivalence): same graph, same
weights.

Each twin is ``Twin(keras_model, torch_model, x)`` with ``x`` a channels-last batch; ``torch_input(x)`` gives the
PyTorch layout and ``to_channels_last(R)`` brings PyTorch maps back for comparison.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import keras

from signxai._keras_torch import channels_first, channels_last, conv_kernel_to_torch, dense_kernel_to_torch
from signxai.converters.spec_models import (build_keras_model, build_torch_model, layer_names, load_spec_npz,  # noqa: F401
                                            random_weights, vgg16_spec)

REFERENCE = Path(__file__).parent / "data" / "reference"


@dataclass
class Twin:
    name: str
    keras_model: object
    torch_model: object
    x: np.ndarray  # channels-last batch
    conv_rank: int  # spatial axes of the convolutions (0: none)


def torch_input(x: np.ndarray) -> np.ndarray:
    return channels_first(x)


def to_channels_last(r: np.ndarray) -> np.ndarray:
    return channels_last(r)


def reference_twin(name: str) -> Twin:
    spec, weights, rest = load_spec_npz(REFERENCE / f"{name}_x0.npz")
    x = rest["x"][None]
    second = x + np.random.RandomState(1).normal(0, 0.1, size=x.shape).astype(np.float32)
    return _spec_twin(name, spec, weights, np.concatenate([x, second]))


def _spec_twin(name, spec, weights, x):
    kinds = [layer["kind"] for layer in spec["layers"]]
    conv_rank = 2 if "conv2d" in kinds else 1 if "conv1d" in kinds else 0
    return Twin(name, build_keras_model(spec, weights), build_torch_model(spec, weights), x, conv_rank)


def spec_twin(name, spec, n=2, seed=0):
    x = np.random.RandomState(seed + 100).normal(0, 1, size=(n, *spec["input_shape"])).astype(np.float32)
    return _spec_twin(name, spec, random_weights(spec, seed), x)


BN_GAP_CNN = {"input_shape": [16, 16, 3], "layers": [
    {"kind": "conv2d", "filters": 8, "kernel": 3, "padding": "same", "activation": "relu"},
    {"kind": "batchnorm"},
    {"kind": "conv2d", "filters": 12, "kernel": 3, "padding": "same", "activation": "linear", "name": "conv2d_1"},
    {"kind": "batchnorm"},
    {"kind": "activation", "activation": "relu"},
    {"kind": "gap2d"},
    {"kind": "dense", "units": 6}]}

STRIDED_AVGPOOL_CNN = {"input_shape": [17, 15, 2], "layers": [
    {"kind": "conv2d", "filters": 8, "kernel": 3, "strides": 2, "padding": "valid", "activation": "relu"},
    {"kind": "avgpool2d", "pool": 2},
    {"kind": "conv2d", "filters": 10, "kernel": 2, "strides": 1, "padding": "valid", "activation": "relu"},
    {"kind": "flatten"},
    {"kind": "dense", "units": 12, "activation": "relu"},
    {"kind": "dense", "units": 4}]}

CONV1D_ELU = {"input_shape": [64, 3], "layers": [
    {"kind": "conv1d", "filters": 8, "kernel": 5, "padding": "same"},
    {"kind": "activation", "activation": "elu"},
    {"kind": "batchnorm"},
    {"kind": "maxpool1d", "pool": 2},
    {"kind": "conv1d", "filters": 8, "kernel": 3, "padding": "same"},
    {"kind": "activation", "activation": "elu"},
    {"kind": "avgpool1d", "pool": 2},
    {"kind": "flatten"},
    {"kind": "dense", "units": 3}]}


class ResidualNet(nn.Module):
    """PyTorch side of the residual twin, written with functional ops (``+``, ``F.relu``, ``mean``)."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_b = nn.Conv2d(8, 8, 3, padding=1)
        self.conv2d_1 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        a = F.relu(self.conv_a(x))
        h = torch.relu(a + self.conv_b(a))
        h = F.max_pool2d(h, 2)
        h = F.relu(self.conv2d_1(h))
        return self.fc(h.mean(dim=(2, 3)))


def residual_twin(seed=0) -> Twin:
    inputs = keras.Input((12, 12, 3))
    a = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(inputs)
    b = keras.layers.Conv2D(8, 3, padding="same", name="conv_b")(a)
    h = keras.layers.ReLU()(keras.layers.Add(name="add")([a, b]))
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2d_1")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(5, name="fc")(h)
    keras_model = keras.Model(inputs, outputs)
    torch_model = ResidualNet().eval()
    rng = np.random.RandomState(seed)
    for name in ("conv_a", "conv_b", "conv2d_1", "fc"):
        layer, module = keras_model.get_layer(name), getattr(torch_model, name)
        kernel = rng.normal(0, np.sqrt(2.0 / np.prod(layer.kernel.shape[:-1])), layer.kernel.shape)
        bias = rng.normal(0, 0.1, layer.bias.shape)
        layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
        weight = dense_kernel_to_torch(kernel) if name == "fc" else conv_kernel_to_torch(kernel)
        module.weight.data = torch.tensor(np.ascontiguousarray(weight), dtype=torch.float32)
        module.bias.data = torch.tensor(bias, dtype=torch.float32)
    x = rng.normal(0, 1, size=(2, 12, 12, 3)).astype(np.float32)
    return Twin("residual_add", keras_model, torch_model, x, 2)


def fast_twins():
    return {
        "mlp": lambda: reference_twin("mlp"),
        "cnn2d": lambda: reference_twin("cnn2d"),
        "ecg1d": lambda: reference_twin("ecg1d"),
        "bn_gap_cnn": lambda: spec_twin("bn_gap_cnn", BN_GAP_CNN),
        "strided_avgpool_cnn": lambda: spec_twin("strided_avgpool_cnn", STRIDED_AVGPOOL_CNN),
        "residual_add": residual_twin,
        "conv1d_elu": lambda: spec_twin("conv1d_elu", CONV1D_ELU),
    }


def vgg16_twin():
    """VGG16 topology with random weights on caffe-range input. He-scaled kernels would give logits of ~1000; they are
    damped by 0.75 per layer so the logits are ~10, as for the trained VGG16 (docs/equivalence.md#agreement-gates's MAE
    bound is absolute, and LRP maps scale with the logit)."""
    spec = vgg16_spec()
    weights = {k: (0.75 * v if k.endswith("/kernel") else v) for k, v in random_weights(spec, seed=3).items()}
    x = np.random.RandomState(7).uniform(-120, 150, size=(1, 224, 224, 3)).astype(np.float32)
    return _spec_twin("vgg16", spec, weights, x)


__all__ = ["Twin", "torch_input", "to_channels_last", "fast_twins", "vgg16_twin", "layer_names"]


def set_twin_weights(keras_model, torch_model, names, rng, kernel_std, bias_std):
    """Draw each named layer's kernel and bias from ``rng`` (normal, the given std; kernel then bias, layer by layer)
    and give them to the Keras layer and the PyTorch module of the same name (Dense or convolution)."""
    with torch.no_grad():
        for name in names:
            layer = keras_model.get_layer(name)
            kernel = rng.normal(0, kernel_std, layer.kernel.shape).astype(np.float32)
            bias = rng.normal(0, bias_std, layer.bias.shape).astype(np.float32)
            layer.set_weights([kernel, bias])
            module = getattr(torch_model, name)
            to_torch = dense_kernel_to_torch if kernel.ndim == 2 else conv_kernel_to_torch
            module.weight.copy_(torch.tensor(np.ascontiguousarray(to_torch(kernel))))
            module.bias.copy_(torch.tensor(bias))
