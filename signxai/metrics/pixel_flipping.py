"""Pixel flipping as in the SIGN paper: remove the most relevant features first, watch the softmax of the class fall."""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from signxai.metrics._common import ModelHandle, check_int, check_seed, maps_for, softmax

FEATURES = ("position", "element")


@dataclass(frozen=True)
class PixelFlippingResult:
    """Perturbation curves and their areas over the curve (AOC; higher = the map ranks decisive features first).

    ``fractions[k]`` is the fraction of features removed at step k (``fractions[0] = 0``: the unperturbed input;
    ``fractions[-1] = 1``: every feature replaced). ``curves[n, k]`` is the softmax probability of sample n's target
    class after step k; ``aoc[n] = 1 − ∫ curves[n] d(fractions)`` (trapezoidal rule). The ``random_*`` fields are the
    same for a uniformly random removal order (the baseline), or None when it was not asked for.
    """

    fractions: np.ndarray  # (S+1,)
    curves: np.ndarray  # (N, S+1)
    aoc: np.ndarray  # (N,)
    targets: np.ndarray  # (N,) explained classes
    random_curves: np.ndarray | None = None  # (N, S+1)
    random_aoc: np.ndarray | None = None  # (N,)

    @property
    def score(self) -> float:
        """Mean AOC over the samples."""
        return float(self.aoc.mean())

    @property
    def random_score(self) -> float | None:
        return None if self.random_aoc is None else float(self.random_aoc.mean())

    @property
    def steps(self) -> int:
        return len(self.fractions) - 1


def area_over_curve(curves, fractions) -> np.ndarray:
    """``1 − ∫ curve d(fraction)`` per row, by the trapezoidal rule."""
    curves, fractions = np.asarray(curves, dtype=np.float64), np.asarray(fractions, dtype=np.float64)
    return 1.0 - (0.5 * (curves[:, 1:] + curves[:, :-1]) * np.diff(fractions)).sum(axis=1)


def removal_counts(n_features: int, steps: int) -> np.ndarray:
    """How many features are removed after each of the ``min(steps, n_features)`` steps, from 0 to all of them:
    ``round(k · F / S)`` for k = 0 … S (halves rounded up), so every step removes the same number of features ±1."""
    s = min(steps, n_features)
    k = np.arange(s + 1, dtype=np.int64)
    return (2 * k * n_features + s) // (2 * s)


