"""How framework layers become node kinds: the shape of the backends' layer tables, the arithmetic both captures
classify alike, and the public extension point ``register_layer`` (docs/layers.md#custom-layers).

Each backend declares one :class:`LayerTable` (``signxai/tf_signxai/layer_table.py``,
``signxai/torch_signxai/layer_table.py``): for every node kind of :data:`signxai.core.graph.TABLE_KINDS`, the
framework's layer classes, functions and named operations of that kind (docs/extending.md#add-layer).

A user's own layer class is declared like this:

    signxai.register_layer(MyLayerScale, "pass")           # a constant scaling: relevance passes through
    signxai.register_layer(MyDropPath, "identity")         # the identity at inference
    signxai.register_layer(MySigmoid, "activation", value_range=(0.0, 1.0))   # a gate-producing activation

The registered class is matched before the built-in tables of both backends, subclasses included unless they
define a method of their own that may change what is computed (:func:`computes_as`); a PyTorch module class becomes
an fx leaf. Register a class before the first explanation of a model that
uses it: captured graphs are cached per model.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from signxai.core import graph as g
from signxai.core.graph import NodeKind


# --- layer tables ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KindEntry:
    """The framework objects of one node kind in one backend's layer table.

    ``layers``: layer classes (Keras ``Layer``, PyTorch ``nn.Module``), matched through the instance's MRO with the
    most specific class winning, and only where the instance's class computes as it (:func:`computes_as`).
    ``functions``: callables — Keras activation functions (fused or in ``Activation``),
    PyTorch functional ops. ``methods``: operations named by a string — PyTorch tensor methods (``x.view``);
    Keras has none (its operation layers are arithmetic, see :func:`arithmetic_kind`).
    """

    layers: tuple = ()
    functions: tuple = ()
    methods: tuple = ()

    def __bool__(self) -> bool:
        return bool(self.layers or self.functions or self.methods)


class LayerTable(Mapping):
    """One backend's table ``{node kind: KindEntry}`` (docs/extending.md#layer-tables), with the lookups its
    capture uses. Every kind of :data:`~signxai.core.graph.TABLE_KINDS` must have an entry, and no class, function
    or method name may belong to two kinds (checked when the table is built)."""

    def __init__(self, entries: Mapping[NodeKind, KindEntry]) -> None:
        missing = [kind for kind in g.TABLE_KINDS if not entries.get(kind)]
        if missing:
            raise ValueError(f"the layer table has no entry for the node kind(s) {[str(k) for k in missing]}")
        self._entries = dict(entries)
        self._layers: dict = {}
        self._functions: dict = {}
        self._methods: dict = {}
        for kind, entry in self._entries.items():
            for lookup, members in ((self._layers, entry.layers), (self._functions, entry.functions),
                                    (self._methods, entry.methods)):
                for member in members:
                    if lookup.get(member, kind) != kind:
                        raise ValueError(f"{member!r} is listed as {lookup[member]} and as {kind}")
                    lookup[member] = kind

    def __getitem__(self, kind: NodeKind) -> KindEntry:
        return self._entries[kind]

    def __iter__(self) -> Iterator[NodeKind]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def layer_classes(self) -> tuple:
        """Every layer class of the table."""
        return tuple(self._layers)

    def layer_kind(self, layer: Any) -> Optional[NodeKind]:
        """The kind of a layer instance: its most specific class listed in the table, provided the instance's class
        computes what that class computes (:func:`computes_as`); None otherwise."""
        cls = listed_base(type(layer), self._layers)
        return None if cls is None else self._layers[cls]

    def function_kind(self, function: Any) -> Optional[NodeKind]:
        try:
            return self._functions.get(function)
        except TypeError:  # an unhashable callable
            return None

    def method_kind(self, name: str) -> Optional[NodeKind]:
        return self._methods.get(name)


# --- semantics by what runs (docs/layers.md#what-runs) -------------------------------------------------------------

#: methods a subclass may define without changing what its base class computes (construction, configuration, repr)
HARMLESS_METHODS = frozenset({
    "__init__", "__repr__", "__str__", "__setstate__", "__getstate__", "__init_subclass__", "__class_getitem__",
    "extra_repr", "reset_parameters", "_check_input_dim", "get_config", "from_config", "build",
    "compute_output_shape", "compute_output_spec", "__reduce__", "__reduce_ex__"})


def computes_as(cls: type, base: type) -> bool:
    """Whether ``cls`` (a subclass of ``base``) computes what ``base`` computes: no class between them defines a
    method beyond :data:`HARMLESS_METHODS`. timm's ``BatchNormAct2d`` (a ``BatchNorm2d`` that applies its activation
    in ``forward``) and ``ScaledStdConv2d`` (a ``Conv2d`` that standardises its weight) do not."""
    for klass in cls.__mro__:
        if klass is base:
            return True
        for name, member in vars(klass).items():
            if name in HARMLESS_METHODS:
                continue
            if callable(member) or isinstance(member, (staticmethod, classmethod)):
                return False
    return False


def listed_base(cls: type, listed: Mapping) -> Optional[type]:
    """The most specific class of ``cls``'s MRO in ``listed`` that ``cls`` computes as (else None)."""
    for base in cls.__mro__:
        if base in listed:
            return base if computes_as(cls, base) else None
    return None


# --- arithmetic on model tensors ---------------------------------------------------------------------------------

#: the neutral arithmetic operations; each backend maps its operators to them in ``ARITHMETIC`` of its layer table
ARITHMETIC_OPERATIONS = ("add", "subtract", "multiply", "divide")


