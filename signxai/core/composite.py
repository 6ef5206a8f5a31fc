"""Layer-wise LRP rule maps (composites): rule objects, selectors, and the assignment of a graph's nodes to rules.

A :class:`Composite` is an ordered list of ``(selector, rule)`` entries plus a ``default`` kernel rule. For each node
of a captured graph the first entry whose selector matches the node **and** whose rule handles the node's layer kind
wins; a kernel layer that no entry gives a rule gets ``default``; every other layer keeps its docs/layers.md/§7.7 rule
(BN rule, Z rule of sums and average pooling, signal-take-all at gated products, pass-through, and the gradient at
re-indexing layers).

Every rule object wraps the rule functions of :mod:`signxai.core.rules`, which are written once against the small
tensor-ops interface of the backends, so a composite gives the same map on a Keras model and on its PyTorch twin.
Every LRP catalog name compiles to a composite (:func:`compile_method`); :class:`LRP`, the per-node mapping of the
graph engine, is the only dispatch path.
"""
from __future__ import annotations

import difflib
import fnmatch
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any, Optional, cast

import numpy as np

from signxai.core import graph as g
from signxai.core import rules as r
from signxai.core.keys import Parameterised

# --- layer kinds ----------------------------------------------------------------------------------------------

KERNEL_KINDS: tuple = ("dense", "conv")
#: the framework-neutral layer types a selector may name (docs/lrp_rules.md); "input" selects the input layers
LAYER_KINDS = ("dense", "conv", "batchnorm", "add", "avgpool", "product", "activation", "pass", "reindex",
               "bilinear", "softmax", "norm")
INPUT = "input"
#: earlier names of layer types, still accepted as selectors (with a DeprecationWarning): old -> current
DEPRECATED_LAYER_KINDS = {"gradient": "reindex"}

_KIND_OF_NODE = {g.BATCHNORM: "batchnorm", g.AVGPOOL: "avgpool", g.ADD: "add", g.PRODUCT: "product",
                 g.RELU: "activation", g.ACTIVATION: "activation", g.PASS: "pass", g.REINDEX: "reindex",
                 g.AUX: "aux", g.BILINEAR: "bilinear", g.SOFTMAX: "softmax", g.NORM: "norm"}


def layer_kind(node: g.Node) -> str:
    """The public layer kind of a captured node: "dense"/"conv" for kernel nodes, else the kinds of LAYER_KINDS."""
    if node.kind == g.KERNEL:
        return "dense" if cast(g.Kernel, node.kernel).is_dense else "conv"
    return _KIND_OF_NODE.get(node.kind, node.kind)


@dataclass(frozen=True, eq=False)
class Layer:
    """What selectors (predicates) and rules see of one node of the captured graph; framework-neutral.

    ``name`` is the Keras layer name (a separable convolution's factors are ``<layer>/depthwise`` and ``<layer>``, a
    fused activation is ``<layer>/activation``) or the PyTorch module path (fx node name for functional ops).
    ``names`` are the names a :class:`Name` pattern is matched against: ``name`` and, for the parts of a Keras layer,
    the layer's own name. ``kind`` is one of LAYER_KINDS. ``is_input``: an input layer of docs/lrp.md#input-layers.
    ``is_output``: the layer that receives the LRP head. ``kernel_index``: position among the kernel layers in
    topological order (None for other layers). ``kernel``: the kernel operator of dense/conv layers (``apply``,
    ``is_dense`` …). ``node``: the captured node (its ``forward``, BN statistics, sum coefficients). ``signal_parents``:
    per parent, whether it carries a signal (False for shape arithmetic). ``signal``: for a gated product, the position
    of the signal operand. ``input_nonnegative``: the (first) input has no negative entry by construction (it comes from
    a ReLU, possibly pooled or reshaped; docs/layers.md), which rules may use to skip work.
    """
    name: str
    names: tuple
    kind: str
    layer_type: str
    index: int
    is_input: bool
    is_output: bool
    kernel_index: Optional[int]
    kernel: Any
    node: Any
    signal_parents: tuple
    signal: Optional[int] = None
    input_nonnegative: bool = False

    def describe(self) -> str:
        return f"'{self.name}' ({self.kind}, {self.layer_type})" if self.layer_type else f"'{self.name}' ({self.kind})"

    def __repr__(self):
        return f"Layer({self.describe()})"


def graph_layers(graph) -> list:
    """The :class:`Layer` view of every node but the model input, in topological order."""
    input_layers = graph.input_layers()
    head = graph.strip_trailing_activations(graph.output)
    layers, kernels = [], 0
    for index, node in enumerate(graph.nodes[1:], 1):
        kind = layer_kind(node)
        names: tuple = (node.name,)
        if "/" in node.name:  # a part of a Keras layer: <layer>/depthwise, <layer>/activation
            names += (node.name.split("/")[0],)
        kernel_index = None
        if node.kind == g.KERNEL:
            kernel_index, kernels = kernels, kernels + 1
        layers.append(Layer(
            name=node.name, names=names, kind=kind, layer_type=node.layer_type, index=index,
            is_input=index in input_layers, is_output=index == head, kernel_index=kernel_index, kernel=node.kernel,
            node=node, signal_parents=tuple(graph.nodes[p].kind != g.AUX for p in node.parents),
            signal=graph.product_signal(index) if node.kind in (g.PRODUCT, g.BILINEAR) else None,
            input_nonnegative=bool(node.parents) and graph.is_nonnegative(node.parents[0])))
    return layers


