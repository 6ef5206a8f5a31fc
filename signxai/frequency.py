"""Frequency and time-frequency relevance of a time-series relevance map: DFT-LRP (docs/frequency.md).

Vielhaben, Lapuschkin, Montavon, Samek, *Explainable AI for time series via virtual inspection layers*, Pattern
Recognition 150 (2024) 110309. A virtual inspection layer — the inverse DFT (or inverse short-time DFT) placed in
front of the model, ``x = IDFT(X)`` — is given the LRP z/ε rule, which carries the relevance of every time step to
the frequency components it is made of (docs/frequency.md#dft-lrp). The conversion is framework-neutral NumPy in
float64 on the maps: a Keras model and its PyTorch twin with equal maps get equal frequency maps.

* :func:`frequency_relevance` — ``(frequencies, R_freq)`` of a time-domain map;
* :func:`time_frequency_relevance` — ``(times, frequencies, R_tf)`` through the short-time DFT;
* :func:`calculate_frequency_relevancemap`, :func:`calculate_time_frequency_relevancemap` — the map of
  ``signxai.calculate_relevancemap`` converted in one call, the time axis found from the model's framework;
* :func:`plot_frequency_relevance`, :func:`plot_time_frequency_relevance` — matplotlib figures (no pyplot state).

Importing this module imports neither framework nor matplotlib.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np

from signxai.core.rules import STABILIZER

__all__ = ["frequency_relevance", "time_frequency_relevance", "calculate_frequency_relevancemap",
           "calculate_time_frequency_relevancemap", "plot_frequency_relevance", "plot_time_frequency_relevance",
           "window_values", "WINDOWS", "DEFAULT_EPSILON"]

#: The ε of the virtual layer's stabiliser ``x + ε·sign0(x)`` by default: the authors' DFT-LRP code and signxai2
#: use 1e-6 (docs/frequency.md#stabiliser).
DEFAULT_EPSILON = 1e-6
#: Window shapes by name (docs/frequency.md#windows); a custom window is a 1-D array of non-negative weights.
WINDOWS = ("hann", "rectangle", "halfsine")
_WINDOW_ALIASES = {"hann": "hann", "hanning": "hann", "rectangle": "rectangle", "rectangular": "rectangle",
                   "boxcar": "rectangle", "halfsine": "halfsine", "sine": "halfsine"}
PADDINGS = ("center", "none")
_CHUNK_BYTES = 256 * 2**20  # working memory of time_frequency_relevance beyond its result


# ------------------------------------------------------------------------------------------------- conversions
def frequency_relevance(x, relevance, *, time_axis: int | None = None, epsilon: float = DEFAULT_EPSILON,
                        real: bool = True, sampling_rate: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The relevance of every DFT frequency (docs/frequency.md#dft-lrp).

    ``x`` is the explained signal and ``relevance`` its time-domain relevance map, of the same shape: one series
    ``(T,)``, one sample ``(T, C)`` or a batch ``(N, T, C)`` channels-last (Keras, the library's canonical layout;
    the default ``time_axis=None``), or any layout with an explicit ``time_axis`` — ``time_axis=-1`` for PyTorch's
    channels-first ``(N, C, T)`` / ``(C, T)`` and for univariate batches ``(N, T)`` (docs/frequency.md#layouts). Every
    axis other than the time axis holds independent series.

    With ``s = SD(R, x + ε·sign0(x))`` and the DFTs ``X = DFT(x)``, ``S = DFT(s)`` along the time axis, the relevance of
    bin ``k`` is ``Re(X_k · conj(S_k)) / T``; ``real=True`` (default) combines each bin with its conjugate ``T − k``
    (the one-sided ``rfft`` bins ``0 … T//2``), ``real=False`` returns all ``T`` bins in ``numpy.fft.fftfreq`` order.
    ``Σ_k R_k = Σ_n R_n·x_n / (x_n + ε·sign0(x_n))``: exactly ``Σ_n R_n`` for ``epsilon=0`` where ``x`` has no zeros
    (docs/frequency.md#conservation).

    Returns ``(frequencies, R_freq)``: the bin frequencies in cycles per sample times ``sampling_rate`` (Hz for a
    rate in Hz), and a float64 array shaped like ``relevance`` with the time axis replaced by the frequency axis.
    """
    signal, rel, axis = _series_pair(x, relevance, time_axis)
    epsilon, real, sampling_rate = _check_options(epsilon, real, sampling_rate)
    n_steps = signal.shape[-1]
    s = _normalised_relevance(signal, rel, epsilon)
    if real:
        spectrum = np.fft.rfft(signal, axis=-1) * np.conj(np.fft.rfft(s, axis=-1))
        result = _conjugate_weights(n_steps) * spectrum.real / n_steps
        frequencies = np.fft.rfftfreq(n_steps, d=1.0 / sampling_rate)
    else:
        result = (np.fft.fft(signal, axis=-1) * np.conj(np.fft.fft(s, axis=-1))).real / n_steps
        frequencies = np.fft.fftfreq(n_steps, d=1.0 / sampling_rate)
    return frequencies, np.moveaxis(result, -1, axis)


