"""The PyTorch backend: graph capture with ``torch.fx`` (modules and functional ops), tensor ops and VJPs.

The caller's module is never modified: captured nodes call leaf modules in inference form (BatchNorm with running
statistics, Dropout as identity, in-place activations out of place); the pure-gradient methods on models that
cannot be traced switch the model to eval mode under a per-model reference count and restore every flag.
"""
from __future__ import annotations

import contextlib
import copy
import math
import operator
import threading
import weakref

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from signxai.core import graph as g
from signxai.core.backend import Backend
from signxai.core.engine import propagate, record
from signxai.core.layers import is_registered, registered
from signxai.core.rules import identity
from signxai.core.targets import Targets

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
            nn.AdaptiveAvgPool3d)
_MAXPOOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
            nn.AdaptiveMaxPool3d)
_RELU = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU)
_ACTIVATION = (nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardtanh,
               nn.Hardswish, nn.Hardsigmoid)
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_PASS = (nn.Identity, nn.LayerNorm, nn.GroupNorm)
_RESHAPE = (nn.Flatten, nn.Unflatten, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.Upsample)
_SOFTMAX = (nn.Softmax, nn.LogSoftmax, nn.Softmin)
_LEAVES = (nn.Linear, *_CONV, *_BATCHNORM, *_AVGPOOL, *_MAXPOOL, *_RELU, *_ACTIVATION, *_DROPOUT, *_PASS,
           *_RESHAPE, *_SOFTMAX, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d)

_FUNCTION_KINDS = {
    g.RELU: {F.relu, torch.relu, F.relu6, F.leaky_relu, F.prelu, torch.relu_, F.relu_, F.leaky_relu_},
    g.ACTIVATION: {F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, torch.tanh, torch.sigmoid, F.tanh, F.sigmoid,
                   F.softplus, F.hardtanh, F.hardswish, F.hardsigmoid, F.elu_, torch.nn.functional.logsigmoid},
    g.PASS: {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.layer_norm, F.group_norm},
    g.AVGPOOL: {F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
                F.adaptive_avg_pool3d, torch.mean},
    g.GRADIENT: {torch.flatten, torch.reshape, torch.cat, torch.concat, F.pad, F.max_pool1d, F.max_pool2d,
                 F.max_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d, torch.amax,
                 torch.squeeze, torch.unsqueeze, torch.permute, torch.transpose, operator.getitem, F.interpolate,
                 torch.max, getattr, torch.narrow},
}
_METHOD_KINDS = {
    g.RELU: {"relu", "relu_"},
    g.ACTIVATION: {"tanh", "sigmoid", "sigmoid_", "tanh_"},
    g.AVGPOOL: {"mean"},
    g.GRADIENT: {"view", "reshape", "flatten", "permute", "squeeze", "unsqueeze", "transpose", "contiguous",
                 "amax", "narrow", "view_as", "reshape_as", "expand_as", "expand", "repeat", "clone", "__getitem__"},
    g.PASS: {"float", "type_as", "to", "double"},
}
# Shape arithmetic: these read a tensor's metadata, and any op whose input-dependent operands are all such values
# computes on numbers, not on relevance (docs/layers.md, non-tensor values).
_SHAPE_METHODS = {"size", "dim", "numel", "ndimension", "nelement"}
_SHAPE_ATTRIBUTES = {"shape", "ndim", "dtype", "device", "is_cuda", "requires_grad"}
# Ops that return several tensors; ``getitem`` on their result becomes one re-indexing node.
_TUPLE_FUNCTIONS = {torch.chunk, torch.split, torch.unbind, torch.tensor_split}
_TUPLE_METHODS = {"chunk", "split", "unbind", "tensor_split"}
# Output bounds of bounded activations (for gate detection at products, docs/layers.md).
# ReLU's (0, inf) lets rules skip work on inputs known to be nonnegative (docs/lrp.md#kernel-rules).
_FUNCTION_RANGES = {torch.sigmoid: (0.0, 1.0), F.sigmoid: (0.0, 1.0), F.hardsigmoid: (0.0, 1.0),
                    F.relu6: (0.0, 6.0), torch.tanh: (-1.0, 1.0), F.tanh: (-1.0, 1.0), F.relu: (0.0, math.inf),
                    torch.relu: (0.0, math.inf), torch.relu_: (0.0, math.inf), F.relu_: (0.0, math.inf)}
