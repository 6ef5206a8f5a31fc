"""DFT-LRP (signxai/frequency.py, docs/frequency.md): the module against an independent replica (explicit DFT matrices
and the z rule written as loops over the virtual layer's neurons), conservation, known spectra, framing edge cases,
the Keras/PyTorch twins, errors and plots."""
from __future__ import annotations

import numpy as np
import pytest

from signxai.frequency import (calculate_frequency_relevancemap, calculate_time_frequency_relevancemap,
                               frequency_relevance, plot_frequency_relevance, plot_time_frequency_relevance,
                               time_frequency_relevance, window_values)


# ----------------------------------------------------------------------------------------------- the replica
def sign0(v):
    return 1.0 if v >= 0 else -1.0


def z_rule_by_loops(y, weights, relevance, epsilon):
    """The ε/z rule through a bias-free linear layer ``z_n = Σ_j weights[n, j]·y_j``, neuron by neuron:
    ``R_j = Σ_n y_j·weights[n, j] / (z_n + ε·sign0(z_n)) · R_n`` (docs/lrp.md#z-epsilon-sign)."""
    n_out, n_in = weights.shape
    z = [sum(weights[n, j] * y[j] for j in range(n_in)) for n in range(n_out)]
    result = np.zeros(n_in)
    for j in range(n_in):
        for n in range(n_out):
            result[j] += y[j] * weights[n, j] / (z[n] + epsilon * sign0(z[n])) * relevance[n]
    return result


