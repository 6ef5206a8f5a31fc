"""Input-bias correlation: how strongly a relevance map follows the magnitude of the input (SIGN paper)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from signxai.metrics._common import ModelHandle, as_maps, maps_for
from signxai.metrics.similarity import pearson, spearman


@dataclass(frozen=True)
class InputBiasResult:
    """Per-sample correlations between ``|x|`` and ``|R|`` (element by element); NaN where either is constant."""

    pearson: np.ndarray  # (N,)
    spearman: np.ndarray  # (N,)

    @property
    def mean_pearson(self) -> float:
        """Mean over the samples that have a correlation (NaN if none has)."""
        return _nanmean(self.pearson)

    @property
    def mean_spearman(self) -> float:
        return _nanmean(self.spearman)


def _nanmean(values) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")


def input_bias_correlation(model, X, R, *, target=None, explain_kwargs=None) -> InputBiasResult:
    """Pearson and Spearman correlation between ``|x|`` and ``|R|`` per sample (Gumpfer et al. 2023).

    A map that merely copies the input's magnitude (as ``x``-multiplied methods tend to) correlates strongly; a high
    value is a sign of input bias, not of faithfulness. ``R`` is a batch of maps in ``X``'s shape and layout, or a
    method name, computed here with ``target`` and ``explain_kwargs``. ``model`` may be None when ``R`` holds
    maps: both correlations compare elements pairwise, so the layout does not matter.
    """
    if model is None:
        if isinstance(R, str):
            raise ValueError(f"R={R!r} names a method: give the model to explain, or pass precomputed maps")
        if explain_kwargs:
            raise ValueError("explain_kwargs apply only when R is a method name")
        x = as_maps(X, np.shape(X), "X")
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(f"X must be a non-empty batch (N, ...) of samples, got shape {x.shape}")
        maps = as_maps(R, x.shape)
    else:
        handle = ModelHandle(model)
        x = handle.inputs(X)
        targets = None
        if isinstance(R, str):
            targets = handle.targets(target, handle.classifier_logits(x))
        maps = maps_for(handle, x, R, targets, explain_kwargs)
    return InputBiasResult(pearson=pearson(np.abs(x), np.abs(maps)), spearman=spearman(np.abs(x), np.abs(maps)))