_METHOD_RANGES = {"sigmoid": (0.0, 1.0), "sigmoid_": (0.0, 1.0), "tanh": (-1.0, 1.0), "tanh_": (-1.0, 1.0),
                  "relu": (0.0, math.inf), "relu_": (0.0, math.inf)}


def _module_range(module):
    if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
        return (0.0, 1.0)
    if isinstance(module, nn.Hardtanh):  # nn.ReLU6 included
        return (float(module.min_val), float(module.max_val))
    if isinstance(module, nn.Tanh):
        return (-1.0, 1.0)
    if type(module) is nn.ReLU:
        return (0.0, math.inf)
    return None


def _inference_identities():
    """Modules and functions that are the identity at inference (torchvision's stochastic depth), if importable."""
    try:
        from torchvision.ops import StochasticDepth, stochastic_depth
    except Exception:  # torchvision is optional
        return (), set()
    return (StochasticDepth,), {stochastic_depth}


_IDENTITY_MODULES, _IDENTITY_FUNCTIONS = _inference_identities()
_SOFTMAX_FUNCTIONS = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, F.softmin}
_ARITHMETIC = {operator.add, operator.iadd, torch.add, operator.sub, operator.isub, torch.sub, operator.mul,
               operator.imul, torch.mul, operator.truediv, operator.itruediv, torch.div}
_ARITHMETIC_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}


class TensorOps:
    """The tensor operations the framework-neutral rules need, for PyTorch."""

    @staticmethod
    def vjp(fn, inputs, cotangent):
        leaves = [t.detach().requires_grad_(True) if _is_float_tensor(t) else t for t in inputs]
        with torch.enable_grad():
            out = fn(*leaves)
        wanted = [t for t in leaves if _is_float_tensor(t)]
        grads = iter(torch.autograd.grad(out, wanted, grad_outputs=cotangent, allow_unused=True))
        result = []
        for t in leaves:
            if not _is_float_tensor(t):
                result.append(None)
                continue
            grad = next(grads)
            result.append(torch.zeros_like(t) if grad is None else grad)
        return result

    @staticmethod
    def as_float(condition, like):
        return condition.to(like.dtype)

    ones_like = staticmethod(torch.ones_like)
    zeros_like = staticmethod(torch.zeros_like)

    @staticmethod
    def positive(t):
        return t.clamp(min=0)

    @staticmethod
    def negative(t):
        return t.clamp(max=0)

    @staticmethod
    def all_nonnegative(t):
        return bool((t >= 0).all())

    @staticmethod
    def all_zero(t):
        return bool((t == 0).all())

    @staticmethod
    def cond(predicate, if_true, if_false):
        return if_true() if predicate else if_false()

    @staticmethod
    def constant(value, like):
        return torch.as_tensor(np.asarray(value), dtype=like.dtype, device=like.device)

    @staticmethod
    def std_per_sample(a, like):
        std = a.to(torch.float64).flatten(1).std(dim=1, unbiased=False)
        return std.to(like.dtype).reshape([-1] + [1] * (like.dim() - 1))


OPS = TensorOps()
# The node kinds whose own forward the default LRP rules differentiate (re-indexing layers, average pooling).
_VJP_KINDS = (g.GRADIENT, g.AVGPOOL)


class _RecordedOps(TensorOps):
    """TensorOps for one backward pass whose ``vjp`` of a captured node's own forward, at that node's recorded
    inputs, reuses the autograd graph recorded in the forward pass instead of running the forward again. The
    result is bit-identical (the same forward, the same backward); any other VJP is computed as usual."""

    def __init__(self):
        self.recorded = {}

    def record(self, graph, x, kinds):
        """``engine.record``, with the nodes of ``kinds`` (None: all) recorded with autograd at detached inputs."""
        values = [x]
        for node in graph.nodes[1:]:
            inputs = [values[p] for p in node.parents]
            if kinds is not None and node.kind not in kinds:
                values.append(node.forward(*inputs))
                continue
            leaves = [t.detach().requires_grad_(True) if _is_float_tensor(t) else t for t in inputs]
            with torch.enable_grad():
                out = node.forward(*leaves)
            if isinstance(out, torch.Tensor) and out.requires_grad:
                self.recorded[(id(node.forward),) + tuple(map(id, inputs))] = (leaves, out)
                out = out.detach()
            values.append(out)
        return values

    def vjp(self, fn, inputs, cotangent):
        entry = self.recorded.get((id(fn),) + tuple(map(id, inputs)))
        if entry is None:
            return TensorOps.vjp(fn, inputs, cotangent)
        leaves, out = entry
        wanted = [t for t in leaves if _is_float_tensor(t)]
        with torch.enable_grad():
            grads = iter(torch.autograd.grad(out, wanted, grad_outputs=cotangent, allow_unused=True,
                                             retain_graph=True))
        result = []
        for t in leaves:
            if not _is_float_tensor(t):
                result.append(None)
                continue
            grad = next(grads)
            result.append(torch.zeros_like(t) if grad is None else grad)
        return result