# --- rule objects ---------------------------------------------------------------------------------------------

def _same(a, b) -> bool:
    if isinstance(a, (np.ndarray, list, tuple)) or isinstance(b, (np.ndarray, list, tuple)):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and bool(np.array_equal(a, b))
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return a is b


def _short(value) -> str:
    if isinstance(value, np.ndarray) or hasattr(value, "shape") and not isinstance(value, numbers.Number):
        array = np.asarray(value)
        if array.size <= 4:
            return np.array2string(array, separator=", ")
        return f"<array of shape {array.shape}>"
    return repr(value)


class Rule:
    """An LRP rule: data (its parameters, ``repr``, equality) plus the layer kinds it handles and its relevance map.

    Subclasses set ``kinds`` and implement ``relevance(ops, layer, inputs, output, R)``, which returns one relevance
    tensor per input of the layer (None for an input that carries no signal). ``ops`` is the backend's tensor-ops
    object, ``layer`` a :class:`Layer`, ``inputs`` the layer's recorded inputs, ``output`` its recorded output (for
    kernel layers the pre-activation ``z``) and ``R`` the relevance at the output. Kernel rules subclass
    :class:`KernelRule` instead and implement ``kernel_relevance``.
    """

    kinds: tuple = ()
    _params: tuple = ()

    def __init__(self, **params):
        object.__setattr__(self, "_params", tuple(params.items()))
        for key, value in params.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key, value):
        if any(key == name for name, _ in self._params):
            raise AttributeError(f"{type(self).__name__}.{key} cannot be changed: rule objects are data; make a new "
                                 f"{type(self).__name__}(...)")
        object.__setattr__(self, key, value)

    @property
    def params(self) -> dict:
        return dict(self._params)

    def applies_to(self, kind: str) -> bool:
        """Whether the rule handles layers of this kind (one of LAYER_KINDS). Earlier names of kinds
        (DEPRECATED_LAYER_KINDS) mean their current kinds, both here and in a rule class's ``kinds``."""
        kind = DEPRECATED_LAYER_KINDS.get(kind, kind)
        return kind in self.kinds or any(DEPRECATED_LAYER_KINDS.get(declared) == kind for declared in self.kinds)

    def relevance(self, ops, layer, inputs, output, R):
        raise NotImplementedError(f"{type(self).__name__} does not implement relevance(ops, layer, inputs, "
                                  f"output, R)")

    #: the parameters that are numbers (or arrays of numbers) the rule only computes with: a compiled pass takes their
    #: values as tensor inputs, so that other values of them reuse its trace (docs/api.md#compiled-passes). A
    #: parameter that is None is no such input (its None-ness belongs in :meth:`structure`).
    numeric: tuple = ()

    def structure(self) -> tuple:
        """What of the numeric parameters' values decides which code the rule runs (e.g. β = 0 skips the negative
        half): part of the key of a compiled pass, which reads the values themselves as tensors. Default: nothing."""
        return ()

    def slots(self) -> list:
        """``[(name, value)]``: the numeric parameters that a compiled pass takes as tensor inputs, in order, each
        value as a float64 array (docs/api.md#compiled-passes)."""
        return [(key, np.asarray(value, np.float64)) for key, value in self._params
                if key in self.numeric and value is not None]

    def with_values(self, values: dict) -> "Rule":
        """A copy of this rule with the numeric parameters ``values`` (scalar or array tensors of a compiled pass,
        shaped like :meth:`slots`' values) and this rule's :meth:`structure`; not validated
        (docs/api.md#compiled-passes)."""
        structure = self.structure()
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        object.__setattr__(copy, "_params", tuple((key, values.get(key, value)) for key, value in self._params))
        for key, value in values.items():
            object.__setattr__(copy, key, value)
        copy._bind(structure)
        return copy

    def _bind(self, structure=None) -> None:
        """Builds what the rule computes with from its parameters (and, for a copy made by :meth:`with_values`, the
        structure of the rule it copies)."""

    def forward(self, ops, layer, inputs):
        """Optional: the layer's output computed by the rule in the forward pass, as ``(output, saved)``, when its
        relevance reuses tensors of that computation; ``relevance`` is then called with ``saved=saved``. The
        output must be the layer's output (the same function, up to rounding). None (the default): the layer's own
        forward runs."""
        return None

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={_short(v)}' for k, v in self._params)})"

    def __eq__(self, other):
        if type(self) is not type(other):
            return NotImplemented
        mine, theirs = self._params, other._params
        return (len(mine) == len(theirs)
                and all(k1 == k2 and _same(v1, v2) for (k1, v1), (k2, v2) in zip(mine, theirs)))

    def __hash__(self):
        return hash((type(self), tuple(key for key, _ in self._params)))


