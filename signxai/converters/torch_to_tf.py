"""PyTorch → Keras 3 for sequential-style models: a structurally equivalent channels-last ``keras.Sequential``.

Supported modules (``nn.Sequential`` containers, nested ones flattened): ``Linear``, ``Conv1d/2d/3d`` (any
stride/dilation/groups; ``padding_mode='zeros'``), ``ConvTranspose1d/2d/3d`` (no padding), ``BatchNorm1d/2d/3d``,
``MaxPool``/``AvgPool`` 1d–3d, ``AdaptiveAvgPool``/``AdaptiveMaxPool`` with output size 1, ``Flatten``, the §7.3
activations, ``Dropout*``/``AlphaDropout``/``Identity``, ``ZeroPad*d``/``ConstantPad*d(…, 0)`` and nearest
``Upsample`` with integer factors.

Conv padding: ``padding=p`` becomes Keras ``'same'`` when that is exactly TensorFlow's ``'same'`` for the given input
size, and ``ZeroPadding<n>D(p)`` (named ``<layer>_pad``) + a ``'valid'`` conv otherwise (SPEC §8). Flatten: Keras
flattens ``(H, W, C)``, PyTorch ``(C, H, W)``: the next ``Linear``'s input columns are permuted; a Flatten that does
not feed a Linear gets a channels-first ``Permute`` (``<layer>_channels_first``) in front. Layer names are the module
paths with ``.`` replaced by ``_``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from signxai.converters.direct_tf_to_torch import TORCH_ACTIVATIONS

__all__ = ["convert_torch_to_tf_direct"]

_ACTIVATION_NAMES = {type(factory()): key for key, factory in TORCH_ACTIVATIONS.items() if key != "leaky_relu"}
_DEFAULT_PARAMETERS = {"elu": lambda m: m.alpha == 1.0, "celu": lambda m: m.alpha == 1.0,
                       "gelu": lambda m: m.approximate == "none",
                       "hard_tanh": lambda m: (m.min_val, m.max_val) == (-1.0, 1.0),
                       "softplus": lambda m: (m.beta, m.threshold) == (1.0, 20.0)}
"""Which PyTorch activation modules equal ``keras.layers.Activation(key)`` (with Keras's default parameters)."""

_ELEMENTWISE = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity, nn.ReLU,
                nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.Hardsigmoid,
                nn.Hardtanh, nn.SiLU, nn.Hardswish, nn.Softplus, nn.Softsign, nn.Mish)
"""Modules between a Flatten and the Linear it feeds that keep features in place (the Linear gets the permutation)."""


def convert_torch_to_tf_direct(module: nn.Module, input_shape):
    """A ``keras.Sequential`` (channels-last input) computing the same function as ``module``.

    ``input_shape`` is PyTorch's per-sample input shape (channels first, no batch axis); the Keras model takes the
    same tensor with the channel axis moved last. ``module`` is not modified. Raises ValueError naming the first
    unsupported module.
    """
    import keras

    leaves = _leaves(module, "")
    dtype = next((str(p.dtype).replace("torch.", "") for p in module.parameters()), "float32")
    shapes = _shapes(leaves, input_shape, getattr(torch, dtype))
    keras_shape = (*input_shape[1:], input_shape[0]) if len(input_shape) > 1 else tuple(input_shape)
    layers = [keras.Input(shape=keras_shape, dtype=dtype)]
    weights = []  # (layer, arrays) set once the model is built
    flattened_from = None  # channels-first shape seen by a Flatten whose order the next Linear must undo
    skip = False
    for i, (path, leaf) in enumerate(leaves):
        if skip:
            skip = False
            continue
        name, in_shape, out_shape = path.replace(".", "_"), shapes[i], shapes[i + 1]
        followers = [m for _, m in leaves[i + 1:]]
        new = _layer(keras, name, leaf, in_shape, out_shape, dtype, flattened_from, followers)
        if new.pop("consumes_follower", False):
            skip = True
        flattened_from = new.pop("flattened_from", flattened_from if isinstance(leaf, _ELEMENTWISE) else None)
        for layer, arrays in new["layers"]:
            layers.append(layer)
            if arrays:
                weights.append((layer, arrays))
    model = keras.Sequential(layers, name=type(module).__name__)
    for layer, arrays in weights:
        layer.set_weights([np.asarray(a, dtype=dtype) for a in arrays])
    return model


