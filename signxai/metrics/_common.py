"""Argument handling shared by the metrics: the model's backend, inputs, maps, targets, logits and layouts."""
from __future__ import annotations

import numbers

import numpy as np

from signxai.api import _backend_for, _is_batched, _to_numpy
from signxai.core.layout import from_canonical, to_canonical
from signxai.core.targets import resolve_targets


class ModelHandle:
    """A Keras 3 or PyTorch classifier with its signxai backend (checked: logits, single input and output)."""

    def __init__(self, model):
        self.backend = _backend_for(model)  # TypeError for anything but keras.Model / torch.nn.Module
        # ValueError for softmax outputs and the other docs/api.md#model-requirements requirements
        self.backend.check(model)
        self.model = model

    @property
    def channels_first(self) -> bool:
        return self.backend.channels_first

    def inputs(self, X, what="X") -> np.ndarray:
        """``X`` as a fresh float32 batch in the caller's layout (the batch axis is required)."""
        x = _to_numpy(X, self.backend)
        try:
            _is_batched(self.backend, self.model, x, True)
        except ValueError as error:
            raise ValueError(f"{what} must be a batch of samples with a leading batch axis: {error}") from None
        if len(x) == 0:
            raise ValueError(f"{what} is an empty batch; give at least one sample")
        return x

    def logits(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """The model's logits for a float32 batch in the caller's layout, evaluated in chunks of ``batch_size``."""
        chunks = []
        with self.backend.computation():
            for start in range(0, len(x), batch_size):
                chunks.append(np.asarray(self.backend.logits(self.model, x[start:start + batch_size])))
        return np.concatenate(chunks)

    def classifier_logits(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits, checked to be those of a classifier: shape (N, K) with K ≥ 2, finite."""
        logits = self.logits(x, batch_size)
        if logits.ndim != 2 or logits.shape[1] < 2:
            raise ValueError(f"the model output has shape {logits.shape}; these metrics need a classifier that "
                             f"outputs (N, K) logits with K >= 2 classes (the softmax over the classes is applied "
                             f"by the metric)")
        if not np.isfinite(logits).all():
            raise ValueError("the model returned non-finite logits (NaN or inf) for X")
        return logits

    def targets(self, target, logits) -> np.ndarray:
        return resolve_targets(target, logits, unbatched=False)

    def canonical(self, a: np.ndarray) -> np.ndarray:
        """A batch in the caller's layout → channels-last."""
        return to_canonical(a, self.channels_first)

    def caller(self, a: np.ndarray) -> np.ndarray:
        """A channels-last batch → the caller's layout."""
        return np.ascontiguousarray(from_canonical(a, self.channels_first))

    def explain(self, x, method, targets, explain_kwargs) -> np.ndarray:
        from signxai.api import calculate_relevancemaps

        return calculate_relevancemaps(self.model, x, method, target=targets, **dict(explain_kwargs or {}))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def as_maps(R, shape, what="R") -> np.ndarray:
    """Relevance maps (NumPy array or tensor) as float64, checked against the inputs' shape."""
    if hasattr(R, "detach"):
        R = R.detach().cpu()
        R = (R.double() if R.is_floating_point() else R).numpy()
    elif hasattr(R, "numpy") and not isinstance(R, np.ndarray):
        R = R.numpy()
    try:
        maps = np.array(R, dtype=np.float64, copy=True)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a numeric array of relevance maps (or a method name), got "
                         f"{type(R).__name__}") from None
    if maps.shape != tuple(shape):
        raise ValueError(f"{what} has shape {maps.shape}, but X has shape {tuple(shape)}: give one relevance map "
                         f"per sample of X, in X's shape and layout (as signxai.calculate_relevancemaps returns "
                         f"them; a map with its channels summed must be broadcast back to X's shape)")
    if not np.isfinite(maps).all():
        raise ValueError(f"{what} contains {int((~np.isfinite(maps)).sum())} non-finite value(s) (NaN or inf)")
    return maps


def maps_for(handle: ModelHandle, x, R, targets, explain_kwargs, what="R") -> np.ndarray:
    """``R`` given as maps, or as a method name whose maps are computed here (same targets)."""
    if isinstance(R, str):
        R = handle.explain(x, R, targets, explain_kwargs)
    elif explain_kwargs:
        raise ValueError("explain_kwargs are parameters of the explanation method; they apply only when R is a "
                         "method name, not precomputed maps")
    return as_maps(R, x.shape, what)


def check_int(value, name, minimum) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2 ** 32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)
