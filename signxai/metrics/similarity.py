"""Per-sample similarity measures on batches, in float64: Pearson, Spearman and SSIM.

Each takes two batches of the same shape ``(N, ...)`` and returns one value per sample (shape ``(N,)``). The
correlations compare the flattened samples element by element; a sample in which either side is constant has no
correlation and gives NaN.
"""
from __future__ import annotations

import numpy as np


def _pair(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"the two batches have shapes {a.shape} and {b.shape}; they must be equal")
    if a.ndim < 2:
        raise ValueError(f"give batches of shape (N, ...) with at least one value per sample, got shape {a.shape}")
    return a.reshape(len(a), -1), b.reshape(len(b), -1)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norm = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / norm
    r[norm == 0] = np.nan
    return np.clip(r, -1.0, 1.0)


def rankdata(v: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-D array; ties get the average of their ranks (as ``scipy.stats.rankdata``)."""
    v = np.asarray(v, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    ordered = v[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]
    ends = np.r_[starts[1:], len(v)]
    ranks = np.empty(len(v))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def pearson(a, b) -> np.ndarray:
    """Pearson's r per sample."""
    return _pearson_rows(*_pair(a, b))


def spearman(a, b) -> np.ndarray:
    """Spearman's ρ per sample: Pearson's r of the average-tie ranks."""
    a, b = _pair(a, b)
    return _pearson_rows(np.stack([rankdata(row) for row in a]), np.stack([rankdata(row) for row in b]))


def ssim(a, b, data_range, win_size: int = 7) -> np.ndarray:
    """Mean structural similarity (Wang et al. 2004) per sample of batches ``(N, d1, d2, ...)`` (≥ 2 axes per sample).

    As ``skimage.metrics.structural_similarity`` with its defaults: a uniform ``win_size``-wide window (odd; shrunk
    to the largest odd size that fits the smallest axis), K1 = 0.01, K2 = 0.03, sample covariances, the mean over all
    window positions that lie completely inside the sample. ``data_range`` is the value range of the data.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim < 3:
        raise ValueError(f"SSIM needs two batches of the same shape (N, d1, d2, ...) with at least 2 axes per "
                         f"sample; got {a.shape} and {b.shape}")
    if not np.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"data_range must be a positive number, got {data_range!r}")
    axes = tuple(range(1, a.ndim))
    win = min(int(win_size), *a.shape[1:])
    win -= 1 - win % 2
    if win < 3:
        raise ValueError(f"SSIM needs at least 3 values along every axis of a sample, got sample shape {a.shape[1:]}")

    def local_mean(v):
        return np.lib.stride_tricks.sliding_window_view(v, (win,) * len(axes), axis=axes).mean(
            axis=tuple(range(-len(axes), 0)))

    n_window = win ** len(axes)
    cov_norm = n_window / (n_window - 1.0)
    ux, uy = local_mean(a), local_mean(b)
    vx = cov_norm * (local_mean(a * a) - ux * ux)
    vy = cov_norm * (local_mean(b * b) - uy * uy)
    vxy = cov_norm * (local_mean(a * b) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.reshape(len(s), -1).mean(axis=1)
