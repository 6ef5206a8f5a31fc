"""Relevance maps of multi-lead signals: layout, normalisation and aggregation per lead and per time window
(docs/ecg.md#aggregation).

A relevance map comes in its model's layout: ``(T, leads)`` for a Keras model (channels-last) or ``(leads, T)`` for a
PyTorch model (channels-first), with or without a batch axis of size 1. :func:`as_time_by_leads_map` brings it to
``(T, leads)`` (docs/ecg.md#relevance-layout); every other function here takes either layout through its ``layout``
argument and returns NumPy arrays. Nothing is modified in place.
"""
from __future__ import annotations

import numpy as np

from signxai.loading import InputError

LAYOUTS = ("auto", "channels_last", "channels_first")


def as_time_by_leads_map(relevance, layout: str = "auto", signal_shape=None) -> np.ndarray:
    """A relevance map as a ``(T, leads)`` float64 array (a copy). docs/ecg.md#relevance-layout

    ``layout``: ``"channels_last"`` (``(T, leads)``, Keras), ``"channels_first"`` (``(leads, T)``, PyTorch) or
    ``"auto"``. With ``signal_shape`` = the record's ``(T, leads)``, auto takes the map as it is when its shape is
    ``(T, leads)`` and transposes it when it is ``(leads, T)``; a square shape (T = leads) is ambiguous and needs an
    explicit layout. Without ``signal_shape``, auto takes a map with more columns than rows as ``(leads, T)``. A
    leading batch axis of size 1 is dropped; a 1-D map is one lead.
    """
    r = np.asarray(relevance)
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    if r.ndim == 3 and r.shape[0] == 1:
        r = r[0]
    if r.ndim == 1:
        r = r[:, None]
    if r.ndim != 2:
        raise InputError(f"a relevance map of a multi-lead signal is (T, leads) or (leads, T), with an optional "
                         f"batch axis of size 1; got shape {np.shape(relevance)} (explain one record at a time)")
    if not np.issubdtype(r.dtype, np.number) or np.issubdtype(r.dtype, np.complexfloating):
        raise InputError(f"a relevance map must hold real numbers, not {r.dtype}")
    if layout == "auto":
        if signal_shape is not None:
            t, n = signal_shape
            if r.shape == (t, n) and t != n:
                layout = "channels_last"
            elif r.shape == (n, t) and t != n:
                layout = "channels_first"
            elif r.shape == (t, n):
                raise InputError(f"the relevance map's shape {r.shape} reads both ways (as many time steps as "
                                 f"leads); pass layout='channels_last' or 'channels_first'")
            else:
                raise InputError(f"the relevance map's shape {r.shape} fits neither (T, leads) = {(t, n)} nor "
                                 f"(leads, T) = {(n, t)} of the signal")
        else:
            layout = "channels_first" if r.shape[1] > r.shape[0] else "channels_last"
    out = r.T if layout == "channels_first" else r
    if signal_shape is not None and out.shape != tuple(signal_shape):
        raise InputError(f"the relevance map, read as {layout} ({out.shape} as (T, leads)), does not match the "
                         f"signal's {tuple(signal_shape)}")
    if not np.isfinite(out).all():
        raise InputError("the relevance map holds NaN or infinite values")
    return np.array(out, dtype=np.float64)


