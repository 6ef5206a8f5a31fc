"""PyTorch graph capture with ``torch.fx``: modules, functional ops and tensor methods become a
:class:`signxai.core.graph.Graph` (docs/layers.md), each classified by the layer table of ``layer_table.py``.

The caller's module is never modified: captured nodes call leaf modules in inference form (BatchNorm with running
statistics, Dropout as identity, in-place activations out of place).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import math
import operator
import types

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from signxai.core import graph as g
from signxai.core.inputs import fixed_value
from signxai.core.outputs import select_output
from signxai.core.layers import arithmetic_kind, constant_shift, is_registered, registered, scalar_affine
from signxai.core.rules import identity
from signxai.torch_signxai.recurrent import RECURRENT_MODULES, unroll_module
from signxai.torch_signxai.recurrent import refusal as recurrent_refusal
from signxai.torch_signxai.layer_table import (ARITHMETIC, ATEN_SHAPE, FUNCTIONAL_KERNELS, INFERENCE_IDENTITIES,
                                               INFERENCE_IDENTITY_FUNCTIONS, LAYER_TABLE, SHAPE_ATTRIBUTES,
                                               SHAPE_METHODS, SOFTMAX_FUNCTIONS, SOFTMAX_LAYERS, SOFTMAX_METHODS,
                                               TUPLE_FUNCTIONS, TUPLE_METHODS, VALUE_RANGES, module_range)

# the out-of-place function of each neutral arithmetic operation (in-place ``x += y`` would overwrite a record)
_OUT_OF_PLACE = {"add": torch.add, "subtract": torch.sub, "multiply": torch.mul, "divide": torch.div}


def _identity(t, *rest):
    return t


class _Tracer(fx.Tracer):
    """Traces through containers and user modules. Leaves are the modules of docs/layers.md whose class computes
    what the table's class computes (a subclass that overrides ``forward`` is traced into: docs/layers.md#what-runs),
    registered classes, and torch.nn modules without a rule (they stay one unsupported node)."""

    def is_leaf_module(self, module, qualname):
        if LAYER_TABLE.layer_kind(module) is not None or is_registered(module) or type(module) in SOFTMAX_LAYERS:
            return True
        if isinstance(module, nn.MultiheadAttention):  # traced into: its functional form (torch.export where fx
            return False                                # cannot follow it; docs/transformers.md#capture)
        return (type(module).__module__.startswith("torch.nn") and super().is_leaf_module(module, qualname)
                and not isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)))


class CaptureError(ValueError):
    """The model cannot be captured for the rule-based methods (the gradient family still works: it runs on the
    model itself)."""


class TraceError(CaptureError):
    """The model cannot be captured symbolically (the pure-gradient methods still work)."""


def _parameters(model):
    try:
        return list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return []


def required_inputs(model):
    """The names of the model's inputs: the forward's first parameter (HuggingFace declares ``pixel_values=None``)
    and every later one without a default."""
    parameters = [p for p in _parameters(model) if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [p.name for i, p in enumerate(parameters) if i == 0 or p.default is inspect.Parameter.empty]


def _optional_parameters(model):
    """The forward's parameters after the first that have defaults: traced with their default values."""
    return {p.name: p.default for p in _parameters(model)[1:]
            if p.default is not inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def trace(model):
    tracer = _Tracer()
    try:
        graph = tracer.trace(model, concrete_args=_optional_parameters(model) or None)
    except Exception as error:  # fx reports data-dependent control flow and the like with many exception types
        raise TraceError(f"the PyTorch model could not be captured with torch.fx ({type(error).__name__}: "
                         f"{error}); the rule-based methods (guided backprop, DeconvNet, Grad-CAM, LRP) need a "
                         f"symbolically traceable model; the gradient family works on any model") from error
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

    def adjoint(a, s, kernel_map=identity):  # W'ᵀ s of a linear map without its forward (as nn.Linear's)
        return s @ kernel_map(weight)
    return g.Kernel(apply, rank == 0, rank, _bias_term(bias, rank), adjoint if rank == 0 else None)


class Capture:
    """Turns an fx graph into a :class:`signxai.core.graph.Graph` over the input-dependent values."""

    def __init__(self, model, inference=None, example=None, explained=None, sample=None):
        # traced in inference mode: Python branches on ``self.training`` inside traced-into modules take their
        # inference form (the caller's flags are restored afterwards); with ``example`` (an input tensor), by
        # non-strict torch.export on that input (docs/layers.md#export-capture), else by torch.fx. ``sample`` (an
        # input tensor): the time steps of recurrent modules are read from it (docs/layers.md#recurrent)
        self.exported = example is not None
        with inference(model) if inference is not None else contextlib.nullcontext():
            self.module = trace(model) if example is None else export(model, example)
            self.steps = recurrent_steps(self.module, sample) if sample is not None else {}
        self.sampled = sample is not None
        self.per_shape = False  # whether the graph depends on the sample shape (recurrent modules)
        self.structured = {}  # fx nodes whose value is a tuple of captured tensors (a recurrent module's output)
        self.modules = dict(self.module.named_modules())
        self.nodes = [g.Node("input", g.INPUT, (), None, "input")]
        self.names = {}
        self.index = {}
        self.constants = {}
        placeholders = [n for n in self.module.graph.nodes  # (``*args``/``**kwargs`` take nothing)
                        if n.op == "placeholder" and not str(n.target).startswith("*")]
        # the first parameter is the input even with a default; later ones with defaults are optional parameters
        required = [n for i, n in enumerate(placeholders) if i == 0 or not n.args]
        if explained is not None:  # a bound multi-input view (docs/api.md#multi-input): the others are held fixed
            required = self.fixed_inputs(required, explained)
        if len(required) != 1:
            raise CaptureError(f"the model's forward takes {len(required)} required inputs "
                               f"({[n.target for n in required]}); the rule-based methods explain single-input "
                               f"models (the gradient family runs on the model itself)")
        self.index[required[0]] = 0
        value = required[0].meta.get("val")
        self.batch = str(value.shape[0]) if self.exported and hasattr(value, "shape") and len(value.shape) else None
        for node in placeholders[1:]:
            if node.args:
                self.constants[node] = node.args[0]
        self.tuple_parents = {}
        output = None
        for node in self.module.graph.nodes:
            if node.op == "get_attr":
                self.constants[node] = _fetch_attr(self.module, node.target)
            elif node.op == "call_module" and node.target == "_guards_fn":
                continue  # torch.export's shape guards: no value
            elif node.op in ("call_module", "call_function", "call_method"):
                self.add(node)
            elif node.op == "output":
                output = node.args[0]
        if not isinstance(output, fx.Node):
            try:
                output = select_output(output, lambda a: isinstance(a, fx.Node) and a in self.index)
            except (TypeError, ValueError) as error:
                raise CaptureError(f"the captured model output: {error}") from error
        if not isinstance(output, fx.Node) or output not in self.index:
            raise CaptureError("the model must return a single tensor that depends on its input")
        self.graph = g.Graph(self.nodes, output=self.index[output], names=self.names)
        self.graph.per_shape = self.per_shape  # type: ignore[attr-defined]

    def fixed_inputs(self, required, explained):
        """The required inputs other than ``explained`` (a position) as AUX nodes that read the pass's fixed values
        (:func:`signxai.core.inputs.fixed_value`): they and what is computed from them alone carry no relevance."""
        if explained >= len(required):
            raise CaptureError(f"the model's forward takes {len(required)} required inputs; input {explained} "
                               f"does not exist")
        others = [n for i, n in enumerate(required) if i != explained]
        for j, node in enumerate(others):
            self.nodes.append(g.Node(str(node.target), g.AUX, (), functools.partial(fixed_value, j), "fixed input"))
            self.index[node] = len(self.nodes) - 1
        return [required[explained]]

    def batch_leading(self, arg):
        """Whether an exported value's leading axis is the (dynamic) batch axis of the input."""
        batch = getattr(self, "batch", None)
        value = arg.meta.get("val") if isinstance(arg, fx.Node) else None
        if batch is None or value is None or not hasattr(value, "shape") or len(value.shape) == 0:
            return True
        return str(value.shape[0]) == batch

    def dependent(self, arg):
        return isinstance(arg, fx.Node) and arg in self.index

    def is_aux(self, arg):
        return self.dependent(arg) and self.nodes[self.index[arg]].kind == g.AUX

    def tensor_operand(self, arg):
        """An input-dependent tensor operand (not a shape value or other non-tensor)."""
        return self.dependent(arg) and not self.is_aux(arg)

    @staticmethod
    def reads_metadata(node):
        """Shape reads, and norms: a normaliser (ConvNeXtV2's GRN ``x.norm(...)``) is held constant, as LayerNorm's
        σ (docs/layers.md#clamp): values computed from it alone carry no relevance."""
        if node.op == "call_method":
            return node.target in SHAPE_METHODS or node.target in NORMS
        if node.op == "call_function" and (node.target in ATEN_SHAPE or node.target in NORMS):
            return True
        return (node.op == "call_function" and node.target is getattr and len(node.args) > 1
                and node.args[1] in SHAPE_ATTRIBUTES)

    def shaped_like(self, node):
        """``expand_as(c, x)`` (``view_as``, ``reshape_as``) of a value ``c`` that carries no signal: x gives only its
        shape, so the result carries none either (Swin-V2's ``‖q‖`` expanded to q's shape)."""
        return ((node.op == "call_function" and node.target is torch.ops.aten.expand_as.default)
                or (node.op == "call_method" and node.target in ("expand_as", "view_as", "reshape_as"))) \
            and bool(node.args) and not self.tensor_operand(node.args[0])

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
        if self.add_recurrent(node):
            return
        parents = []
        fx.node.map_arg((node.args, node.kwargs), lambda a: parents.append(a) if self.dependent(a)
                        and a not in parents else None)
        if not parents:  # a constant expression: evaluate once
            self.constants[node] = self.evaluate_constant(node)
            return
        if node.op == "call_function" and node.target in NEW_FACTORIES and parents == [node.args[0]] \
                and hasattr(node.args[0].meta.get("val"), "dtype"):
            # ``x.new_zeros(size)`` reads only x's dtype and device: a constant (torchvision's Swin shift mask)
            value = node.args[0].meta["val"]
            self.constants[node] = self.call(node, (torch.empty(0, dtype=value.dtype, device=value.device),)
                                             + tuple(self.substitute(node, parents, [None])[0][1:]),
                                             self.substitute(node, parents, [None])[1])
            return
        if node.op == "call_function" and node.target in SDPA_FUNCTIONS and not self.is_aux(parents[0]):
            self.attention(node, parents)  # several nodes (docs/transformers.md#capture)
            return
        tuple_source = self.tuple_source(node)
        if tuple_source is not None:  # ``chunk(x)[i]``: one re-indexing node of the chunked tensor
            source, item = tuple_source
            parents = list(self.tuple_parents[source])
            kind, extra = g.REINDEX, {"forward": self.tuple_item(source, parents, item)}
        elif all(self.is_aux(p) for p in parents) or self.reads_metadata(node) or self.is_tuple_op(node) \
                or self.shaped_like(node):
            kind, extra = g.AUX, {}  # numbers computed from shapes, or a tuple that only its items consume
            if self.is_tuple_op(node):
                self.tuple_parents[node] = tuple(parents)
        else:
            kind, extra = self.classify(node, parents)
            parents = extra.pop("parents", parents)
        if kind == g.KERNEL and "forward" not in extra:
            extra["forward"] = extra["kernel"].apply
        forward = extra.pop("forward", None) or self.forward(node, parents)
        if kind not in (g.AUX, g.UNSUPPORTED) and tuple_source is None:
            extra.setdefault("reference", self.original(node, parents))
        name = (node.target if node.op == "call_module"
                else (_module_path(node) if self.exported else None) or node.name)
        layer_type = (type(self.modules[node.target]).__name__ if node.op == "call_module"
                      else node.target._schema.name.split("::")[-1] if isinstance(node.target, torch._ops.OpOverload)
                      else getattr(node.target, "__name__", str(node.target)))
        if kind == g.KERNEL and self.exported and parents and not self.batch_leading(parents[0]):
            extra["batch_leading"] = False
        self.nodes.append(g.Node(name, kind, tuple(self.index[p] for p in parents), forward, layer_type, **extra))
        self.index[node] = len(self.nodes) - 1
        if node.op == "call_module":
            self.names.setdefault(node.target, len(self.nodes) - 1)
        elif self.exported and _module_path(node):  # a module's output: its last operator
            self.names[_module_path(node)] = len(self.nodes) - 1

    def add_recurrent(self, node):
        """Recurrent modules unrolled (docs/layers.md#recurrent), and items of their output tuples; False for any
        other node."""
        used = [a for a in node.all_input_nodes if a in self.structured]
        if node.op == "call_function" and node.target is operator.getitem and used and node.args[0] in self.structured:
            item = self.structured[node.args[0]][node.args[1]]
            if isinstance(item, int):
                self.index[node] = item
            else:
                self.structured[node] = item
            return True
        if used:
            raise CaptureError(f"the output tuple of recurrent module '{used[0].target}' is used as a whole by "
                               f"'{node.name}'; the rule-based methods capture its items (``out, _ = rnn(x)``, "
                               f"``h_n[-1]``)")
        if node.op != "call_module" or type(self.modules[node.target]) not in RECURRENT_MODULES:
            return False
        module = self.modules[node.target]
        parents = [a for a in node.all_input_nodes if self.dependent(a)]
        reason = recurrent_refusal(module)
        if len(node.args) + len(node.kwargs) != 1 or len(parents) != 1:
            reason = ("initial states given to a recurrent module are not supported (the rule-based methods unroll "
                      "it from zero initial states; call it on the input sequence alone)")
        if not reason and node not in self.steps:
            if self.sampled:
                reason = "an unbatched (T, F) input is not supported: give a batch (N, T, F)"
            else:
                self.per_shape = True  # captured again per sample shape, with its time steps
                reason = "its time steps are known only for a given input (captured per input shape)"
        if reason:  # one unsupported node (the module's own call) and its items, refused with it
            layer_type = type(module).__name__
            self.nodes.append(g.Node(node.target, g.UNSUPPORTED, tuple(self.index[p] for p in parents),
                                     self.forward(node, parents), layer_type, reason=reason))
            whole = len(self.nodes) - 1

            def item(*path):
                self.nodes.append(g.Node(f"{node.target}/{'/'.join(map(str, path))}", g.UNSUPPORTED, (whole,),
                                         lambda v: v[path[0]] if len(path) == 1 else v[path[0]][path[1]],
                                         layer_type, reason=reason))
                return len(self.nodes) - 1
            self.structured[node] = ((item(0), (item(1, 0), item(1, 1))) if isinstance(module, nn.LSTM)
                                     else (item(0), item(1)))
        else:
            structure = unroll_module(self.nodes, node.target, module, self.index[parents[0]], self.steps[node])
            sequence = structure[0]
            self.nodes[sequence].reference = self.original_item(node, parents, 0)
            self.nodes[sequence].reference_parents = (self.index[parents[0]],)
            self.structured[node] = structure
        self.names.setdefault(node.target, self.structured[node][0])
        return True

    def original_item(self, node, parents, item):
        original = self.original(node, parents)
        return lambda *values: original(*values)[item]

    def substitute(self, node, parents, values):
        lookup = dict(zip(parents, values))

        def value_of(a):
            return lookup[a] if a in lookup else self.constants[a]
        return fx.node.map_arg(node.args, value_of), fx.node.map_arg(node.kwargs, value_of)

    def evaluate_constant(self, node):
        args, kwargs = self.substitute(node, [], [])
        inplace = node.meta.get("inplace")  # an exported in-place operator on a constant built in the graph (the
        if inplace is not None and args and isinstance(args[0], torch.Tensor) \
                and not self.model_storage(args[0]):  # slices of Swin's shift mask filled in place) mutates it
            return inplace(*args, **kwargs)
        return self.call(node, args, kwargs)

    def model_storage(self, tensor):
        """Whether ``tensor`` shares memory with a parameter, buffer or tensor attribute of the model (never
        mutated)."""
        owned = [*self.module.parameters(), *self.module.buffers(),
                 *(self.constants[n] for n in self.module.graph.nodes if n.op == "get_attr" and n in self.constants)]
        pointer = tensor.untyped_storage().data_ptr()
        return any(isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() == pointer for t in owned)

    def call(self, node, args, kwargs):
        if node.op == "call_module":
            return self.modules[node.target](*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        return getattr(args[0], node.target)(*args[1:], **kwargs)

    def original(self, node, parents):
        """What the model's own code computes at ``node`` (in-place operations on copies): the node's reference."""
        def original(*values):
            args, kwargs = self.substitute(node, parents, [v.clone() if isinstance(v, torch.Tensor) else v
                                                           for v in values])
            return self.call(node, args, kwargs)
        return original

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
                return g.PASS, {"forward": _identity, "affine": (1.0, 0.0)}
            if target in (F.hardsigmoid, torch.ops.aten.hardsigmoid.default):
                return g.ACTIVATION, {"forward": _hardsigmoid}
            if target in SOFTMAX_FUNCTIONS:
                return _softmax_inside(getattr(target, "__name__", str(target)), self.softmax_axis(node))
            if target in LAYER_NORMS:
                return self.layer_norm(node)
            if target is F.normalize:
                return self.l2_normalize(node)
            if target in BILINEAR_FUNCTIONS or target in BILINEAR_METHODS:
                return self.bilinear(node, parents)
            if target in MASKED_FILLS:
                return self.masked_fill(node, parents)
            if target is F.batch_norm:
                return self.functional_batchnorm(node)
            if target is torch.ops.aten.batch_norm.default:  # (input, weight, bias, mean, var, training, …)
                return self.functional_batchnorm(node, ("weight", "bias", "running_mean", "running_var", "training",
                                                        "momentum", "eps"))
            if target in CLAMPS:
                return self.clamp(node)
            if target in POWERS:
                return self.power(node, parents)
            if target is torch.addcmul:
                return self.addcmul(node, parents)
            if target is torch.ops.aten.addmm.default and len(node.args) >= 3 and not node.kwargs:
                # ``addmm(b, x, W)`` = ``x W + b`` with constant b, W (HF GPT-2's Conv1D, exported): F.linear(x, Wᵀ, b)
                if len(parents) != 1 or not self.dependent(node.args[1]) or self.dependent(node.args[0]) or \
                        self.dependent(node.args[2]):
                    return g.UNSUPPORTED, {"reason": "addmm with an input-dependent weight or bias has no rule"}
                bias, _, weight = self.constant_args(node)[0][:3]
                return g.KERNEL, {"kernel": _kernel_from_function(F.linear, (None, weight.T, bias), {})}
            if target in FUNCTIONAL_KERNELS:
                if len(parents) != 1 or not self.dependent(node.args[0] if node.args else node.kwargs.get("input")):
                    return g.UNSUPPORTED, {"reason": "a kernel computed from the input"}
                args, kwargs = self.constant_args(node)
                return g.KERNEL, {"kernel": _kernel_from_function(target, args, kwargs)}
            kind = LAYER_TABLE.function_kind(target)
            what = f"the function {getattr(target, '__name__', target)}"
            if kind is None and target not in ARITHMETIC and _opaque_to_fx(target) and not self.exported:
                raise TraceError(f"torch.fx does not trace into {target.__module__}.{target.__name__} (wrapped "
                                 f"with torch.fx.wrap); the model is captured with torch.export, which records "
                                 f"what the function runs (docs/layers.md#export-capture)")
        else:
            if target in SOFTMAX_METHODS:
                return _softmax_inside(target, self.softmax_axis(node))
            if target in BILINEAR_METHODS:
                return self.bilinear(node, parents)
            if target in MASKED_FILLS:
                return self.masked_fill(node, parents)
            if target in CLAMPS:
                return self.clamp(node)
            if target == "pow":
                return self.power(node, parents)
            kind = LAYER_TABLE.method_kind(target)
            what = f"the tensor method .{target}()"
        if target in ARITHMETIC and ARITHMETIC[target] == "divide":
            normalised = self.normalisation(node)
            if normalised is not None:
                return normalised
        if target in ARITHMETIC:
            return self.classify_arithmetic(node, parents, ARITHMETIC[target])
        if kind is None:
            return g.UNSUPPORTED, {"reason": f"{what} has no rule"}
        return kind, self.out_of_place(node, parents, kind)

    def l2_normalize(self, node):
        """``F.normalize(x, p, dim, eps)``: a NORM node, the norm held constant by its rule
        (docs/transformers.md#l2-norm)."""
        p, dim, eps = (d if b is None else b for b, d in zip(self.bound(node, ("p", "dim", "eps")), (2.0, 1, 1e-12)))

        def normalization(a):
            held = torch.linalg.vector_norm(a.detach(), p, dim, keepdim=True).clamp_min(eps)
            return lambda t: t / held
        return g.NORM, {"normalization": normalization}

    def normalisation(self, node):
        """``x / d(‖x‖)`` — a division of ``x`` by a value computed from a norm of ``x`` alone (``F.normalize`` as
        exported: Swin-V2's cosine attention) — is one NORM node of ``x``: its forward the model's own ops, its
        relevance rule AttnLRP's with the norm held constant (docs/transformers.md#l2-norm). None for other
        divisions."""
        if len(node.args) != 2 or node.kwargs or not self.tensor_operand(node.args[0]) or not self.is_aux(node.args[1]):
            return None
        numerator, divisor = node.args
        chain, stack = set(), [divisor]
        while stack:
            current = stack.pop()
            if current is numerator or current in chain or not self.dependent(current):
                continue  # (constants are looked up)
            if not self.is_aux(current):
                return None  # computed from another input-dependent tensor
            chain.add(current)
            stack.extend(current.all_input_nodes)
        norms = [n for n in chain if self.reads_metadata(n) and n.target in NORMS]
        if not norms or any(n.args[0] is not numerator for n in norms):
            return None
        order = [n for n in self.module.graph.nodes if n in chain]

        def divisor_of(a):
            values = {numerator: a}
            for n in order:
                args, kwargs = fx.node.map_arg((n.args, n.kwargs),
                                               lambda v: values[v] if v in values else self.constants[v])
                values[n] = self.call(n, args, kwargs)
            return values[divisor]

        def forward(a):  # the divisor recomputed from a: the exact Jacobian for the gradient-like passes
            return node.target(a, divisor_of(a))

        def normalization(a):
            held = divisor_of(a).detach()
            return lambda t: node.target(t, held)
        return g.NORM, {"forward": forward, "normalization": normalization, "reference": forward,
                        "parents": [numerator]}

    def softmax_axis(self, node):
        """The axis of ``F.softmax(x, dim)``, ``x.softmax(dim)``, ``aten.softmax.int(x, dim, …)``."""
        axis = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return self.constants.get(axis, axis) if isinstance(axis, fx.Node) else axis

    def layer_norm(self, node):
        """``F.layer_norm(x, shape, weight, bias, eps)`` (ATen's too) with constant weight and bias: a NORM node."""
        shape, weight, bias, eps = self.bound(node, ("normalized_shape", "weight", "bias", "eps"))
        if not all(w is None or isinstance(w, torch.Tensor) for w in (weight, bias)) or shape is None:
            return g.UNSUPPORTED, {"reason": "a layer norm with input-dependent weight or bias has no rule"}
        return g.NORM, {"normalization": _layer_normalization(shape, weight, bias, 1e-5 if eps is None else eps)}

    def masked_fill(self, node, parents):
        """``masked_fill(x, mask, value)`` with a constant mask and value (an attention mask): a re-indexing (its
        gradient routes relevance to the kept positions; masked ones get none: docs/transformers.md#softmax)."""
        if len(parents) != 1 or node.args[0] is not parents[0]:
            return g.UNSUPPORTED, {"reason": "masked_fill with an input-dependent mask or value has no rule"}
        return g.REINDEX, self.out_of_place(node, parents, g.REINDEX)

    def bilinear(self, node, parents):
        """matmul/bmm/einsum/``@``: BILINEAR of two input-dependent tensors (docs/transformers.md#bilinear); with one
        constant tensor operand a kernel (a linear map of the other)."""
        operands = []
        fx.node.map_arg((node.args, node.kwargs), lambda a: operands.append(a) if not self.is_aux(a) else None)
        tensors = [a for a in operands if self.dependent(a)]
        constants = [a for a in operands if not self.dependent(a) and isinstance(self.constants.get(a), torch.Tensor)]
        if len(tensors) == 2 and len(parents) == 2:
            return g.BILINEAR, {}
        if len(tensors) == 1 and len(parents) == 1 and len(constants) == 1:
            source, weight_node = tensors[0], constants[0]

            def apply(a, kernel_map=identity, bias_map=identity):
                def value_of(arg):
                    if arg is source:
                        return a
                    return kernel_map(self.constants[arg]) if arg is weight_node else self.constants[arg]
                args, kwargs = fx.node.map_arg(node.args, value_of), fx.node.map_arg(node.kwargs, value_of)
                return self.call(node, args, kwargs)
            return g.KERNEL, {"kernel": g.Kernel(apply, True, 0, lambda bias_map: None)}
        return g.UNSUPPORTED, {"reason": f"a product of {len(tensors)} input-dependent tensors and "
                                         f"{len(constants)} constant ones has no rule"}

    def attention(self, node, parents):
        """``F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale)`` as the nodes it
        computes (docs/transformers.md#capture): BILINEAR ``scale·q kᵀ``, the constant mask (a re-indexing for a
        boolean or causal mask, a constant shift for an additive one), SOFTMAX over the last axis, BILINEAR ``A v``;
        dropout is the identity at inference."""
        names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
        bound = dict(zip(names, node.args))
        bound.update({k: v for k, v in node.kwargs.items() if k in names})
        q, k, v = (bound.get(n) for n in names[:3])
        name = _module_path(node) if self.exported else None
        name = name or node.name
        mask = bound.get("attn_mask")
        runtime_mask = self.is_aux(mask)  # computed from sizes only (HuggingFace's all-true masks): no signal
        if not all(self.tensor_operand(t) for t in (q, k, v)) or (self.dependent(mask) and not runtime_mask) \
                or bound.get("enable_gqa"):
            self.nodes.append(g.Node(name, g.UNSUPPORTED, tuple(self.index[p] for p in parents),
                                     self.forward(node, parents), "scaled_dot_product_attention",
                                     reason="attention with an input-dependent mask, grouped queries or a constant "
                                            "query, key or value has no rule"))
            self.index[node] = len(self.nodes) - 1
            return
        mask_index = self.index[mask] if runtime_mask else None
        mask = None if runtime_mask else self.constants.get(mask, mask) if isinstance(mask, fx.Node) else mask
        causal, scale = bool(bound.get("is_causal") or False), bound.get("scale")

        def scores(query, key):
            factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
            return torch.matmul(query, key.transpose(-2, -1)) * factor

        def masked(t, runtime=None):
            if causal:
                keep = torch.ones(t.shape[-2], t.shape[-1], dtype=torch.bool, device=t.device).tril()
                t = t.masked_fill(~keep, -math.inf)
            given = mask if runtime is None else runtime
            if given is None:
                return t
            return t.masked_fill(~given, -math.inf) if given.dtype == torch.bool else t + given

        def add(kind, suffix, parents_, forward, layer_type, **extra):
            self.nodes.append(g.Node(f"{name}/{suffix}" if suffix else name, kind, tuple(parents_), forward,
                                     layer_type, **extra))
            return len(self.nodes) - 1
        i_q, i_k, i_v = (self.index[t] for t in (q, k, v))
        at = add(g.BILINEAR, "scores", (i_q, i_k), scores, "matmul")
        if runtime_mask:  # its dtype is known only when it runs: a re-indexing either way (the gradient's routing)
            at = add(g.REINDEX, "mask", (at, mask_index), masked, "masked_fill")
        elif causal or mask is not None:
            boolean = causal or mask.dtype == torch.bool
            at = add(g.REINDEX if boolean else g.ADD, "mask", (at,), masked, "masked_fill" if boolean else "add",
                     **({} if boolean else {"coefficients": (1.0,)}))  # docs/transformers.md#constant-sources
        at = add(g.SOFTMAX, "softmax", (at,), lambda t: torch.softmax(t, -1), "softmax", value_range=(0.0, 1.0),
                 axis=-1)
        at = add(g.BILINEAR, "", (at, i_v), torch.matmul, "matmul", reference=self.original(node, parents),
                 reference_parents=tuple(self.index[p] for p in parents))
        self.index[node] = at
        if self.exported and _module_path(node):
            self.names[_module_path(node)] = at

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
            shift = self.constant_shift(node, operation, tensor_operands[0])
            if shift is not None:  # x + C with a constant tensor C: C absorbs (docs/transformers.md#constant-sources)
                coefficients = tuple(shift[0] if p is tensor_operands[0] else None for p in parents)
                return g.ADD, dict(forward, coefficients=coefficients)
            affine = self.scalar_affine(node, operation, tensor_operands[0])
            return g.PASS, dict(forward, **({"affine": affine} if affine is not None else {}))
        if kind == g.ADD and operation == "subtract":  # a − b: the weighted sum a·1 + b·(−1) (docs/layers.md)
            if len(parents) != 2 or len(node.args) < 2 or node.args[0] is not parents[0]:
                return g.UNSUPPORTED, {"reason": "a subtraction whose operands are not two distinct tensors"}
            return g.ADD, dict(forward, coefficients=(1.0, -1.0))
        if kind == g.UNSUPPORTED:
            name = getattr(node.target, "__name__", node.target)
            return g.UNSUPPORTED, {"reason": f"'{name}' of two input-dependent tensors has no LRP rule"}
        return kind, forward

    def bound(self, node, names):
        """The constant arguments ``names`` of a call by position (after the tensor) or keyword."""
        values = [None] * len(names)
        for i, arg in enumerate(node.args[1:len(names) + 1]):
            values[i] = arg
        for i, name in enumerate(names):
            if name in node.kwargs:
                values[i] = node.kwargs[name]
        return [self.constants.get(v, v) if isinstance(v, fx.Node) else v for v in values]

    def clamp(self, node):
        """``clamp(x, low, high)`` with scalar bounds: ReLU for ``low = 0`` (ReLU6 with ``high`` 6 …), else a
        Hardtanh-like activation (docs/layers.md#clamp)."""
        aten = torch.ops.aten
        if node.target in ("clamp_min", "clamp_min_", torch.clamp_min, aten.clamp_min.default):
            low, high = self.bound(node, ("min",))[0], None
        elif node.target is aten.hardtanh.default:
            low, high = (d if b is None else b for b, d in zip(self.bound(node, ("min_val", "max_val")), (-1.0, 1.0)))
        elif node.target in ("clamp_max", "clamp_max_", torch.clamp_max, aten.clamp_max.default):
            low, high = None, self.bound(node, ("max",))[0]
        else:
            low, high = self.bound(node, ("min", "max"))
        if not all(b is None or isinstance(b, (int, float)) for b in (low, high)) or (low is None and high is None):
            return g.UNSUPPORTED, {"reason": "clamp with tensor bounds has no rule"}
        bounds = (-math.inf if low is None else float(low), math.inf if high is None else float(high))
        kind = g.RELU if bounds[0] == 0.0 else g.ACTIVATION

        def out_of_place(t):
            return torch.clamp(t, low, high)
        return kind, {"forward": out_of_place, "value_range": bounds}

    def power(self, node, parents):
        """``x ** c`` of a signal by a constant number: an element-wise activation (the identity rule in LRP,
        docs/transformers.md#power); a tensor exponent or base has no rule."""
        exponent = node.args[1] if len(node.args) > 1 else node.kwargs.get("exponent")
        exponent = self.constants.get(exponent, exponent) if isinstance(exponent, fx.Node) else exponent
        base = node.args[0] if node.args else node.kwargs.get("input")
        if len(parents) != 1 or not self.dependent(base) or isinstance(exponent, bool) or \
                not isinstance(exponent, (int, float)):
            return g.UNSUPPORTED, {"reason": "a power with an input-dependent or tensor exponent has no rule"}
        return g.ACTIVATION, {}

    def functional_batchnorm(self, node, order=("running_mean", "running_var", "weight", "bias", "training",
                                                 "momentum", "eps")):
        """``F.batch_norm`` (or ATen's, arguments in ``order``) with constant running statistics in inference form
        (a BatchNorm traced into, or exported)."""
        bound = dict(zip(order, self.bound(node, order)))
        mean, var, weight, bias = (bound[k] for k in ("running_mean", "running_var", "weight", "bias"))
        training, eps = bound["training"], bound["eps"]
        if training or not isinstance(mean, torch.Tensor) or not isinstance(var, torch.Tensor):
            return g.UNSUPPORTED, {"reason": "batch normalisation with batch statistics (no running statistics)"}
        eps = 1e-5 if eps is None else eps

        def forward(a):
            return F.batch_norm(a, mean, var, weight, bias, False, 0.0, eps)

        def statistics(a):
            shape = [1, -1] + [1] * (a.dim() - 2)
            beta = bias if bias is not None else torch.zeros_like(mean)
            return mean.reshape(shape), beta.reshape(shape)
        return g.BATCHNORM, {"forward": forward, "batchnorm": statistics}

    def addcmul(self, node, parents):
        """``addcmul(c, t1, t2, value=v) = c + v·t1·t2`` with one input-dependent operand and constant others, as
        ResMLP's affine layer: a constant scaling and shift (PASS), and with a constant table ``c``
        (signxai.core.layers.constant_shift) a sum in which ``c`` absorbs its share (ADD, the signal's coefficient
        ``v·α``), as the plain form ``α·x + c`` gives."""
        operands = list(node.args[:3]) + [node.kwargs.get(k) for k in ("input", "tensor1", "tensor2")
                                          if k in node.kwargs]
        if len(parents) != 1 or sum(1 for a in operands if self.dependent(a)) != 1:
            return g.UNSUPPORTED, {"reason": "addcmul of several input-dependent tensors has no rule"}
        bound = dict(zip(("input", "tensor1", "tensor2"), node.args[:3]))
        bound.update({k: v for k, v in node.kwargs.items() if k in ("input", "tensor1", "tensor2")})
        shift, factors = bound.get("input"), [bound.get("tensor1"), bound.get("tensor2")]
        shift = self.constants.get(shift) if isinstance(shift, fx.Node) else shift
        if (not self.dependent(bound.get("input")) and isinstance(shift, torch.Tensor)
                and constant_shift("add", tuple(shift.shape), True) is not None
                and not node.kwargs.keys() - {"input", "tensor1", "tensor2", "value"}):
            # c + v·α·x with a constant tensor c: the sum of v·α·x and a constant source, c absorbs its share as at
            # x + C (docs/transformers.md#constant-sources); the plain form α·x + c gives the same map
            other = next(f for f in factors if not self.dependent(f))
            other = self.constants.get(other, other) if isinstance(other, fx.Node) else other
            value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else 1)
            return g.ADD, {"coefficients": (other * value,)}
        return g.PASS, {}

    def constant_shift(self, node, operation, operand):
        """The signal's coefficient of ``x ± C`` / ``C − x`` with a constant table ``C``
        (signxai.core.layers.constant_shift), else None."""
        if len(node.args) != 2 or node.kwargs:
            return None
        first, second = node.args
        other = second if first is operand else first
        if isinstance(other, fx.Node):  # a constant, or a tensor computed from shapes or held-fixed inputs alone
            other = self.constants.get(other, other.meta.get("val") if self.is_aux(other) else None)
        # a symbolic (batch) size counts as no axis: comparing it with 1 would make torch.export's shape environment
        # specialise the batch axis of every later value to the example's
        shape = tuple(d if isinstance(d, int) else None for d in other.shape) if isinstance(other, torch.Tensor) \
            else None
        return constant_shift(operation, shape, first is operand)

    def scalar_affine(self, node, operation, operand):
        """``(scale, shift)`` of ``x ∘ c`` for a scalar constant ``c`` (for gate detection), else None."""
        if len(node.args) != 2 or node.kwargs:
            return None
        first, second = node.args
        other = second if first is operand else first
        if isinstance(other, fx.Node):
            other = self.constants.get(other)
        if isinstance(other, torch.Tensor) and other.numel() == 1:
            other = float(other.detach())
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


class _Explained(nn.Module):
    """The model with its logits selected (docs/api.md#model-outputs), the module exported."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, *fixed):
        return select_output(self.model(x, *fixed), lambda t: isinstance(t, torch.Tensor))


def recurrent_steps(module, sample):
    """The number of time steps at every recurrent module's input when ``module`` (a traced GraphModule) runs on
    ``sample``: ``{fx node: T}``."""
    nodes = [n for n in module.graph.nodes
             if n.op == "call_module" and type(module.get_submodule(n.target)) in RECURRENT_MODULES]
    if not nodes:
        return {}
    shapes = {}

    class Recorder(fx.Interpreter):
        def call_module(self, target, args, kwargs):
            submodule = self.module.get_submodule(target)
            if type(submodule) in RECURRENT_MODULES and args and isinstance(args[0], torch.Tensor):
                shapes[target] = tuple(args[0].shape)
            return super().call_module(target, args, kwargs)
    with torch.no_grad():
        Recorder(module).run(sample)
    steps = {}
    for n in nodes:
        shape, submodule = shapes.get(n.target), module.get_submodule(n.target)
        if shape is not None and len(shape) == 3:  # batched; unbatched (T, F) input is not unrolled
            steps[n] = shape[1] if submodule.batch_first else shape[0]
    return steps


def export(model, example):
    """The model as an fx graph of ATen operators, by non-strict ``torch.export`` on ``example`` with a dynamic batch
    axis (docs/layers.md#export-capture): Python control flow, iteration and sizes run concretely. Parameters stay
    the model's own tensors; in-place operators are replaced by their functional forms."""
    try:
        examples = example if isinstance(example, tuple) else (example,)  # a token view: (vectors, ids)
        program = torch.export.export(_Explained(model), examples, strict=False,
                                      dynamic_shapes=({0: torch.export.Dim.AUTO},) + (
                                          (tuple({0: torch.export.Dim.AUTO} for _ in examples[1:]),)
                                          if len(examples) > 1 else ()))
    except Exception as error:  # export reports unsupported code with many exception types
        raise TraceError(f"the PyTorch model could be captured neither with torch.fx nor with torch.export "
                         f"({type(error).__name__}: {str(error)[:400]}); the rule-based methods (guided backprop, "
                         f"DeconvNet, Grad-CAM, LRP) need a captured graph; the gradient family works on any "
                         f"model") from error
    module = program.module()
    for node in module.graph.nodes:
        if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
            functional = _functional_overload(node.target)
            if functional is not node.target:
                node.meta["inplace"] = node.target
            node.target = functional
    return module


def _functional_overload(op):
    """``aten.relu_.default`` → ``aten.relu.default`` (the out-of-place overload of an in-place ATen operator)."""
    packet, overload = op._schema.name.split("::")[-1], op._overloadname
    if not packet.endswith("_") or packet.startswith("_"):
        return op
    functional = getattr(torch.ops.aten, packet[:-1], None)
    return getattr(functional, overload, op) if functional is not None else op


def _module_path(node):
    """The path of the innermost module an exported operator ran in (without the export wrapper's prefix)."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    path = list(stack.values())[-1][0]
    if path.startswith("_empty_nn_module_stack"):
        return None
    path = path[len("model"):].lstrip(".") if path.startswith("model") else path
    return path.replace("_modules['", "").replace("']", "") or None


def _opaque_to_fx(target):
    """A plain Python function outside torch that the fx trace kept as one call (``torch.fx.wrap``: torchvision's
    ``shifted_window_attention``): what it computes is not seen, so torch.export captures the model instead."""
    module = (getattr(target, "__module__", None) or "").split(".")[0]
    return isinstance(target, types.FunctionType) and module not in ("torch", "operator", "builtins")


def _fetch_attr(module, target):
    value = module
    for part in target.split("."):
        value = getattr(value, part)
    return value


# ``x.new_zeros(size)`` and friends: a tensor of constants with x's dtype and device
NEW_FACTORIES = (torch.ops.aten.new_zeros.default, torch.ops.aten.new_ones.default, torch.ops.aten.new_full.default)
# norms held constant (docs/layers.md#clamp)
NORMS = ("norm", torch.norm, torch.linalg.vector_norm, torch.linalg.norm, torch.ops.aten.linalg_vector_norm.default,
         torch.ops.aten.norm.ScalarOpt_dim)
def _softmax_inside(name, axis=None):
    """A softmax inside the model is a SOFTMAX node whose output lies in [0, 1]: a gate where it scales a signal
    elementwise (split attention, selective kernels, attention pooling: docs/layers.md#softmax-inside), AttnLRP's
    softmax rule where relevance reaches it (docs/transformers.md#softmax). Log-softmax and softmin inside have no
    rule."""
    if "log" in name or "min" in name:
        return g.UNSUPPORTED, {"reason": f"a {name} inside the model has no rule"}
    if not isinstance(axis, int):
        return g.UNSUPPORTED, {"reason": f"a {name} without an explicit integer axis has no rule"}
    return g.SOFTMAX, {"value_range": (0.0, 1.0), "axis": axis}
def _layer_normalization(shape, weight, bias, eps):
    """``a ↦ (t ↦ γ ⊙ (t − mean(t)) / σ(a) + β)``: the layer norm with σ computed from ``a`` and held constant
    (docs/transformers.md#layer-norm)."""
    axes = tuple(range(-len(shape) if isinstance(shape, (tuple, list, torch.Size)) else -1, 0))

    def normalization(a):
        sigma = torch.sqrt(a.detach().var(dim=axes, unbiased=False, keepdim=True) + eps)

        def linear(t):
            y = (t - t.mean(dim=axes, keepdim=True)) / sigma
            y = y if weight is None else y * weight
            return y if bias is None else y + bias
        return linear
    return normalization


# products of two tensors (docs/transformers.md#bilinear)
SDPA_FUNCTIONS = (F.scaled_dot_product_attention, torch.ops.aten.scaled_dot_product_attention.default)
# ``x ** c`` (docs/transformers.md#power): ``torch.pow``, the ``**`` operator, ATen's scalar-exponent overload
POWERS = (torch.pow, operator.pow, torch.ops.aten.pow.Tensor_Scalar)
BILINEAR_FUNCTIONS = (torch.matmul, operator.matmul, torch.bmm, torch.einsum, torch.ops.aten.matmul.default,
                      torch.ops.aten.bmm.default, torch.ops.aten.einsum.default)
BILINEAR_METHODS = ("matmul", "bmm", "__matmul__")
LAYER_NORMS = (F.layer_norm, torch.ops.aten.layer_norm.default)
MASKED_FILLS = (torch.masked_fill, "masked_fill", "masked_fill_", torch.ops.aten.masked_fill.Scalar)
# clamp and its spellings (functions and tensor methods)
CLAMPS = (torch.clamp, torch.clip, torch.clamp_min, torch.clamp_max, "clamp", "clip", "clamp_", "clip_", "clamp_min",
          "clamp_max", "clamp_min_", "clamp_max_", torch.ops.aten.clamp.default, torch.ops.aten.clamp_min.default,
          torch.ops.aten.clamp_max.default, torch.ops.aten.hardtanh.default)


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
        return g.PASS, {"forward": _identity, "affine": (1.0, 0.0)}
    if kind == g.PASS and isinstance(module, nn.LayerNorm):
        return g.NORM, {"normalization": _layer_normalization(module.normalized_shape, module.weight, module.bias,
                                                              module.eps)}
    if kind is not None:
        return kind, {}
    if isinstance(module, SOFTMAX_LAYERS):
        return _softmax_inside(type(module).__name__.lower(), module.dim)
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
