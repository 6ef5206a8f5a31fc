"""What both backends share: per-model caches (captured graph, private float64 copy, compiled passes, activation
sizes), target resolution without a separate logits pass, and the chunk size of many-point methods."""
from __future__ import annotations

import contextlib
import dataclasses
import threading
import weakref
from collections.abc import Mapping

import numpy as np

from signxai.core.targets import Targets


class Backend:
    """Subclasses provide ``capture(model) -> Graph``, ``float64_copy(model)``, ``sync_weights(model, copy)``,
    ``logits(model, x)`` and ``activation_bytes_per_sample(model, sample)``.

    Every cache is keyed by the model object itself (never by ``id()``) in a weak dictionary: whatever is cached
    for a model — its captured graph, its float64 copy (and, through the copy, the copy's own caches), its compiled
    passes — is released together with the model. Cached values must therefore not hold the model strongly.
    """

    channels_first = False

    def __init__(self):
        self._lock = threading.RLock()
        self._graphs = weakref.WeakKeyDictionary()
        self._checked = weakref.WeakKeyDictionary()  # models that passed ``check``
        self._float64 = weakref.WeakKeyDictionary()
        self._compiled = weakref.WeakKeyDictionary()  # model -> {key: compiled pass}
        self._activation_bytes = weakref.WeakKeyDictionary()  # model -> {(sample shape, dtype): bytes}

    def _cached(self, store, model, build):
        with self._lock:
            value = store.get(model)
            if value is None:
                value = store[model] = build(model)
        return value

    def _per_model(self, store, model, key, build):
        """``store[model][key]``, built once (under the lock) by ``build()``."""
        with self._lock:
            table = store.get(model)
            if table is None:
                table = store[model] = {}
            if key not in table:
                table[key] = build()
            return table[key]

    def computation(self):
        """The context every framework computation runs in."""
        return contextlib.nullcontext()

    def graph(self, model):
        return self._cached(self._graphs, model, self.capture)

    def model_for(self, model, dtype):
        """The model itself for float32; for float64 a private copy carrying the model's current weights."""
        if dtype == "float32":
            return model
        copy = self._cached(self._float64, model, self.float64_copy)
        self.sync_weights(model, copy)
        return copy

    # --- targets -----------------------------------------------------------------------------------------------
    def num_classes(self, model):
        """The number of logits, when the model declares it without a forward pass (else None)."""
        return None

    def resolved_targets(self, model, x, targets) -> np.ndarray:
        """Per-sample classes for ``x``; a logits pass runs only for the argmax (or where the number of classes is
        not declared). For the methods whose own passes run on other points than ``x`` (IG, SmoothGrad, VarGrad)."""
        targets = Targets.of(targets)
        if targets.values is None:
            k = None if targets.is_argmax else self.num_classes(model)
            if k is not None:
                targets.requested(len(x), k)
            else:
                targets.resolve(self.logits(model, x))
        return targets.values

    # --- chunking ------------------------------------------------------------------------------------------------
    def activation_bytes(self, model, x) -> int:
        """Bytes a gradient pass needs per sample of ``x``'s shape, estimated by the backend from the activations of
        one sample (measured once per model and sample shape)."""
        key = (tuple(x.shape[1:]), str(x.dtype))
        with self._lock:
            cached = self._activation_bytes.get(model, {}).get(key)
        if cached is None:
            cached = max(1, int(self.activation_bytes_per_sample(model, x[:1])))
            self._per_model(self._activation_bytes, model, key, lambda: cached)
        return cached

    def chunk_size(self, model, x, budget: int) -> int:
        """Samples per gradient pass so that the pass's activations stay within ``budget`` bytes (at least 1)."""
        return max(1, int(budget // self.activation_bytes(model, x)))


def freeze(value):
    """A hashable key that identifies ``value`` (a parsed method, its parameters) by value, or None when some part
    has no value identity (then the caller must not cache by it)."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return (type(value).__name__, value)
    if isinstance(value, np.generic):
        return ("np", value.dtype.str, value.item())
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        parts = [(f.name, freeze(getattr(value, f.name))) for f in dataclasses.fields(value)]
        return None if any(p is None for _, p in parts) else (type(value).__qualname__, tuple(parts))
    if isinstance(value, Mapping):
        parts = [(freeze(k), freeze(v)) for k, v in value.items()]
        if any(k is None or v is None for k, v in parts):
            return None
        return ("map", tuple(sorted(parts, key=repr)))
    if isinstance(value, (tuple, list)):
        parts = [freeze(v) for v in value]
        return None if any(p is None for p in parts) else (type(value).__name__, tuple(parts))
    return None