class KernelRule(Rule):
    """A rule for kernel layers (Dense/Linear and every convolution): implement
    ``kernel_relevance(ops, kernel, a, z, R) -> R_in`` with ``a`` the layer input, ``z = W a + b`` its recorded
    pre-activation and ``R`` the relevance at its output; the result has the shape of ``a``."""

    kinds = KERNEL_KINDS

    def relevance(self, ops, layer, inputs, output, R):
        return [self.kernel_relevance(ops, layer.kernel, inputs[0], output, R)]

    def kernel_relevance(self, ops, kernel, a, z, R):
        raise NotImplementedError(f"{type(self).__name__} does not implement kernel_relevance(ops, kernel, a, z, R)")


def _number(rule, key, value, test=lambda v: True, constraint="a finite number"):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or not test(float(value)):
        raise ValueError(f"{rule}: {key}={value!r} is invalid; {key} must be {constraint}")
    return float(value)


def _bound(rule, key, value):
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return _number(rule, key, value)
    try:
        array = np.asarray(value)
        valid = array.dtype.kind in "iuf" and bool(np.isfinite(array).all())
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"{rule}: {key} must be a finite number or an array of finite numbers, got "
                         f"{_short(value)}")
    return value


class Z(KernelRule):
    """``R_in = a ⊙ Wᵀ SD(R, z)``; on sums and average pooling the Z rule of the (pooling) sum
    (docs/lrp.md#kernel-rules, §7.7)."""

    kinds = KERNEL_KINDS + ("add", "avgpool")

    def relevance(self, ops, layer, inputs, output, R):
        if layer.kind == "add":
            return r.add_rule(ops, inputs, output, R, layer.node.coefficients)
        if layer.kind == "avgpool":
            return [r.avgpool_rule(ops, layer.node, inputs[0], output, R)]
        return [r.z_rule(ops, layer.kernel, inputs[0], output, R)]

    def kernel_relevance(self, ops, kernel, a, z, R):
        return r.z_rule(ops, kernel, a, z, R)


class Epsilon(KernelRule):
    """``R_in = a ⊙ Wᵀ SD(R, z + ε·sign0(z))``."""

    epsilon: float
    numeric = ("epsilon",)

    def __init__(self, epsilon):
        super().__init__(epsilon=_number("Epsilon", "epsilon", epsilon, lambda v: v > 0, "a finite number > 0"))
        self._bind()

    def _bind(self, structure=None):
        self._rule = r.epsilon_rule(self.epsilon)

    def kernel_relevance(self, ops, kernel, a, z, R):
        return self._rule(ops, kernel, a, z, R)


class StdxEpsilon(KernelRule):
    """Epsilon with ``ε = stdfactor · std(a)`` per sample and layer (docs/lrp.md#kernel-rules)."""

    stdfactor: float
    numeric = ("stdfactor",)

    def __init__(self, stdfactor):
        super().__init__(stdfactor=_number("StdxEpsilon", "stdfactor", stdfactor, lambda v: v > 0,
                                           "a finite number > 0"))
        self._bind()

    def _bind(self, structure=None):
        self._rule = r.stdx_epsilon_rule(self.stdfactor)

    def relevance(self, ops, layer, inputs, output, R):
        if not layer.node.batch_leading:
            raise ValueError(f"{self!r} needs the standard deviation of each sample of the input of layer "
                             f"{layer.describe()}, but that input does not hold one sample per index of its leading "
                             f"axis (e.g. PyTorch's nn.MultiheadAttention projects a (tokens, batch, features) "
                             f"tensor); use Epsilon there (docs/transformers.md#limits)")
        return [self.kernel_relevance(ops, layer.kernel, inputs[0], output, R)]

    def kernel_relevance(self, ops, kernel, a, z, R):
        return self._rule(ops, kernel, a, z, R)


class AlphaBeta(KernelRule):
    """signxai's α-β rule: both denominators carry the full bias (docs/lrp.md#kernel-rules; not Zennit's AlphaBeta)."""

    alpha: float
    beta: float
    numeric = ("alpha", "beta")

    def __init__(self, alpha, beta):
        check = dict(test=lambda v: v >= 0, constraint="a finite number >= 0")
        super().__init__(alpha=_number("AlphaBeta", "alpha", alpha, **check),
                         beta=_number("AlphaBeta", "beta", beta, **check))
        self._bind()

    def structure(self):
        return self._structure

    def _bind(self, structure=None):
        self._structure = r.alpha_beta_structure(self.alpha, self.beta) if structure is None else structure
        self._rule = r.alpha_beta_rule(self.alpha, self.beta, self._structure)

    def relevance(self, ops, layer, inputs, output, R, saved=None):
        return [self._rule(ops, layer.kernel, inputs[0], output, R, nonnegative=layer.input_nonnegative,
                           split=saved)]

    def forward(self, ops, layer, inputs):
        """With β ≠ 0 and a nonnegative input both halves ``W⁺a``, ``W⁻a`` are needed: the layer's output is
        computed from them (docs/lrp.md#alpha-beta-split), one convolution fewer than the layer's own plus both."""
        if self._structure.beta_zero or not layer.input_nonnegative or layer.kernel.bias_term is None:
            return None
        split = r.AlphaBetaSplit(ops, layer.kernel, inputs[0])
        return split.output, split

    def kernel_relevance(self, ops, kernel, a, z, R):
        return self._rule(ops, kernel, a, z, R)


