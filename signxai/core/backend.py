"""What both backends share: per-model caches of the captured graph and of the private float64 copy."""
from __future__ import annotations

import contextlib
import threading
import weakref


class Backend:
    """Subclasses provide ``capture(model) -> Graph``, ``float64_copy(model)`` and ``sync_weights(model, copy)``."""

    channels_first = False

    def __init__(self):
        self._lock = threading.Lock()
        self._graphs = weakref.WeakKeyDictionary()
        self._float64 = weakref.WeakKeyDictionary()  # keyed by the model object itself, never by id()

    def _cached(self, store, model, build):
        with self._lock:
            value = store.get(model)
            if value is None:
                value = store[model] = build(model)
        return value

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
