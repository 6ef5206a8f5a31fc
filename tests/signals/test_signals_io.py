"""signxai.signals.io: records from WFDB, .npy and CSV, with clear errors for bad files."""
import sys

import numpy as np
import pytest

from signxai.loading import InputError
from signxai.signals import STANDARD_LEADS, load_record
from signxai.signals.io import as_time_by_leads


def _signal(t=300, leads=12, seed=0):
    return np.random.default_rng(seed).normal(0, 0.5, (t, leads))


def test_npy_both_layouts_and_default_lead_names(tmp_path):
    x = _signal()
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", x.T.astype(np.float32))
    a = load_record(tmp_path / "a.npy", fs=250)
    b = load_record(tmp_path / "b.npy", fs=250)
    assert a.signal.shape == (300, 12) and a.signal.dtype == np.float64 and a.fs == 250.0
    np.testing.assert_array_equal(a.signal, x)
    np.testing.assert_allclose(b.signal, x, rtol=1e-7, atol=1e-7)  # float32 round trip
    assert a.leads == STANDARD_LEADS and a.leads[3] == "aVR" and a.duration == pytest.approx(1.2)
    three = load_record(_save(tmp_path / "c.npy", _signal(leads=3)), fs=100)
    assert three.leads == ("lead 1", "lead 2", "lead 3")
    one = load_record(_save(tmp_path / "d.npy", np.arange(50.0)), fs=100, leads=["II"])
    assert one.signal.shape == (50, 1) and one.leads == ("II",)
    # an explicit layout overrides the shape rule
    np.testing.assert_array_equal(load_record(tmp_path / "a.npy", fs=1, layout="leads_first").signal, x.T)


def _save(path, array):
    np.save(path, array)
    return path


def test_csv_with_header_and_time_column(tmp_path):
    x = _signal(t=40, leads=3)
    time = np.arange(40) / 200.0
    lines = ["time,I,II,V1"] + [",".join(f"{v:.10g}" for v in (t, *row)) for t, row in zip(time, x)]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    record = load_record(tmp_path / "r.csv")
    assert record.leads == ("I", "II", "V1") and record.fs == pytest.approx(200.0)
    np.testing.assert_allclose(record.signal, x, rtol=1e-9)
    # semicolons, no header: fs is required, lead names default
    (tmp_path / "s.csv").write_text("\n".join(";".join(f"{v:.10g}" for v in row) for row in x))
    with pytest.raises(InputError, match="sampling rate is not stored.*--fs"):
        load_record(tmp_path / "s.csv")
    plain = load_record(tmp_path / "s.csv", fs=500)
    assert plain.leads == ("lead 1", "lead 2", "lead 3") and plain.fs == 500.0
    np.testing.assert_allclose(plain.signal, x, rtol=1e-9)


def test_wfdb_round_trip(tmp_path):
    wfdb = pytest.importorskip("wfdb")
    x = _signal(t=500)
    wfdb.wrsamp("rec01", fs=500, units=["mV"] * 12, sig_name=list(STANDARD_LEADS), p_signal=x, fmt=["16"] * 12,
                adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    for path in (tmp_path / "rec01.hea", tmp_path / "rec01.dat", tmp_path / "rec01"):
        record = load_record(path)
        assert record.fs == 500.0 and record.leads == STANDARD_LEADS and record.units == ("mV",) * 12
        assert record.name == "rec01" and record.signal.shape == (500, 12)
        np.testing.assert_allclose(record.signal, x, atol=0.5 / 1000 + 1e-12)  # 16-bit at 1000 units per mV


def test_wfdb_without_the_extra_names_it(tmp_path, monkeypatch):
    (tmp_path / "r.hea").write_text("r 1 100 10\n")
    monkeypatch.setitem(sys.modules, "wfdb", None)  # import wfdb now raises ImportError
    with pytest.raises(InputError, match=r"pip install 'signxai\[ecg\]'"):
        load_record(tmp_path / "r.hea")


@pytest.mark.parametrize("make, message", [
    (lambda p: np.save(p / "x.npy", np.zeros((2, 3, 4, 5))), "1-D .* or 2-D"),
    (lambda p: np.save(p / "x.npy", np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]])), "NaN .* time step 0, lead 1"),
    (lambda p: np.save(p / "x.npy", np.array(["a", "b"])), "real numbers"),
    (lambda p: (p / "x.npy").write_text("not numpy"), "cannot read"),
    (lambda p: (p / "x.csv").write_text("I,II\n1,2\n3\n"), "row 3 has 1 values"),
    (lambda p: (p / "x.csv").write_text("I,II\n1,2\n3,x\n"), "not a number"),
    (lambda p: (p / "x.csv").write_text("time,I\n0,1\n0,2\n"), "time column must increase"),
    (lambda p: (p / "x.hea").write_text(""), None),
    (lambda p: (p / "x.edf").write_text(""), "unknown record format"),
])
def test_bad_files_give_clear_errors(tmp_path, make, message):
    make(tmp_path)
    path = next(tmp_path.iterdir())
    if path.suffix == ".hea":
        pytest.importorskip("wfdb")
        message = "cannot read the WFDB record"
    with pytest.raises(InputError, match=message):
        load_record(path, fs=100)


def test_missing_files_and_bad_parameters(tmp_path):
    with pytest.raises(InputError, match="no such record file"):
        load_record(tmp_path / "nope.npy", fs=1)
    with pytest.raises(InputError, match="no WFDB header"):
        load_record(tmp_path / "nope.hea")
    np.save(tmp_path / "x.npy", _signal())
    with pytest.raises(InputError, match="positive number of Hz"):
        load_record(tmp_path / "x.npy", fs=0)
    with pytest.raises(InputError, match="2 lead names given for a signal with 12 leads"):
        load_record(tmp_path / "x.npy", fs=1, leads=["I", "II"])
    with pytest.raises(InputError, match="layout must be"):
        as_time_by_leads(np.zeros((5, 2)), "rows")


def test_loading_never_changes_the_caller_array():
    x = _signal(t=20, leads=2)
    before = x.copy()
    out = as_time_by_leads(x)
    out += 1
    np.testing.assert_array_equal(x, before)
