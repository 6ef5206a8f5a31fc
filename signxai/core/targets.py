"""Target selection (SPEC §2.3)."""
from __future__ import annotations

import numbers

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