def _is_float_tensor(t):
    return isinstance(t, torch.Tensor) and t.is_floating_point()


class _Tracer(fx.Tracer):
    """Traces through containers and user modules; the modules of docs/layers.md (and unknown torch.nn ones) are leaves."""

    def is_leaf_module(self, module, qualname):
        if isinstance(module, _LEAVES + _IDENTITY_MODULES) or is_registered(module):
            return True
        return super().is_leaf_module(module, qualname) and not isinstance(module, (nn.Sequential, nn.ModuleList,
                                                                                      nn.ModuleDict))


class TraceError(ValueError):
    """The model cannot be captured symbolically (the pure-gradient methods still work)."""


def trace(model):
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as error:  # fx reports data-dependent control flow and the like with many exception types
        raise TraceError(f"the PyTorch model could not be captured with torch.fx ({type(error).__name__}: "
                         f"{error}); the rule-based methods (guided backprop, DeconvNet, Grad-CAM, LRP) need a "
                         f"symbolically traceable model") from error
    return fx.GraphModule(tracer.root, graph)


def _kernel_from_module(module):
    if isinstance(module, nn.Linear):
        def apply(a, kernel_map=identity, bias_map=identity):
            return F.linear(a, kernel_map(module.weight), _bias(module.bias, bias_map))

        def adjoint(a, s, kernel_map=identity):
            return s @ kernel_map(module.weight)
        return g.Kernel(apply, True, 0, _bias_term(module.bias, 0), adjoint)
    transpose = isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
    rank = len(module.kernel_size)

    def apply(a, kernel_map=identity, bias_map=identity):
        weight, bias = kernel_map(module.weight), _bias(module.bias, bias_map)
        if transpose:
            conv = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[rank - 1]
            return conv(a, weight, bias, module.stride, module.padding, module.output_padding, module.groups,
                        module.dilation)
        return module._conv_forward(a, weight, bias)

    adjoint = None
    if not transpose and module.padding_mode == "zeros" and not isinstance(module.padding, str):
        conv_input = (torch.nn.grad.conv1d_input, torch.nn.grad.conv2d_input, torch.nn.grad.conv3d_input)[rank - 1]

        def adjoint(a, s, kernel_map=identity):
            return conv_input(a.shape, kernel_map(module.weight), s, module.stride, module.padding,
                              module.dilation, module.groups)
    return g.Kernel(apply, False, rank, _bias_term(module.bias, rank), adjoint)


def _bias_term(bias, spatial_rank):
    def bias_term(bias_map):
        return None if bias is None else bias_map(bias).reshape([-1] + [1] * spatial_rank)
    return bias_term


def _bias(bias, bias_map):
    return None if bias is None or bias_map is None else bias_map(bias)


_FUNCTIONAL_KERNELS = {F.linear: 0, F.conv1d: 1, F.conv2d: 2, F.conv3d: 3, F.conv_transpose1d: 1,
                       F.conv_transpose2d: 2, F.conv_transpose3d: 3}


def _kernel_from_function(function, args, kwargs):
    """A functional ``F.linear``/``F.conv*`` whose weight and bias are constants (parameters)."""
    names = ("input", "weight", "bias")
    bound = dict(zip(names, args))
    bound.update({k: v for k, v in kwargs.items() if k in names})
    rest_args, rest_kwargs = args[3:], {k: v for k, v in kwargs.items() if k not in names}
    weight, bias = bound["weight"], bound.get("bias")

    def apply(a, kernel_map=identity, bias_map=identity):
        return function(a, kernel_map(weight), _bias(bias, bias_map), *rest_args, **rest_kwargs)
    rank = _FUNCTIONAL_KERNELS[function]
    return g.Kernel(apply, function is F.linear, rank, _bias_term(bias, rank))


