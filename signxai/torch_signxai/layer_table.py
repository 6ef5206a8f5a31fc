"""The PyTorch layer table (docs/layers.md#node-kinds, docs/extending.md#layer-tables): which modules, functional
ops and tensor methods are which node kind, as data. ``signxai/tf_signxai/layer_table.py`` is its Keras twin, in the
same shape; ``capture.py`` reads both the table and the special cases named below."""
from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import nn

from signxai.core import graph as g
from signxai.core.layers import KindEntry, LayerTable
from signxai._keras_torch import torch_arithmetic


def _inference_identities():
    """Modules and functions that are the identity at inference (torchvision's stochastic depth), if importable."""
    try:
        from torchvision.ops import StochasticDepth, stochastic_depth
    except Exception:  # torchvision is optional
        return (), ()
    return (StochasticDepth,), (stochastic_depth,)


_STOCHASTIC_DEPTH_MODULES, _STOCHASTIC_DEPTH_FUNCTIONS = _inference_identities()

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# functional kernels -> their number of spatial axes (docs/layers.md#node-kinds: a constant weight and bias)
FUNCTIONAL_KERNELS = {F.linear: 0, F.conv1d: 1, F.conv2d: 2, F.conv3d: 3, F.conv_transpose1d: 1,
                      F.conv_transpose2d: 2, F.conv_transpose3d: 3}

# Arithmetic (functions and tensor methods) -> the neutral operation of signxai.core.layers.arithmetic_kind: the
# kind follows from the number of input-dependent tensor operands (one: a constant shift or scaling, PASS).
ARITHMETIC = torch_arithmetic()  # one table with the converters (signxai/_keras_torch.py)


def _arithmetic(*operations, methods=False):
    """The arithmetic functions (or tensor method names) of the given neutral operations."""
    return tuple(op for op, neutral in ARITHMETIC.items() if neutral in operations and isinstance(op, str) == methods)


LAYER_TABLE = LayerTable({
    g.KERNEL: KindEntry(layers=(nn.Linear, *CONV), functions=tuple(FUNCTIONAL_KERNELS)),
    g.BATCHNORM: KindEntry(layers=BATCHNORM),
    g.AVGPOOL: KindEntry(layers=(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                                 nn.AdaptiveAvgPool3d),
                         functions=(F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
                                    F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, torch.mean),
                         methods=("mean",)),
    # of two input-dependent tensors (with a constant operand: PASS)
    g.ADD: KindEntry(functions=_arithmetic("add"), methods=_arithmetic("add", methods=True)),
    g.PRODUCT: KindEntry(functions=_arithmetic("multiply"), methods=_arithmetic("multiply", methods=True)),
    g.RELU: KindEntry(layers=(nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU),
                      functions=(F.relu, torch.relu, F.relu6, F.leaky_relu, F.prelu, torch.relu_, F.relu_,
                                 F.leaky_relu_),
                      methods=("relu", "relu_")),
    g.ACTIVATION: KindEntry(layers=(nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid,
                                    nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid),
                            functions=(F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, torch.tanh, torch.sigmoid,
                                       F.tanh, F.sigmoid, F.softplus, F.hardtanh, F.hardswish, F.hardsigmoid,
                                       F.elu_, F.logsigmoid),
                            methods=("tanh", "sigmoid", "sigmoid_", "tanh_")),
    # a constant shift or scaling (x - c, x / c) is PASS as well (ARITHMETIC)
    g.PASS: KindEntry(layers=(nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                              nn.FeatureAlphaDropout, nn.Identity, nn.LayerNorm, nn.GroupNorm,
                              *_STOCHASTIC_DEPTH_MODULES),
                      functions=(F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.layer_norm,
                                 F.group_norm, *_STOCHASTIC_DEPTH_FUNCTIONS, *_arithmetic("subtract", "divide")),
                      methods=("float", "type_as", "to", "double",
                               *_arithmetic("subtract", "divide", methods=True))),
    g.REINDEX: KindEntry(layers=(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                                 nn.AdaptiveMaxPool3d, nn.Flatten, nn.Unflatten, nn.ZeroPad1d, nn.ZeroPad2d,
                                 nn.ZeroPad3d, nn.Upsample,
                                 nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d),  # with value 0
                         functions=(torch.flatten, torch.reshape, torch.cat, torch.concat, F.pad, F.max_pool1d,
                                    F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
                                    F.adaptive_max_pool3d, torch.amax, torch.squeeze, torch.unsqueeze, torch.permute,
                                    torch.transpose, operator.getitem, F.interpolate, torch.max, getattr,
                                    torch.narrow),
                         methods=("view", "reshape", "flatten", "permute", "squeeze", "unsqueeze", "transpose",
                                  "contiguous", "amax", "narrow", "view_as", "reshape_as", "expand_as", "expand",
                                  "repeat", "clone", "__getitem__")),
})

# The identity at inference: the node's forward returns its input (the module's own forward may drop or not).
INFERENCE_IDENTITIES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                        nn.FeatureAlphaDropout, *_STOCHASTIC_DEPTH_MODULES)
INFERENCE_IDENTITY_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
                                *_STOCHASTIC_DEPTH_FUNCTIONS)

# Refused by every method: explanations need logits (docs/api.md#model-requirements).
SOFTMAX_LAYERS = (nn.Softmax, nn.LogSoftmax, nn.Softmin)
SOFTMAX_FUNCTIONS = (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, F.softmin)
SOFTMAX_METHODS = ("softmax", "log_softmax")

# Output bounds of bounded activations (for gate detection at products, docs/layers.md#gated-products), by function
# or tensor method; ReLU's (0, inf) lets rules skip work on inputs known to be nonnegative (docs/lrp.md#kernel-rules).
# Modules: ``module_range``.
VALUE_RANGES = {torch.sigmoid: (0.0, 1.0), F.sigmoid: (0.0, 1.0), F.hardsigmoid: (0.0, 1.0), F.relu6: (0.0, 6.0),
                torch.tanh: (-1.0, 1.0), F.tanh: (-1.0, 1.0), F.relu: (0.0, math.inf), torch.relu: (0.0, math.inf),
                torch.relu_: (0.0, math.inf), F.relu_: (0.0, math.inf),
                "sigmoid": (0.0, 1.0), "sigmoid_": (0.0, 1.0), "tanh": (-1.0, 1.0), "tanh_": (-1.0, 1.0),
                "relu": (0.0, math.inf), "relu_": (0.0, math.inf)}


def module_range(module):
    """The output bounds of a bounded activation module, else None."""
    if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
        return (0.0, 1.0)
    if isinstance(module, nn.Hardtanh):  # nn.ReLU6 included
        return (float(module.min_val), float(module.max_val))
    if isinstance(module, nn.Tanh):
        return (-1.0, 1.0)
    if type(module) is nn.ReLU:
        return (0.0, math.inf)
    return None


# Shape arithmetic: these read a tensor's metadata, and any op whose input-dependent operands are all such values
# computes on numbers, not on relevance (docs/layers.md#non-tensor-values-in-traced-graphs): AUX nodes.
SHAPE_METHODS = ("size", "dim", "numel", "ndimension", "nelement")
SHAPE_ATTRIBUTES = ("shape", "ndim", "dtype", "device", "is_cuda", "requires_grad")
# Ops that return several tensors; ``getitem`` on their result becomes one re-indexing node.
TUPLE_FUNCTIONS = (torch.chunk, torch.split, torch.unbind, torch.tensor_split)
TUPLE_METHODS = ("chunk", "split", "unbind", "tensor_split")
