"""Identical Keras and PyTorch models from one architecture spec and one set of Keras-layout weights.

The spec is the JSON format of the reference data (``tests/data/reference/README.md``): ``input_shape``
(channels-last, no batch axis) and ``layers``, a list of ``{"kind": ...}`` dicts with Keras arguments. Layer ``i``
is named ``<kind>_<i>`` unless it has a ``name``. Weights are a mapping ``"<layer>/<param>" -> array`` in Keras layout
(Dense ``kernel`` (in, out), ConvNd ``kernel`` (k..., in, out), ``bias``; BatchNormalization ``gamma``, ``beta``,
``moving_mean``, ``moving_variance``).

Kinds: dense, conv1d, conv2d, maxpool1d, maxpool2d, avgpool1d, avgpool2d, gap1d, gap2d, flatten, dropout,
activation, batchnorm, zeropad1d, zeropad2d.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np

from signxai._keras_torch import (as_tuple, conv_kernel_to_torch, dense_kernel_to_torch, flat_rows_to_torch,
                                  same_padding, torch_activations, torch_conv_padding, torch_pad)

_ACTIVATIONS = ("linear", "relu", "elu", "tanh", "sigmoid", "leaky_relu", "selu", "gelu", "softplus")
"""The activations a spec layer may name (each has a PyTorch twin)."""


def layer_names(spec: dict) -> list[str]:
    return [layer.get("name", f"{layer['kind']}_{i}") for i, layer in enumerate(spec["layers"])]


def vgg16_spec(classes: int = 1000, size: int = 224) -> dict:
    """The VGG16 topology as a spec (``size``×``size``×3 input, ``classes`` logits; Keras's layer names), for the
    VGG16 twins of the tests and the benchmarks."""
    layers = []
    for block, (convs, filters) in enumerate([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)], start=1):
        for i in range(1, convs + 1):
            layers.append({"kind": "conv2d", "filters": filters, "kernel": 3, "padding": "same",
                           "activation": "relu", "name": f"block{block}_conv{i}"})
        layers.append({"kind": "maxpool2d", "pool": 2, "name": f"block{block}_pool"})
    layers += [{"kind": "flatten", "name": "flatten"},
               {"kind": "dense", "units": 4096, "activation": "relu", "name": "fc1"},
               {"kind": "dense", "units": 4096, "activation": "relu", "name": "fc2"},
               {"kind": "dense", "units": classes, "name": "predictions"}]
    return {"input_shape": [size, size, 3], "layers": layers}


def load_spec_npz(path) -> tuple[dict, dict, dict]:
    """Read a reference ``.npz``: returns ``(spec, weights, rest)`` where rest holds ``x``, ``target``, ``R:*`` ..."""
    data = np.load(Path(path))
    spec = json.loads(str(data["spec"]))
    weights = {k[2:]: data[k] for k in data.files if k.startswith("w:")}
    rest = {k: data[k] for k in data.files if k != "spec" and not k.startswith("w:")}
    return spec, weights, rest


def random_weights(spec: dict, seed: int = 0, bias_scale: float = 0.1) -> dict:
    """He-scaled random weights with non-zero biases (and non-trivial BN statistics) for a spec."""
    rng = np.random.RandomState(seed)
    shapes = _weight_shapes(spec)
    weights = {}
    for key, (_kind, shape) in shapes.items():
        param = key.split("/")[1]
        if param == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            weights[key] = rng.normal(0, np.sqrt(2.0 / fan_in), size=shape)
        elif param == "bias":
            weights[key] = rng.normal(0, bias_scale, size=shape)
        elif param == "gamma":
            weights[key] = rng.uniform(0.5, 1.5, size=shape)
        elif param == "beta":
            weights[key] = rng.normal(0, 0.1, size=shape)
        elif param == "moving_mean":
            weights[key] = rng.normal(0, 0.2, size=shape)
        elif param == "moving_variance":
            weights[key] = rng.uniform(0.5, 2.0, size=shape)
    return {k: v.astype(np.float32) for k, v in weights.items()}


def _weight_shapes(spec: dict) -> dict:
    """Keras-layout weight shapes per ``layer/param``, found by shape inference over the spec."""
    shape = list(spec["input_shape"])
    shapes = {}
    for name, layer in zip(layer_names(spec), spec["layers"]):
        kind = layer["kind"]
        if kind == "dense":
            shapes[f"{name}/kernel"] = (kind, (shape[-1], layer["units"]))
            shapes[f"{name}/bias"] = (kind, (layer["units"],))
        elif kind in ("conv1d", "conv2d"):
            k = as_tuple(layer["kernel"], 1 if kind == "conv1d" else 2)
            shapes[f"{name}/kernel"] = (kind, (*k, shape[-1], layer["filters"]))
            if layer.get("use_bias", True):
                shapes[f"{name}/bias"] = (kind, (layer["filters"],))
        elif kind == "batchnorm":
            for param in ("gamma", "beta", "moving_mean", "moving_variance"):
                shapes[f"{name}/{param}"] = (kind, (shape[-1],))
        shape = _output_shape(layer, shape)
    return shapes


def _output_shape(layer: dict, shape: list) -> list:
    kind = layer["kind"]
    if kind == "dense":
        return shape[:-1] + [layer["units"]]
    if kind in ("conv1d", "conv2d"):
        n = 1 if kind == "conv1d" else 2
        k, s = as_tuple(layer["kernel"], n), as_tuple(layer.get("strides", 1), n)
        if layer.get("padding", "valid") == "same":
            spatial = [-(-d // st) for d, st in zip(shape[:n], s)]
        else:
            spatial = [(d - kk) // st + 1 for d, kk, st in zip(shape[:n], k, s)]
        return spatial + [layer["filters"]]
    if kind in ("maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d"):
        n = int(kind[-2])
        p = as_tuple(layer["pool"], n)
        s = as_tuple(layer.get("strides") or layer["pool"], n)
        if layer.get("padding", "valid") == "same":
            spatial = [-(-d // st) for d, st in zip(shape[:n], s)]
        else:
            spatial = [(d - pp) // st + 1 for d, pp, st in zip(shape[:n], p, s)]
        return spatial + [shape[-1]]
    if kind in ("gap1d", "gap2d"):
        return [shape[-1]]
    if kind == "flatten":
        return [int(np.prod(shape))]
    if kind in ("zeropad1d", "zeropad2d"):
        n = 1 if kind == "zeropad1d" else 2
        pads = _padding_pairs(layer["padding"], n)
        return [d + a + b for d, (a, b) in zip(shape[:n], pads)] + [shape[-1]]
    return shape


def _padding_pairs(padding, n):
    if isinstance(padding, int):
        return [(padding, padding)] * n
    return [tuple(p) if isinstance(p, (list, tuple)) else (p, p) for p in padding]


def build_keras_model(spec: dict, weights: dict, dtype: str = "float32"):
    """A Keras 3 ``Sequential`` model with the given weights."""
    import keras

    layers = [keras.Input(shape=tuple(spec["input_shape"]), dtype=dtype)]
    for name, layer in zip(layer_names(spec), spec["layers"]):
        layers.append(_keras_layer(keras, name, layer, dtype))
    model = keras.Sequential(layers)
    for name, klayer in zip(layer_names(spec), model.layers):
        params = {"dense": ("kernel", "bias"), "conv1d": ("kernel", "bias"), "conv2d": ("kernel", "bias"),
                  "batchnorm": ("gamma", "beta", "moving_mean", "moving_variance")}
        keys = [f"{name}/{p}" for p in params.get(klayer_kind(spec, name), ())]
        values = [weights[k] for k in keys if k in weights]
        if values:
            klayer.set_weights([np.asarray(v, dtype=dtype) for v in values])
    return model


def klayer_kind(spec, name):
    return spec["layers"][layer_names(spec).index(name)]["kind"]


def _keras_layer(keras, name, layer, dtype):
    L = keras.layers
    kind = layer["kind"]
    act = layer.get("activation", "linear")
    if kind == "dense":
        return L.Dense(layer["units"], activation=act, name=name, dtype=dtype)
    if kind in ("conv1d", "conv2d"):
        cls = L.Conv1D if kind == "conv1d" else L.Conv2D
        return cls(layer["filters"], layer["kernel"], strides=layer.get("strides", 1),
                   padding=layer.get("padding", "valid"), activation=act, use_bias=layer.get("use_bias", True),
                   name=name, dtype=dtype)
    if kind in ("maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d"):
        cls = {"maxpool1d": L.MaxPooling1D, "maxpool2d": L.MaxPooling2D,
               "avgpool1d": L.AveragePooling1D, "avgpool2d": L.AveragePooling2D}[kind]
        return cls(layer["pool"], strides=layer.get("strides"), padding=layer.get("padding", "valid"),
                   name=name, dtype=dtype)
    if kind == "gap1d":
        return L.GlobalAveragePooling1D(name=name, dtype=dtype)
    if kind == "gap2d":
        return L.GlobalAveragePooling2D(name=name, dtype=dtype)
    if kind == "flatten":
        return L.Flatten(name=name, dtype=dtype)
    if kind == "dropout":
        return L.Dropout(layer["rate"], name=name, dtype=dtype)
    if kind == "activation":
        return L.Activation(act, name=name, dtype=dtype)
    if kind == "batchnorm":
        return L.BatchNormalization(epsilon=layer.get("epsilon", 1e-3), name=name, dtype=dtype)
    if kind == "zeropad1d":
        return L.ZeroPadding1D(layer["padding"], name=name, dtype=dtype)
    if kind == "zeropad2d":
        return L.ZeroPadding2D(layer["padding"], name=name, dtype=dtype)
    raise ValueError(f"unknown layer kind {kind!r} in spec layer {name!r}")


def build_torch_model(spec: dict, weights: dict, dtype: str = "float32"):
    """The PyTorch twin (channels-first) as an ``nn.Sequential`` whose children carry the spec's layer names."""
    import torch
    from torch import nn

    modules = []
    shape = list(spec["input_shape"])
    torch_dtype = getattr(torch, dtype)
    flattened_from = None  # channels-last shape a Flatten saw; the next Dense permutes its rows
    for name, layer in zip(layer_names(spec), spec["layers"]):
        kind = layer["kind"]
        if kind == "dense":
            kernel = np.asarray(weights[f"{name}/kernel"])
            if len(shape) > 1:
                raise ValueError(f"dense layer {name!r} needs a flat input; add a flatten layer")
            if flattened_from is not None:
                kernel = flat_rows_to_torch(kernel, flattened_from)
                flattened_from = None
            module = nn.Linear(kernel.shape[0], kernel.shape[1])
            module.weight.data = torch.tensor(dense_kernel_to_torch(kernel).copy())
            module.bias.data = torch.tensor(np.asarray(weights[f"{name}/bias"]))
            modules.append((name, module))
            _append_activation(modules, name, layer.get("activation", "linear"))
        elif kind in ("conv1d", "conv2d"):
            n = 1 if kind == "conv1d" else 2
            kernel = np.asarray(weights[f"{name}/kernel"])
            k, s = as_tuple(layer["kernel"], n), as_tuple(layer.get("strides", 1), n)
            padding = layer.get("padding", "valid")
            if padding == "same":
                explicit, conv_padding = torch_conv_padding([same_padding(*a) for a in zip(shape[:n], k, s)])
                if explicit is not None:
                    modules.append((f"{name}_pad", (nn.ZeroPad1d if n == 1 else nn.ZeroPad2d)(explicit)))
            else:
                conv_padding = 0
            cls = nn.Conv1d if n == 1 else nn.Conv2d
            module = cls(kernel.shape[-2], kernel.shape[-1], k, stride=s, padding=conv_padding,
                         bias=f"{name}/bias" in weights)
            module.weight.data = torch.tensor(conv_kernel_to_torch(kernel).copy())
            if module.bias is not None:
                module.bias.data = torch.tensor(np.asarray(weights[f"{name}/bias"]))
            modules.append((name, module))
            _append_activation(modules, name, layer.get("activation", "linear"))
        elif kind in ("maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d"):
            if layer.get("padding", "valid") != "valid":
                raise ValueError(f"pooling layer {name!r}: only 'valid' padding has a PyTorch twin")
            n = int(kind[-2])
            cls = {"maxpool1d": nn.MaxPool1d, "maxpool2d": nn.MaxPool2d,
                   "avgpool1d": nn.AvgPool1d, "avgpool2d": nn.AvgPool2d}[kind]
            pool = as_tuple(layer["pool"], n)
            modules.append((name, cls(pool, stride=as_tuple(layer.get("strides") or layer["pool"], n))))
        elif kind in ("gap1d", "gap2d"):
            modules.append((name, nn.Sequential(
                (nn.AdaptiveAvgPool1d if kind == "gap1d" else nn.AdaptiveAvgPool2d)(1), nn.Flatten())))
        elif kind == "flatten":
            flattened_from = tuple(shape)
            modules.append((name, nn.Flatten()))
        elif kind == "dropout":
            modules.append((name, nn.Dropout(layer["rate"])))
        elif kind == "activation":
            _append_activation(modules, name, layer["activation"], own_name=True)
        elif kind == "batchnorm":
            c = shape[-1]
            module = (nn.BatchNorm1d if len(shape) <= 2 else nn.BatchNorm2d)(c, eps=layer.get("epsilon", 1e-3))
            module.weight.data = torch.tensor(np.asarray(weights[f"{name}/gamma"]))
            module.bias.data = torch.tensor(np.asarray(weights[f"{name}/beta"]))
            module.running_mean.data = torch.tensor(np.asarray(weights[f"{name}/moving_mean"]))
            module.running_var.data = torch.tensor(np.asarray(weights[f"{name}/moving_variance"]))
            modules.append((name, module))
        elif kind in ("zeropad1d", "zeropad2d"):
            n = 1 if kind == "zeropad1d" else 2
            pad = torch_pad(_padding_pairs(layer["padding"], n))
            modules.append((name, (nn.ZeroPad1d if n == 1 else nn.ZeroPad2d)(pad)))
        else:
            raise ValueError(f"unknown layer kind {kind!r} in spec layer {name!r}")
        shape = _output_shape(layer, shape)
    return nn.Sequential(OrderedDict(modules)).to(torch_dtype).eval()


def _append_activation(modules, name, activation, own_name=False):
    from torch import nn

    if activation in (None, "linear"):
        if own_name:
            modules.append((name, nn.Identity()))
        return
    table = {key: torch_activations()[key] for key in _ACTIVATIONS if key != "linear"}
    if activation not in table:
        raise ValueError(f"activation {activation!r} has no PyTorch twin; supported: {sorted(table)}")
    modules.append((name if own_name else f"{name}_{activation}", table[activation]()))
