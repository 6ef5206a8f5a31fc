"""Target selection (docs/api.md#targets): which quantity of the model's output is explained.

Every target resolves to **coefficients** ``C`` shaped like the model output ``y`` (per sample ``(N, *S)``), and the
explained quantity is ``q = Σ_n Σ C_n ⊙ y_n``: gradients are ``∂q/∂x``, guided backprop and DeconvNet are seeded
with ``C``, Grad-CAM differentiates ``q``, and the LRP head is ``C ⊙ z`` (z: the output before trailing elementwise
activations, docs/lrp.md#head). The kinds of target (docs/api.md#targets):

* **index** — ``C_n = s_n·e_{i_n}`` with ``i_n`` a flat index into the sample's output and ``s_n = ±1``: a class of
  ``(N, K)`` logits (default: the argmax), the single output of ``(N, 1)``/``(N,)`` heads (``"negative"``: ``s = −1``),
  a ``(t, k)`` position of a ``(N, T, K)`` output;
* **coefficients** — a callable ``f(outputs) -> (N,)``: ``C = ∂(Σ_n f(y)_n)/∂y`` at the explained outputs, computed
  by the model's framework (the LRP head needs ``f`` linear, checked by Euler's identity ``f(y) = Σ C ⊙ y``).
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Optional

import numpy as np

#: ``target=NEGATIVE`` explains the negative class of a single-logit binary head: ``−z`` (docs/api.md#targets)
NEGATIVE = "negative"
_ARGMAX_NAMES = ("max_activation",)
_KEYWORDS = (NEGATIVE,) + _ARGMAX_NAMES


def resolve_targets(target, logits: np.ndarray, unbatched: bool) -> np.ndarray:
    """Per-sample class indices from ``target`` (None/'max_activation', integer-like, or 1-D per sample) for (N, K)
    logits."""
    n, k = logits.shape
    if target is None or (isinstance(target, str) and target == "max_activation"):
        return np.argmax(logits, axis=1)  # ties → lowest index
    return _class_indices(target, n, k, unbatched)


def _class_indices(target, n: int, k: int, unbatched: bool) -> np.ndarray:
    valid = f"a class index in 0 … {k - 1}"
    values = _as_integer_array(target)
    if values is None:
        raise ValueError(f"target {target!r:.80} is not valid: give None/'max_activation', {valid}, "
                         f"or a 1-D sequence of such indices, one per sample"
                         f"{', or target=' + repr(NEGATIVE) + ' for the negative class' if k == 1 else ''}, "
                         f"or a callable f(outputs) -> (N,) (docs/api.md#targets)")
    if values.ndim == 0:
        values = np.full(n, int(values))
    elif values.ndim != 1 or len(values) != n:
        raise ValueError(f"target has shape {values.shape} but the input has {n} sample(s)"
                         f"{' (unbatched)' if unbatched else ''}: give one index, or one per sample ({valid})")
    if values.min() < 0 or values.max() >= k:
        raise ValueError(f"target {values.tolist() if values.size > 1 else int(values[0])} is out of range: "
                         f"the model has {k} outputs, so use {valid}"
                         f"{' (target=' + repr(NEGATIVE) + ' explains the negative class)' if k == 1 else ''}")
    return values.astype(np.int64)


def _position_indices(target, n: int, shape: tuple, unbatched: bool) -> np.ndarray:
    """Flat indices of ``(i_1, …, i_r)`` positions into per-sample outputs of ``shape`` (r ≥ 2): one tuple for all
    samples (shape (r,)) or one per sample (shape (N, r))."""
    r = len(shape)
    names = "(t, k)" if r == 2 else f"a tuple of {r} indices"
    valid = f"{names} with " + ", ".join(f"0 ≤ index {a} ≤ {d - 1}" for a, d in enumerate(shape)) + (
        " (negative indices count from the end: −1 is the last)")
    how = (f"the model output has shape {shape} per sample ((N, T, K) per-timestep outputs, not (N, K) logits): give "
           f"target={names} (one position for every sample), an (N, {r}) integer array (one per sample), or a "
           f"callable f(outputs) -> (N,) (docs/api.md#targets); {valid}")
    if target is None or (isinstance(target, str) and target in _KEYWORDS):
        raise ValueError(f"target {target!r} has no meaning here: {how}")
    values = _as_integer_array(target, max_ndim=2)
    if values is None or values.ndim == 0:
        raise ValueError(f"target {target!r:.80} is not valid: {how}")
    if values.ndim == 1:
        values = np.broadcast_to(values, (n, len(values)))
    if values.shape != (n, r):
        raise ValueError(f"target has shape {values.shape}, but the input has {n} sample(s)"
                         f"{' (unbatched)' if unbatched else ''} and the output {r} axes per sample: {how}")
    high = np.asarray(shape)
    bad = np.flatnonzero(((values < -high) | (values >= high)).any(axis=1))
    if len(bad):
        raise ValueError(f"target {tuple(int(v) for v in values[bad[0]])} (sample {int(bad[0])}) is out of range: "
                         f"the model output has shape {shape} per sample, so use {valid}")
    values = np.where(values < 0, values + high, values)  # negative indices count from the end (t = −1: the last)
    return np.ravel_multi_index(tuple(values.T.astype(np.int64)), shape).astype(np.int64)


def _as_integer_array(target, max_ndim: int = 1):
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
    if values.size == 0 and values.ndim >= 1:
        return None
    if not np.issubdtype(values.dtype, np.integer) or values.ndim > max_ndim:
        return None
    return values


#: ``differentiate(f, outputs) -> (f(outputs), ∂Σf/∂outputs)`` as NumPy arrays, by the model's framework
Differentiate = Callable[[Callable[..., Any], np.ndarray], tuple]


class Targets:
    """The targets of one call (docs/api.md#targets), resolved against the model's outputs.

    A backend resolves them from the outputs of the explanation's own forward pass (:meth:`resolve`, PyTorch), or
    asks for what can be known before a compiled pass that takes the argmax itself (:meth:`requested`, TensorFlow)
    and records the classes it chose (:meth:`set`). Resolved, the object holds per sample a flat index into the
    output (``values``; −1 for a callable target), a sign (``signs``) and, for a callable target, the coefficients;
    it behaves as the ``(N,)`` int64 array of indices, and indexing it (``targets[rows]``) or :meth:`repeat` gives
    resolved targets of those samples.
    """

    ARGMAX = -1  # the requested index of a sample whose target is its argmax (resolved inside a compiled pass)

    def __init__(self, target, unbatched: bool) -> None:
        self.target, self.unbatched = target, unbatched
        self.values: Optional[np.ndarray] = None
        self.signs: Optional[np.ndarray] = None
        self.coefficients: Optional[np.ndarray] = None  # (N, P) for a callable target
        self.linearity: Optional[np.ndarray] = None  # (N, 2): |f(y) − Σ C⊙y| and Σ|C⊙y| (LRP's check)

    @classmethod
    def of(cls, targets) -> "Targets":
        """``targets`` itself, or resolved targets wrapping an array of per-sample classes."""
        if isinstance(targets, Targets):
            return targets
        resolved = cls(None, unbatched=False)
        resolved.values = np.asarray(targets, dtype=np.int64)
        resolved.signs = np.ones(len(resolved.values))
        return resolved

    @property
    def is_argmax(self) -> bool:
        return self.target is None or (isinstance(self.target, str) and self.target in _ARGMAX_NAMES)

    @property
    def is_negative(self) -> bool:
        return isinstance(self.target, str) and self.target == NEGATIVE

    @property
    def is_callable(self) -> bool:
        return self.coefficients is not None or (callable(self.target) and not hasattr(self.target, "dtype"))

    @property
    def kind(self) -> str:
        """``"index"`` or ``"coefficients"`` (a callable target): the compiled passes are one per kind."""
        return "coefficients" if self.is_callable else "index"

    @property
    def resolved(self) -> bool:
        return self.values is not None

    # --- resolution --------------------------------------------------------------------------------------------
    def _indices(self, n: int, shape: tuple) -> np.ndarray:
        """Explicit flat indices (validated against the per-sample output ``shape``), or ARGMAX per sample."""
        shape = tuple(int(d) for d in shape)
        if len(shape) >= 2:
            return _position_indices(self.target, n, shape, self.unbatched)
        k = int(np.prod(shape))  # () → one output
        if self.is_argmax:
            return np.full(n, self.ARGMAX, dtype=np.int64)
        if self.is_negative:
            if k != 1:
                raise ValueError(f"target={NEGATIVE!r} explains the negative class of a single-logit binary head "
                                 f"(output (N, 1) or (N,)), but the model has {k} outputs per sample: give a class "
                                 f"index in 0 … {k - 1}, or a callable such as lambda y: -y[:, c] "
                                 f"(docs/api.md#targets)")
            return np.zeros(n, dtype=np.int64)
        return _class_indices(self.target, n, k, self.unbatched)

    def _signs(self, n: int) -> np.ndarray:
        return np.full(n, -1.0 if self.is_negative else 1.0)

    def requested(self, n: int, shape) -> np.ndarray:
        """Before a pass, without outputs: the explicit indices (validated against the per-sample output ``shape``,
        and kept: the targets are then resolved), or :attr:`ARGMAX` per sample for the default."""
        if self.values is not None:
            if self.signs is None:
                self.signs = self._signs(n)
            return self.values
        if self.is_callable:
            raise RuntimeError("a callable target is resolved on the model's outputs (Targets.resolve)")
        if isinstance(shape, numbers.Integral):  # a number of classes
            shape = (int(shape),)
        indices = self._indices(n, tuple(shape))
        self.signs = self._signs(n)
        if not self.is_argmax:
            self.values = indices
        return indices

    def resolve(self, outputs, differentiate: Optional[Differentiate] = None) -> np.ndarray:
        """The targets for these outputs ``(N, *S)`` (validated; the argmax per sample for the default); a callable
        target is differentiated by ``differentiate`` (the backend's framework)."""
        if self.values is not None:
            return self.values
        outputs = np.asarray(outputs)
        n, shape = len(outputs), outputs.shape[1:]
        self.signs = self._signs(n)
        if self.is_callable:
            if differentiate is None:
                raise RuntimeError("a callable target needs the backend's differentiate_target")
            self._resolve_callable(outputs, differentiate)
            return self.values  # type: ignore[return-value]
        indices = self._indices(n, shape)
        if self.is_argmax:
            indices = np.argmax(outputs.reshape(n, -1), axis=1).astype(np.int64)  # ties → lowest index
        self.values = indices
        return indices

    def _resolve_callable(self, outputs: np.ndarray, differentiate: Differentiate) -> None:
        n = len(outputs)
        values, coefficients = differentiate(self.target, outputs)
        values = np.asarray(values)
        if values.shape != (n,):
            raise ValueError(f"the target callable returned shape {values.shape} for model outputs of shape "
                             f"{outputs.shape}: it must return one value per sample, shape ({n},) "
                             f"(docs/api.md#targets)")
        if coefficients is None:
            raise ValueError("the target callable's result does not depend on the model outputs it was given: "
                             "it must compute its (N,) values from them (docs/api.md#targets)")
        coefficients = np.asarray(coefficients, dtype=np.float64).reshape(n, -1)
        if not np.isfinite(coefficients).all() or not np.isfinite(values).all():
            raise ValueError("the target callable or its derivative is not finite at the model's outputs")
        flat = outputs.reshape(n, -1).astype(np.float64)
        self.coefficients = coefficients
        self.linearity = np.stack([np.abs(values.astype(np.float64) - (coefficients * flat).sum(axis=1)),
                                   np.abs(coefficients * flat).sum(axis=1)], axis=1)
        self.values = np.full(n, -1, dtype=np.int64)

    def set(self, values) -> None:
        if self.values is None:
            self.values = np.asarray(values, dtype=np.int64)

    def check_linear(self, dtype) -> None:
        """For the LRP head ``C ⊙ z`` of a callable target: ValueError unless ``f(y) = Σ C ⊙ y`` on every sample
        (Euler's identity: ``f`` linear — positively homogeneous — in the outputs, without offset), within the
        tolerance of gate 4 (docs/api.md#verified-capture)."""
        if self.linearity is None:
            return
        from signxai.core.verify import TOLERANCES
        relative, absolute = TOLERANCES.get(np.dtype(dtype).name, TOLERANCES["float32"])
        residual, scale = self.linearity[:, 0], self.linearity[:, 1]
        bad = np.flatnonzero(residual > relative * scale + absolute)
        if len(bad):
            raise ValueError(f"LRP explains a callable target through the head C ⊙ z with C = ∂f/∂y, which needs f "
                             f"linear in the outputs, f(y) = Σ_k c_k·y_k (no offset, no nonlinearity); at sample "
                             f"{int(bad[0])} f(y) differs from Σ C ⊙ y by {float(residual[bad[0]]):.3g}. Give a linear "
                             f"f (e.g. lambda y: y[:, 2] - y[:, 0]), or use a gradient method, which explains any "
                             f"differentiable f (docs/api.md#targets)")

    # --- per-sample arithmetic of resolved targets ---------------------------------------------------------------
    def weights(self, n: int, width: int) -> np.ndarray:
        """``C`` as an ``(N, P)`` float64 array (``P`` outputs per sample; resolved targets only)."""
        values = self._resolved()
        if self.coefficients is not None:
            return self.coefficients
        signs = self.signs if self.signs is not None else np.ones(n)
        result = np.zeros((n, width))
        result[np.arange(n), values] = signs
        return result

    def _subset(self, pick: Callable[[np.ndarray], np.ndarray]) -> "Targets":
        subset = Targets(self.target, self.unbatched)
        subset.values = pick(self._resolved())
        subset.signs = None if self.signs is None else pick(self.signs)
        subset.coefficients = None if self.coefficients is None else pick(self.coefficients)
        subset.linearity = None if self.linearity is None else pick(self.linearity)
        return subset

    def repeat(self, m: int) -> "Targets":
        """Each sample's targets ``m`` times in a row (the points of IG/SmoothGrad/VarGrad, D4)."""
        return self._subset(lambda a: np.repeat(a, m, axis=0))

    def _resolved(self) -> np.ndarray:
        if self.values is None:
            raise RuntimeError("the targets are resolved by the first forward pass of the explanation")
        return self.values

    def __array__(self, dtype=None, copy=None):
        values = self._resolved()
        return values if dtype is None else values.astype(dtype)

    def __len__(self):
        return len(self._resolved())

    def __getitem__(self, index) -> "Targets":
        if isinstance(index, list):
            index = np.asarray(index, dtype=np.int64)
        return self._subset(lambda a: a[index])