def normalize_relevance(relevance, mode: str | None = "global", signed: bool | None = None) -> np.ndarray:
    """Scale a ``(T, leads)`` map for display. docs/ecg.md#normalisation

    ``mode="global"`` divides by the largest ``|R|`` of the whole map (leads stay comparable); ``mode="lead"``
    divides each lead by its own largest ``|R|`` (every lead uses the full colour range); ``mode=None`` leaves the
    values as they are. Division by ``max|R|`` keeps 0 at 0, so signed relevance lies in [-1, 1] symmetric around 0
    and non-negative relevance in [0, 1]; an all-zero map (or lead) stays 0. ``signed`` is accepted for symmetry with
    the plot and only checked: ``signed=False`` with negative values is an error.
    """
    r = np.array(relevance, dtype=np.float64)
    if r.ndim != 2:
        raise InputError(f"normalize_relevance takes a (T, leads) map, got shape {r.shape}")
    if signed is False and (r < 0).any():
        raise InputError("signed=False but the relevance map has negative values")
    if mode is None:
        return r
    if mode == "global":
        scale = np.abs(r).max()
        return r / scale if scale > 0 else r
    if mode == "lead":
        scale = np.abs(r).max(axis=0, keepdims=True)
        return np.divide(r, scale, out=np.zeros_like(r), where=scale > 0)
    raise InputError(f"normalisation must be 'global', 'lead' or None, not {mode!r}")


def per_lead(relevance, leads=None, layout: str = "auto") -> dict:
    """Relevance per lead: ``{"lead": names, "sum": Σ_t R, "mean_abs": mean_t |R|, "positive": Σ_t max(R, 0),
    "negative": Σ_t min(R, 0), "share_abs": Σ_t |R| / Σ |R|}``, each an array with one entry per lead
    (``sum = positive + negative``; ``share_abs`` sums to 1, all 0 for an all-zero map). docs/ecg.md#aggregation"""
    from signxai.signals.io import check_leads

    r = as_time_by_leads_map(relevance, layout)
    total = np.abs(r).sum()
    return {"lead": np.array(check_leads(leads, r.shape[1])), "sum": r.sum(axis=0),
            "mean_abs": np.abs(r).mean(axis=0), "positive": np.clip(r, 0, None).sum(axis=0),
            "negative": np.clip(r, None, 0).sum(axis=0),
            "share_abs": np.abs(r).sum(axis=0) / total if total > 0 else np.zeros(r.shape[1])}


def per_window(relevance, window: float, fs: float | None = None, step: float | None = None,
               per_lead: bool = False, layout: str = "auto") -> dict:
    """Relevance per time window. docs/ecg.md#aggregation

    ``window`` (and ``step``, default ``window``: no overlap) count samples, or seconds when ``fs`` (Hz) is given.
    Windows start at 0, ``step``, 2·``step``...; the last one may be shorter (it ends with the record) and its
    statistics are over the samples it has. Returns ``{"start": first sample, "stop": one past the last sample,
    "start_s"/"stop_s" (with ``fs``), "sum", "mean_abs", "positive", "negative"}``; the statistics have shape
    ``(windows,)`` summed over all leads, or ``(windows, leads)`` with ``per_lead=True``.
    """
    r = as_time_by_leads_map(relevance, layout)
    t = r.shape[0]
    if fs is not None:
        fs = float(fs)
        if not fs > 0:
            raise InputError(f"the sampling rate must be positive, not {fs}")
        size, stride = window * fs, (step if step is not None else window) * fs
    else:
        size, stride = window, step if step is not None else window
    size, stride = int(round(size)), int(round(stride))
    if size < 1 or stride < 1:
        unit = "s" if fs is not None else "samples"
        raise InputError(f"window and step must cover at least one sample; got window={window} {unit}, "
                         f"step={step} {unit}")
    starts = np.arange(0, t, stride)
    stops = np.minimum(starts + size, t)
    stats: dict[str, list] = {"sum": [], "mean_abs": [], "positive": [], "negative": []}
    for a, b in zip(starts, stops):
        part = r[a:b]
        values = {"sum": part.sum(axis=0), "mean_abs": np.abs(part).mean(axis=0),
                  "positive": np.clip(part, 0, None).sum(axis=0), "negative": np.clip(part, None, 0).sum(axis=0)}
        for key, value in values.items():
            if not per_lead:
                value = value.mean() if key == "mean_abs" else value.sum()
            stats[key].append(value)
    out = {"start": starts, "stop": stops}
    if fs is not None:
        out["start_s"], out["stop_s"] = starts / fs, stops / fs
    out.update({key: np.array(value) for key, value in stats.items()})
    return out
