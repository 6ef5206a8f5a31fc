"""signxai.signals.aggregate: relevance layouts, normalisation, per-lead and per-window sums."""
import numpy as np
import pytest

from signxai.loading import InputError
from signxai.signals import as_time_by_leads_map, normalize_relevance, per_lead, per_window


def _map():
    # 6 time steps x 3 leads, hand-checkable
    return np.array([[1.0, -2.0, 0.0],
                     [0.5, 0.0, 0.0],
                     [-1.0, 4.0, 0.0],
                     [0.0, 1.0, 0.0],
                     [2.0, -1.0, 0.0],
                     [0.0, 0.0, 0.0]])


def test_layouts():
    r = _map()
    np.testing.assert_array_equal(as_time_by_leads_map(r.T, "channels_first"), r)
    np.testing.assert_array_equal(as_time_by_leads_map(r[None], "channels_last"), r)  # batch of 1
    np.testing.assert_array_equal(as_time_by_leads_map(r.T[None], "auto", signal_shape=(6, 3)), r)
    np.testing.assert_array_equal(as_time_by_leads_map(r, "auto", signal_shape=(6, 3)), r)
    np.testing.assert_array_equal(as_time_by_leads_map(r.T), r)  # no signal: more columns than rows = (leads, T)
    with pytest.raises(InputError, match="reads both ways"):
        as_time_by_leads_map(np.zeros((4, 4)), "auto", signal_shape=(4, 4))
    with pytest.raises(InputError, match="fits neither"):
        as_time_by_leads_map(np.zeros((5, 3)), "auto", signal_shape=(6, 3))
    with pytest.raises(InputError, match="does not match"):
        as_time_by_leads_map(r, "channels_first", signal_shape=(6, 3))
    with pytest.raises(InputError, match="one record at a time"):
        as_time_by_leads_map(np.zeros((2, 6, 3)))
    with pytest.raises(InputError, match="NaN"):
        as_time_by_leads_map(np.full((6, 3), np.nan))


def test_per_lead_statistics():
    r = _map()
    table = per_lead(r.T, ["I", "II", "V1"], layout="channels_first")
    assert list(table["lead"]) == ["I", "II", "V1"]
    np.testing.assert_allclose(table["sum"], [2.5, 2.0, 0.0])
    np.testing.assert_allclose(table["positive"], [3.5, 5.0, 0.0])
    np.testing.assert_allclose(table["negative"], [-1.0, -3.0, 0.0])
    np.testing.assert_allclose(table["mean_abs"], [4.5 / 6, 8.0 / 6, 0.0])
    np.testing.assert_allclose(table["share_abs"], [4.5 / 12.5, 8.0 / 12.5, 0.0])
    np.testing.assert_allclose(table["positive"] + table["negative"], table["sum"])
    zero = per_lead(np.zeros((5, 2)))
    np.testing.assert_array_equal(zero["share_abs"], [0.0, 0.0])
    assert list(zero["lead"]) == ["lead 1", "lead 2"]


def test_per_window_in_samples_and_seconds():
    r = _map()
    windows = per_window(r, window=4)  # [0, 4) and the partial [4, 6)
    np.testing.assert_array_equal(windows["start"], [0, 4])
    np.testing.assert_array_equal(windows["stop"], [4, 6])
    np.testing.assert_allclose(windows["sum"], [3.5, 1.0])
    np.testing.assert_allclose(windows["positive"], [6.5, 2.0])
    np.testing.assert_allclose(windows["negative"], [-3.0, -1.0])
    np.testing.assert_allclose(windows["mean_abs"], [9.5 / 12, 3.0 / 6])  # over the samples each window has
    seconds = per_window(r, window=0.2, fs=10.0, step=0.1, per_lead=True)  # 2 samples, step 1
    assert seconds["sum"].shape == (6, 3)
    np.testing.assert_allclose(seconds["sum"][:, 1], [-2.0, 4.0, 5.0, 0.0, -1.0, 0.0])
    np.testing.assert_allclose(seconds["start_s"], np.arange(6) / 10.0)
    np.testing.assert_allclose(seconds["stop_s"], [0.2, 0.3, 0.4, 0.5, 0.6, 0.6])
    # the windows of a non-overlapping split add up to the per-lead sums
    split = per_window(r, window=2, per_lead=True)
    np.testing.assert_allclose(split["sum"].sum(axis=0), per_lead(r)["sum"])
    with pytest.raises(InputError, match="at least one sample"):
        per_window(r, window=0.01, fs=10.0)


def test_normalisation_global_and_per_lead():
    r = _map()
    g = normalize_relevance(r, "global")
    np.testing.assert_allclose(g, r / 4.0)
    lead = normalize_relevance(r, "lead")
    np.testing.assert_allclose(lead[:, 0], r[:, 0] / 2.0)
    np.testing.assert_allclose(lead[:, 1], r[:, 1] / 4.0)
    np.testing.assert_array_equal(lead[:, 2], 0.0)  # an all-zero lead stays 0
    # one scale for both signs (symmetric around 0): -2 and 2 map to -1 and 1, zeros stay zeros
    assert lead.max() == 1.0 and lead.min() == -0.5
    np.testing.assert_array_equal(lead == 0, r == 0)
    np.testing.assert_array_equal(normalize_relevance(r, None), r)
    before = r.copy()
    normalize_relevance(r, "lead")
    np.testing.assert_array_equal(r, before)
    with pytest.raises(InputError, match="negative values"):
        normalize_relevance(r, "global", signed=False)
    with pytest.raises(InputError, match="'global', 'lead' or None"):
        normalize_relevance(r, "max")
