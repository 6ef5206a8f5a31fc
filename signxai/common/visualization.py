"""Heatmaps and figures for relevance maps (NumPy and matplotlib only; no pyplot state is touched).

Relevance maps are canonical (channels-last): ``(H, W, C)`` or ``(H, W)`` for images, ``(T, C)`` for time series.
"""
from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure


def normalize_relevance_map(R, symmetric: bool = True) -> np.ndarray:
    """Scale ``R`` by its peak magnitude into [-1, 1] (``symmetric=False``: min-max into [0, 1]); zero maps stay
    zero."""
    R = np.asarray(R, dtype=np.float64)
    if symmetric:
        peak = np.max(np.abs(R), initial=0.0)
        return R / peak if peak > 0 else np.zeros_like(R)
    span = np.ptp(R) if R.size else 0.0
    return (R - R.min()) / span if span > 0 else np.zeros_like(R)


def relevance_to_heatmap(R, cmap: str = "seismic", channel_axis: int | None = -1) -> np.ndarray:
    """An RGB image ``(H, W, 3)`` in [0, 1] of a relevance map.

    A 3-D map is summed over ``channel_axis`` first; 2-D maps are used as they are.
    ``cmap="red_white"`` shows positive relevance only: white for values ≤ 0 up to pure red at the largest positive
    value. Any matplotlib colormap name (default ``"seismic"``) is applied with 0 at its centre and ±max|R| at its ends.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.ndim == 3 and channel_axis is not None:
        R = R.sum(axis=channel_axis)
    if R.ndim != 2:
        raise ValueError(f"expected a 2-D map or a 3-D map with a channel axis, got shape {R.shape}")
    if cmap == "red_white":
        positive = normalize_relevance_map(np.clip(R, 0, None))
        return np.stack([np.ones_like(positive), 1 - positive, 1 - positive], axis=-1)
    return colormaps[cmap]((normalize_relevance_map(R) + 1) / 2)[..., :3]


def overlay_heatmap(image, heatmap, alpha: float = 0.5) -> np.ndarray:
    """Blend an RGB heatmap over an image (grayscale or RGB, values in [0, 1] or [0, 255]); float RGB in [0, 1]."""
    image = _as_unit_rgb(image)
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if image.shape != heatmap.shape:
        raise ValueError(f"image {image.shape} and heatmap {heatmap.shape} differ in shape")
    return np.clip((1 - alpha) * image + alpha * heatmap, 0, 1)


def _as_unit_rgb(image) -> np.ndarray:
    """An image as float RGB ``(H, W, 3)`` in [0, 1]; values above 1 are taken as [0, 255]."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    if image.max(initial=0.0) > 1:
        image = image / 255.0
    return np.clip(image, 0, 1)


def visualize_comparison(panels, *args, **kwargs) -> Figure:
    """One titled panel per map, side by side; saved as PNG when ``path`` is given. Two call forms:

    * ``visualize_comparison(panels, path=None, cmap="seismic", panel_size=3.0)``: one panel per ``(title, array)``.
      Images are shown as they are and relevance maps as heatmaps (:func:`relevance_to_heatmap`). An array counts as
      an image if it has an integer dtype or is non-negative ``(H, W, 3)``; ``(title, array, "image" |
      "relevance")`` decides explicitly.
    * ``visualize_comparison(image, maps, titles=None, path=None, cmap="seismic", panel_size=3.0)`` (signxai 1.x):
      the input image, then one heatmap per relevance map, titled by ``titles`` (default ``"Method 1"``, ...). The
      image and the maps may be NumPy arrays or tensors of either framework, channels-last or channels-first, with or
      without a batch axis of one; an image with negative values is scaled min-max into [0, 1].

    The form is told by the first argument: a list of ``(title, array)`` tuples is the first form.
    """
    if _is_panel_list(panels):
        return _panels_figure(panels, *args, **kwargs)
    return _image_and_maps_figure(panels, *args, **kwargs)


def _is_panel_list(panels) -> bool:
    return isinstance(panels, (list, tuple)) and len(panels) > 0 and all(
        isinstance(p, (list, tuple)) and len(p) in (2, 3) and isinstance(p[0], str) for p in panels)