def _leaves(module, prefix):
    """``(path, module)`` of the non-container modules, nested ``nn.Sequential`` flattened."""
    if isinstance(module, nn.Sequential):
        return [leaf for name, child in module.named_children()
                for leaf in _leaves(child, f"{prefix}.{name}" if prefix else name)]
    return [(prefix or type(module).__name__, module)]


def _shapes(leaves, input_shape, dtype):
    """Per-sample PyTorch shapes before the first and after every leaf (a dry run on zeros, in eval mode)."""
    x = torch.zeros((1, *input_shape), dtype=dtype)
    shapes = [tuple(input_shape)]
    with torch.no_grad():
        for path, leaf in leaves:
            training = leaf.training
            leaf.eval()
            try:
                x = leaf(x)
            finally:
                leaf.train(training)
            shapes.append(tuple(x.shape[1:]))
    return shapes


def _keras_same_is(padding, size, kernel, stride, dilation):
    """Whether symmetric PyTorch ``padding`` equals TensorFlow's ``'same'`` on every axis."""
    for p, n, k, s, d in zip(padding, size, kernel, stride, dilation):
        k_eff = (k - 1) * d + 1
        total = max((-(-n // s) - 1) * s + k_eff - n, 0)
        if total != 2 * p:
            return False
    return True


def _numpy(tensor):
    return tensor.detach().cpu().numpy()


def _layer(keras, name, leaf, in_shape, out_shape, dtype, flattened_from, followers):
    """The Keras layer(s) for one PyTorch leaf: ``{"layers": [(layer, weights)], ...}``; optional keys
    ``flattened_from`` (the pending flatten order after this leaf) and ``consumes_follower`` (the next leaf is done)."""
    L = keras.layers

    if isinstance(leaf, nn.Linear):
        kernel = _numpy(leaf.weight).T
        if flattened_from is not None:  # rows from PyTorch (C, d...) order to Keras (d..., C) order
            index = np.moveaxis(np.arange(kernel.shape[0]).reshape(flattened_from), 0, -1).reshape(-1)
            kernel = kernel[index]
        arrays = [kernel] + ([_numpy(leaf.bias)] if leaf.bias is not None else [])
        layer = L.Dense(leaf.out_features, use_bias=leaf.bias is not None, name=name, dtype=dtype)
        return {"layers": [(layer, arrays)], "flattened_from": None}

    if isinstance(leaf, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return _conv(keras, name, leaf, in_shape, dtype)

    if isinstance(leaf, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        n = len(leaf.kernel_size)
        if (any(leaf.padding) or any(leaf.output_padding) or leaf.groups != 1 or any(d != 1 for d in leaf.dilation)
                or any(k < s for k, s in zip(leaf.kernel_size, leaf.stride))):
            raise ValueError(f"module {name!r} ({type(leaf).__name__}): only padding=0, output_padding=0, groups=1, "
                             f"dilation=1 and kernel ≥ stride are supported")
        arrays = [np.moveaxis(_numpy(leaf.weight), (0, 1), (-1, -2))]
        arrays += [_numpy(leaf.bias)] if leaf.bias is not None else []
        layer = getattr(L, f"Conv{n}DTranspose")(leaf.out_channels, leaf.kernel_size, strides=leaf.stride,
                                                 padding="valid", use_bias=leaf.bias is not None, name=name,
                                                 dtype=dtype)
        return {"layers": [(layer, arrays)]}

    if isinstance(leaf, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        if not leaf.track_running_stats:
            raise ValueError(f"module {name!r} ({type(leaf).__name__}) has no running statistics")
        mean, var = _numpy(leaf.running_mean), _numpy(leaf.running_var)
        gamma = _numpy(leaf.weight) if leaf.affine else np.ones_like(mean)
        beta = _numpy(leaf.bias) if leaf.affine else np.zeros_like(mean)
        layer = L.BatchNormalization(epsilon=leaf.eps, name=name, dtype=dtype)
        return {"layers": [(layer, [gamma, beta, mean, var])]}

    if isinstance(leaf, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        return _pool(keras, name, leaf, in_shape, dtype)

    if isinstance(leaf, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                         nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        n = len(in_shape) - 1
        if any(d != 1 for d in out_shape[1:]):
            raise ValueError(f"module {name!r} ({type(leaf).__name__}): only output size 1 is supported")
        kind = "Average" if "Avg" in type(leaf).__name__ else "Max"
        follower = followers[0] if followers else None
        flatten_follows = isinstance(follower, nn.Flatten) and follower.start_dim == 1 and follower.end_dim == -1
        layer = getattr(L, f"Global{kind}Pooling{n}D")(keepdims=not flatten_follows, name=name, dtype=dtype)
        return {"layers": [(layer, [])], "consumes_follower": flatten_follows}

    if isinstance(leaf, nn.Flatten):
        if leaf.start_dim != 1 or leaf.end_dim != -1:
            raise ValueError(f"module {name!r} (Flatten): only start_dim=1, end_dim=-1 is supported")
        layers = [(L.Flatten(name=name, dtype=dtype), [])]
        if len(in_shape) < 2:
            return {"layers": layers}
        if _feeds_linear(followers):
            return {"layers": layers, "flattened_from": in_shape}
        rank = len(in_shape)
        permute = L.Permute((rank, *range(1, rank)), name=f"{name}_channels_first", dtype=dtype)
        return {"layers": [(permute, [])] + layers}

    if isinstance(leaf, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)):
        cls = {nn.Dropout: L.Dropout, nn.Dropout1d: L.SpatialDropout1D, nn.Dropout2d: L.SpatialDropout2D,
               nn.Dropout3d: L.SpatialDropout3D, nn.AlphaDropout: L.AlphaDropout}[type(leaf)]
        return {"layers": [(cls(leaf.p, name=name, dtype=dtype), [])]}

    if isinstance(leaf, nn.Identity):
        return {"layers": [(L.Identity(name=name, dtype=dtype), [])]}

    if isinstance(leaf, (nn.Softmax, nn.LogSoftmax)):
        raise ValueError(f"module {name!r} ({type(leaf).__name__}): remove the softmax first (SPEC §2.4)")

    if isinstance(leaf, (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
                         nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d)):
        if leaf.value != 0 or min(leaf.padding) < 0:
            raise ValueError(f"module {name!r} ({type(leaf).__name__}): only non-negative zero padding is supported")
        n = len(leaf.padding) // 2
        pairs = [tuple(leaf.padding[2 * i:2 * i + 2]) for i in reversed(range(n))]
        return {"layers": [(getattr(L, f"ZeroPadding{n}D")(pairs if n > 1 else pairs[0], name=name, dtype=dtype),
                            [])]}

    if isinstance(leaf, nn.Upsample):
        n = len(in_shape) - 1
        factors = [o // i for o, i in zip(out_shape[1:], in_shape[1:])]
        if leaf.mode != "nearest" or any(o != i * f for o, i, f in zip(out_shape[1:], in_shape[1:], factors)):
            raise ValueError(f"module {name!r} (Upsample): only nearest upsampling by integer factors is supported")
        layer = getattr(L, f"UpSampling{n}D")(factors[0] if n == 1 else tuple(factors), name=name, dtype=dtype)
        return {"layers": [(layer, [])]}

    if isinstance(leaf, nn.PReLU):
        rank = len(in_shape)
        per_channel = leaf.num_parameters > 1
        shared = list(range(1, rank)) if per_channel else list(range(1, rank + 1))
        alpha_shape = [1] * (rank - 1) + [in_shape[0] if per_channel else 1] if rank > 1 else [leaf.num_parameters]
        layer = L.PReLU(shared_axes=shared or None, name=name, dtype=dtype)
        return {"layers": [(layer, [_numpy(leaf.weight).reshape(alpha_shape)])]}

    if isinstance(leaf, nn.LeakyReLU):
        return {"layers": [(L.LeakyReLU(negative_slope=leaf.negative_slope, name=name, dtype=dtype), [])]}

    if isinstance(leaf, nn.ELU) and leaf.alpha != 1.0:
        return {"layers": [(L.ELU(alpha=leaf.alpha, name=name, dtype=dtype), [])]}

    key = _ACTIVATION_NAMES.get(type(leaf))
    if key is None or not _DEFAULT_PARAMETERS.get(key, lambda m: True)(leaf):
        raise ValueError(f"module {name!r} ({type(leaf).__name__}) is not supported by the PyTorch → Keras converter")
    return {"layers": [(L.Activation(key, name=name, dtype=dtype), [])]}


def _conv(keras, name, leaf, in_shape, dtype):
    """Keras conv (plus a ``<name>_pad`` ZeroPadding when PyTorch's padding is not Keras's 'same')."""
    L = keras.layers
    n = len(leaf.kernel_size)
    if leaf.padding_mode != "zeros":
        raise ValueError(f"module {name!r} ({type(leaf).__name__}): only padding_mode='zeros' is supported")
    layers = []
    if leaf.padding == "same":
        padding = "same"
    else:
        pad = (0,) * n if leaf.padding == "valid" else tuple(leaf.padding)
        if not any(pad):
            padding = "valid"
        elif _keras_same_is(pad, in_shape[1:], leaf.kernel_size, leaf.stride, leaf.dilation):
            padding = "same"
        else:
            padding = "valid"
            pairs = [(p, p) for p in pad]
            layers.append((getattr(L, f"ZeroPadding{n}D")(pairs if n > 1 else pairs[0], name=f"{name}_pad",
                                                          dtype=dtype), []))
    weight = _numpy(leaf.weight)
    bias = [_numpy(leaf.bias)] if leaf.bias is not None else []
    in_channels = in_shape[0]
    common = dict(strides=leaf.stride, padding=padding, dilation_rate=leaf.dilation, use_bias=leaf.bias is not None,
                  name=name, dtype=dtype)
    if leaf.groups == in_channels > 1 and n < 3:  # depthwise: (C·M, 1, k...) → (k..., C, M)
        multiplier = leaf.out_channels // in_channels
        kernel = np.moveaxis(weight.reshape(in_channels, multiplier, *leaf.kernel_size), (0, 1), (-2, -1))
        layer = getattr(L, f"DepthwiseConv{n}D")(leaf.kernel_size, depth_multiplier=multiplier, **common)
    else:
        kernel = np.moveaxis(weight, (0, 1), (-1, -2))
        layer = getattr(L, f"Conv{n}D")(leaf.out_channels, leaf.kernel_size, groups=leaf.groups, **common)
    layers.append((layer, [kernel] + bias))
    return {"layers": layers}


def _pool(keras, name, leaf, in_shape, dtype):
    L = keras.layers
    n = len(in_shape) - 1
    average = isinstance(leaf, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d))

    def as_tuple(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n

    kernel, stride, pad = as_tuple(leaf.kernel_size), as_tuple(leaf.stride), as_tuple(leaf.padding)
    dilation = (1,) * n if average else as_tuple(leaf.dilation)
    if leaf.ceil_mode or any(d != 1 for d in dilation) or (average and leaf.divisor_override is not None):
        raise ValueError(f"module {name!r} ({type(leaf).__name__}): ceil_mode, dilation and divisor_override are "
                         f"not supported")
    if not any(pad):
        padding = "valid"
    elif _keras_same_is(pad, in_shape[1:], kernel, stride, dilation) and not (average and leaf.count_include_pad):
        padding = "same"
    else:
        raise ValueError(f"module {name!r} ({type(leaf).__name__}): padding {pad} has no Keras form (Keras 'same' "
                         f"pooling needs count_include_pad=False)")
    cls = getattr(L, f"{'Average' if average else 'Max'}Pooling{n}D")
    return {"layers": [(cls(kernel, strides=stride, padding=padding, name=name, dtype=dtype), [])]}


def _feeds_linear(followers):
    """Whether the next module that is not elementwise is a Linear."""
    for module in followers:
        if not isinstance(module, _ELEMENTWISE):
            return isinstance(module, nn.Linear)
    return False
