"""Standard ECG filters on ``(T, leads)`` signals, zero-phase (docs/ecg.md#filters).

All filters run forward and backward (``scipy.signal.sosfiltfilt`` / ``filtfilt``), so they shift no wave in time;
they act along ``axis`` (default 0, the time axis of a ``(T, leads)`` record) and return a new float64 array: the
input is never modified. SciPy (``pip install 'signxai[ecg]'``) is imported when a filter is called.
"""
from __future__ import annotations

import numpy as np

from signxai.loading import InputError


def _scipy_signal():
    """``scipy.signal``, or an :class:`InputError` naming the extra that installs SciPy."""
    try:
        import scipy.signal
    except ImportError as error:
        raise InputError("the ECG filters need SciPy: pip install 'signxai[ecg]'") from error
    return scipy.signal


def _prepare(x, fs, axis):
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise InputError(f"a filter needs real numbers, not {x.dtype}")
    if x.ndim == 0:
        raise InputError("a filter needs a signal with a time axis, not a scalar")
    fs = float(fs)
    if not np.isfinite(fs) or fs <= 0:
        raise InputError(f"the sampling rate must be a positive number of Hz, not {fs}")
    axis = axis % x.ndim
    return np.array(x, dtype=np.float64), fs, axis


def _check_frequency(name, value, fs):
    nyquist = fs / 2
    if not 0 < value < nyquist:
        raise InputError(f"{name} = {value} Hz must lie between 0 and the Nyquist frequency {nyquist:g} Hz "
                         f"(sampling rate {fs:g} Hz)")


def _sosfiltfilt(sos, x, axis):
    sosfiltfilt = _scipy_signal().sosfiltfilt
    # scipy's default padlen for sosfiltfilt; a shorter signal would fail there with a less helpful message
    padlen = 3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
    if x.shape[axis] <= padlen:
        raise InputError(f"the signal has {x.shape[axis]} time steps; this filter needs more than {padlen} "
                         f"(lower the order or filter a longer record)")
    return sosfiltfilt(sos, x, axis=axis)


def highpass(x, fs: float, cutoff: float = 0.5, order: int = 2, axis: int = 0) -> np.ndarray:
    """Butterworth high-pass of ``order`` at ``cutoff`` Hz, zero-phase."""
    butter = _scipy_signal().butter
    x, fs, axis = _prepare(x, fs, axis)
    _check_frequency("cutoff", cutoff, fs)
    return _sosfiltfilt(butter(order, cutoff, btype="highpass", fs=fs, output="sos"), x, axis)


def lowpass(x, fs: float, cutoff: float = 40.0, order: int = 4, axis: int = 0) -> np.ndarray:
    """Butterworth low-pass of ``order`` at ``cutoff`` Hz, zero-phase."""
    butter = _scipy_signal().butter
    x, fs, axis = _prepare(x, fs, axis)
    _check_frequency("cutoff", cutoff, fs)
    return _sosfiltfilt(butter(order, cutoff, btype="lowpass", fs=fs, output="sos"), x, axis)


def remove_baseline_wander(x, fs: float, cutoff: float = 0.5, order: int = 2, axis: int = 0) -> np.ndarray:
    """Baseline-wander removal: a zero-phase Butterworth high-pass at ``cutoff`` Hz (0.5 Hz by default, below the
    lowest heart rate of interest; AHA recommends ≤ 0.67 Hz for zero-phase filters)."""
    return highpass(x, fs, cutoff, order, axis)


def bandpass(x, fs: float, low: float = 0.5, high: float = 40.0, order: int = 4, axis: int = 0) -> np.ndarray:
    """Butterworth band-pass from ``low`` to ``high`` Hz of ``order`` (per edge), zero-phase."""
    butter = _scipy_signal().butter
    x, fs, axis = _prepare(x, fs, axis)
    _check_frequency("low", low, fs)
    _check_frequency("high", high, fs)
    if not low < high:
        raise InputError(f"the band-pass needs low < high; got low = {low} Hz, high = {high} Hz")
    return _sosfiltfilt(butter(order, [low, high], btype="bandpass", fs=fs, output="sos"), x, axis)


def notch(x, fs: float, freq: float = 50.0, quality: float = 30.0, axis: int = 0) -> np.ndarray:
    """Power-line notch at ``freq`` Hz (50 Hz in Europe, 60 Hz in the Americas) with quality factor ``quality``
    (bandwidth ``freq / quality``), a second-order IIR notch (``scipy.signal.iirnotch``) run zero-phase."""
    filtfilt, iirnotch = _scipy_signal().filtfilt, _scipy_signal().iirnotch
    x, fs, axis = _prepare(x, fs, axis)
    _check_frequency("freq", freq, fs)
    if not quality > 0:
        raise InputError(f"the notch's quality factor must be positive, not {quality}")
    b, a = iirnotch(freq, quality, fs=fs)
    padlen = 3 * max(len(a), len(b))
    if x.shape[axis] <= padlen:
        raise InputError(f"the signal has {x.shape[axis]} time steps; the notch needs more than {padlen}")
    return filtfilt(b, a, x, axis=axis)
