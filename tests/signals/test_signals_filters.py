"""signxai.signals.filters: zero-phase Butterworth/notch filters that keep what they should and remove the rest."""
import numpy as np
import pytest

from signxai.loading import InputError
from signxai.signals import bandpass, highpass, lowpass, notch, remove_baseline_wander

FS = 500.0
T = np.arange(int(10 * FS)) / FS


def _amplitude(x, frequency):
    """Amplitude of the sine of ``frequency`` in ``x`` (projection over the middle 6 s, away from the edges)."""
    part = slice(int(2 * FS), int(8 * FS))
    t, v = T[part], x[part]
    return 2 * np.hypot(np.mean(v * np.sin(2 * np.pi * frequency * t)), np.mean(v * np.cos(2 * np.pi * frequency * t)))


def _middle_peak(x):
    return np.abs(x[int(2 * FS):int(8 * FS)]).max()


def _sine(frequency, amplitude=1.0, phase=0.0):
    return amplitude * np.sin(2 * np.pi * frequency * T + phase)


def test_baseline_wander_removal_keeps_the_ecg_band():
    x = np.column_stack([_sine(0.1, 2.0) + _sine(10.0), _sine(0.05, 1.0) + _sine(5.0, 0.5)])
    before = x.copy()
    y = remove_baseline_wander(x, FS)
    np.testing.assert_array_equal(x, before)  # not mutated
    assert y.shape == x.shape and y.dtype == np.float64
    # the filters are linear: the wander alone is (almost) gone away from the edges
    wander = remove_baseline_wander(np.column_stack([_sine(0.1, 2.0), _sine(0.05, 1.0)]), FS)
    assert _middle_peak(wander[:, 0]) < 0.05 * 2.0 and _middle_peak(wander[:, 1]) < 0.02
    assert _amplitude(y[:, 0], 10.0) == pytest.approx(1.0, abs=0.01)
    assert _amplitude(y[:, 1], 5.0) == pytest.approx(0.5, abs=0.01)


def test_zero_phase_keeps_a_peak_in_place():
    x = np.exp(-0.5 * ((T - 5.0) / 0.02) ** 2)  # a QRS-like bump at 5 s
    for y in (bandpass(x, FS, 0.5, 40.0), highpass(x, FS, 0.5), lowpass(x, FS, 40.0), notch(x, FS, 50.0)):
        assert T[np.argmax(y)] == pytest.approx(5.0, abs=1 / FS)


def test_notch_removes_the_power_line_only():
    for mains in (50.0, 60.0):
        x = _sine(mains, 0.3) + _sine(10.0)
        y = notch(x, FS, mains)
        assert _amplitude(y, mains) < 0.01 and _amplitude(y, 10.0) == pytest.approx(1.0, abs=0.01)


def test_bandpass_passband_and_stopbands():
    x = _sine(0.1, 1.0) + _sine(10.0, 1.0) + _sine(120.0, 1.0)
    y = bandpass(x, FS, low=0.5, high=40.0, order=4)
    assert _amplitude(y, 10.0) == pytest.approx(1.0, abs=0.01)
    assert _middle_peak(bandpass(_sine(0.1), FS, 0.5, 40.0)) < 0.01
    tapered = np.hanning(len(T)) * _sine(120.0)  # no edge transients: starts and ends at 0
    assert np.abs(bandpass(tapered, FS, 0.5, 40.0)).max() < 0.01
    # the time axis can be the last one (leads, T)
    np.testing.assert_allclose(bandpass(x[None], FS, 0.5, 40.0, axis=-1)[0], y, atol=1e-12)


def test_integer_input_and_lowpass():
    x = np.round(1000 * (_sine(2.0) + _sine(100.0, 0.5))).astype(np.int16)
    y = lowpass(x, FS, 40.0)
    assert y.dtype == np.float64 and _amplitude(y, 100.0) < 5 and _amplitude(y, 2.0) == pytest.approx(1000, rel=0.01)


@pytest.mark.parametrize("call, message", [
    (lambda: highpass(np.zeros(100), 100.0, cutoff=60.0), "between 0 and the Nyquist frequency 50 Hz"),
    (lambda: bandpass(np.zeros(100), 100.0, low=20.0, high=10.0), "low < high"),
    (lambda: notch(np.zeros(100), 100.0, freq=50.0), "Nyquist"),
    (lambda: bandpass(np.zeros(20), 100.0), "20 time steps; this filter needs more than"),
    (lambda: highpass(np.zeros(100), -1.0), "positive number of Hz"),
    (lambda: notch(np.zeros(100), 500.0, quality=0.0), "quality factor must be positive"),
    (lambda: highpass(np.array(["a"] * 100), 100.0), "real numbers"),
])
def test_bad_parameters(call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_without_scipy_the_error_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "scipy.signal", None)
    with pytest.raises(InputError, match=r"pip install 'signxai\[ecg\]'"):
        bandpass(np.zeros(1000), FS)