class WSquare(KernelRule):
    """``R_in = (W²)ᵀ SD(R, W²·𝟙)``: squared kernel, no bias, ``a`` unused."""

    def kernel_relevance(self, ops, kernel, a, z, R):
        return r.w_square_rule(ops, kernel, a, z, R)


class Flat(KernelRule):
    """``R_in = 𝟏ᵀ SD(R, 𝟏·𝟙)``: W² with a kernel of ones."""

    def kernel_relevance(self, ops, kernel, a, z, R):
        return r.flat_rule(ops, kernel, a, z, R)


class ZBox(KernelRule):
    """Z^B with input bounds ``low ≤ a ≤ high`` (scalars, or arrays broadcastable to one sample in the model's own
    layout: channels-last for Keras, channels-first for PyTorch) (docs/lrp.md#kernel-rules, D1)."""

    numeric = ("low", "high")
    low: Any
    high: Any

    def __init__(self, low, high):
        low, high = _bound("ZBox", "low", low), _bound("ZBox", "high", high)
        try:
            lo, hi = np.broadcast_arrays(np.asarray(low, np.float64), np.asarray(high, np.float64))
        except ValueError:
            raise ValueError("ZBox: low and high must broadcast to a common shape") from None
        if np.any(lo > hi):
            raise ValueError("ZBox: low must be <= high elementwise")
        super().__init__(low=low, high=high)
        self._bind()

    def _bind(self, structure=None):
        self._rule = r.zb_rule(self.low, self.high)

    def kernel_relevance(self, ops, kernel, a, z, R):
        return self._rule(ops, kernel, a, z, R)


class Sign(KernelRule):
    """SIGN (``mu = 0``) and SIGN-μ: ``R_in = s_μ(a) ⊙ Wᵀ SD(R, z)`` (the Z denominator, no ε)."""

    mu: float
    numeric = ("mu",)

    def __init__(self, mu=0.0):
        super().__init__(mu=_number("Sign", "mu", mu))
        self._bind()

    def _bind(self, structure=None):
        self._rule = r.sign_rule(self.mu)

    def kernel_relevance(self, ops, kernel, a, z, R):
        return self._rule(ops, kernel, a, z, R)


class BatchNormRule(Rule):
    """iNNvestigate's BatchNorm rule of docs/lrp.md#non-kernel-rules, the default for BatchNorm layers."""

    kinds = ("batchnorm",)

    def relevance(self, ops, layer, inputs, output, R):
        return [r.batchnorm_rule(ops, layer.node, inputs[0], output, R)]


class SignalTakeAll(Rule):
    """Gated products ``x ⊙ g``: the signal operand receives all relevance, the gate none (docs/layers.md)."""

    kinds = ("product",)

    def relevance(self, ops, layer, inputs, output, R):
        if layer.signal is None:
            raise ValueError(f"{self!r} needs a gated product (exactly one operand a gate in [0, 1]), but neither "
                             f"or both operands of {layer.describe()} are gates; use GateOrUniform() or Uniform() "
                             f"(docs/transformers.md#bilinear)")
        return r.product_rule(ops, layer.signal, inputs, output, R)


class _OptionalEpsilonRule(Rule):
    """A rule whose one parameter is an optional stabiliser ``epsilon`` (None or a number > 0); None-ness is its
    structure, the number a tensor input of a compiled pass (docs/api.md#compiled-passes)."""

    epsilon: Optional[float]
    numeric = ("epsilon",)

    def __init__(self, epsilon=None):
        super().__init__(epsilon=None if epsilon is None else _number(
            type(self).__name__, "epsilon", epsilon, lambda v: v > 0, "None or a number > 0"))

    def structure(self):
        return (self.epsilon is None,)


class Uniform(_OptionalEpsilonRule):
    """AttnLRP's uniform rule at a product of two input-dependent tensors (matmul, einsum, elementwise): each
    operand receives half of ``x ⊙ (∂z/∂x)ᵀ SD(R, z + ε·sign0(z))`` (``SD(R, z)`` for ε None; Achtibat et al.
    2024, Prop. 3.3, Eq. 7; docs/transformers.md#bilinear). The default at bilinear layers."""

    kinds = ("bilinear", "product")
    def relevance(self, ops, layer, inputs, output, R):
        return r.uniform_rule(ops, layer.node, inputs, output, R, self.epsilon)


class GateOrUniform(Rule):
    """Signal-take-all where exactly one operand is a gate (docs/layers.md#gated-products), the uniform rule
    otherwise: the default at elementwise products."""

    kinds = ("product", "bilinear")

    def relevance(self, ops, layer, inputs, output, R):
        if layer.signal is not None:
            return r.product_rule(ops, layer.signal, inputs, output, R)
        return r.uniform_rule(ops, layer.node, inputs, output, R)


class ValuesOnly(_OptionalEpsilonRule):
    """CP-LRP (Ali et al. 2022) at a product with exactly one gate operand (the attention weights, a softmax output):
    the gate is held constant and the signal operand (the values) receives ``x ⊙ (∂z/∂x)ᵀ SD(R, z + ε·sign0(z))``,
    the gate nothing; the uniform rule where no single operand is a gate (docs/transformers.md#cp-lrp)."""

    kinds = ("bilinear", "product")
    def relevance(self, ops, layer, inputs, output, R):
        if layer.signal is None:
            return r.uniform_rule(ops, layer.node, inputs, output, R, self.epsilon)
        return r.values_only_rule(ops, layer.node, layer.signal, inputs, output, R, self.epsilon)


