"""A multi-lead (12-lead) ECG plot with the relevance drawn on the signal (docs/ecg.md#plot).

:func:`plot_ecg` draws each lead as a line whose segments are coloured by the relevance (a matplotlib
``LineCollection``), or as the plain trace with relevance-coloured, relevance-sized markers, in a 12×1 layout (one row
per lead, the whole record) or the clinical 4×3 layout (three rows, four columns; each column shows 2.5 s of its
leads: I/II/III, aVR/aVL/aVF, V1–V3, V4–V6), with an optional rhythm strip. It builds a ``matplotlib.figure.Figure``
without pyplot: no backend is selected, no global state changes, and it works on headless machines (Agg).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from signxai.loading import InputError
from signxai.signals.aggregate import as_time_by_leads_map, normalize_relevance
from signxai.signals.io import STANDARD_LEADS, Record, as_time_by_leads, check_leads

LAYOUT_4X3 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
"""Rows of the clinical 4×3 layout; column ``c`` shows the time window ``[c, c + 1) × 2.5 s``."""
GREY = "#b4b4b4"
"""The colour of zero relevance (and of the trace under the markers)."""


def relevance_colormap(signed: bool):
    """The default colours: signed relevance blue (negative) – grey (0) – red (positive); non-negative relevance
    grey (0) – red (largest). A trace without relevance stays grey (visible on white, distinct from every relevant
    colour). The colormap is built, not registered. Pass ``cmap=`` for others (e.g. signxai2's blue–black–red)."""
    from matplotlib.colors import LinearSegmentedColormap

    if signed:
        return LinearSegmentedColormap.from_list("signxai_blue_grey_red", ["#1f4bff", GREY, "#ff1f1f"])
    return LinearSegmentedColormap.from_list("signxai_grey_red", [GREY, "#ff1f1f"])


def segment_values(relevance_1d: np.ndarray) -> np.ndarray:
    """The value of each line segment: segment ``i`` joins samples ``i`` and ``i + 1`` and carries the mean of
    their (normalised) relevance. docs/ecg.md#plot"""
    r = np.asarray(relevance_1d, dtype=np.float64)
    return (r[:-1] + r[1:]) / 2


def plot_ecg(signal, relevance=None, fs: float | None = None, leads=None, *, layout: str = "12x1",
             relevance_layout: str = "auto", signal_layout: str = "auto", normalize: str | None = "global",
             signed: bool | None = None, cmap=None, style: str = "line", colorbar: bool = True,
             column_seconds: float = 2.5, rhythm_lead: str | None = None, title: str | None = None,
             save=None, figsize=None, linewidth: float = 1.8, marker_size: float = 30.0, dpi: int = 100):
    """Plot a multi-lead record with its relevance map drawn on the signal; returns the ``Figure``.

    Args:
        signal: a :class:`~signxai.signals.io.Record`, or an array ``(T, leads)`` / ``(leads, T)``
            (``signal_layout``: ``"time_first"``, ``"leads_first"`` or ``"auto"`` = more columns than rows means
            ``(leads, T)``).
        relevance: the map in the model's layout: ``(T, leads)`` (Keras, ``relevance_layout="channels_last"``) or
            ``(leads, T)`` (PyTorch, ``"channels_first"``), batch axis of size 1 allowed; ``"auto"`` matches it to
            the signal's shape (docs/ecg.md#relevance-layout). None: the plain record.
        fs: sampling rate in Hz (from the record if it is one).
        leads: lead names (default: the record's, or the standard 12-lead names for 12 leads).
        layout: ``"12x1"`` (one row per lead, any number of leads) or ``"4x3"`` (the clinical layout, the 12
            standard leads found by name).
        normalize: ``"global"`` (one scale for all leads), ``"lead"`` (each lead by its own max |R|) or None (raw
            values, colour limits ±max|R|) (docs/ecg.md#normalisation).
        signed: whether the colours are symmetric around 0 (default: the map has negative values).
        cmap: a matplotlib colormap or name (default :func:`relevance_colormap`).
        style: ``"line"`` (segments coloured by relevance) or ``"markers"`` (grey trace with coloured markers whose
            area grows with |R|, as signxai2's bubbles).
        column_seconds: the time span of a 4×3 column (2.5 s; shorter records use a quarter of their length).
        rhythm_lead: with ``"4x3"``, a lead drawn over the whole record below the grid (e.g. ``"II"``).
        save: a path to write the figure to (format from its suffix).
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    if isinstance(signal, Record):
        fs = signal.fs if fs is None else fs
        leads = signal.leads if leads is None else leads
        signal = signal.signal
    x = as_time_by_leads(signal, signal_layout)
    if fs is None or not float(fs) > 0:
        raise InputError(f"plot_ecg needs the sampling rate fs (Hz) of an array signal; got {fs}")
    fs = float(fs)
    leads = check_leads(leads, x.shape[1])
    if layout not in ("12x1", "4x3"):
        raise InputError(f"layout must be '12x1' or '4x3', not {layout!r}")
    if style not in ("line", "markers"):
        raise InputError(f"style must be 'line' or 'markers', not {style!r}")
    if rhythm_lead is not None and layout != "4x3":
        raise InputError("rhythm_lead belongs to the 4x3 layout (the 12x1 layout shows every lead in full)")
    if not column_seconds > 0:
        raise InputError(f"column_seconds must be positive, not {column_seconds}")
    shown = None
    if relevance is not None:
        r = as_time_by_leads_map(relevance, relevance_layout, x.shape)
        if signed is None:
            signed = bool((r < 0).any())
        shown = normalize_relevance(r, normalize, signed)
        limit = 1.0 if normalize is not None else float(np.abs(shown).max()) or 1.0
        norm = Normalize(-limit if signed else 0.0, limit)
        colours = cmap if cmap is not None else relevance_colormap(bool(signed))
        if isinstance(colours, str):
            from matplotlib import colormaps
            colours = colormaps[colours]
    time = np.arange(x.shape[0]) / fs

    if layout == "12x1":
        rows = [(i, slice(None)) for i in range(x.shape[1])]
        fig = Figure(figsize=figsize or (12, 0.9 * len(rows) + 1.2), dpi=dpi, layout="constrained")
        axes = fig.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
        panels = [(ax, i, window) for ax, (i, window) in zip(axes, rows)]
        bottom_axes = [axes[-1]]
    else:
        index = _standard_index(leads)
        span = min(column_seconds, x.shape[0] / fs / 4)
        step = int(round(span * fs))
        extra = 1 if rhythm_lead is not None else 0
        fig = Figure(figsize=figsize or (15, 2.0 * (3 + extra) + 0.8), dpi=dpi, layout="constrained")
        grid = fig.add_gridspec(3 + extra, 4)
        panels, bottom_axes, first = [], [], None
        for row, names in enumerate(LAYOUT_4X3):
            for column, name in enumerate(names):
                ax = fig.add_subplot(grid[row, column], sharey=first)
                first = first or ax
                window = slice(column * step, min((column + 1) * step + 1, x.shape[0]))
                panels.append((ax, index[name], window))
                if row == 2:
                    bottom_axes.append(ax)
        if rhythm_lead is not None:
            if rhythm_lead not in leads:
                raise InputError(f"rhythm_lead {rhythm_lead!r} is not one of the leads {list(leads)}")
            ax = fig.add_subplot(grid[3, :])
            panels.append((ax, leads.index(rhythm_lead), slice(None)))
            bottom_axes = [ax]
    for ax, lead, window in panels:
        t, v = time[window], x[window, lead]
        if shown is None:
            ax.plot(t, v, color="black", linewidth=linewidth)
        elif style == "line":
            _draw_line(ax, t, v, shown[window, lead], colours, norm, linewidth)
        else:
            ax.plot(t, v, color=GREY, linewidth=linewidth * 0.7)
            values = shown[window, lead]
            scale = np.abs(values) / (norm.vmax or 1.0)
            ax.scatter(t, v, c=values, cmap=colours, norm=norm, s=marker_size * scale, linewidths=0)
        ax.set_xlim(t[0], t[-1])
        low, high = (x.min(), x.max()) if layout == "4x3" and window != slice(None) else (v.min(), v.max())
        pad = 0.1 * ((high - low) or 1.0)
        ax.set_ylim(low - pad, high + pad)
        if layout == "12x1":
            ax.set_ylabel(leads[lead], rotation=0, ha="right", va="center")
        else:
            ax.text(0.01, 0.95, leads[lead], transform=ax.transAxes, ha="left", va="top", fontweight="bold")
        ax.grid(True, color="#f2b8b8", linewidth=0.5)
        ax.tick_params(labelsize=7)
    for ax in bottom_axes:
        ax.set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    if shown is not None and colorbar:
        mappable = ScalarMappable(norm=norm, cmap=colours)
        label = {"global": "relevance (normalised globally)", "lead": "relevance (normalised per lead)",
                 None: "relevance"}[normalize]
        fig.colorbar(mappable, ax=[p[0] for p in panels], label=label, shrink=0.6, pad=0.01)
    if save is not None:
        fig.savefig(Path(save), dpi=dpi)
    return fig


def _draw_line(ax, t, v, values, cmap, norm, linewidth):
    from matplotlib.collections import LineCollection

    points = np.column_stack([t, v])
    segments = list(np.stack([points[:-1], points[1:]], axis=1))
    collection = LineCollection(segments, cmap=cmap, norm=norm, linewidths=linewidth)
    collection.set_array(segment_values(values))
    ax.add_collection(collection)


def _standard_index(leads) -> dict[str, int]:
    """Lead name → column for the 4×3 layout (standard names, case-insensitive for the limb leads' 'aV')."""
    lookup = {name.lower(): i for i, name in enumerate(leads)}
    missing = [name for name in STANDARD_LEADS if name.lower() not in lookup]
    if missing:
        raise InputError(f"the 4x3 layout needs the 12 standard leads {list(STANDARD_LEADS)}; missing {missing} "
                         f"among {list(leads)} (name the leads, or use layout='12x1')")
    return {name: lookup[name.lower()] for name in STANDARD_LEADS}
