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

# RMS normalisation, where this PyTorch has it: the identity rule (docs/transformers.md#layer-norm)
RMS_NORM_MODULES = (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
RMS_NORM_FUNCTIONS = tuple(f for f in (getattr(F, "rms_norm", None),
                                       getattr(getattr(torch.ops.aten, "rms_norm", None), "default", None))
                           if f is not None)
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# functional kernels -> their number of spatial axes (docs/layers.md#node-kinds: a constant weight and bias)
FUNCTIONAL_KERNELS = {F.linear: 0, F.conv1d: 1, F.conv2d: 2, F.conv3d: 3, F.conv_transpose1d: 1,
                      F.conv_transpose2d: 2, F.conv_transpose3d: 3}

# ATen operators as non-strict ``torch.export`` records them (the capture of models torch.fx cannot trace,
# docs/layers.md#export-capture); in-place overloads are replaced by their functional ones before classification.
aten = torch.ops.aten
ATEN_KERNELS = {aten.linear.default: 0, aten.conv1d.default: 1, aten.conv2d.default: 2, aten.conv3d.default: 3,
                aten.conv_transpose1d.default: 1, aten.conv_transpose2d.input: 2, aten.conv_transpose3d.input: 3}
FUNCTIONAL_KERNELS.update(ATEN_KERNELS)
ATEN_ARITHMETIC = {aten.add.Tensor: "add", aten.add.Scalar: "add", aten.sub.Tensor: "subtract",
                   aten.sub.Scalar: "subtract", aten.mul.Tensor: "multiply", aten.mul.Scalar: "multiply",
                   aten.div.Tensor: "divide", aten.div.Scalar: "divide", aten.rsub.Scalar: None}
ATEN_RELU = (aten.relu.default, aten.relu6.default, aten.leaky_relu.default, aten.prelu.default,
             aten._prelu_kernel.default)
ATEN_ACTIVATIONS = (aten.elu.default, aten.selu.default, aten.celu.default, aten.gelu.default, aten.silu.default,
                    aten.mish.default, aten.tanh.default, aten.sigmoid.default, aten.softplus.default,
                    aten.hardswish.default, aten.log_sigmoid.default, aten.hardsigmoid.default)
ATEN_AVGPOOL = (aten.avg_pool1d.default, aten.avg_pool2d.default, aten.avg_pool3d.default,
                aten.adaptive_avg_pool1d.default, aten.adaptive_avg_pool2d.default, aten.adaptive_avg_pool3d.default,
                aten.mean.dim, aten.mean.default, aten.sum.dim_IntList)
ATEN_PASS = (aten.layer_norm.default, aten.group_norm.default, aten._to_copy.default, aten.to.dtype,
             aten.type_as.default, aten.alias.default, aten.lift_fresh_copy.default, aten.detach.default)
ATEN_IDENTITIES = (aten.dropout.default, aten.feature_dropout.default, aten.alpha_dropout.default,
                   aten.feature_alpha_dropout.default)
ATEN_REINDEX = (aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.flatten.using_ints,
                aten.unflatten.int, aten.permute.default, aten.transpose.int, aten.t.default, aten.contiguous.default,
                aten.clone.default, aten.cat.default, aten.slice.Tensor, aten.select.int, aten.unsqueeze.default,
                aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default, aten.expand.default,
                aten.max_pool1d.default, aten.max_pool2d.default, aten.max_pool3d.default, aten.amax.default,
                aten.pad.default, aten.constant_pad_nd.default, aten.upsample_nearest2d.vec, aten.flip.default,
                aten.roll.default, aten.narrow.default, aten.split.Tensor, aten.split_with_sizes.default,
                aten.chunk.default, aten.unbind.int, aten.repeat.default, aten.pixel_shuffle.default,
                aten.channel_shuffle.default, aten.index_select.default, aten.expand_as.default,
                aten.swapaxes.default, aten.swapdims.default, aten.movedim.int, aten.movedim.intlist)
ATEN_TUPLES = (aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default, aten.unbind.int)
ATEN_SOFTMAX = (aten.softmax.int, aten._softmax.default, aten.log_softmax.int, aten._log_softmax.default)
# metadata reads and checks (`_assert_tensor_metadata`: dtype/device asserts in exported graphs) carry no signal
ATEN_SHAPE = (aten.sym_size.int, aten.sym_numel.default, aten.sym_stride.int, aten._assert_tensor_metadata.default)

# Arithmetic (functions and tensor methods) -> the neutral operation of signxai.core.layers.arithmetic_kind: the
# kind follows from the number of input-dependent tensor operands (one: a constant shift or scaling, PASS).
ARITHMETIC = torch_arithmetic()  # one table with the converters (signxai/_keras_torch.py)
ARITHMETIC.update({op: neutral for op, neutral in ATEN_ARITHMETIC.items() if neutral is not None})


def _arithmetic(*operations, methods=False):
    """The arithmetic functions (or tensor method names) of the given neutral operations."""
    return tuple(op for op, neutral in ARITHMETIC.items() if neutral in operations and isinstance(op, str) == methods)


LAYER_TABLE = LayerTable({
    g.KERNEL: KindEntry(layers=(nn.Linear, *CONV), functions=tuple(FUNCTIONAL_KERNELS)),
    g.BATCHNORM: KindEntry(layers=BATCHNORM),
    g.AVGPOOL: KindEntry(layers=(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                                 nn.AdaptiveAvgPool3d),
                         functions=(F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
                                    F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, torch.mean, torch.sum,
                                    *ATEN_AVGPOOL),
                         methods=("mean", "sum")),  # (a sum over an axis: a linear pooling operator, its Z rule)
    # of two input-dependent tensors (with a constant operand: PASS)
    g.ADD: KindEntry(functions=_arithmetic("add", "subtract"), methods=_arithmetic("add", "subtract", methods=True)),
    g.PRODUCT: KindEntry(functions=_arithmetic("multiply"), methods=_arithmetic("multiply", methods=True)),
    g.RELU: KindEntry(layers=(nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU),
                      functions=(F.relu, torch.relu, F.relu6, F.leaky_relu, F.prelu, torch.relu_, F.relu_,
                                 F.leaky_relu_, *ATEN_RELU),
                      methods=("relu", "relu_")),
    g.ACTIVATION: KindEntry(layers=(nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid,
                                    nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid),
                            functions=(F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, torch.tanh, torch.sigmoid,
                                       F.tanh, F.sigmoid, F.softplus, F.hardtanh, F.hardswish, F.hardsigmoid,
                                       F.elu_, F.logsigmoid, *ATEN_ACTIVATIONS),
                            methods=("tanh", "sigmoid", "sigmoid_", "tanh_")),
    # a constant shift or scaling (x - c, x / c) is PASS (ARITHMETIC: the kind follows the tensor operands)
    g.PASS: KindEntry(layers=(nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                              nn.FeatureAlphaDropout, nn.Identity, nn.LayerNorm, nn.GroupNorm,
                              *_STOCHASTIC_DEPTH_MODULES,
                              *RMS_NORM_MODULES),  # RMS normalisation: the identity rule (docs/transformers.md)
                      functions=(F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.layer_norm,
                                 F.group_norm, *_STOCHASTIC_DEPTH_FUNCTIONS, *_arithmetic("divide"),
                                 *ATEN_PASS, *ATEN_IDENTITIES, *RMS_NORM_FUNCTIONS),
                      methods=("float", "type_as", "to", "double",
                               *_arithmetic("divide", methods=True))),
    g.REINDEX: KindEntry(layers=(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                                 nn.AdaptiveMaxPool3d, nn.Flatten, nn.Unflatten, nn.ZeroPad1d, nn.ZeroPad2d,
                                 nn.ZeroPad3d, nn.Upsample,
                                 nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d),  # with value 0
                         functions=(torch.flatten, torch.reshape, torch.cat, torch.concat, F.pad, F.max_pool1d,
                                    F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
                                    F.adaptive_max_pool3d, torch.amax, torch.squeeze, torch.unsqueeze, torch.permute,
                                    torch.transpose, operator.getitem, F.interpolate, torch.max, getattr,
                                    torch.narrow, torch.flip, torch.roll, torch.swapaxes, torch.swapdims,
                                    torch.movedim, torch.moveaxis, *ATEN_REINDEX),
                         methods=("view", "reshape", "flatten", "permute", "squeeze", "unsqueeze", "transpose",
                                  "contiguous", "amax", "narrow", "view_as", "reshape_as", "expand_as", "expand",
                                  "repeat", "clone", "__getitem__", "flip", "roll", "swapaxes", "swapdims", "movedim",
                                  "moveaxis")),
})

# The identity at inference: the node's forward returns its input (the module's own forward may drop or not).
INFERENCE_IDENTITIES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                        nn.FeatureAlphaDropout, *_STOCHASTIC_DEPTH_MODULES)
INFERENCE_IDENTITY_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
                                *_STOCHASTIC_DEPTH_FUNCTIONS, *ATEN_IDENTITIES)