def pixel_flipping(model, X, R, *, target=None, steps: int = 250, features: str = "position",
                   replacement="uniform", value_range=None, seed: int = 0, random_baseline: bool = True,
                   batch_size: int = 256, explain_kwargs=None) -> PixelFlippingResult:
    """Pixel flipping (MoRF) with uniform-noise replacement and the area over the softmax curve (SIGN paper).

    ``model``: a Keras 3 or PyTorch classifier that outputs logits (the softmax is applied here). ``X``: a batch in
    the model's layout. ``R``: the batch of relevance maps, in ``X``'s shape and layout, or a method name (computed
    here for ``target`` with ``explain_kwargs``). ``target``: as in ``calculate_relevancemaps`` (default: each
    sample's predicted class); the curve follows that class's probability.

    Every sample is perturbed in ``min(steps, F)`` equal steps (see :func:`removal_counts`) from its F features in
    the order of decreasing relevance; ties keep the lower index first. A feature is, with
    ``features="position"``, one spatial position with all its channels (its relevance is the sum over its
    channels; the input's layout is made channels-last first, so Keras and PyTorch twins agree), or with
    ``"element"`` each single value. A sample of rank 1 (tabular) has one feature per value.

    Removed features get ``replacement``: ``"uniform"`` noise, drawn per channel from U(low_c, high_c), where
    ``value_range=None`` takes low/high per sample and channel from the sample itself (as the SIGN paper does) and
    ``value_range=(low, high)`` gives scalars or one value per channel; or a constant number. The noise comes from
    ``numpy.random.RandomState(seed)`` per sample, a fixed noise image revealed feature by feature, and, for the
    random-order baseline, a permutation from the same stream; nothing global is touched, and the result of a
    sample does not depend on the rest of the batch (with ``value_range`` given or ``None``).
    """
    steps = check_int(steps, "steps", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    seed = check_seed(seed)
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    uniform = isinstance(replacement, str) and replacement == "uniform"
    if not uniform and not (isinstance(replacement, numbers.Real) and not isinstance(replacement, (bool, np.bool_))
                            and np.isfinite(replacement)):
        raise ValueError(f"replacement must be 'uniform' or a finite number, got {replacement!r}")
    handle = ModelHandle(model)
    x = handle.inputs(X)
    logits = handle.classifier_logits(x, batch_size)
    targets = handle.targets(target, logits)
    maps = maps_for(handle, x, R, targets, explain_kwargs)

    xc, rc = handle.canonical(x), handle.canonical(maps)
    n, sample = len(xc), xc.shape[1:]
    by_position = features == "position" and len(sample) >= 2
    n_features = int(np.prod(sample[:-1])) if by_position else int(np.prod(sample))
    per_feature = sample[-1] if by_position else 1
    relevance = rc.reshape(n, n_features, per_feature).sum(axis=2)
    low, high = _value_range(value_range, xc)

    counts = removal_counts(n_features, steps)
    fractions = counts / n_features
    noise, random_orders = [], []
    for i in range(n):
        stream = np.random.RandomState(seed)
        u = stream.random_sample(sample)
        noise.append(low[i] + (high[i] - low[i]) * u if uniform else np.full(sample, float(replacement)))
        random_orders.append(stream.permutation(n_features))
    noise = np.stack(noise).astype(np.float32).reshape(n, n_features, per_feature)
    flat = xc.reshape(n, n_features, per_feature)

    def ranks_of(order):
        ranks = np.empty(n_features, dtype=np.int64)
        ranks[order] = np.arange(n_features)
        return ranks

    orders = [np.argsort(-relevance[i], kind="stable") for i in range(n)]
    curves = _curves(handle, flat, noise, [ranks_of(o) for o in orders], counts, targets, sample, batch_size)
    result = dict(fractions=fractions, curves=curves, aoc=area_over_curve(curves, fractions), targets=targets)
    if random_baseline:
        random_curves = _curves(handle, flat, noise, [ranks_of(o) for o in random_orders], counts, targets, sample,
                                batch_size)
        result.update(random_curves=random_curves, random_aoc=area_over_curve(random_curves, fractions))
    return PixelFlippingResult(**result)


def _value_range(value_range, xc):
    """Per-sample, per-channel (low, high) arrays that broadcast against one canonical sample."""
    n, sample = len(xc), xc.shape[1:]
    channels = sample[-1] if len(sample) >= 2 else 1
    if value_range is None:
        per_channel = xc.reshape(n, -1, channels).astype(np.float64)
        low, high = per_channel.min(axis=1), per_channel.max(axis=1)
    else:
        try:
            low_given, high_given = value_range
            low = np.broadcast_to(np.asarray(low_given, dtype=np.float64), (channels,))
            high = np.broadcast_to(np.asarray(high_given, dtype=np.float64), (channels,))
        except (TypeError, ValueError):
            raise ValueError(f"value_range must be (low, high) with scalars or one value per channel ({channels} "
                             f"channel(s)), got {value_range!r}") from None
        if not (np.isfinite(low).all() and np.isfinite(high).all()) or (low > high).any():
            raise ValueError(f"value_range must be finite with low <= high, got {value_range!r}")
        low, high = np.tile(low, (n, 1)), np.tile(high, (n, 1))
    shape = (n,) + (1,) * (len(sample) - 1) + (channels,) if len(sample) >= 2 else (n, 1)
    return low.reshape(shape), high.reshape(shape)


def _curves(handle, flat, noise, ranks, counts, targets, sample, batch_size):
    """Softmax probability of each sample's target after each step, for per-sample removal ranks."""
    n, steps = len(flat), len(counts)
    per_chunk = max(1, batch_size // steps)
    curves = np.empty((n, steps))
    for start in range(0, n, per_chunk):
        block = range(start, min(n, start + per_chunk))
        inputs = []
        for i in block:
            removed = ranks[i][None, :] < counts[:, None]  # (steps, F)
            inputs.append(np.where(removed[:, :, None], noise[i][None], flat[i][None]))
        batch = np.concatenate(inputs).reshape(-1, *sample)
        probabilities = softmax(handle.logits(handle.caller(batch), batch_size))
        probabilities = probabilities.reshape(len(block), steps, -1)
        curves[start:start + len(block)] = probabilities[np.arange(len(block)), :, targets[block.start:block.stop]]
    return curves