def arithmetic_kind(operation: str, tensor_operands: int) -> NodeKind:
    """The kind of ``a ∘ b`` by its number of input-dependent tensor operands: one (the other a constant) is a
    constant shift or scaling (``PASS``); two are a sum or difference (``ADD``; a difference with coefficients
    (1, −1), docs/layers.md#clamp) or a product (``PRODUCT``, a gate times a signal,
    docs/layers.md#gated-products); anything else has no rule."""
    if tensor_operands == 1:
        return g.PASS
    if tensor_operands == 2 and operation in ("add", "subtract"):  # a − b: the sum a·1 + b·(−1), coefficients
        return g.ADD
    if tensor_operands == 2 and operation == "multiply":
        return g.PRODUCT
    return g.UNSUPPORTED


def scalar_affine(operation: str, constant: Any, tensor_first: bool) -> Optional[tuple]:
    """``(scale, shift)`` of ``x ∘ c`` (``tensor_first``) or ``c ∘ x`` with a scalar constant ``c`` (a Python
    number; anything else gives None), for gate detection through affine maps (docs/layers.md#gated-products)."""
    if not isinstance(constant, (int, float)) or isinstance(constant, bool):
        return None
    constant = float(constant)
    if operation == "add":
        return 1.0, constant
    if operation == "subtract":
        return (1.0, -constant) if tensor_first else (-1.0, constant)
    if operation == "multiply":
        return constant, 0.0
    return (1.0 / constant, 0.0) if operation == "divide" and tensor_first and constant != 0 else None


def constant_shift(operation: str, constant_shape: Optional[tuple], tensor_first: bool) -> Optional[tuple]:
    """The coefficient ``(c,)`` of the signal in ``x + C``, ``x − C`` (``c = 1``) or ``C − x`` (``c = −1``) where ``C``
    is a constant **table** (``constant_shape``; None: not a tensor) that varies along at least two axes: a positional
    table (tokens × width), a relative position bias or an additive mask (queries × keys). Such a sum is an ``ADD``
    node with one signal operand, whose Z rule ``R_x = c·x ⊙ SD(R, y)`` lets the constant absorb its share as a bias
    does (docs/transformers.md#constant-sources). A scalar or per-channel shift (hard sigmoid's ``x + 3``,
    ``Rescaling``'s offset, a normalisation's mean, ResMLP's β) stays a ``PASS`` node: an affine re-centring of the
    features. None where the operation is not such a sum."""
    if constant_shape is None or operation not in ("add", "subtract"):
        return None
    if sum(1 for n in constant_shape if n is not None and int(n) > 1) < 2:
        return None
    return (-1.0,) if operation == "subtract" and not tensor_first else (1.0,)


# --- register_layer ----------------------------------------------------------------------------------------------

# public kind name -> (node kind, forward is the identity)
KINDS = {
    "pass": (g.PASS, False),          # shape-preserving, relevance passes through; GBP/DCN: exact Jacobian
    "identity": (g.PASS, True),       # the identity at inference (dropout-like): forward and backward identity
    "activation": (g.ACTIVATION, False),  # elementwise activation: LRP pass-through, GBP/DCN exact derivative
    "relu": (g.RELU, False),          # ReLU family: LRP pass-through, GBP φ'(z)⊙g⁺, DeconvNet g⁺
    "reindex": (g.REINDEX, False),    # re-indexing (reshape, selection, padding): the gradient routes the signal
    "route": (g.REINDEX, False),      # the same as "reindex" (its first name)
    "avgpool": (g.AVGPOOL, False),    # a linear pooling operator: its Z rule
}

_REGISTRY: dict = {}


def register_layer(layer_class: type, kind: str, value_range: tuple | None = None) -> None:
    """Treat every instance of ``layer_class`` (a ``keras.layers.Layer`` or ``torch.nn.Module`` subclass) as
    ``kind``: one of ``"pass"``, ``"identity"``, ``"activation"``, ``"relu"``, ``"reindex"`` (also called
    ``"route"``), ``"avgpool"``.

    ``value_range=(low, high)`` declares static output bounds of an activation (a gate has bounds within [0, 1]).
    """
    if not isinstance(layer_class, type):
        raise TypeError(f"register_layer needs a layer class, got {type(layer_class).__name__} "
                        f"(pass type(layer) for an instance)")
    if kind not in KINDS:
        import difflib
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        raise ValueError(f"unknown layer kind {kind!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                         f"choose one of {sorted(KINDS)}. Kernel layers need a kernel definition and cannot be "
                         f"registered this way")
    if value_range is not None:
        low, high = (float(v) for v in value_range)
        if not low <= high:
            raise ValueError(f"value_range must be (low, high) with low <= high, got {value_range!r}")
        if KINDS[kind][0] not in (g.ACTIVATION, g.RELU):
            raise ValueError(f"value_range applies to 'activation' and 'relu' layers, not {kind!r}")
        value_range = (low, high)
    _REGISTRY[layer_class] = (kind, value_range)


def unregister_layer(layer_class: type) -> None:
    """Undo :func:`register_layer` (a KeyError names a class that was not registered)."""
    del _REGISTRY[layer_class]


def registered(layer: Any) -> Optional[tuple]:
    """``(node kind, extra Node fields)`` for an instance of a registered class (or of a subclass that computes as
    it, :func:`computes_as`), else None."""
    cls = listed_base(type(layer), _REGISTRY)
    if cls is None:
        return None
    kind, value_range = _REGISTRY[cls]
    node_kind, identity = KINDS[kind]
    extra = {"forward": lambda t, *rest: t} if identity else {}
    if value_range is not None:
        extra["value_range"] = value_range
    return node_kind, extra


def is_registered(layer: Any) -> bool:
    return listed_base(type(layer), _REGISTRY) is not None