def time_frequency_relevance(x, relevance, *, window: int = 128, hop: int | None = None, window_fn: Any = "hann",
                             padding: str = "center", time_axis: int | None = None,
                             epsilon: float = DEFAULT_EPSILON, real: bool = True,
                             sampling_rate: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The relevance of every short-time DFT coefficient (frame, frequency) (docs/frequency.md#short-time).

    ``x``, ``relevance`` and ``time_axis`` as in :func:`frequency_relevance`. Frames of ``window`` samples start every
    ``hop`` samples (default ``window // 2``, at least 1) and are weighted by ``window_fn``: ``"hann"`` (periodic
    Hann, default), ``"rectangle"``, ``"halfsine"`` (authors' code), or an array of ``window`` non-negative weights.
    ``padding="center"`` (default) pads the series with zeros — ``window // 2`` before it, and after it up to the end of
    the last frame — so frame ``m`` is centred on sample ``m·hop``, for ``m = 0 … ⌈(T − 1)/hop⌉``;
    ``padding="none"`` frames the series as it is, ``1 + (T − window) // hop`` frames. Every sample must get a
    positive total window weight ``W_n = Σ_m w_m(n)``: samples that no frame weighs (the last ``(T − window) % hop``
    without padding, or sample 0 under a Hann window without padding) raise a ValueError.

    The virtual layer is the inverse short-time DFT ``x_n = Σ_m IDFT(Y_m)_n / W_n`` (weighted overlap-add); its z/ε
    rule gives frame ``m``, bin ``k`` the relevance ``Re(Y_{m,k} · conj(V_{m,k})) / window`` with ``Y_m`` the DFT of
    the windowed frame and ``V_m`` the DFT of the frame of ``s / W`` (``s`` as in :func:`frequency_relevance`).
    Summed over bins, frame ``m`` holds ``Σ_n (w_m(n) / W_n)·R_n·x_n / (x_n + ε·sign0(x_n))``; summed over all, the
    same total as :func:`frequency_relevance`.

    Returns ``(times, frequencies, R_tf)``: frame centres ``(m·hop − pad + window // 2) / sampling_rate``, the bin
    frequencies of a ``window``-sample DFT (``rfftfreq`` with ``real=True``, ``fftfreq`` otherwise) times
    ``sampling_rate``, and a float64 array shaped like ``relevance`` with the time axis replaced by two axes
    ``(frames, frequencies)``.
    """
    signal, rel, axis = _series_pair(x, relevance, time_axis)
    epsilon, real, sampling_rate = _check_options(epsilon, real, sampling_rate)
    n_steps = signal.shape[-1]
    length = _positive_int(window, "window")
    hop = max(length // 2, 1) if hop is None else _positive_int(hop, "hop")
    weights = window_values(window_fn, length)
    if hop > length:
        raise ValueError(f"hop={hop} is larger than window={length}: the samples between two frames would belong to "
                         f"no frame; choose hop <= window")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if padding == "none" and length > n_steps:
        raise ValueError(f"window={length} is longer than the series (T={n_steps} samples along time_axis={axis}); "
                         f"choose window <= {n_steps} or padding='center'")
    pad = length // 2 if padding == "center" else 0
    tail = n_steps + pad
    # center: frame centres m·hop run from sample 0 to the first at or past sample T − 1; none: whole frames only
    frames = 1 + -(-(n_steps - 1) // hop) if padding == "center" else 1 + (n_steps - length) // hop
    padded_length = (frames - 1) * hop + length
    # W_n: the total window weight on each sample (docs/frequency.md#short-time); padded positions are not samples.
    coverage = np.zeros(max(padded_length, tail))
    for m in range(frames):
        coverage[m * hop:m * hop + length] += weights
    coverage = coverage[pad:tail]
    if not (coverage > 0).all():
        first = int(np.flatnonzero(coverage <= 0)[0])
        uncovered = int((coverage <= 0).sum())
        raise ValueError(f"{uncovered} sample(s) along time_axis={axis} get no window weight (first: sample {first}; "
                         f"window={length}, hop={hop}, padding={padding!r}, window_fn={_window_name(window_fn)}); "
                         f"their relevance could not be carried into any frame. Use padding='center', a hop that "
                         f"tiles the series ((T - window) divisible by hop), or a smaller hop")
    s = _normalised_relevance(signal, rel, epsilon) / coverage
    leading = signal.shape[:-1]
    signal, s = signal.reshape(-1, n_steps), s.reshape(-1, n_steps)
    starts = np.arange(frames) * hop
    index = starts[:, None] + np.arange(length)[None, :]  # (frames, window)
    n_bins = length // 2 + 1 if real else length
    result = np.empty((len(signal), frames, n_bins))
    # series by series in chunks: the framed copies and their spectra stay within _CHUNK_BYTES
    chunk = max(1, _CHUNK_BYTES // (frames * length * 64))
    for begin in range(0, len(signal), chunk):
        part = slice(begin, begin + chunk)
        padded_signal = np.zeros((len(signal[part]), max(padded_length, tail)))
        padded_signal[:, pad:tail] = signal[part]
        padded_s = np.zeros_like(padded_signal)
        padded_s[:, pad:tail] = s[part]
        signal_frames = padded_signal[:, index] * weights  # (chunk, frames, window)
        s_frames = padded_s[:, index]
        if real:
            spectrum = np.fft.rfft(signal_frames, axis=-1) * np.conj(np.fft.rfft(s_frames, axis=-1))
            result[part] = _conjugate_weights(length) * spectrum.real / length
        else:
            result[part] = (np.fft.fft(signal_frames, axis=-1) * np.conj(np.fft.fft(s_frames, axis=-1))).real / length
    result = result.reshape(*leading, frames, n_bins)
    frequencies = np.fft.rfftfreq(length, d=1.0 / sampling_rate) if real else np.fft.fftfreq(length,
                                                                                           d=1.0 / sampling_rate)
    times = (starts - pad + length // 2) / sampling_rate
    return times, frequencies, np.moveaxis(result, (-2, -1), (axis, axis + 1))


def window_values(window_fn: Any, length: int) -> np.ndarray:
    """The ``length`` weights of a window (docs/frequency.md#windows): ``"hann"`` ``0.5 − 0.5·cos(2πl/L)`` (periodic,
    as ``scipy.signal.get_window``), ``"rectangle"`` ones, ``"halfsine"`` ``sin(π(l + ½)/L)``, or an array given as
    is (finite, non-negative, not all zero, of length ``length``)."""
    length = _positive_int(length, "window")
    l = np.arange(length, dtype=np.float64)  # noqa: E741
    if isinstance(window_fn, str):
        name = _WINDOW_ALIASES.get(window_fn.lower())
        if name is None:
            raise ValueError(f"unknown window_fn {window_fn!r}; choose one of {WINDOWS} or give an array of "
                             f"{length} weights")
        if name == "hann":  # one sample: a weight of 1, as scipy.signal.get_window gives
            return 0.5 - 0.5 * np.cos(2 * np.pi * l / length) if length > 1 else np.ones(1)
        if name == "rectangle":
            return np.ones(length)
        return np.sin(np.pi * (l + 0.5) / length)
    values = np.array(_to_numpy(window_fn), dtype=np.float64)
    if values.ndim != 1 or len(values) != length:
        raise ValueError(f"window_fn must be a window name or a 1-D array of window={length} weights, got shape "
                         f"{values.shape}")
    if not np.isfinite(values).all() or (values < 0).any() or not (values > 0).any():
        raise ValueError("window_fn weights must be finite and non-negative, with at least one positive weight")
    return values


# --------------------------------------------------------------------------------------------- model helpers
def calculate_frequency_relevancemap(model, x, method, *, time_axis: int | None = None,
                                     epsilon: float = DEFAULT_EPSILON, real: bool = True, sampling_rate: float = 1.0,
                                     **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """``signxai.calculate_relevancemap(model, x, method, **kwargs)`` converted by :func:`frequency_relevance`.

    The time axis follows the model's framework unless ``time_axis`` is given (docs/frequency.md#layouts): the first
    sample axis for Keras (channels-last ``(N, T, C)``, ``(T, C)``, ``(N, T)``), the last axis for PyTorch
    (channels-first ``(N, C, T)``, ``(C, T)`` when the model begins with a ``Conv1d``; ``(N, T)``, ``(T,)``). A
    PyTorch input of three axes whose model has no leading convolution (an LSTM may take ``(N, T, C)``) needs
    ``time_axis``. ``kwargs`` (``target``, ``dtype``, ``batched``, method
    parameters) go to ``calculate_relevancemap``. Returns ``(frequencies, R_freq)``.
    """
    from signxai.api import calculate_relevancemap

    signal = _to_numpy(x)
    axis = _model_time_axis(model, signal) if time_axis is None else time_axis
    relevance = calculate_relevancemap(model, x, method, **kwargs)
    return frequency_relevance(signal, relevance, time_axis=axis, epsilon=epsilon, real=real,
                               sampling_rate=sampling_rate)


def calculate_time_frequency_relevancemap(model, x, method, *, window: int = 128, hop: int | None = None,
                                          window_fn: Any = "hann", padding: str = "center",
                                          time_axis: int | None = None, epsilon: float = DEFAULT_EPSILON,
                                          real: bool = True, sampling_rate: float = 1.0,
                                          **kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``signxai.calculate_relevancemap(model, x, method, **kwargs)`` converted by :func:`time_frequency_relevance`;
    the time axis as in :func:`calculate_frequency_relevancemap`. Returns ``(times, frequencies, R_tf)``."""
    from signxai.api import calculate_relevancemap

    signal = _to_numpy(x)
    axis = _model_time_axis(model, signal) if time_axis is None else time_axis
    relevance = calculate_relevancemap(model, x, method, **kwargs)
    return time_frequency_relevance(signal, relevance, window=window, hop=hop, window_fn=window_fn, padding=padding,
                                    time_axis=axis, epsilon=epsilon, real=real, sampling_rate=sampling_rate)


def _model_time_axis(model, signal: np.ndarray) -> int:
    """docs/frequency.md#layouts: Keras samples are ``(T, C)`` or ``(T,)`` (time first); PyTorch samples are ``(C, T)``
    after a leading ``Conv1d`` and ``(T,)`` otherwise (time last); other PyTorch inputs need an explicit axis."""
    from signxai.api import _backend_for

    backend = _backend_for(model)
    rank = backend.sample_rank(model)
    is_torch = type(backend).__module__.startswith("signxai.torch_signxai")
    if rank is not None and rank > 2:
        raise ValueError(f"the model takes samples with {rank} axes, not time series (T,) or (T, C) / (C, T); give "
                         f"time_axis= to convert along one axis of its input")
    if is_torch:
        if rank is None and signal.ndim > 2:
            raise ValueError(f"x has shape {signal.shape} and the PyTorch model has no leading convolution, so its "
                             f"time axis is not known (a recurrent or attention model may take (N, T, C), a "
                             f"convolution (N, C, T)); give time_axis=")
        return -1
    if rank is None:  # a Keras model whose input rank is unknown: the canonical layout (T, C)
        return _default_time_axis(signal.ndim)
    return -rank


# ------------------------------------------------------------------------------------------------------- plots
def plot_frequency_relevance(frequencies, relevance, *, channels: Any = "sum", channel_axis: int = -1,
                             kind: str = "bar", channel_names=None, ax=None, title: str | None = None,
                             path=None):
    """A spectrum of one sample's frequency relevance (docs/frequency.md#plots): one bar (``kind="bar"``) or line
    point (``kind="line"``) per frequency, red for positive and blue for negative relevance.

    ``relevance`` is ``(F,)`` or ``(F, C)`` (``channel_axis=-1``, Keras / canonical) or ``(C, F)``
    (``channel_axis=0``, PyTorch), with ``F = len(frequencies)``. ``channels="sum"`` (default) draws the sum over
    channels, ``"each"`` one panel per channel, an integer that channel alone. ``ax`` draws into an existing axes
    (``channels="each"`` needs a figure of its own); ``path`` also saves a PNG. Returns the Figure.
    """
    frequencies = np.asarray(frequencies, dtype=np.float64)
    series, names = _channel_series(relevance, channels, channel_axis, channel_names, (len(frequencies),),
                                    "frequencies")
    if kind not in ("bar", "line"):
        raise ValueError(f"kind must be 'bar' or 'line', got {kind!r}")
    fig, axes = _figure_and_axes(ax, len(series), (7.0, 2.2))
    step = float(np.min(np.diff(np.sort(frequencies)))) if len(frequencies) > 1 else 1.0
    for axis, values, name in zip(axes, series, names):
        if kind == "bar":
            colors = np.where(values >= 0, "tab:red", "tab:blue")
            axis.bar(frequencies, values, width=0.8 * step, color=colors)
        else:
            axis.plot(frequencies, values, color="0.2", linewidth=1.0)
        axis.axhline(0, color="0.5", linewidth=0.5)
        axis.set_ylabel("relevance" if len(series) == 1 else name)
    axes[-1].set_xlabel("frequency")
    if title is not None:
        axes[0].set_title(title)
    if path is not None:
        fig.savefig(path, format="png")
    return fig


def plot_time_frequency_relevance(times, frequencies, relevance, *, channels: Any = "sum", channel_axis: int = -1,
                                  cmap: str = "seismic", channel_names=None, ax=None, title: str | None = None,
                                  path=None):
    """A spectrogram-style heatmap of one sample's time-frequency relevance (docs/frequency.md#plots): frame times on
    the horizontal axis, frequencies on the vertical one, ``cmap`` centred on 0 with ±max|R| at its ends.

    ``relevance`` is ``(M, F)`` or ``(M, F, C)`` (``channel_axis=-1``, Keras / canonical) or ``(C, M, F)``
    (``channel_axis=0``, PyTorch), with ``M = len(times)`` and ``F = len(frequencies)``. ``channels`` as in
    :func:`plot_frequency_relevance`; all panels share one colour scale. Returns the Figure.
    """
    times = np.asarray(times, dtype=np.float64)
    frequencies = np.asarray(frequencies, dtype=np.float64)
    series, names = _channel_series(relevance, channels, channel_axis, channel_names,
                                    (len(times), len(frequencies)), "(times, frequencies)")
    fig, axes = _figure_and_axes(ax, len(series), (7.0, 2.6))
    order = np.argsort(frequencies, kind="stable")  # two-sided bins come in fftfreq order
    limit = max(float(max(np.abs(values).max(initial=0.0) for values in series)), np.finfo(np.float64).tiny)
    mesh = None
    for axis, values, name in zip(axes, series, names):
        mesh = axis.pcolormesh(_edges(times), _edges(frequencies[order]), values[:, order].T, cmap=cmap,
                               vmin=-limit, vmax=limit, shading="flat")
        axis.set_ylabel("frequency" if len(series) == 1 else f"{name}\nfrequency")
    axes[-1].set_xlabel("time")
    fig.colorbar(mesh, ax=list(axes), label="relevance")
    if title is not None:
        axes[0].set_title(title)
    if path is not None:
        fig.savefig(path, format="png")
    return fig


def _channel_series(relevance, channels, channel_axis, channel_names, shape, what):
    """The per-panel arrays of shape ``shape`` and their names from one sample's map."""
    values = np.asarray(_to_numpy(relevance), dtype=np.float64)
    if values.ndim == len(shape):
        values = values[..., None]
        channel_axis = -1
    if values.ndim != len(shape) + 1:
        raise ValueError(f"plot one sample: relevance must have {len(shape)} or {len(shape) + 1} axes "
                         f"{what}[, channels], got shape {values.shape}; index a batch first (R[i])")
    if not isinstance(channel_axis, numbers.Integral) or not -values.ndim <= int(channel_axis) < values.ndim:
        raise ValueError(f"channel_axis={channel_axis!r} is not an axis of relevance with shape {values.shape}")
    values = np.moveaxis(values, channel_axis, -1)
    if values.shape[:-1] != tuple(shape):
        raise ValueError(f"relevance has shape {values.shape[:-1]} without its channel axis, but the {what} "
                         f"give {tuple(shape)}; with channels first pass channel_axis=0")
    n_channels = values.shape[-1]
    names = list(channel_names) if channel_names is not None else [f"channel {c}" for c in range(n_channels)]
    if len(names) != n_channels:
        raise ValueError(f"{len(names)} channel_names for {n_channels} channels")
    if isinstance(channels, str) and channels == "sum":
        return [values.sum(axis=-1)], ["sum" if n_channels > 1 else names[0]]
    if isinstance(channels, str) and channels == "each":
        return [values[..., c] for c in range(n_channels)], names
    if isinstance(channels, numbers.Integral) and not isinstance(channels, bool) and -n_channels <= channels \
            < n_channels:
        return [values[..., channels]], [names[channels]]
    raise ValueError(f"channels must be 'sum', 'each' or a channel index in 0…{n_channels - 1}, got {channels!r}")


def _figure_and_axes(ax, panels, size):
    from matplotlib.figure import Figure

    if ax is not None:
        if panels != 1:
            raise ValueError("channels='each' draws one panel per channel: leave ax=None")
        return ax.figure, [ax]
    fig = Figure(figsize=(size[0], size[1] * panels), layout="constrained")
    return fig, list(fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0])


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (half a step beyond the ends; a single centre gets width 1)."""
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    middle = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - middle[0]], middle, [2 * centres[-1] - middle[-1]]])


# ---------------------------------------------------------------------------------------------------- helpers
def _normalised_relevance(signal: np.ndarray, relevance: np.ndarray, epsilon: float) -> np.ndarray:
    """``s = SD(R, x + ε·sign0(x))`` (docs/frequency.md#stabiliser; SD and sign0: docs/methods.md#notation)."""
    denominator = signal + epsilon * np.where(signal >= 0, 1.0, -1.0)
    zero = denominator == 0
    if epsilon == 0 and (zero & (relevance != 0)).any():
        warnings.warn(f"{int((zero & (relevance != 0)).sum())} sample(s) have relevance where x = 0: the z rule "
                      f"cannot attribute it to frequencies (its frequency terms cancel, each of size R/1e-7); use "
                      f"epsilon > 0 (docs/frequency.md#stabiliser)", RuntimeWarning, stacklevel=3)
    return relevance / (denominator + STABILIZER * zero)


def _conjugate_weights(n: int) -> np.ndarray:
    """1 for DC and (even n) Nyquist, 2 for every rfft bin that stands for itself and its conjugate ``n − k``."""
    weights = np.full(n // 2 + 1, 2.0)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    return weights


def _series_pair(x, relevance, time_axis):
    """float64 copies of signal and relevance with the time axis last, and the time axis as a non-negative index."""
    signal = np.array(_to_numpy(x), dtype=np.float64)
    rel = np.array(_to_numpy(relevance), dtype=np.float64)
    for name, array in (("x", signal), ("relevance", rel)):
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contains {int((~np.isfinite(array)).sum())} non-finite value(s) (NaN or inf)")
    if signal.shape != rel.shape:
        raise ValueError(f"x {signal.shape} and relevance {rel.shape} differ in shape; give the signal the map was "
                         f"computed for, in the same layout")
    if signal.ndim == 0:
        raise ValueError("x is a scalar; give a series (T,), a sample (T, C) or a batch (N, T, C)")
    if time_axis is None:
        time_axis = _default_time_axis(signal.ndim)
    if isinstance(time_axis, bool) or not isinstance(time_axis, numbers.Integral) or \
            not -signal.ndim <= int(time_axis) < signal.ndim:
        raise ValueError(f"time_axis={time_axis!r} is not an axis of x with shape {signal.shape}; give an integer "
                         f"in {-signal.ndim}…{signal.ndim - 1}")
    axis = int(time_axis) % signal.ndim
    if signal.shape[axis] == 0:
        raise ValueError(f"x has no samples along time_axis={axis} (shape {signal.shape})")
    return np.moveaxis(signal, axis, -1), np.moveaxis(rel, axis, -1), axis


def _default_time_axis(ndim: int) -> int:
    """The canonical (channels-last) layout: ``(T,)``, ``(T, C)``, ``(N, T, C)`` (docs/frequency.md#layouts)."""
    if ndim == 1:
        return 0
    if ndim in (2, 3):
        return -2
    raise ValueError(f"x has {ndim} axes; a time series is (T,), (T, C) or (N, T, C) channels-last — give time_axis= "
                     f"for any other layout")


def _check_options(epsilon, real, sampling_rate):
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not math.isfinite(epsilon) or \
            epsilon < 0:
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    if not isinstance(real, (bool, np.bool_)):
        raise ValueError(f"real must be True or False, got {real!r}")
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, numbers.Real) or \
            not math.isfinite(sampling_rate) or sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be a finite number > 0, got {sampling_rate!r}")
    return float(epsilon), bool(real), float(sampling_rate)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _window_name(window_fn) -> str:
    return repr(window_fn) if isinstance(window_fn, str) else "array"


def _to_numpy(value):
    """A NumPy view of an array or a tensor of either framework (not copied here; callers copy)."""
    if hasattr(value, "detach"):  # torch
        value = value.detach().cpu()
        return (value.double() if value.is_floating_point() else value).numpy()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # tf
        return value.numpy()
    array = np.asarray(value)
    if array.dtype == object or np.iscomplexobj(array) or not (np.issubdtype(array.dtype, np.number) or
                                                                array.dtype == np.bool_):
        raise ValueError(f"expected a real numeric array, got dtype {array.dtype}")
    return array