class _Capture:
    """Turns an fx graph into a :class:`signxai.core.graph.Graph` over the input-dependent values."""

    def __init__(self, model):
        self.module = trace(model)
        self.modules = dict(self.module.named_modules())
        self.nodes = [g.Node("input", g.INPUT, (), None, "input")]
        self.names = {}
        self.index = {}
        placeholders = [n for n in self.module.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise ValueError(f"the model's forward takes {len(placeholders)} inputs; signxai explains "
                             f"single-input models")
        self.index[placeholders[0]] = 0
        self.constants = {}
        self.tuple_parents = {}
        output = None
        for node in self.module.graph.nodes:
            if node.op == "get_attr":
                self.constants[node] = _fetch_attr(self.module, node.target)
            elif node.op in ("call_module", "call_function", "call_method"):
                self.add(node)
            elif node.op == "output":
                output = node.args[0]
        if not isinstance(output, fx.Node) or output not in self.index:
            raise ValueError("the model must return a single tensor that depends on its input")
        self.graph = g.Graph(self.nodes, output=self.index[output], names=self.names)

    def dependent(self, arg):
        return isinstance(arg, fx.Node) and arg in self.index

    def is_aux(self, arg):
        return self.dependent(arg) and self.nodes[self.index[arg]].kind == g.AUX

    def tensor_operand(self, arg):
        """An input-dependent tensor operand (not a shape value or other non-tensor)."""
        return self.dependent(arg) and not self.is_aux(arg)

    @staticmethod
    def reads_metadata(node):
        if node.op == "call_method":
            return node.target in _SHAPE_METHODS
        return (node.op == "call_function" and node.target is getattr and len(node.args) > 1
                and node.args[1] in _SHAPE_ATTRIBUTES)

    @staticmethod
    def is_tuple_op(node):
        return ((node.op == "call_function" and node.target in _TUPLE_FUNCTIONS)
                or (node.op == "call_method" and node.target in _TUPLE_METHODS))

    def tuple_source(self, node):
        """``(tuple node, item)`` for ``getitem`` on the result of chunk/split/unbind, else None."""
        if node.op == "call_function" and node.target is operator.getitem and node.args[0] in self.tuple_parents:
            return node.args[0], node.args[1]
        return None

    def tuple_item(self, source, parents, item):
        whole = self.forward(source, parents)

        def forward(*values):
            return whole(*values)[item]
        return forward

    def add(self, node):
        parents = []
        fx.node.map_arg((node.args, node.kwargs), lambda a: parents.append(a) if self.dependent(a)
                        and a not in parents else None)
        if not parents:  # a constant expression: evaluate once
            self.constants[node] = self.evaluate_constant(node)
            return
        tuple_source = self.tuple_source(node)
        if tuple_source is not None:  # ``chunk(x)[i]``: one re-indexing node of the chunked tensor
            source, item = tuple_source
            parents = list(self.tuple_parents[source])
            kind, extra = g.GRADIENT, {"forward": self.tuple_item(source, parents, item)}
        elif all(self.is_aux(p) for p in parents) or self.reads_metadata(node) or self.is_tuple_op(node):
            kind, extra = g.AUX, {}  # numbers computed from shapes, or a tuple that only its items consume
            if self.is_tuple_op(node):
                self.tuple_parents[node] = tuple(parents)
        else:
            kind, extra = self.classify(node, parents)
        if kind == g.KERNEL and "forward" not in extra:
            extra["forward"] = extra["kernel"].apply
        forward = extra.pop("forward", None) or self.forward(node, parents)
        name = node.target if node.op == "call_module" else node.name
        layer_type = (type(self.modules[node.target]).__name__ if node.op == "call_module"
                      else getattr(node.target, "__name__", str(node.target)))
        self.nodes.append(g.Node(name, kind, tuple(self.index[p] for p in parents), forward, layer_type, **extra))
        self.index[node] = len(self.nodes) - 1
        if node.op == "call_module":
            self.names.setdefault(node.target, len(self.nodes) - 1)

    def substitute(self, node, parents, values):
        lookup = dict(zip(parents, values))

        def value_of(a):
            return lookup[a] if a in lookup else self.constants[a]
        return fx.node.map_arg(node.args, value_of), fx.node.map_arg(node.kwargs, value_of)

    def evaluate_constant(self, node):
        args, kwargs = self.substitute(node, [], [])
        return self.call(node, args, kwargs)

    def call(self, node, args, kwargs):
        if node.op == "call_module":
            return self.modules[node.target](*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        return getattr(args[0], node.target)(*args[1:], **kwargs)

    def forward(self, node, parents):
        def forward(*values):
            args, kwargs = self.substitute(node, parents, values)
            return self.call(node, args, kwargs)
        return forward

    def classify(self, node, parents):
        """The §7.3 kind of a node, plus extra Node fields (a kernel, BN statistics or an inference forward)."""
        kind, extra = self.classify_kind(node, parents)
        if kind in (g.RELU, g.ACTIVATION):
            if node.op == "call_module":
                bounds = _module_range(self.modules[node.target])
            else:
                ranges = _FUNCTION_RANGES if node.op == "call_function" else _METHOD_RANGES
                bounds = ranges.get(node.target)
            if bounds is not None:
                extra["value_range"] = bounds
        return kind, extra

    def classify_kind(self, node, parents):
        if node.op == "call_module":
            return _classify_module(self.modules[node.target], node.target)
        target = node.target
        if node.op == "call_function":
            if target in _IDENTITY_FUNCTIONS:  # e.g. stochastic depth: the identity at inference
                return g.PASS, {"forward": lambda t, *rest: t}
            if target is F.hardsigmoid:
                return g.ACTIVATION, {"forward": _hardsigmoid}
            if target in _SOFTMAX_FUNCTIONS:
                raise _softmax_error(node.name)
            if target in _FUNCTIONAL_KERNELS:
                if len(parents) != 1 or not self.dependent(node.args[0] if node.args else node.kwargs.get("input")):
                    return g.UNSUPPORTED, {"reason": "a kernel computed from the input"}
                args, kwargs = self.constant_args(node)
                return g.KERNEL, {"kernel": _kernel_from_function(target, args, kwargs)}
            if target in _ARITHMETIC or (node.op == "call_method" and target in _ARITHMETIC_METHODS):
                return self.classify_arithmetic(node, parents)
            if target is F.dropout or target in (F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout):
                return g.PASS, {"forward": lambda t: t}
            for kind, functions in _FUNCTION_KINDS.items():
                if target in functions:
                    return kind, self.out_of_place(node, parents, kind)
            return g.UNSUPPORTED, {"reason": f"the function {getattr(target, '__name__', target)} has no rule"}
        if target in ("softmax", "log_softmax"):
            raise _softmax_error(node.name)
        if target in _ARITHMETIC_METHODS:
            return self.classify_arithmetic(node, parents)
        for kind, methods in _METHOD_KINDS.items():
            if target in methods:
                return kind, self.out_of_place(node, parents, kind)
        return g.UNSUPPORTED, {"reason": f"the tensor method .{target}() has no rule"}

    def constant_args(self, node):
        """Arguments of a functional kernel with the input replaced by None (it is passed separately)."""
        def value_of(a):
            return None if self.dependent(a) else self.constants[a]
        return fx.node.map_arg(node.args, value_of), fx.node.map_arg(node.kwargs, value_of)

    def classify_arithmetic(self, node, parents):
        name = getattr(node.target, "__name__", node.target)
        operands = list(node.args) + list(node.kwargs.values())
        tensor_operands = [a for a in operands if self.tensor_operand(a)]
        function = {"add": torch.add, "iadd": torch.add, "add_": torch.add, "sub": torch.sub,
                    "isub": torch.sub, "sub_": torch.sub, "mul": torch.mul, "imul": torch.mul,
                    "mul_": torch.mul, "truediv": torch.div, "itruediv": torch.div, "div": torch.div,
                    "div_": torch.div}[name]
        forward = {"forward": self.out_of_place_arithmetic(node, parents, function)}
        if name in ("add", "iadd", "add_") and len(tensor_operands) == 2 and "alpha" not in node.kwargs:
            return g.ADD, forward
        if name in ("mul", "imul", "mul_") and len(tensor_operands) == 2:
            return g.PRODUCT, forward
        if len(tensor_operands) == 1:
            affine = self.scalar_affine(node, name, tensor_operands[0])
            return g.PASS, dict(forward, **({"affine": affine} if affine is not None else {}))
        return g.UNSUPPORTED, {"reason": f"'{name}' of two input-dependent tensors has no LRP rule"}

    def scalar_affine(self, node, name, operand):
        """``(scale, shift)`` of ``x ∘ c`` for a scalar constant ``c`` (for gate detection), else None."""
        if len(node.args) != 2 or node.kwargs:
            return None
        first, second = node.args
        other = second if first is operand else first
        if isinstance(other, fx.Node):
            other = self.constants.get(other)
        if isinstance(other, torch.Tensor) and other.numel() == 1:
            other = float(other)
        if not isinstance(other, (int, float)) or isinstance(other, bool):
            return None
        other, left = float(other), first is operand
        if name.startswith(("add", "iadd")):
            return 1.0, other
        if name.startswith(("sub", "isub")):
            return (1.0, -other) if left else (-1.0, other)
        if name.startswith(("mul", "imul")):
            return other, 0.0
        if left and other != 0:  # x / c
            return 1.0 / other, 0.0
        return None

    def out_of_place_arithmetic(self, node, parents, function):
        def forward(*values):
            args, kwargs = self.substitute(node, parents, values)
            return function(*args, **kwargs)
        return forward

    def out_of_place(self, node, parents, kind):
        """In-place variants (``relu_``, ``inplace=True``) run out of place so recorded values stay intact."""
        base = self.forward(node, parents)
        if node.op == "call_method" and node.target.endswith("_"):
            method = node.target[:-1]

            def forward(*values):
                args, kwargs = self.substitute(node, parents, values)
                return getattr(args[0], method)(*args[1:], **kwargs)
            return {"forward": forward}
        if node.op == "call_function" and (node.kwargs.get("inplace") or getattr(node.target, "__name__", "")
                                           .endswith("_")):
            def forward(*values):
                return base(*[v.clone() if isinstance(v, torch.Tensor) else v for v in values])
            return {"forward": forward}
        return {}


def _fetch_attr(module, target):
    value = module
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _softmax_error(where):
    return ValueError(f"{where!r} applies a softmax: explanations need logits. Remove it with "
                      f"signxai.torch_signxai.utils.remove_softmax(model), which returns a copy")


def _classify_module(module, path):
    custom = registered(module)  # signxai.register_layer: before the built-in table
    if custom is not None:
        return custom
    if isinstance(module, nn.Linear) or isinstance(module, _CONV):
        kernel = _kernel_from_module(module)
        return g.KERNEL, {"kernel": kernel, "forward": kernel.apply}
    if isinstance(module, _BATCHNORM):
        if not module.track_running_stats or module.running_mean is None:
            raise ValueError(f"BatchNorm module {path!r} has track_running_stats=False: it has no running "
                             f"statistics, so its inference-mode output is undefined")
        return g.BATCHNORM, _batchnorm(module)
    if isinstance(module, _AVGPOOL):
        return g.AVGPOOL, {}
    if isinstance(module, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        sizes = module.output_size if isinstance(module.output_size, tuple) else (module.output_size,)
        if all(size == 1 for size in sizes) and not module.return_indices:
            # global max pooling: as torch.amax (and Keras GlobalMaxPooling), exact ties split the signal equally
            return g.GRADIENT, {"forward": lambda t: torch.amax(t, dim=tuple(range(2, t.dim())), keepdim=True)}
    if isinstance(module, _MAXPOOL) or isinstance(module, _RESHAPE):
        return g.GRADIENT, {}
    if isinstance(module, (nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d)):
        if module.value != 0:
            return g.UNSUPPORTED, {"reason": "constant padding with a non-zero value"}
        return g.GRADIENT, {}
    if isinstance(module, _RELU):
        return g.RELU, _out_of_place_module(module)
    if isinstance(module, nn.Hardsigmoid):
        return g.ACTIVATION, {"forward": _hardsigmoid}
    if isinstance(module, _ACTIVATION):
        return g.ACTIVATION, _out_of_place_module(module)
    if isinstance(module, _DROPOUT) or isinstance(module, _IDENTITY_MODULES):
        return g.PASS, {"forward": lambda t: t}
    if isinstance(module, _PASS):
        return g.PASS, {}
    if isinstance(module, _SOFTMAX):
        raise _softmax_error(path)
    return g.UNSUPPORTED, {"reason": f"{type(module).__name__} modules have no rule"}


def _hardsigmoid(t):
    """``ReLU6(t + 3) / 6``: bitwise equal to ``F.hardsigmoid`` in its forward, but with the exact derivative 1/6 —
    PyTorch's own backward uses a float32 1/6 even in float64 (measured 5e-9 relative), which alone would break the
    float64 agreement gate of docs/equivalence.md."""
    return F.relu6(t + 3.0) / 6.0


def _out_of_place_module(module):
    if getattr(module, "inplace", False):
        return {"forward": lambda t: module(t.clone())}
    return {}


def _batchnorm(module):
    def forward(a):
        return F.batch_norm(a, module.running_mean, module.running_var, module.weight, module.bias, False, 0.0,
                            module.eps)

    def statistics(a):
        shape = [1, -1] + [1] * (a.dim() - 2)
        beta = module.bias if module.bias is not None else torch.zeros_like(module.running_mean)
        return module.running_mean.reshape(shape), beta.reshape(shape)
    return {"forward": forward, "batchnorm": statistics}


class _EvalMode:
    """Puts a model in eval mode while at least one call uses it; restores every module's flag afterwards."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = weakref.WeakKeyDictionary()

    @contextlib.contextmanager
    def __call__(self, model):
        with self._lock:
            count, flags = self._users.get(model, (0, None))
            if count == 0:
                flags = [(m, m.training) for m in model.modules()]
                model.eval()
            self._users[model] = (count + 1, flags)
        try:
            yield
        finally:
            with self._lock:
                count, flags = self._users[model]
                if count == 1:
                    for module, training in flags:
                        module.training = training
                    del self._users[model]
                else:
                    self._users[model] = (count - 1, flags)


class TorchBackend(Backend):
    """Explains ``torch.nn.Module``s. Results are NumPy arrays in the caller's (channels-first) layout."""

    name = "pytorch"
    channels_first = True
    ops = OPS

    def __init__(self):
        super().__init__()
        self._eval_mode = _EvalMode()
        self._untraceable = weakref.WeakKeyDictionary()

    def check(self, model):
        """docs/api.md#model-requirements checks, run once per model (like the captured graph they go with, they are cached)."""
        self._cached(self._checked, model, self._check)

    def _check(self, model):
        for path, module in model.named_modules():
            if isinstance(module, _SOFTMAX):
                raise _softmax_error(path)
            if isinstance(module, _BATCHNORM) and not module.track_running_stats:
                raise ValueError(f"BatchNorm module {path!r} has track_running_stats=False: it has no running "
                                 f"statistics, so its inference-mode output is undefined")
        self._try_graph(model)
        return True

    def computation(self):
        """Autograd stays available even when the caller is inside ``torch.inference_mode()``."""
        return torch.inference_mode(False)

    def _try_graph(self, model):
        """The captured graph, or None for a model torch.fx cannot trace (remembered: it is not traced again)."""
        if model in self._untraceable:
            return None
        try:
            return self.graph(model)
        except TraceError:
            with self._lock:
                self._untraceable[model] = True
            return None

    def sample_rank(self, model):
        """k+1 if the first kernel module is a k-d convolution (docs/api.md#batch-axis), else None (batched unless 1-D)."""
        graph = self._try_graph(model)
        if graph is not None:
            first = next((n.kernel.spatial_rank for n in graph.nodes if n.kind == g.KERNEL), 0)
        else:
            kernel = next((m for m in model.modules() if isinstance(m, (nn.Linear, *_CONV))), None)
            first = len(kernel.kernel_size) if isinstance(kernel, _CONV) else 0
        return first + 1 if first else None

    def capture(self, model):
        return _Capture(model).graph

    @staticmethod
    def float64_copy(model):
        """A deep copy in float64. Floating parameters and buffers are converted while copying, so no second
        float32 copy of the weights exists even transiently."""
        memo = {}
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point() and id(tensor) not in memo:
                converted = tensor.detach().to(torch.float64)
                if isinstance(tensor, nn.Parameter):
                    converted = nn.Parameter(converted, requires_grad=tensor.requires_grad)
                memo[id(tensor)] = converted
        return copy.deepcopy(model, memo).to(torch.float64)

    @staticmethod
    def sync_weights(model, copy_):
        with torch.no_grad():
            copy_.load_state_dict(model.state_dict())

    def _device(self, model):
        parameter = next(iter(model.parameters()), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    def _tensor(self, model, x):
        return torch.as_tensor(x, device=self._device(model))

    def _forward(self, model, x):
        graph = self._try_graph(model)
        if graph is not None:
            return record(graph, x)[graph.output]
        with self._eval_mode(model):
            return model(x)

    # Targets are resolved from the logits of each pass's own forward (docs/api.md#targets); no separate logits pass runs.
    def logits(self, model, x):
        with torch.no_grad():
            return self._forward(model, self._tensor(model, x)).detach().cpu().numpy()

    def gradients(self, model, x, targets):
        x = self._tensor(model, x).requires_grad_(True)
        with torch.enable_grad():
            y = self._forward(model, x)
            selected = (y * _onehot(targets, y)).sum()
            (grad,) = torch.autograd.grad(selected, x)
        return grad.detach().cpu().numpy()

    def graph_backward(self, model, x, targets, mapping_factory, lrp_head, key=None):
        """``key`` (a value identity of the mapping, or a function giving one, for compiling backends) is not
        needed here and never evaluated."""
        graph = self.graph(model)
        ops = _RecordedOps()
        with torch.no_grad():  # LRP takes VJPs of re-indexing and pooling layers, guided backprop of every layer
            values = ops.record(graph, self._tensor(model, x), _VJP_KINDS if lrp_head else None)
        onehot = _onehot(targets, values[graph.output])  # the logits' shape and the targets are checked first
        graph.check_supported(graph.output)
        start = graph.strip_trailing_activations(graph.output) if lrp_head else graph.output
        onehot = onehot.to(values[start].dtype)
        signal = values[start] * onehot if lrp_head else onehot
        with torch.no_grad():
            relevance = propagate(ops, graph, values, start, signal, mapping_factory(graph))
        return relevance.detach().cpu().numpy()

    def cam_activations(self, model, x, targets, layer):
        graph = self.graph(model)
        if layer is not None and not isinstance(layer, str):
            layer = next((name for name, m in model.named_modules() if m is layer), None)
            if layer is None:
                raise ValueError("the Grad-CAM layer module is not part of the model")
        index = graph.cam_node(layer)
        x = self._tensor(model, x).requires_grad_(True)
        with torch.enable_grad():
            values = record(graph, x)
            y = values[graph.output]
            selected = (y * _onehot(targets, y)).sum()
            (grad,) = torch.autograd.grad(selected, values[index])
        activation, grad = values[index].detach().cpu().numpy(), grad.detach().cpu().numpy()
        return np.moveaxis(activation, 1, -1), np.moveaxis(grad, 1, -1)

    def activation_bytes_per_sample(self, model, sample):
        """Twice what autograd saves for the backward pass of one sample (parameters excluded), plus the logits:
        the backward pass's gradient buffers and convolution workspaces are of the same order (measured on VGG16:
        a chunk's peak is about 2.2× its saved tensors in float64)."""
        x = self._tensor(model, sample).contiguous().requires_grad_(True)  # user forwards may call .view()
        weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
        saved = {}

        def pack(t):
            storage = t.untyped_storage()
            if storage.data_ptr() not in weights:
                saved[storage.data_ptr()] = storage.nbytes()
            return t
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = self._forward(model, x)
        return 2 * sum(saved.values()) + y.numel() * y.element_size()


def _onehot(targets, y):
    """One-hot rows of the targets, resolved from the logits ``y`` of this very pass where not yet known."""
    targets = Targets.of(targets)
    if targets.values is None:
        logits = y.detach()
        targets.resolve((logits if logits.dtype in (torch.float32, torch.float64) else logits.float()).cpu().numpy())
    classes = torch.as_tensor(targets.values, device=y.device)
    return F.one_hot(classes, y.shape[-1]).to(y.dtype)


BACKEND = TorchBackend()