class SoftmaxRule(Rule):
    """AttnLRP's softmax rule ``R_in = x ⊙ (R − s·ΣR)`` over the softmax axis (Prop. 3.1); masked positions (zero
    probability) receive exactly 0 (docs/transformers.md#softmax). The default at softmax layers."""

    kinds = ("softmax",)

    def relevance(self, ops, layer, inputs, output, R):
        return [r.softmax_rule(ops, layer.node, inputs[0], output, R)]


class LayerNormRule(_OptionalEpsilonRule):
    """The ε rule through a layer normalisation with σ held constant (AttnLRP Prop. 3.4; CP-LRP's LayerNorm rule):
    ``R_in = a ⊙ Jᵀ SD(R, y + ε·sign0(y))`` (docs/transformers.md#layer-norm). The default at norm layers."""

    kinds = ("norm",)
    def relevance(self, ops, layer, inputs, output, R):
        return [r.layer_norm_rule(ops, layer.node, inputs[0], output, R, self.epsilon)]


class Pass(Rule):
    """``R_in = R``: the default for activations and shape-preserving normalisations; also allowed on BatchNorm."""

    kinds = ("activation", "pass", "batchnorm", "norm")

    def relevance(self, ops, layer, inputs, output, R):
        return [R if carries else None for carries in layer.signal_parents]


class Gradient(Rule):
    """``R_in = Jᵀ R`` at the recorded input: the default for re-indexing layers (max pooling, reshape, padding,
    concatenation); allowed on every non-kernel layer."""

    kinds = ("batchnorm", "avgpool", "add", "product", "activation", "pass", "reindex", "aux", "bilinear", "softmax",
             "norm")

    def relevance(self, ops, layer, inputs, output, R):
        return ops.vjp(layer.node.forward, inputs, R)


#: the rule of every non-kernel layer kind that no entry of a composite matches (docs/layers.md, §7.7)
DEFAULT_RULES = {"batchnorm": BatchNormRule(), "avgpool": Z(), "add": Z(), "product": GateOrUniform(),
                 "activation": Pass(), "pass": Pass(), "reindex": Gradient(), "aux": Gradient(),
                 "bilinear": Uniform(), "softmax": SoftmaxRule(), "norm": LayerNormRule()}
_GRADIENT = DEFAULT_RULES["reindex"]
#: the rule classes whose behaviour is fixed by their parameters (so a composite of them has a value key)
BUILTIN_RULES = (Z, Epsilon, StdxEpsilon, AlphaBeta, WSquare, Flat, ZBox, Sign, BatchNormRule, SignalTakeAll, Pass,
                 Gradient, Uniform, GateOrUniform, ValuesOnly, SoftmaxRule, LayerNormRule)
#: the attention variants of the LRP names (``attention=``, docs/transformers.md#cp-lrp): extra composite entries
ATTENTION_MODES = ("attnlrp", "cplrp")


# --- selectors ------------------------------------------------------------------------------------------------

class Name:
    """Selects layers by name: the Keras layer name or the PyTorch module path (fx node name for functional ops),
    with shell-style wildcards (``*``, ``?``, ``[…]``; case-sensitive). Several patterns select their union.

    A Keras layer captured as several nodes is matched as a whole: both factors of a separable convolution
    (``<layer>/depthwise`` and ``<layer>``) and a fused activation (``<layer>/activation``); the rule then applies
    to the parts of kinds it handles.
    """

    def __init__(self, *patterns):
        if not patterns:
            raise ValueError("Name() needs at least one layer name or pattern")
        for pattern in patterns:
            if not isinstance(pattern, str) or not pattern:
                raise ValueError(f"Name patterns must be non-empty strings, got {pattern!r}")
        self.patterns = tuple(patterns)

    def matches_pattern(self, pattern, layer) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for name in layer.names)

    def __call__(self, layer) -> bool:
        return any(self.matches_pattern(p, layer) for p in self.patterns)

    def __repr__(self):
        return f"Name({', '.join(map(repr, self.patterns))})"

    def __eq__(self, other):
        return isinstance(other, Name) and self.patterns == other.patterns

    def __hash__(self):
        return hash(("Name", self.patterns))


def _current_selector(selector):
    """A layer type selector under its current name: an earlier name (DEPRECATED_LAYER_KINDS) is accepted with a
    DeprecationWarning; any other selector is returned as it is."""
    if isinstance(selector, str) and selector in DEPRECATED_LAYER_KINDS:
        current = DEPRECATED_LAYER_KINDS[selector]
        warnings.warn(f"the layer type {selector!r} is now called {current!r} (re-indexing layers: max pooling, "
                      f"reshape, padding, concatenation); {selector!r} will be removed", DeprecationWarning,
                      stacklevel=3)
        return current
    return selector


