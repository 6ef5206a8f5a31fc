"""The backend contract at the tensor level (docs/extending.md#backend-contract): the operations the
framework-neutral rules use (:class:`TensorOps`) and the autodiff tape the shared passes of
:class:`signxai.core.backend.Backend` use (:class:`Tape`).

Tensors are the framework's own (``tf.Tensor``, ``torch.Tensor``): they support ``+ - * /`` and comparisons
natively, everything else goes through these interfaces. Each backend package implements them in its ``ops.py``
(``signxai/tf_signxai/ops.py``, ``signxai/torch_signxai/ops.py``) with identical semantics and precision.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, runtime_checkable

#: a tensor of the backend's framework (the rules never look inside it)
Tensor = Any


@runtime_checkable
class TensorOps(Protocol):
    """The tensor operations of docs/lrp.md's rules (``signxai/core/rules.py``, ``signxai/core/composite.py``)."""

    def vjp(self, fn: Callable[..., Tensor], inputs: Sequence[Tensor], cotangent: Tensor) -> list:
        """``(∂fn/∂inputs)ᵀ cotangent`` at ``inputs``: one tensor per input (zeros where ``fn`` does not depend on
        it; None for a non-tensor input)."""
        ...

    def as_float(self, condition: Tensor, like: Tensor) -> Tensor:
        """A boolean tensor as 0/1 in the dtype of ``like``."""
        ...

    def indicator(self, t: Tensor, relation: str, value: Any) -> Tensor:
        """``[t ∘ value]`` as 0/1 in the dtype of ``t``, for ``∘`` one of ``"=="``, ``">="``, ``"<"`` (the rules'
        masks; unlike ``as_float(t == value, t)`` no boolean tensor need be made)."""
        ...

    def multiply_into(self, t: Tensor, other: Tensor) -> Tensor:
        """``t ⊙ other`` (bit for bit ``other ⊙ t``), where ``t`` is a temporary of the calling rule that is not
        used afterwards: a backend may write the product into ``t``'s storage."""
        ...

    def add_into(self, t: Tensor, other: Tensor) -> Tensor:
        """``t + other`` (bit for bit), where ``t`` is a temporary of the calling rule that is not used afterwards: a
        backend may write the sum into ``t``'s storage."""
        ...

    def stabilized_ratio(self, p: Tensor, q: Tensor, c: Any = None) -> Tensor:
        """``SD(p, q + c·sign0(q))`` (``SD(p, q)`` for ``c`` None), exactly as
        :func:`signxai.core.rules.stabilized_ratio` defines it; ``c`` a number or a tensor broadcastable against
        ``q``. ``p`` and ``q`` are not modified. A backend may compute it fused (fewer temporaries)."""
        ...

    def ones_like(self, t: Tensor) -> Tensor:
        ...

    def zeros_like(self, t: Tensor) -> Tensor:
        ...

    def positive(self, t: Tensor) -> Tensor:
        """``t⁺ = max(t, 0)``."""
        ...

    def negative(self, t: Tensor) -> Tensor:
        """``t⁻ = min(t, 0)``."""
        ...

    def positive_kernel(self, w: Tensor) -> Tensor:
        """``w⁺`` of a layer's kernel or bias (a parameter, not an activation), as :meth:`positive` bit for bit. The
        result is only read, and only within the pass that asked for it: a backend may write it into memory it
        keeps for ``w`` across calls (docs/performance.md#kernel-parts)."""
        ...

    def negative_kernel(self, w: Tensor) -> Tensor:
        """``w⁻`` of a layer's kernel or bias, as :meth:`negative` bit for bit (see :meth:`positive_kernel`)."""
        ...

    def all_nonnegative(self, t: Tensor) -> Any:
        """Whether no entry is negative: a Python bool, or a boolean scalar tensor inside a compiled pass."""
        ...

    def all_zero(self, t: Tensor) -> bool:
        """Whether every entry is zero (a Python bool: used only outside compiled passes)."""
        ...

    def cond(self, predicate: Any, if_true: Callable[[], Tensor], if_false: Callable[[], Tensor]) -> Tensor:
        """``if_true()`` where ``predicate`` holds, else ``if_false()`` (a graph conditional when compiled)."""
        ...

    def constant(self, value: Any, like: Tensor) -> Tensor:
        """A NumPy-convertible value as a tensor of the dtype (and device) of ``like``."""
        ...

    def sum_axis(self, t: Tensor, axis: int) -> Tensor:
        """The sum of ``t`` over one axis, kept as an axis of length 1 (the softmax rule's ``ΣR``)."""
        ...

    def where_zero(self, t: Tensor, value: Any, other: Tensor) -> Tensor:
        """``value`` where ``t == 0``, else ``other`` (no arithmetic with ``other``'s entries there: −inf is safe)."""
        ...

    def std_per_sample(self, a: Tensor, like: Tensor) -> Tensor:
        """The population standard deviation of each sample of ``a`` (reduced in float64), cast to the dtype of
        ``like`` and shaped ``(N, 1, …, 1)`` to broadcast against it."""
        ...


class Tape(Protocol):
    """Reverse-mode autodiff for one pass: tensors are watched inside ``with backend.tape() as tape:``, and
    ``gradient`` is taken after the block."""

    def watch(self, t: Tensor) -> Tensor:
        """Watch ``t`` (returns the tensor to compute with: ``t`` itself, or a view of it that tracks gradients)."""
        ...

    def gradient(self, target: Tensor, source: Tensor) -> Tensor:
        """``∂target/∂source`` of a scalar ``target`` with respect to a watched (or downstream of a watched)
        ``source``."""
        ...


__all__ = ["Tensor", "TensorOps", "Tape"]