# Refused by every method: explanations need logits (docs/api.md#model-requirements).
SOFTMAX_LAYERS = (nn.Softmax, nn.LogSoftmax, nn.Softmin)
SOFTMAX_FUNCTIONS = (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, F.softmin, *ATEN_SOFTMAX)
SOFTMAX_METHODS = ("softmax", "log_softmax")

# Output bounds of bounded activations (for gate detection at products, docs/layers.md#gated-products), by function
# or tensor method; ReLU's (0, inf) lets rules skip work on inputs known to be nonnegative (docs/lrp.md#kernel-rules).
# Modules: ``module_range``.
VALUE_RANGES = {aten.sigmoid.default: (0.0, 1.0), aten.hardsigmoid.default: (0.0, 1.0),
                aten.tanh.default: (-1.0, 1.0), aten.relu.default: (0.0, math.inf), aten.relu6.default: (0.0, 6.0),
                torch.sigmoid: (0.0, 1.0), F.sigmoid: (0.0, 1.0), F.hardsigmoid: (0.0, 1.0), F.relu6: (0.0, 6.0),
                torch.tanh: (-1.0, 1.0), F.tanh: (-1.0, 1.0), F.relu: (0.0, math.inf), torch.relu: (0.0, math.inf),
                torch.relu_: (0.0, math.inf), F.relu_: (0.0, math.inf), "sigmoid": (0.0, 1.0),
                "sigmoid_": (0.0, 1.0), "tanh": (-1.0, 1.0), "tanh_": (-1.0, 1.0), "relu": (0.0, math.inf),
                "relu_": (0.0, math.inf)}


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
TUPLE_FUNCTIONS = (torch.chunk, torch.split, torch.unbind, torch.tensor_split, *ATEN_TUPLES)
TUPLE_METHODS = ("chunk", "split", "unbind", "tensor_split")
