"""PyTorch graph capture with ``torch.fx``: modules, functional ops and tensor methods become a
:class:`signxai.core.graph.Graph` (docs/layers.md), each classified by the layer table of ``layer_table.py``.

The caller's module is never modified: captured nodes call leaf modules in inference form (BatchNorm with running
statistics, Dropout as identity, in-place activations out of place).
"""
from __future__ import annotations

import copy
import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from signxai.core import graph as g
from signxai.core.layers import arithmetic_kind, is_registered, registered, scalar_affine
from signxai.core.rules import identity
from signxai.torch_signxai.layer_table import (ARITHMETIC, FUNCTIONAL_KERNELS, INFERENCE_IDENTITIES,
                                               INFERENCE_IDENTITY_FUNCTIONS, LAYER_TABLE, SHAPE_ATTRIBUTES,
                                               SHAPE_METHODS, SOFTMAX_FUNCTIONS, SOFTMAX_LAYERS, SOFTMAX_METHODS,
                                               TUPLE_FUNCTIONS, TUPLE_METHODS, VALUE_RANGES, module_range)

# fx leaves: every module class of the layer table, and the softmax modules (refused with a clear message)
_LEAVES = LAYER_TABLE.layer_classes() + SOFTMAX_LAYERS
# the out-of-place function of each neutral arithmetic operation (in-place ``x += y`` would overwrite a record)
_OUT_OF_PLACE = {"add": torch.add, "subtract": torch.sub, "multiply": torch.mul, "divide": torch.div}


def _identity(t, *rest):
    return t


class _Tracer(fx.Tracer):
    """Traces through containers and user modules; the modules of docs/layers.md (and unknown torch.nn ones) are
    leaves."""

    def is_leaf_module(self, module, qualname):
        if isinstance(module, _LEAVES) or is_registered(module):
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


def _kernel_from_function(function, args, kwargs):
    """A functional ``F.linear``/``F.conv*`` whose weight and bias are constants (parameters)."""
    names = ("input", "weight", "bias")
    bound = dict(zip(names, args))
    bound.update({k: v for k, v in kwargs.items() if k in names})
    rest_args, rest_kwargs = args[3:], {k: v for k, v in kwargs.items() if k not in names}
    weight, bias = bound["weight"], bound.get("bias")

    def apply(a, kernel_map=identity, bias_map=identity):
        return function(a, kernel_map(weight), _bias(bias, bias_map), *rest_args, **rest_kwargs)
    rank = FUNCTIONAL_KERNELS[function]
    return g.Kernel(apply, function is F.linear, rank, _bias_term(bias, rank))