def one_sided(two_sided):
    """Bin k plus its conjugate bin T − k, for k = 0 … T // 2 (DC and an even T's Nyquist bin stand alone)."""
    n = len(two_sided)
    return np.array([two_sided[k] + (two_sided[n - k] if 0 < k and 2 * k != n else 0.0) for k in range(n // 2 + 1)])


def replica_dft_lrp(x, relevance, epsilon, real):
    """The virtual layer of Vielhaben et al.: the 2T real inputs (Re X_k, Im X_k) of the real part of the inverse
    DFT, ``x_n = Σ_k (Re X_k·cos θ_kn − Im X_k·sin θ_kn) / T`` with ``θ_kn = 2πkn/T``; R_k = R(Re X_k) + R(Im X_k)."""
    n_steps = len(x)
    theta = 2 * np.pi * np.outer(np.arange(n_steps), np.arange(n_steps)) / n_steps  # [k, n]
    spectrum_real = np.array([sum(x[n] * np.cos(theta[k, n]) for n in range(n_steps)) for k in range(n_steps)])
    spectrum_imag = np.array([-sum(x[n] * np.sin(theta[k, n]) for n in range(n_steps)) for k in range(n_steps)])
    y = np.concatenate([spectrum_real, spectrum_imag])
    weights = np.concatenate([np.cos(theta).T, -np.sin(theta).T], axis=1) / n_steps  # [n, j]
    result = z_rule_by_loops(y, weights, relevance, epsilon)
    result = result[:n_steps] + result[n_steps:]
    return one_sided(result) if real else result


def replica_window(name, length):
    if isinstance(name, np.ndarray):
        return name
    if name == "rectangle" or length == 1:
        return np.ones(length)
    if name == "hann":
        return np.array([np.sin(np.pi * pos / length) ** 2 for pos in range(length)])  # = 0.5 − 0.5·cos(2πl/L)
    return np.array([np.sin(np.pi * (pos + 0.5) / length) for pos in range(length)])


def replica_frames(n_steps, length, hop, padding):
    if padding == "center":
        starts, pad = [], length // 2
        while not starts or starts[-1] - pad + length // 2 < n_steps - 1:
            starts.append(len(starts) * hop)
        return starts, pad
    return list(range(0, n_steps - length + 1, hop)), 0


def replica_stft_lrp(x, relevance, length, hop, window, padding, epsilon, real):
    """The inverse short-time DFT as one linear layer: input (m, k, Re/Im) → sample n with weight
    ``(cos / −sin)(2πk·l/L) / (L·W_n)``, ``l = n + pad − m·hop``, ``W_n = Σ_m w[l]``; then the z rule by loops."""
    n_steps = len(x)
    w = replica_window(window, length)
    starts, pad = replica_frames(n_steps, length, hop, padding)
    total = np.zeros(n_steps)
    for start in starts:
        for pos in range(length):
            if 0 <= start + pos - pad < n_steps:
                total[start + pos - pad] += w[pos]
    n_frames, n_in = len(starts), 2 * len(starts) * length
    y, weights = np.zeros(n_in), np.zeros((n_steps, n_in))
    for m, start in enumerate(starts):
        for k in range(length):
            re, im = 2 * (m * length + k), 2 * (m * length + k) + 1
            for pos in range(length):
                n = start + pos - pad
                if not 0 <= n < n_steps:
                    continue
                angle = 2 * np.pi * k * pos / length
                y[re] += w[pos] * x[n] * np.cos(angle)
                y[im] -= w[pos] * x[n] * np.sin(angle)
                weights[n, re] = np.cos(angle) / (length * total[n])
                weights[n, im] = -np.sin(angle) / (length * total[n])
    result = z_rule_by_loops(y, weights, relevance, epsilon)
    result = (result[0::2] + result[1::2]).reshape(n_frames, length)
    times = np.array([start - pad + length // 2 for start in starts], dtype=float)
    return times, np.array([one_sided(row) for row in result]) if real else result


def assert_close(mine, reference, rtol=1e-10):
    mine, reference = np.asarray(mine), np.asarray(reference)
    assert mine.shape == reference.shape
    peak = np.abs(reference).max()
    assert np.abs(mine - reference).max() <= rtol * peak, np.abs(mine - reference).max() / peak


def series(n_steps, seed, channels=()):
    """A signal bounded away from 0 (the z rule divides by it) and a relevance map."""
    rng = np.random.RandomState(seed)
    x = rng.normal(0, 1, (*channels, n_steps))
    x = x + 0.3 * np.where(x >= 0, 1, -1)
    return x, rng.normal(0, 1, x.shape)


# ------------------------------------------------------------------------------------------- against the replica
@pytest.mark.parametrize("n_steps", [16, 15, 1, 2])
@pytest.mark.parametrize("real", [True, False])
@pytest.mark.parametrize("epsilon", [0.0, 0.25])
def test_dft_lrp_equals_the_replica(n_steps, real, epsilon):
    x, R = series(n_steps, seed=n_steps)
    frequencies, mine = frequency_relevance(x, R, epsilon=epsilon, real=real)
    assert_close(mine, replica_dft_lrp(x, R, epsilon, real))
    expected = np.fft.rfftfreq(n_steps) if real else np.fft.fftfreq(n_steps)
    np.testing.assert_array_equal(frequencies, expected)
    assert mine.dtype == np.float64


STFT_CASES = [  # (T, window, hop, window_fn, padding)
    (24, 8, 4, "hann", "center"),
    (23, 8, 3, "hann", "center"),  # T not a multiple of hop
    (20, 7, 2, "halfsine", "center"),  # odd window
    (20, 5, 5, "rectangle", "none"),  # signxai2's framing: rectangles end to end
    (22, 6, 4, "halfsine", "none"),  # (T − window) % hop == 0
    (12, 16, 8, "hann", "center"),  # window longer than the series
    (10, 4, 1, np.array([0.5, 1.0, 2.0, 0.25]), "none"),  # a custom window, hop 1
    (9, 1, 1, "hann", "none"),  # one-sample frames
]


@pytest.mark.parametrize("case", STFT_CASES, ids=lambda c: f"T{c[0]}-L{c[1]}-h{c[2]}-{c[4]}")
@pytest.mark.parametrize("real", [True, False])
def test_short_time_dft_lrp_equals_the_replica(case, real):
    n_steps, length, hop, window, padding = case
    x, R = series(n_steps, seed=length)
    times, frequencies, mine = time_frequency_relevance(x, R, window=length, hop=hop, window_fn=window,
                                                        padding=padding, epsilon=0.1, real=real)
    reference_times, reference = replica_stft_lrp(x, R, length, hop, window, padding, 0.1, real)
    np.testing.assert_array_equal(times, reference_times)
    assert_close(mine, reference)
    np.testing.assert_array_equal(frequencies, np.fft.rfftfreq(length) if real else np.fft.fftfreq(length))


def test_window_values_match_their_formulas():
    np.testing.assert_allclose(window_values("hann", 8), replica_window("hann", 8), atol=1e-15)
    np.testing.assert_allclose(window_values("sine", 5), replica_window("halfsine", 5), atol=1e-15)
    np.testing.assert_array_equal(window_values("boxcar", 3), np.ones(3))
    np.testing.assert_array_equal(window_values("hann", 1), np.ones(1))


# ------------------------------------------------------------------------------------------------- layouts
def test_layouts_batches_and_channels_are_independent_series():
    x, R = series(32, seed=3, channels=(3, 2))  # (N, C, T): PyTorch's layout
    _, channels_first = frequency_relevance(x, R, time_axis=-1, epsilon=0.0)
    assert channels_first.shape == (3, 2, 17)
    _, channels_last = frequency_relevance(np.swapaxes(x, 1, 2), np.swapaxes(R, 1, 2), epsilon=0.0)  # default
    assert channels_last.shape == (3, 17, 2)
    np.testing.assert_array_equal(np.swapaxes(channels_last, 1, 2), channels_first)
    for n in range(3):
        for c in range(2):
            _, single = frequency_relevance(x[n, c], R[n, c], epsilon=0.0)
            np.testing.assert_allclose(channels_first[n, c], single, rtol=0, atol=1e-13)
    # unbatched (T, C) and (C, T)
    _, sample = frequency_relevance(x[1].T, R[1].T, epsilon=0.0)
    np.testing.assert_array_equal(sample, channels_last[1])
    times, _, tf_first = time_frequency_relevance(x, R, window=8, time_axis=2)
    _, _, tf_last = time_frequency_relevance(np.swapaxes(x, 1, 2), np.swapaxes(R, 1, 2), window=8)
    assert tf_first.shape == (3, 2, len(times), 5) and tf_last.shape == (3, len(times), 5, 2)
    np.testing.assert_array_equal(np.moveaxis(tf_last, -1, 1), tf_first)


def test_chunked_framing_equals_one_pass(monkeypatch):
    import signxai.frequency as frequency

    x, R = series(40, seed=16, channels=(5, 3))
    whole = time_frequency_relevance(x, R, window=8, hop=2, time_axis=-1)[2]
    monkeypatch.setattr(frequency, "_CHUNK_BYTES", 1)  # one series per chunk
    np.testing.assert_array_equal(time_frequency_relevance(x, R, window=8, hop=2, time_axis=-1)[2], whole)


def test_inputs_are_not_modified_and_tensors_are_accepted():
    import torch

    x, R = series(20, seed=4, channels=(2,))
    keep_x, keep_R = x.copy(), R.copy()
    _, from_numpy = frequency_relevance(x, R, time_axis=-1)
    _, from_torch = frequency_relevance(torch.tensor(x), torch.tensor(R), time_axis=-1)
    np.testing.assert_array_equal(x, keep_x)
    np.testing.assert_array_equal(R, keep_R)
    np.testing.assert_array_equal(from_numpy, from_torch)


# -------------------------------------------------------------------------------------------- conservation
@pytest.mark.parametrize("n_steps", [64, 63])
def test_relevance_is_conserved_at_epsilon_zero(n_steps):
    x, R = series(n_steps, seed=5, channels=(3,))
    for real in (True, False):
        _, freq = frequency_relevance(x, R, time_axis=-1, epsilon=0.0, real=real)
        np.testing.assert_allclose(freq.sum(axis=-1), R.sum(axis=-1), rtol=1e-12)
        _, _, tf = time_frequency_relevance(x, R, window=16, time_axis=-1, epsilon=0.0, real=real)
        np.testing.assert_allclose(tf.sum(axis=(-2, -1)), R.sum(axis=-1), rtol=1e-12)


def test_epsilon_absorbs_the_documented_amount():
    """docs/frequency.md#conservation: Σ R_freq = Σ R·x/(x + ε·sign0(x)), so ε absorbs Σ R·ε·sign0(x)/(x + ε·sign0(x)):
    all of the relevance of a sample where x = 0, and a part that vanishes with ε elsewhere."""
    x, R = series(40, seed=6)
    zeros = [3, 17]
    for epsilon in (0.5, 1e-3):
        x_with_zeros = x.copy()
        x_with_zeros[zeros] = 0.0  # sign0(0) = +1
        stabilised = x_with_zeros + epsilon * np.where(x_with_zeros >= 0, 1.0, -1.0)
        absorbed = (R * epsilon * np.where(x_with_zeros >= 0, 1.0, -1.0) / stabilised).sum()
        assert absorbed == pytest.approx(R[zeros].sum() + (R * epsilon / (np.abs(x_with_zeros) + epsilon))[
            np.abs(x_with_zeros) > 0].sum(), rel=1e-12)
        _, freq = frequency_relevance(x_with_zeros, R, epsilon=epsilon)
        _, _, tf = time_frequency_relevance(x_with_zeros, R, window=8, hop=3, epsilon=epsilon)
        np.testing.assert_allclose(freq.sum(), R.sum() - absorbed, rtol=1e-12)
        np.testing.assert_allclose(tf.sum(), R.sum() - absorbed, rtol=1e-12)
    previous = np.inf
    for epsilon in (1e-2, 1e-5, 1e-8):  # no zeros: the absorbed part is O(ε) and vanishes
        _, freq = frequency_relevance(x, R, epsilon=epsilon)
        gap = abs(freq.sum() - R.sum())
        assert gap <= epsilon * np.abs(R / x).sum() and gap < previous
        previous = gap


def test_each_frame_holds_its_window_share_of_the_time_relevance():
    """Σ_k R_tf[m, k] = Σ_n (w_m(n) / W_n)·R_n at ε = 0: the frame's share of every sample it weighs."""
    x, R = series(30, seed=7)
    times, _, tf = time_frequency_relevance(x, R, window=8, hop=3, window_fn="hann", epsilon=0.0)
    w = replica_window("hann", 8)
    starts, pad = replica_frames(30, 8, 3, "center")
    share = np.zeros((len(starts), 30))
    for m, start in enumerate(starts):
        for pos in range(8):
            if 0 <= start + pos - pad < 30:
                share[m, start + pos - pad] = w[pos]
    share /= share.sum(axis=0)
    np.testing.assert_allclose(tf.sum(axis=1), share @ R, rtol=1e-11, atol=1e-13)


def test_zero_signal_with_relevance_and_epsilon_zero_warns():
    x, R = series(16, seed=8)
    x[5] = 0.0
    with pytest.warns(RuntimeWarning, match="relevance where x = 0"):
        frequency_relevance(x, R, epsilon=0.0)
    R[5] = 0.0  # relevance 0 where x is 0: nothing to attribute, no warning, still conserving
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, freq = frequency_relevance(x, R, epsilon=0.0)
    np.testing.assert_allclose(freq.sum(), R.sum(), rtol=1e-12)


# ------------------------------------------------------------------------------------------------- spectra
def test_a_linear_model_tuned_to_one_frequency_gets_all_relevance_there():
    """f(x) = w·x with w a sinusoid at bin 5: its LRP-z map R = w ⊙ x puts all relevance on bin 5 (both conjugate
    halves combined), however much else the input contains: all of the output w·x, which only x's bin-5 part feeds."""
    n_steps, k0 = 64, 5
    n = np.arange(n_steps)
    w = np.cos(2 * np.pi * k0 * n / n_steps + 0.4)
    rng = np.random.RandomState(9)
    component = 1.5 * np.sin(2 * np.pi * k0 * n / n_steps + 1.0)
    x = component + 2.0 * np.cos(2 * np.pi * 11 * n / n_steps) + 0.7 + rng.normal(0, 0.3, n_steps)
    frequencies, freq = frequency_relevance(x, w * x, epsilon=0.0)
    assert frequencies[k0] == k0 / n_steps
    np.testing.assert_allclose(freq[k0], w @ x, rtol=1e-10)
    assert abs(w @ x) > 10
    np.testing.assert_allclose(np.delete(freq, k0), 0.0, atol=1e-11 * abs(freq[k0]))
    _, two_sided = frequency_relevance(x, w * x, epsilon=0.0, real=False)
    np.testing.assert_allclose(two_sided[[k0, n_steps - k0]], [w @ x / 2] * 2, rtol=1e-10)
    np.testing.assert_allclose(np.delete(two_sided, [k0, n_steps - k0]), 0.0, atol=1e-11 * abs(freq[k0]))


def test_a_pure_sinusoid_explained_by_itself_sits_on_its_bin_in_every_frame():
    """x = sin(2π·4n/32), R = x² (input × gradient of f = x·x/2): the one-sided spectrum is all on bin 4; the short-time
    spectrum with 8-sample frames puts it on bin 1 (= 4/32 cycles per sample): in every frame for rectangles end to
    end; for Hann frames at hop 4 (total weight W_n = 1 on every sample) in every frame that lies inside the series —
    the two edge frames half over the zero padding see a cut-off sinusoid and spread their share over other bins."""
    n = np.arange(32)
    x = np.sin(2 * np.pi * 4 * n / 32 + 0.3)
    R = x * x
    frequencies, freq = frequency_relevance(x, R, epsilon=0.0)
    assert frequencies[4] == 4 / 32
    np.testing.assert_allclose(freq[4], R.sum(), rtol=1e-12)
    np.testing.assert_allclose(np.delete(freq, 4), 0.0, atol=1e-12)
    times, frequencies, tf = time_frequency_relevance(x, R, window=8, hop=8, window_fn="rectangle", padding="none",
                                                      epsilon=0.0)
    assert frequencies[1] == 4 / 32 and len(times) == 4
    np.testing.assert_allclose(np.delete(tf, 1, axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(tf[:, 1], [R[m * 8:m * 8 + 8].sum() for m in range(4)], rtol=1e-12)
    times, frequencies, tf = time_frequency_relevance(x, R, window=8, hop=4, window_fn="hann", epsilon=0.0)
    np.testing.assert_array_equal(times, np.arange(0, 33, 4))
    inside = slice(1, -1)
    np.testing.assert_allclose(np.delete(tf[inside], 1, axis=1), 0.0, atol=1e-12)
    assert tf[inside, 1].min() > 0.5
    assert np.abs(np.delete(tf[[0, -1]], 1, axis=1)).max() > 1e-3  # the edge frames: not a pure tone
    np.testing.assert_allclose(tf.sum(), R.sum(), rtol=1e-12)


def test_frequencies_and_times_scale_with_the_sampling_rate():
    x, R = series(50, seed=10)
    f1, r1 = frequency_relevance(x, R)
    f2, r2 = frequency_relevance(x, R, sampling_rate=250.0)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_allclose(f2, f1 * 250.0)
    assert f2[-1] == 125.0  # Nyquist of an even length
    t1, g1, _ = time_frequency_relevance(x, R, window=10, hop=5)
    t2, g2, _ = time_frequency_relevance(x, R, window=10, hop=5, sampling_rate=250.0)
    np.testing.assert_allclose(t2, t1 / 250.0)
    np.testing.assert_allclose(g2, g1 * 250.0)


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("kwargs, message", [
    ({"time_axis": 3}, r"time_axis=3 is not an axis of x with shape \(2, 20, 3\)"),
    ({"time_axis": 1.0}, "time_axis=1.0 is not an axis"),
    ({"epsilon": -1.0}, "epsilon must be a finite number >= 0"),
    ({"sampling_rate": 0}, "sampling_rate must be a finite number > 0"),
    ({"real": "yes"}, "real must be True or False"),
])
def test_bad_options_are_refused(kwargs, message):
    x, R = series(20, seed=11, channels=(3,))
    x, R = np.stack([x.T] * 2), np.stack([R.T] * 2)
    with pytest.raises(ValueError, match=message):
        frequency_relevance(x, R, **kwargs)


def test_bad_arrays_are_refused():
    x, R = series(20, seed=12)
    with pytest.raises(ValueError, match=r"x \(20,\) and relevance \(19,\) differ in shape"):
        frequency_relevance(x, R[:-1])
    with pytest.raises(ValueError, match="relevance contains 1 non-finite"):
        frequency_relevance(x, np.where(np.arange(20) == 3, np.nan, R))
    with pytest.raises(ValueError, match="x has 4 axes; a time series is"):
        frequency_relevance(np.ones((2, 3, 4, 5)), np.ones((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="no samples along time_axis"):
        frequency_relevance(np.ones((0, 3)), np.ones((0, 3)))
    with pytest.raises(ValueError, match="expected a real numeric array"):
        frequency_relevance(x + 1j, R)


@pytest.mark.parametrize("kwargs, message", [
    ({"window": 0}, "window must be an integer >= 1"),
    ({"window": 8, "hop": 0}, "hop must be an integer >= 1"),
    ({"window": 8, "hop": 9}, "hop=9 is larger than window=8"),
    ({"window": 32, "padding": "none"}, r"window=32 is longer than the series \(T=20 samples along time_axis=0\)"),
    ({"window": 8, "hop": 5, "window_fn": "rectangle", "padding": "none"},
     r"2 sample\(s\) along time_axis=0 get no window weight \(first: sample 18"),
    ({"window": 8, "hop": 4, "window_fn": "hann", "padding": "none"}, r"first: sample 0;"),
    ({"window": 8, "padding": "same"}, "padding must be one of"),
    ({"window": 8, "window_fn": "kaiser"}, "unknown window_fn 'kaiser'"),
    ({"window": 4, "window_fn": np.ones(3)}, "1-D array of window=4 weights"),
    ({"window": 3, "window_fn": np.array([1.0, -1.0, 1.0])}, "finite and non-negative"),
])
def test_bad_framing_is_refused(kwargs, message):
    x, R = series(20, seed=13)
    with pytest.raises(ValueError, match=message):
        time_frequency_relevance(x, R, **kwargs)


# ------------------------------------------------------------------------------ Keras and PyTorch twins
@pytest.fixture(scope="module")
def ecg_twin():
    from twins import reference_twin
    return reference_twin("ecg1d")


def _gate_measures(tf32, pt32, tf64, pt64):
    """Gates 1 and 2 of docs/equivalence.md#agreement-gates on converted maps (float64 arrays, so the dtype check of
    ``check_agreement`` does not apply): the same formulas."""
    own_tf, own_pt = np.abs(tf32 - tf64).max(), np.abs(pt32 - pt64).max()
    peak = np.abs(tf64).max()
    assert np.abs(tf64 - pt64).max() <= 1e-9 * peak
    assert np.array_equal(tf64 == 0, pt64 == 0)
    assert np.abs(tf32 - pt32).max() <= max(1e-5 * peak, 4 * (own_tf + own_pt))
    assert np.abs(tf32 - pt32).mean() < max(1e-4, 4 * (np.abs(tf32 - tf64).mean() + np.abs(pt32 - pt64).mean()))


@pytest.mark.parametrize("method", ["lrp_epsilon_0_1", "lrpsign_epsilon_0_25_std_x"])
def test_keras_and_pytorch_twins_give_equal_frequency_maps(ecg_twin, method):
    """The ECG twin (Conv1D/ELU/MaxPool, (512, 4) inputs): each framework's map converted with its own default time
    axis (Keras (N, T, C): axis 1; PyTorch (N, C, T): the last) agrees within the agreement gates, and equals the
    conversion of the map calculate_relevancemap returns."""
    import signxai
    from twins import to_channels_last, torch_input

    freq, tf = {}, {}
    for dtype in ("float32", "float64"):
        f_keras, freq["tf", dtype] = calculate_frequency_relevancemap(ecg_twin.keras_model, ecg_twin.x, method,
                                                                      dtype=dtype, sampling_rate=500.0)
        f_torch, pt = calculate_frequency_relevancemap(ecg_twin.torch_model, torch_input(ecg_twin.x), method,
                                                       dtype=dtype, sampling_rate=500.0)
        np.testing.assert_array_equal(f_keras, f_torch)
        freq["pt", dtype] = to_channels_last(pt)
        times, frequencies, tf["tf", dtype] = calculate_time_frequency_relevancemap(
            ecg_twin.keras_model, ecg_twin.x, method, dtype=dtype, window=64)
        _, _, pt = calculate_time_frequency_relevancemap(ecg_twin.torch_model, torch_input(ecg_twin.x), method,
                                                         dtype=dtype, window=64)
        tf["pt", dtype] = np.moveaxis(pt, 1, -1)  # (N, C, M, F) → (N, M, F, C)
    assert freq["tf", "float64"].shape == (2, 257, 4) and tf["tf", "float64"].shape == (2, 17, 33, 4)
    _gate_measures(freq["tf", "float32"], freq["pt", "float32"], freq["tf", "float64"], freq["pt", "float64"])
    _gate_measures(tf["tf", "float32"], tf["pt", "float32"], tf["tf", "float64"], tf["pt", "float64"])
    R = signxai.calculate_relevancemap(ecg_twin.keras_model, ecg_twin.x, method, dtype="float64")
    np.testing.assert_array_equal(frequency_relevance(ecg_twin.x, R)[1], freq["tf", "float64"])
    np.testing.assert_array_equal(time_frequency_relevance(ecg_twin.x, R, window=64)[2], tf["tf", "float64"])
    # unbatched samples take the same default axes
    _, one = calculate_frequency_relevancemap(ecg_twin.torch_model, torch_input(ecg_twin.x)[0], method,
                                              dtype="float64", sampling_rate=500.0)
    np.testing.assert_allclose(one.T, freq["pt", "float64"][0], rtol=0, atol=1e-12 * np.abs(one).max())


def test_dense_models_on_raw_series_convert_along_their_only_sample_axis():
    """A model that takes samples (T,) — Keras Dense, PyTorch Linear — converts (N, T) maps along the last axis."""
    from twins import spec_twin, torch_input

    twin = spec_twin("dense_series", {"input_shape": [24], "layers": [{"kind": "dense", "units": 6,
                                                                       "activation": "relu"},
                                                                      {"kind": "dense", "units": 3}]})
    frequencies, keras_map = calculate_frequency_relevancemap(twin.keras_model, twin.x, "lrp_z", dtype="float64")
    _, torch_map = calculate_frequency_relevancemap(twin.torch_model, torch_input(twin.x), "lrp_z", dtype="float64")
    assert keras_map.shape == torch_map.shape == (2, 13) and len(frequencies) == 13
    np.testing.assert_allclose(keras_map, torch_map, rtol=0, atol=1e-9 * np.abs(keras_map).max())


def test_image_models_and_unknown_pytorch_layouts_need_an_explicit_time_axis():
    import torch

    import signxai
    from twins import reference_twin
    twin = reference_twin("cnn2d")
    with pytest.raises(ValueError, match="samples with 3 axes, not time series"):
        calculate_frequency_relevancemap(twin.keras_model, twin.x, "gradient")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(24, 3))  # takes (N, 8, 3): which axis is time?
    x = np.random.RandomState(17).normal(size=(2, 8, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"no leading convolution, so its time axis is not known.*give time_axis="):
        calculate_frequency_relevancemap(model, x, "gradient")
    frequencies, R_freq = calculate_frequency_relevancemap(model, x, "gradient_x_input", time_axis=1, epsilon=0.0)
    R = signxai.calculate_relevancemap(model, x, "gradient_x_input").astype(np.float64)
    assert R_freq.shape == (2, 5, 3)
    np.testing.assert_allclose(R_freq.sum(axis=1), R.sum(axis=1), rtol=1e-10)  # the same float32 map, converted


# --------------------------------------------------------------------------------------------------- plots
def test_spectrum_plot_draws_the_relevance():
    x, R = series(40, seed=14, channels=(3,))
    frequencies, freq = frequency_relevance(x.T, R.T, sampling_rate=100.0)  # (F, C)
    fig = plot_frequency_relevance(frequencies, freq)
    (ax,) = fig.axes
    np.testing.assert_array_equal([bar.get_height() for bar in ax.patches], freq.sum(axis=1))
    np.testing.assert_allclose([bar.get_x() + bar.get_width() / 2 for bar in ax.patches], frequencies, atol=1e-12)
    colors = [bar.get_facecolor()[:3] for bar in ax.patches]
    assert all((c[0] > c[2]) == (h >= 0) for c, h in zip(colors, freq.sum(axis=1)))  # red positive, blue negative
    fig = plot_frequency_relevance(frequencies, freq.T, channels="each", channel_axis=0, kind="line",
                                   channel_names=["I", "II", "III"])
    assert [ax.get_ylabel() for ax in fig.axes] == ["I", "II", "III"]
    for c, ax in enumerate(fig.axes):
        np.testing.assert_array_equal(ax.lines[0].get_ydata(), freq[:, c])
        np.testing.assert_array_equal(ax.lines[0].get_xdata(), frequencies)
    fig = plot_frequency_relevance(frequencies, freq, channels=1, kind="line")
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), freq[:, 1])


def test_time_frequency_plot_draws_the_relevance(tmp_path):
    x, R = series(60, seed=15, channels=(2,))
    times, frequencies, tf = time_frequency_relevance(x, R, window=12, time_axis=-1)  # (C, M, F)
    fig = plot_time_frequency_relevance(times, frequencies, tf, channel_axis=0, channels="each",
                                        path=tmp_path / "tf.png")
    meshes = [ax.collections[0] for ax in fig.axes[:2]]  # the panels; the colour bar's axes come last
    assert len(fig.axes) == 3
    limit = np.abs(tf).max()
    for c, mesh in enumerate(meshes):
        np.testing.assert_array_equal(np.asarray(mesh.get_array()).reshape(len(frequencies), len(times)), tf[c].T)
        assert mesh.norm.vmin == -limit and mesh.norm.vmax == limit
        np.testing.assert_allclose(mesh.get_coordinates()[0, :-1, 0] + np.diff(mesh.get_coordinates()[0, :, 0]) / 2,
                                   times)
    assert (tmp_path / "tf.png").stat().st_size > 0
    fig = plot_time_frequency_relevance(times, frequencies, np.moveaxis(tf, 0, -1))  # (M, F, C), summed
    mesh = fig.axes[0].collections[0]
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(len(frequencies), len(times)), tf.sum(0).T,
                               rtol=0, atol=1e-15)
    # two-sided bins are drawn in ascending frequency
    times, frequencies, two = time_frequency_relevance(x[0], R[0], window=12, real=False)
    mesh = plot_time_frequency_relevance(times, frequencies, two).axes[0].collections[0]
    order = np.argsort(frequencies, kind="stable")
    np.testing.assert_array_equal(np.asarray(mesh.get_array()).reshape(12, len(times)), two[:, order].T)


def test_plots_refuse_batches_and_mismatched_axes():
    frequencies = np.fft.rfftfreq(20)
    with pytest.raises(ValueError, match=r"plot one sample.*index a batch first"):
        plot_frequency_relevance(frequencies, np.zeros((2, 11, 3)))
    with pytest.raises(ValueError, match="with channels first pass channel_axis=0"):
        plot_frequency_relevance(frequencies, np.zeros((3, 11)))
    with pytest.raises(ValueError, match="channels must be 'sum', 'each' or a channel index in 0…2"):
        plot_frequency_relevance(frequencies, np.zeros((11, 3)), channels=3)
    with pytest.raises(ValueError, match="kind must be 'bar' or 'line'"):
        plot_frequency_relevance(frequencies, np.zeros(11), kind="area")
