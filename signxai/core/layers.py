"""Public extension point: declare how a layer class of either framework is treated (docs/layers.md, custom layers).

    signxai.register_layer(MyLayerScale, "pass")           # a constant scaling: relevance passes through
    signxai.register_layer(MyDropPath, "identity")         # the identity at inference
    signxai.register_layer(MySigmoid, "activation", value_range=(0.0, 1.0))   # a gate-producing activation

The registered class is matched by ``isinstance`` (subclasses included) before the built-in tables of both
backends; a PyTorch module class becomes an fx leaf. Register a class before the first explanation of a model that
uses it: captured graphs are cached per model.
"""
from __future__ import annotations

from signxai.core import graph as g

# public kind name -> (node kind, forward is the identity)
KINDS = {
    "pass": (g.PASS, False),          # shape-preserving, relevance passes through; GBP/DCN: exact Jacobian
    "identity": (g.PASS, True),       # the identity at inference (dropout-like): forward and backward identity
    "activation": (g.ACTIVATION, False),  # elementwise activation: LRP pass-through, GBP/DCN exact derivative
    "relu": (g.RELU, False),          # ReLU family: LRP pass-through, GBP φ'(z)⊙g⁺, DeconvNet g⁺
    "route": (g.GRADIENT, False),     # re-indexing (reshape, selection, padding): the gradient routes the signal
    "avgpool": (g.AVGPOOL, False),    # a linear pooling operator: its Z rule
}

_REGISTRY: dict = {}


def register_layer(layer_class: type, kind: str, value_range: tuple | None = None) -> None:
    """Treat every instance of ``layer_class`` (a ``keras.layers.Layer`` or ``torch.nn.Module`` subclass) as
    ``kind``: one of ``"pass"``, ``"identity"``, ``"activation"``, ``"relu"``, ``"route"``, ``"avgpool"``.

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


def registered(layer):
    """``(node kind, extra Node fields)`` for an instance of a registered class, else None."""
    for cls in type(layer).__mro__:
        if cls in _REGISTRY:
            kind, value_range = _REGISTRY[cls]
            node_kind, identity = KINDS[kind]
            extra = {"forward": lambda t, *rest: t} if identity else {}
            if value_range is not None:
                extra["value_range"] = value_range
            return node_kind, extra
    return None


def is_registered(layer) -> bool:
    return any(cls in _REGISTRY for cls in type(layer).__mro__)