class Capture:
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
            return node.target in SHAPE_METHODS
        return (node.op == "call_function" and node.target is getattr and len(node.args) > 1
                and node.args[1] in SHAPE_ATTRIBUTES)

    @staticmethod
    def is_tuple_op(node):
        return ((node.op == "call_function" and node.target in TUPLE_FUNCTIONS)
                or (node.op == "call_method" and node.target in TUPLE_METHODS))

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
            kind, extra = g.REINDEX, {"forward": self.tuple_item(source, parents, item)}
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
                bounds = module_range(self.modules[node.target])
            else:
                bounds = VALUE_RANGES.get(node.target)
            if bounds is not None:
                extra["value_range"] = bounds
        return kind, extra

    def classify_kind(self, node, parents):
        """The layer table (``layer_table.py``), refined by the special cases: inference forms, functional kernels,
        arithmetic by its operands, refused softmax."""
        if node.op == "call_module":
            return _classify_module(self.modules[node.target], node.target)
        target = node.target
        if node.op == "call_function":
            if target in INFERENCE_IDENTITY_FUNCTIONS:  # dropout, stochastic depth: the identity at inference
                return g.PASS, {"forward": _identity}
            if target is F.hardsigmoid:
                return g.ACTIVATION, {"forward": _hardsigmoid}
            if target in SOFTMAX_FUNCTIONS:
                raise _softmax_error(node.name)
            if target in FUNCTIONAL_KERNELS:
                if len(parents) != 1 or not self.dependent(node.args[0] if node.args else node.kwargs.get("input")):
                    return g.UNSUPPORTED, {"reason": "a kernel computed from the input"}
                args, kwargs = self.constant_args(node)
                return g.KERNEL, {"kernel": _kernel_from_function(target, args, kwargs)}
            kind = LAYER_TABLE.function_kind(target)
            what = f"the function {getattr(target, '__name__', target)}"
        else:
            if target in SOFTMAX_METHODS:
                raise _softmax_error(node.name)
            kind = LAYER_TABLE.method_kind(target)
            what = f"the tensor method .{target}()"
        if target in ARITHMETIC:
            return self.classify_arithmetic(node, parents, ARITHMETIC[target])
        if kind is None:
            return g.UNSUPPORTED, {"reason": f"{what} has no rule"}
        return kind, self.out_of_place(node, parents, kind)

    def constant_args(self, node):
        """Arguments of a functional kernel with the input replaced by None (it is passed separately)."""
        def value_of(a):
            return None if self.dependent(a) else self.constants[a]
        return fx.node.map_arg(node.args, value_of), fx.node.map_arg(node.kwargs, value_of)

    def classify_arithmetic(self, node, parents, operation):
        """``a ∘ b`` by its input-dependent tensor operands (signxai.core.layers.arithmetic_kind), run out of place."""
        operands = list(node.args) + list(node.kwargs.values())
        tensor_operands = [a for a in operands if self.tensor_operand(a)]
        forward = {"forward": self.out_of_place_arithmetic(node, parents, _OUT_OF_PLACE[operation])}
        kind = arithmetic_kind(operation, len(tensor_operands))
        if kind == g.ADD and "alpha" in node.kwargs:  # a + alpha·b: no rule
            kind = g.UNSUPPORTED
        if kind == g.PASS:
            affine = self.scalar_affine(node, operation, tensor_operands[0])
            return g.PASS, dict(forward, **({"affine": affine} if affine is not None else {}))
        if kind == g.UNSUPPORTED:
            name = getattr(node.target, "__name__", node.target)
            return g.UNSUPPORTED, {"reason": f"'{name}' of two input-dependent tensors has no LRP rule"}
        return kind, forward

    def scalar_affine(self, node, operation, operand):
        """``(scale, shift)`` of ``x ∘ c`` for a scalar constant ``c`` (for gate detection), else None."""
        if len(node.args) != 2 or node.kwargs:
            return None
        first, second = node.args
        other = second if first is operand else first
        if isinstance(other, fx.Node):
            other = self.constants.get(other)
        if isinstance(other, torch.Tensor) and other.numel() == 1:
            other = float(other)
        return scalar_affine(operation, other, first is operand)

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
    """The layer table's kind of a module, refined by the special cases (kernels, BN statistics, global max
    pooling, non-zero padding, inference forms)."""
    custom = registered(module)  # signxai.register_layer: before the built-in table
    if custom is not None:
        return custom
    kind = LAYER_TABLE.layer_kind(module)
    if kind == g.KERNEL:
        kernel = _kernel_from_module(module)
        return g.KERNEL, {"kernel": kernel, "forward": kernel.apply}
    if kind == g.BATCHNORM:
        if not module.track_running_stats or module.running_mean is None:
            raise ValueError(f"BatchNorm module {path!r} has track_running_stats=False: it has no running "
                             f"statistics, so its inference-mode output is undefined")
        return g.BATCHNORM, _batchnorm(module)
    if kind == g.REINDEX:
        if isinstance(module, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
            sizes = module.output_size if isinstance(module.output_size, tuple) else (module.output_size,)
            if all(size == 1 for size in sizes) and not module.return_indices:
                # global max pooling: as torch.amax (and Keras GlobalMaxPooling), exact ties split the signal equally
                return g.REINDEX, {"forward": lambda t: torch.amax(t, dim=tuple(range(2, t.dim())), keepdim=True)}
        if isinstance(module, (nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d)) and module.value != 0:
            return g.UNSUPPORTED, {"reason": "constant padding with a non-zero value"}
        return g.REINDEX, {}
    if kind == g.ACTIVATION and isinstance(module, nn.Hardsigmoid):
        return g.ACTIVATION, {"forward": _hardsigmoid}
    if kind in (g.RELU, g.ACTIVATION):
        return kind, _out_of_place_module(module)
    if kind == g.PASS and isinstance(module, INFERENCE_IDENTITIES):
        return g.PASS, {"forward": _identity}
    if kind is not None:
        return kind, {}
    if isinstance(module, SOFTMAX_LAYERS):
        raise _softmax_error(path)
    return g.UNSUPPORTED, {"reason": f"{type(module).__name__} modules have no rule"}


def _hardsigmoid(t):
    """``ReLU6(t + 3) / 6``: bitwise equal to ``F.hardsigmoid`` in its forward, but with the exact derivative 1/6 —
    PyTorch's own backward uses a float32 1/6 even in float64 (measured 5e-9 relative), which alone would break the
    float64 agreement gate of docs/equivalence.md."""
    return F.relu6(t + 3.0) / 6.0


def _out_of_place_module(module):
    """An ``inplace=True`` activation runs as a shallow copy with ``inplace=False`` (its own forward, one pass over
    the tensor instead of a clone and an in-place pass; the caller's module is not touched)."""
    if getattr(module, "inplace", False):
        out_of_place = copy.copy(module)
        out_of_place.inplace = False
        return {"forward": out_of_place}
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
