"""Target selection (docs/api.md#targets)."""
from __future__ import annotations

import numbers
from typing import Optional

import numpy as np


def resolve_targets(target, logits: np.ndarray, unbatched: bool) -> np.ndarray:
    """Per-sample class indices from ``target`` (None/'max_activation', integer-like, or 1-D per sample)."""
    n, k = logits.shape
    valid = f"a class index in 0 … {k - 1}"
    if target is None or (isinstance(target, str) and target == "max_activation"):
        return np.argmax(logits, axis=1)  # ties → lowest index
    values = _as_integer_array(target)
    if values is None:
        raise ValueError(f"target {target!r} is not valid: give None/'max_activation', {valid}, "
                         f"or a 1-D sequence of such indices, one per sample")
    if values.ndim == 0:
        values = np.full(n, int(values))
    elif values.ndim != 1 or len(values) != n:
        raise ValueError(f"target has shape {values.shape} but the input has {n} sample(s)"
                         f"{' (unbatched)' if unbatched else ''}: give one index, or one per sample ({valid})")
    if values.min() < 0 or values.max() >= k:
        raise ValueError(f"target {values.tolist() if values.size > 1 else int(values[0])} is out of range: "
                         f"the model has {k} outputs, so use {valid}")
    return values.astype(np.int64)


def _as_integer_array(target):
    if isinstance(target, (bool, np.bool_)):
        return None
    if isinstance(target, numbers.Integral):
        return np.asarray(int(target))
    if hasattr(target, "detach"):  # torch tensor
        target = target.detach().cpu().numpy()
    elif hasattr(target, "numpy") and not isinstance(target, np.ndarray):  # tf tensor
        target = target.numpy()
    if isinstance(target, (str, bytes, float)):
        return None
    try:
        values = np.asarray(target)
    except (TypeError, ValueError):
        return None
    if values.dtype == object:
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in values.ravel()):
            return None
        try:
            values = values.astype(np.int64)
        except OverflowError:
            return None
    if values.size == 0 and values.ndim == 1:
        return None
    if not np.issubdtype(values.dtype, np.integer) or values.ndim > 1:
        return None
    return values


class Targets:
    """The targets of one call, resolved from the logits of the explanation's own forward pass (docs/api.md#targets).

    No separate logits pass is needed: a backend calls :meth:`resolve` with the logits its forward pass produced
    (PyTorch), or :meth:`requested` before a compiled pass that takes the argmax itself (TensorFlow) and
    :meth:`set` with the classes it chose. Once resolved, the object behaves as the ``(N,)`` int64 array of classes.
    """

    ARGMAX = -1  # the requested class of a sample whose target is its argmax (resolved inside a compiled pass)

    def __init__(self, target, unbatched: bool) -> None:
        self.target, self.unbatched = target, unbatched
        self.values: Optional[np.ndarray] = None

    @classmethod
    def of(cls, targets) -> "Targets":
        """``targets`` itself, or resolved targets wrapping an array of per-sample classes."""
        if isinstance(targets, Targets):
            return targets
        resolved = cls(None, unbatched=False)
        resolved.values = np.asarray(targets, dtype=np.int64)
        return resolved

    @property
    def is_argmax(self) -> bool:
        return self.target is None or (isinstance(self.target, str) and self.target == "max_activation")

    def resolve(self, logits) -> np.ndarray:
        """The classes for these (N, K) logits (validated; the argmax per sample for the default target)."""
        if self.values is None:
            logits = np.asarray(logits)
            if logits.ndim != 2:
                raise ValueError(f"the model output has shape {logits.shape}; it must be (N, K) logits")
            self.values = resolve_targets(self.target, logits, unbatched=self.unbatched)
        return self.values

    def requested(self, n: int, num_classes: int) -> np.ndarray:
        """Explicit targets validated against ``num_classes``, or :attr:`ARGMAX` per sample for the default."""
        if self.values is not None:
            return self.values
        if self.is_argmax:
            return np.full(n, self.ARGMAX, dtype=np.int64)
        return self.resolve(np.zeros((n, num_classes), dtype=np.float32))

    def set(self, values) -> None:
        if self.values is None:
            self.values = np.asarray(values, dtype=np.int64)

    def _resolved(self) -> np.ndarray:
        if self.values is None:
            raise RuntimeError("the targets are resolved by the first forward pass of the explanation")
        return self.values

    def __array__(self, dtype=None, copy=None):
        values = self._resolved()
        return values if dtype is None else values.astype(dtype)

    def __len__(self):
        return len(self._resolved())

    def __getitem__(self, index):
        return self._resolved()[index]
