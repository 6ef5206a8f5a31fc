"""``signxai explain --record``: a 12-lead record in, the map in the model's layout or the 12-lead plot out."""
import re

import numpy as np
import pytest
import torch

from signxai import calculate_relevancemap
from signxai.cli import main
from signxai.converters.spec_models import build_keras_model, build_torch_model, random_weights
from signxai.signals import STANDARD_LEADS

SPEC = {"input_shape": [200, 12], "layers": [
    {"kind": "conv1d", "filters": 4, "kernel": 5, "padding": "same", "activation": "relu"},
    {"kind": "gap1d"},
    {"kind": "dense", "units": 2},
]}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ecg_cli")
    weights = random_weights(SPEC, seed=3)
    torch.save(build_torch_model(SPEC, weights), folder / "ecg.pt")
    build_keras_model(SPEC, weights).save(folder / "ecg.keras")
    x = np.random.default_rng(0).normal(0, 1, (200, 12)).astype(np.float32)
    np.save(folder / "rec.npy", x)
    np.save(folder / "rec_11.npy", x[:, :11])
    np.save(folder / "rec_short.npy", x[:150])
    lines = [",".join(STANDARD_LEADS)] + [",".join(f"{v:.9g}" for v in row) for row in x]
    (folder / "rec.csv").write_text("\n".join(lines))
    return folder, x


def test_record_to_npy_in_each_models_layout(files, tmp_path, capsys):
    folder, x = files
    maps = {}
    for model, layout in (("ecg.keras", "last"), ("ecg.pt", "first")):
        out = tmp_path / f"{layout}.npy"
        assert main(["explain", "--model", str(folder / model), "--record", str(folder / "rec.npy"), "--fs", "100",
                     "--method", "lrp_epsilon_0_1", "--out", str(out)]) == 0
        assert "record rec (12 leads, 2 s at 100 Hz)" in capsys.readouterr().out
        maps[layout] = np.load(out)
    assert maps["last"].shape == (1, 200, 12) and maps["first"].shape == (1, 12, 200)
    # the map is the library's, on the record in the model's layout
    keras_model = build_keras_model(SPEC, random_weights(SPEC, seed=3))
    np.testing.assert_array_equal(maps["last"], calculate_relevancemap(keras_model, x[None], "lrp_epsilon_0_1"))
    # and both frameworks agree
    scale = np.abs(maps["last"]).max()
    assert scale > 0 and np.abs(maps["first"].transpose(0, 2, 1) - maps["last"]).max() <= 1e-5 * scale


def test_record_csv_to_the_12_lead_plot(files, tmp_path, capsys):
    folder, _ = files
    out = tmp_path / "ecg.png"
    assert main(["explain", "--model", str(folder / "ecg.pt"), "--record", str(folder / "rec.csv"), "--fs", "100",
                 "--method", "gradient_x_sign", "--layout", "4x3", "--normalize", "lead", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_record_from_wfdb(files, tmp_path):
    wfdb = pytest.importorskip("wfdb")
    folder, x = files
    wfdb.wrsamp("rec", fs=100, units=["mV"] * 12, sig_name=list(STANDARD_LEADS), p_signal=x.astype(np.float64),
                fmt=["32"] * 12, adc_gain=[1e6] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    out = tmp_path / "wfdb.npy"
    assert main(["explain", "--model", str(folder / "ecg.keras"), "--record", str(tmp_path / "rec.hea"),
                 "--method", "gradient", "--out", str(out)]) == 0
    keras_model = build_keras_model(SPEC, random_weights(SPEC, seed=3))
    expected = calculate_relevancemap(keras_model, x[None], "gradient")
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("args, message", [
    (["--record", "{f}/rec.npy"], "sampling rate is not stored"),
    (["--record", "{f}/rec_11.npy", "--fs", "100"], "the model takes 12 leads; the record rec_11.npy has 11"),
    (["--record", "{f}/rec_short.npy", "--fs", "100"], "takes 200 time steps; .* has 150 .* crop or resample"),
    (["--record", "{f}/rec.npy", "--input", "{f}/rec.npy"], "not allowed with argument"),
    (["--record", "{f}/missing.npy", "--fs", "1"], "no such record file"),
])
def test_record_errors_are_one_line_with_status_2(files, capsys, args, message):
    folder, _ = files
    argv = ["explain", "--model", str(folder / "ecg.keras"), "--method", "gradient"]
    argv += [a.format(f=folder) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("signxai: error: ") and err.count("\n") == 1
    assert re.search(message, err), err


def test_the_ecg_demo_is_a_subcommand(capsys):
    assert main(["ecg-demo", "--help"]) == 0
    assert "--models DIR" in capsys.readouterr().out


def test_record_with_an_onnx_model_exported_from_pytorch(files, tmp_path, capsys):
    """An ONNX model declares (12, 200): the record goes in channels-first, as it was exported."""
    import warnings

    pytest.importorskip("onnx2torch")
    folder, x = files
    model = torch.load(folder / "ecg.pt", weights_only=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter needs no onnxscript
        torch.onnx.export(model, (torch.zeros(1, 12, 200),), str(tmp_path / "ecg.onnx"), dynamo=False)
    out = tmp_path / "onnx.npy"
    assert main(["explain", "--model", str(tmp_path / "ecg.onnx"), "--record", str(folder / "rec.npy"), "--fs", "100",
                 "--method", "gradient", "--out", str(out)]) == 0
    expected = calculate_relevancemap(model, x.T[None].copy(), "gradient")
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