def _panels_figure(panels, path=None, cmap: str = "seismic", panel_size: float = 3.0) -> Figure:
    fig = Figure(figsize=(panel_size * len(panels), panel_size))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, array, *kind) in zip(axes, panels):
        array = np.asarray(array)
        kind = kind[0] if kind else ("image" if _looks_like_image(array) else "relevance")
        ax.imshow(_as_unit_rgb(array) if kind == "image" else relevance_to_heatmap(array, cmap))
        ax.set_title(title)
        ax.axis("off")
    if path is not None:
        fig.savefig(path, format="png")
    return fig


def _image_and_maps_figure(image, maps, titles=None, path=None, cmap: str = "seismic",
                           panel_size: float = 3.0) -> Figure:
    if isinstance(maps, (str, bytes)) or not isinstance(maps, (list, tuple)):
        raise TypeError(f"visualize_comparison(image, maps, titles): maps must be a list of relevance maps, got "
                        f"{type(maps).__name__} (or give a list of (title, array) panels as the first argument)")
    titles = [f"Method {i}" for i in range(1, len(maps) + 1)] if titles is None else list(titles)
    if len(titles) != len(maps):
        raise ValueError(f"visualize_comparison: {len(maps)} maps but {len(titles)} titles")
    picture = _sample_channels_last(image)
    if picture.min(initial=0.0) < 0:
        span = np.ptp(picture)
        picture = (picture - picture.min()) / span if span else np.zeros_like(picture)
    panels = [("Input", picture, "image")]
    panels += [(str(title), _sample_channels_last(m), "relevance") for title, m in zip(titles, maps)]
    return _panels_figure(panels, path=path, cmap=cmap, panel_size=panel_size)


def _sample_channels_last(array) -> np.ndarray:
    """One image-like sample ``(H, W)`` or ``(H, W, C)`` from an array or tensor: a leading batch axis of one is
    dropped and a channels-first ``(C, H, W)`` with C in (1, 3) is moved to channels-last."""
    if hasattr(array, "detach"):  # torch
        array = array.detach().cpu().numpy()
    elif hasattr(array, "numpy") and not isinstance(array, np.ndarray):  # tf
        array = array.numpy()
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)
    return array


def _looks_like_image(array: np.ndarray) -> bool:
    if np.issubdtype(array.dtype, np.integer):
        return True
    return array.ndim == 3 and array.shape[-1] == 3 and array.min(initial=0.0) >= 0


def plot_timeseries_relevance(signal, relevance, path=None, channel_names=None) -> Figure:
    """One subplot per channel of a ``(T, C)`` signal, its line coloured by relevance (seismic, shared scale)."""
    signal = np.asarray(signal, dtype=np.float64)
    relevance = np.asarray(relevance, dtype=np.float64)
    if signal.ndim == 1:
        signal, relevance = signal[:, None], relevance.reshape(-1, 1)
    if signal.shape != relevance.shape:
        raise ValueError(f"signal {signal.shape} and relevance {relevance.shape} differ in shape")
    n_steps, n_channels = signal.shape
    channel_names = channel_names or [f"channel {c}" for c in range(n_channels)]
    relevance = normalize_relevance_map(relevance)
    t = np.arange(n_steps)

    fig = Figure(figsize=(8, 1.6 * n_channels))
    axes = fig.subplots(n_channels, 1, sharex=True, squeeze=False)[:, 0]
    for c, ax in enumerate(axes):
        points = np.column_stack([t, signal[:, c]])
        lines = LineCollection(np.stack([points[:-1], points[1:]], axis=1), cmap="seismic",
                               norm=Normalize(-1, 1), linewidths=3)
        lines.set_array((relevance[:-1, c] + relevance[1:, c]) / 2)
        ax.add_collection(lines)
        ax.plot(t, signal[:, c], color="0.3", linewidth=0.7)  # the signal stays visible where relevance is ~0 (white)
        ax.set_ylabel(channel_names[c])
    axes[-1].set_xlabel("time step")
    if path is not None:
        fig.savefig(path, format="png")
    return fig