def _check_selector(selector, rule, position):
    where = f"rule map entry {position} ({_describe_selector(selector)}, {rule!r})"
    if isinstance(selector, str):
        if selector == INPUT:
            if not any(rule.applies_to(kind) for kind in KERNEL_KINDS):
                raise ValueError(f"{where}: input layers are kernel layers (dense or conv), but {rule!r} cannot "
                                 f"handle them; it applies to: {', '.join(rule.kinds)}")
            return
        if selector not in LAYER_KINDS:
            close = difflib.get_close_matches(selector, LAYER_KINDS + (INPUT,), n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(f"{where}: unknown layer type {selector!r}; the layer types are "
                             f"{', '.join(LAYER_KINDS)} and 'input'.{hint}")
        if not rule.applies_to(selector):
            raise ValueError(f"{where}: {rule!r} cannot handle {selector!r} layers; it applies to: "
                             f"{', '.join(rule.kinds)}")
        return
    if isinstance(selector, Name):
        return
    if isinstance(selector, type):
        raise ValueError(f"{where}: a selector is a layer type string ({', '.join(LAYER_KINDS)}, 'input'), "
                         f"Name(pattern) or a predicate on the layer; framework classes such as "
                         f"{selector.__name__} are not selectors (use the layer type strings, which are the same "
                         f"for Keras and PyTorch)")
    if isinstance(selector, Rule) or not callable(selector):
        raise ValueError(f"{where}: a selector is a layer type string ({', '.join(LAYER_KINDS)}, 'input'), "
                         f"Name(pattern) or a predicate on the layer, got {selector!r}")


def _describe_selector(selector):
    if isinstance(selector, (str, Name)):
        return repr(selector)
    return f"predicate {getattr(selector, '__qualname__', None) or repr(selector)}"


def _selects(selector, layer) -> bool:
    if isinstance(selector, str):
        if selector == INPUT:
            return layer.is_input
        return layer.kind == selector
    return bool(selector(layer))


# --- composites -----------------------------------------------------------------------------------------------

class Composite:
    """A layer-wise rule map: ``rules`` is an ordered list of ``(selector, rule)``; first match wins; a kernel layer
    no entry gives a rule gets ``default``.

    A selector is a layer type (one of LAYER_KINDS: "dense", "conv", "batchnorm", "add", "avgpool", "activation",
    …, the same for Keras and PyTorch), ``"input"`` (the input layers of docs/lrp.md#input-layers), :class:`Name` (layer
    names, wildcards allowed) or a predicate ``f(layer) -> bool`` on a :class:`Layer`. An entry applies to the layers
    its selector matches among the kinds its rule handles. Layers other than kernel layers that no entry matches keep
    their standard rule (DEFAULT_RULES).
    """

    def __init__(self, rules=(), default=None, *, name=None):
        if isinstance(rules, dict):
            rules = list(rules.items())
        if isinstance(rules, (str, bytes)) or not isinstance(rules, (list, tuple)):
            raise ValueError(f"Composite rules must be a list of (selector, rule) pairs, got {rules!r}")
        entries = []
        for position, entry in enumerate(rules):
            if not isinstance(entry, (list, tuple)) or len(entry) != 2:
                raise ValueError(f"rule map entry {position} must be a (selector, rule) pair, got {entry!r}")
            selector, rule = _current_selector(entry[0]), entry[1]
            if not isinstance(rule, Rule):
                raise ValueError(f"rule map entry {position}: {rule!r} is not a rule; use the rule objects of "
                                 f"signxai.lrp (Z(), Epsilon(0.1), …) or a subclass of signxai.lrp.Rule")
            _check_selector(selector, rule, position)
            entries.append((selector, rule))
        if default is not None:
            if not isinstance(default, Rule):
                raise ValueError(f"Composite default must be a rule or None, got {default!r}")
            if not any(default.applies_to(kind) for kind in KERNEL_KINDS):
                raise ValueError(f"Composite default {default!r} cannot handle kernel layers (dense, conv); it "
                                 f"applies to: {', '.join(default.kinds)}")
        self.rules = tuple(entries)
        self.default = default
        self.name = name  # the catalog name this composite was compiled from, for messages

    def __repr__(self):
        entries = ", ".join(f"({_describe_selector(s)}, {rule!r})" for s, rule in self.rules)
        return f"Composite([{entries}], default={self.default!r})"

    def __eq__(self, other):
        if not isinstance(other, Composite):
            return NotImplemented
        return (len(self.rules) == len(other.rules) and self.default == other.default
                and all((s1 == s2 if isinstance(s1, (str, Name)) else s1 is s2) and r1 == r2
                        for (s1, r1), (s2, r2) in zip(self.rules, other.rules)))

    __hash__ = None  # type: ignore[assignment]  # holds rules that may hold arrays; compare with ==

    def assign(self, graph) -> dict:
        """``{node index: (rule, layer)}`` for every node of ``graph`` but the input; ValueError for a map that does
        not fit the model (a name no layer has, a rule for layers it cannot handle, a kernel layer without a
        rule)."""
        layers = graph_layers(graph)
        hits = []
        rule: Optional[Rule]
        for position, (selector, rule) in enumerate(self.rules):
            selected = [layer for layer in layers if _selects(selector, layer)]
            self._check_entry(position, selector, rule, selected, layers)
            hits.append({layer.index for layer in selected})
        assignment: dict = {}
        unassigned: list = []
        for layer in layers:
            rule = next((rule for (_, rule), chosen in zip(self.rules, hits)
                         if layer.index in chosen and rule.applies_to(layer.kind)), None)
            if rule is None and layer.kind in KERNEL_KINDS:
                if self.default is None:
                    unassigned.append(layer)
                    continue
                if not self.default.applies_to(layer.kind):
                    raise ValueError(f"the composite's default {self.default!r} cannot handle kernel layer "
                                     f"{layer.describe()}; it applies to: {', '.join(self.default.kinds)}")
                rule = self.default
            elif rule is None:
                rule = DEFAULT_RULES.get(layer.kind, _GRADIENT)  # unsupported nodes are refused before this
            assignment[layer.index] = (rule, layer)
        if unassigned:
            listed = ", ".join(layer.describe() for layer in unassigned)
            raise ValueError(f"the composite gives no rule to the kernel layer(s) {listed} and has no default; add "
                             f"entries for them (e.g. ('dense', Epsilon(0.1)), ('conv', AlphaBeta(1, 0))) or give "
                             f"default=")
        return assignment

    def _check_entry(self, position, selector, rule, selected, layers):
        where = f"rule map entry {position} ({_describe_selector(selector)}, {rule!r})"
        if selector == INPUT and not any(layer.kind in KERNEL_KINDS for layer in layers):
            if self.name is not None:
                raise ValueError(f"method {self.name!r} applies an input-layer rule, but the model has no kernel "
                                 f"layer (Dense/Conv); use an 'lrp_' name instead")
            raise ValueError(f"{where}: the model has no kernel layer (Dense/Conv), so it has no input layers")
        if isinstance(selector, Name):
            for pattern in selector.patterns:
                if not any(selector.matches_pattern(pattern, layer) for layer in layers):
                    raise ValueError(f"{where}: no layer of the model is named {pattern!r}. The model's layers, "
                                     f"closest first: {_names_closest_first(pattern, layers)}")
        if isinstance(selector, str) and selector != INPUT:
            return  # a layer type: checked against the rule when the composite was made
        if selected and not any(rule.applies_to(layer.kind) for layer in selected):
            listed = ", ".join(layer.describe() for layer in selected[:10])
            more = f" and {len(selected) - 10} more" if len(selected) > 10 else ""
            raise ValueError(f"{where}: {rule!r} cannot handle the selected layer(s) {listed}{more}; it applies to: "
                             f"{', '.join(rule.kinds)}")


def _rule_key(rule):
    """The structure of a built-in rule: its class, :meth:`Rule.structure`, its non-numeric parameters by value and
    the shapes of its numeric ones (whose values are the compiled pass's tensor inputs); None for other classes."""
    if type(rule) not in BUILTIN_RULES:
        return None
    slots = rule.slots()
    numeric = {key for key, _ in slots}
    return (type(rule).__name__, tuple(rule.structure()),
            tuple((key, np.asarray(value) if isinstance(value, (list, tuple)) else value)
                  for key, value in rule._params if key not in numeric),
            tuple((key, value.shape) for key, value in slots))


def lrp_key(method, graph):
    """A key of the LRP mapping of ``method`` (a resolved method record or a Composite) on ``graph``, for the
    backends' caches of compiled passes (docs/api.md#compiled-passes): its ``structure`` is the rule of every node
    as class name, :meth:`Rule.structure` and parameter shapes; its ``values`` are the numeric parameters
    (:meth:`Rule.slots`, node by node), which a compiled pass takes as tensor inputs, so every ε of
    ``lrp_epsilon_*`` reuses one trace. A catalog name and a rule map that assign the same rules get the same key.
    None (run uncached) where a rule is not a built-in rule class: a user-defined class may be redefined with other
    code under its name."""
    graph.check_supported(graph.output)
    composite = method if isinstance(method, Composite) else compile_method(method)
    parts, values = [], []
    for index, (rule, _) in sorted(composite.assign(graph).items()):
        rule_key = _rule_key(rule)
        if rule_key is None:
            return None
        parts.append((index, rule_key))
        values += [value for _, value in rule.slots()]
    return Parameterised(("lrp", tuple(parts)), tuple(values))


def with_parameters(assignment: dict, parameters) -> dict:
    """``assignment`` (:meth:`Composite.assign`) with each rule's numeric parameters taken from ``parameters`` (one
    tensor per slot, in the order of :func:`lrp_key`'s values): what a compiled pass computes with."""
    parameters = list(parameters)
    substituted, position = {}, 0
    for index, (rule, layer) in sorted(assignment.items()):
        names = [key for key, _ in rule.slots()]
        if names:
            rule = rule.with_values(dict(zip(names, parameters[position:position + len(names)])))
            position += len(names)
        substituted[index] = (rule, layer)
    if position != len(parameters):
        raise ValueError(f"the compiled pass received {len(parameters)} rule parameters for {position} slots")
    return substituted


def _names_closest_first(pattern, layers, limit=40):
    names = list(dict.fromkeys(name for layer in layers for name in layer.names))
    ranked = sorted(names, key=lambda n: -difflib.SequenceMatcher(None, pattern, n).ratio())
    shown = ", ".join(map(repr, ranked[:limit]))
    return shown + (f" … ({len(ranked) - limit} more)" if len(ranked) > limit else "")


def as_composite(rules) -> Composite:
    """``rules=`` as given by a caller: a Composite, one kernel rule for every kernel layer, or a list of
    ``(selector, rule)`` pairs (without a default)."""
    if isinstance(rules, Composite):
        return rules
    if isinstance(rules, Rule):
        return Composite([], default=rules)
    if isinstance(rules, (list, tuple, dict)):
        return Composite(rules)
    raise TypeError(f"rules must be a signxai.lrp.Composite, a rule (e.g. signxai.lrp.Epsilon(0.1)) or a list of "
                    f"(selector, rule) pairs, got {type(rules).__name__}")


# --- catalog names → composites (docs/methods.md#tokens, §7.4, §7.6) ------------------------------------------

@dataclass(frozen=True)
class _Param:
    """A rule argument taken from the resolved parameters of a name."""
    key: str


# the rule of each input-layer prefix token: (rule class, its arguments)
INPUT_RULES = {
    "sign": (Sign, {"mu": _Param("mu")}),
    "z": (Z, {}),
    "zb": (ZBox, {"low": _Param("low"), "high": _Param("high")}),
    "w2": (WSquare, {}),
    "flat": (Flat, {}),
}
# the base rule token: selector (None: the default for every kernel layer) -> (rule class, its arguments)
BASE_RULES: dict = {
    "z": {None: (Z, {})},
    "epsilon": {None: (Epsilon, {"epsilon": _Param("epsilon")})},
    "stdx_epsilon": {None: (StdxEpsilon, {"stdfactor": _Param("stdfactor")})},
    "alpha_beta": {None: (AlphaBeta, {"alpha": _Param("alpha"), "beta": _Param("beta")})},
    "composite_a": {"dense": (Epsilon, {"epsilon": _Param("epsilon")}),
                    "conv": (AlphaBeta, {"alpha": 1.0, "beta": 0.0})},
    "composite_b": {"dense": (Epsilon, {"epsilon": _Param("epsilon")}),
                    "conv": (AlphaBeta, {"alpha": 2.0, "beta": 1.0})},
}


def _build(spec, params):
    cls, arguments = spec
    return cls(**{key: params[value.key] if isinstance(value, _Param) else value
                  for key, value in arguments.items()})


def compile_method(method) -> Composite:
    """The composite of a resolved LRP method record (``.input_rule``, ``.rule``, ``.params``): the prefix's rule
    for the input layers first, then the base rule's entries and default."""
    if getattr(method, "composite", None) is not None:
        return method.composite
    if method.rule not in BASE_RULES:
        raise ValueError(f"unknown LRP rule {method.rule!r}")
    params = {"mu": 0.0, **method.params}
    entries = [] if method.input_rule is None else [(INPUT, _build(INPUT_RULES[method.input_rule], params))]
    default = None
    for selector, spec in BASE_RULES[method.rule].items():
        if selector is None:
            default = _build(spec, params)
        else:
            entries.append((selector, _build(spec, params)))
    attention = params.get("attention", "attnlrp")
    if attention not in ATTENTION_MODES:
        raise ValueError(f"attention={attention!r} is invalid; attention must be one of {ATTENTION_MODES}")
    if attention == "cplrp":  # attention weights held constant: relevance through the values only
        entries.append(("bilinear", ValuesOnly()))
    return Composite(entries, default=default, name=method.name)


# --- the per-node mapping of the graph engine -----------------------------------------------------------------

class LRP:
    """Per-node relevance mappings of one composite (or resolved LRP method) on one graph (docs/lrp.md)."""

    def __init__(self, method, graph, parameters=None):
        """``parameters``: the numeric rule parameters as tensors of a compiled pass (:func:`lrp_key`), which replace
        the rules' own values; None computes with the rules as they are."""
        composite = method if isinstance(method, Composite) else compile_method(method)
        self.assignment = composite.assign(graph)
        if parameters is not None:
            self.assignment = with_parameters(self.assignment, parameters)
        self._saved: dict = {}  # per node: what its rule's forward kept for the relevance (Rule.forward)

    def forward(self, ops, index, node, inputs):
        """The value of node ``index`` in the forward pass: its rule's own forward where it has one."""
        rule, layer = self.assignment.get(index, (None, None))
        rule_forward = getattr(rule, "forward", None)  # None too for duck-typed rules without Rule.forward
        result = rule_forward(ops, layer, inputs) if rule_forward is not None else None
        if result is None:
            return node.forward(*inputs)
        output, self._saved[index] = result
        return output

    def __call__(self, ops, index, node, inputs, output, R):
        rule, layer = self.assignment[index]
        if index in self._saved:
            shares = rule.relevance(ops, layer, inputs, output, R, saved=self._saved[index])
        else:
            shares = rule.relevance(ops, layer, inputs, output, R)
        if not isinstance(shares, (list, tuple)):
            shares = [shares]
        if len(shares) != len(inputs):
            raise ValueError(f"{rule!r} returned {len(shares)} relevance tensor(s) for layer {layer.describe()}, "
                             f"which has {len(inputs)} input(s)")
        return shares

