"""Multi-input models (docs/api.md#multi-input): one input explained, the others held fixed per sample.

A :class:`Bound` is a per-call view of a model with several inputs: the explained input is the ``x`` every pass
receives; the other inputs are ``fixed`` arrays row-aligned with ``x`` (row ``i`` of each fixed array belongs to
row ``i`` of ``x``). Whenever a driver takes rows of ``x`` (the points of IG/SmoothGrad/VarGrad, a sample whose map
is diagnosed), it takes the same rows of the bound view with :func:`rows`, so a fixed input always follows its
sample.

Every pass receives the fixed tensors as arguments after ``x`` (a compiled pass: as inputs of its signature) and
makes them current with :func:`holding` while its body runs; the model's forward and the captured graph's
fixed-input nodes read them with :func:`fixed_value`. The caches of a backend key a bound view by its model and
:attr:`Bound.key` (the explained position and the fixed inputs' per-sample shapes and dtypes), so a second call with
other values reuses the captured graph and the compiled passes. A bound view holds its model only weakly.
"""
from __future__ import annotations

import contextlib
import contextvars
import weakref
from typing import Any, Iterator, Optional, Sequence

import numpy as np

_FIXED: contextvars.ContextVar = contextvars.ContextVar("signxai_fixed_inputs", default=None)


class Bound:
    """``model`` with input ``position`` explained and the other inputs (``fixed``, in the model's input order
    without the explained one) held fixed; ``names`` are the model's input names in order. ``fixed=None``: the view
    without values (:meth:`canonical`)."""

    def __init__(self, model, position: int, names: Sequence[str], fixed: Optional[Sequence[np.ndarray]]):
        self._ref = weakref.ref(model)
        self.position = position
        self.names = tuple(names)
        self.fixed: tuple = () if fixed is None else tuple(fixed)
        self.key = ("bound", position, tuple((tuple(f.shape[1:]), f.dtype.str) for f in self.fixed))

    @property
    def model(self):
        model = self._ref()
        if model is None:
            raise ReferenceError("the model of a bound multi-input view was released")
        return model

    def rows(self, index) -> "Bound":
        """The same view with the rows ``index`` of every fixed input."""
        return Bound(self.model, self.position, self.names, [f[index] for f in self.fixed])

    def canonical(self) -> "Bound":
        """The view without values: what a cached compiled pass keeps (its values arrive as pass arguments)."""
        bound = Bound(self.model, self.position, self.names, None)
        bound.key = self.key
        return bound

    def arguments(self, explained: Any, fixed: Sequence[Any]) -> list:
        """The model's inputs in order: ``explained`` at :attr:`position`, ``fixed`` around it."""
        values = list(fixed)
        values.insert(self.position, explained)
        return values


def unbound(model):
    """The model itself of a bound view (a model as is)."""
    return model.model if isinstance(model, Bound) else model


def rows(model, index):
    """``model.rows(index)`` for a bound view; any other model as is."""
    return model.rows(index) if isinstance(model, Bound) else model


@contextlib.contextmanager
def holding(fixed: Sequence[Any]) -> Iterator[None]:
    """Makes ``fixed`` (tensors) the current fixed inputs while the block runs."""
    token = _FIXED.set(tuple(fixed))
    try:
        yield
    finally:
        _FIXED.reset(token)


def fixed_value(index: int):
    """The current value of fixed input ``index`` (in the order of :attr:`Bound.fixed`)."""
    values = _FIXED.get()
    if values is None:
        raise RuntimeError("a fixed input of a multi-input model was read outside a pass that holds it")
    return values[index]


def current_fixed() -> tuple:
    values = _FIXED.get()
    if values is None:
        raise RuntimeError("a bound multi-input model was called outside a pass that holds its fixed inputs")
    return values


#: the refusal of a recurrent layer whose number of steps is known only per call, in a multi-input model
RECURRENT_MULTI_INPUT = ("a recurrent layer whose number of time steps is read from the explained input (PyTorch "
                         "recurrent modules, Keras recurrent layers on an Input of free length) is not unrolled in a "
                         "multi-input model yet: the rule-based methods (LRP, guided backprop, DeconvNet, Grad-CAM) "
                         "cannot explain it; the gradient family can (docs/api.md#multi-input). With Keras, build the "
                         "model on a fixed number of steps (keras.Input(shape=(T, features))).")
