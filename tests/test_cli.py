"""The ``signxai`` command line, run in-process through ``main([...])``."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import signxai
from signxai.cli import main, quiet_tensorflow_logs
from signxai.demo import load_demo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The digits demo saved as .keras and .pt, a 24x24 RGB PNG of a digit and .npy inputs in both layouts."""
    folder = tmp_path_factory.mktemp("cli")
    demo = load_demo("digits")
    demo.keras_model.save(folder / "digits.keras")
    torch.save(demo.torch_model, folder / "digits.pt")
    pixels = np.repeat(np.round(demo.x[0] * 255).astype(np.uint8), 3, axis=-1)
    Image.fromarray(pixels).resize((24, 24), Image.NEAREST).save(folder / "digit.png")
    np.save(folder / "x.npy", demo.x[:3])
    np.save(folder / "x_cf.npy", demo.x_channels_first[:3])
    (folder / "not_an_image.png").write_text("hello")
    return folder


def test_methods_lists_the_catalog_by_family(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "lrp_epsilon (61)" in out and "grad_cam (8)" in out and "  lrpsign_epsilon_100_mu_neg_0_5\n" in out
    assert out.rstrip().endswith("152 methods in 14 families")


def test_python_dash_m():
    result = subprocess.run([sys.executable, "-m", "signxai", "methods"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "152 methods" in result.stdout


TF_NATIVE_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\]|absl::InitializeLog|oneDNN|cuInit",
                           re.MULTILINE)


def _compare_process(tmp_path, **env):
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"} | env
    return subprocess.run([sys.executable, "-m", "signxai", "compare", "--methods", "gradient,lrp_epsilon_0_1",
                           "--samples", "2", "--out-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          env=environ, timeout=300)


def test_compare_prints_progress_and_summary_without_tensorflow_logs(tmp_path):
    result = _compare_process(tmp_path / "quiet")
    assert result.returncode == 0, result.stderr
    assert TF_NATIVE_LOG.findall(result.stdout + result.stderr) == []
    # stderr: the logit check and the progress bar (tqdm, redrawn with \r), nothing else
    lines = [line.strip() for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert re.fullmatch(r"logits: max relative difference \S+ on 2 sample\(s\)", lines[0])
    assert all(re.match(r"(compare|\[[12]/2\] \w+|compared 2 method\(s\)): +\d+%\|", line) for line in lines[1:]), lines
    assert any(line.startswith("[2/2] lrp_epsilon_0_1:") for line in lines)
    assert re.match(r"compared 2 method\(s\): 100%\|", lines[-1])
    # stdout: the table, the summary and where the files are
    out = result.stdout.splitlines()
    assert out[0].split()[0] == "method" and [line.split()[0] for line in out[1:3]] == ["gradient", "lrp_epsilon_0_1"]
    assert out[3] == "2 methods within docs/equivalence.md#agreement-gates, 0 n/a, 0 failed"
    assert out[4] == (f"wrote {tmp_path / 'quiet' / 'values_method_comparison'}.txt, .csv, .json and 2 figure(s) in "
                      f"{tmp_path / 'quiet' / 'figures'} (input | TensorFlow | PyTorch | difference per method)")
    assert len(out) == 5
    assert sorted(p.name for p in (tmp_path / "quiet" / "figures").iterdir()) == ["gradient.png", "lrp_epsilon_0_1.png"]


def test_compare_keeps_a_log_level_the_user_set(tmp_path):
    """TF_CPP_MIN_LOG_LEVEL=0 from the user wins, and then TensorFlow's native lines do appear (so the check above
    would see them)."""
    result = _compare_process(tmp_path, TF_CPP_MIN_LOG_LEVEL="0")
    assert result.returncode == 0, result.stderr
    assert "Not handling type DT_DOUBLE" in result.stderr and TF_NATIVE_LOG.search(result.stderr)


def test_main_called_from_python_leaves_the_environment_alone(monkeypatch, capsys):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert main(["methods"]) == 0
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    environ = {}
    quiet_tensorflow_logs(environ)
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "3"}
    environ = {"TF_CPP_MIN_LOG_LEVEL": "1"}
    quiet_tensorflow_logs(environ)
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "1"}


def test_explain_image_to_png_and_npy(files, tmp_path, capsys):
    png, npy = tmp_path / "map.png", tmp_path / "map.npy"
    args = ["explain", "--model", str(files / "digits.keras"), "--input", str(files / "digit.png"),
            "--method", "lrp_epsilon_0_1", "--target", "3"]
    assert main(args + ["--out", str(png)]) == 0
    assert "lrp_epsilon_0_1: relevance map (8, 8, 1) float32" in capsys.readouterr().out
    with Image.open(png) as image:
        assert image.size == (8, 8)
        pixels = {tuple(p) for p in np.asarray(image.convert("RGB")).reshape(-1, 3)}
    assert (255, 0, 0) in pixels and (255, 255, 255) in pixels  # the peak is pure red, relevance <= 0 white

    assert main(args + ["--out", str(npy)]) == 0
    keras_map = np.load(npy)
    assert keras_map.shape == (8, 8, 1) and keras_map.dtype == np.float32
    # the pickled PyTorch twin takes the same image channels-first (a PyTorch module declares no input size)
    torch_args = ["--model", str(files / "digits.pt"), "--size", "8", "8", "--out", str(npy)]
    assert main(args[:1] + torch_args + args[3:]) == 0
    torch_map = np.load(npy)
    assert torch_map.shape == (1, 8, 8)
    np.testing.assert_allclose(np.moveaxis(torch_map, 0, -1), keras_map, rtol=0, atol=1e-5 * np.abs(keras_map).max())


def test_explain_npy_input(files, tmp_path):
    out = tmp_path / "map.npy"
    for model, x in (("digits.keras", "x.npy"), ("digits.pt", "x_cf.npy")):
        assert main(["explain", "--model", str(files / model), "--input", str(files / x), "--method",
                     "gradient_x_sign_mu", "--param", "mu=0.5", "--dtype", "float64", "--out", str(out)]) == 0
        relevance = np.load(out)
        assert relevance.shape == np.load(files / x).shape and relevance.dtype == np.float64
    png = tmp_path / "map.png"
    assert main(["explain", "--model", str(files / "digits.pt"), "--input", str(files / "x_cf.npy"), "--method",
                 "gradient", "--out", str(png), "--cmap", "seismic"]) == 0
    with Image.open(png) as image:
        assert image.size == (8, 8)


def _table(out_dir):
    lines = (out_dir / "values_method_comparison.txt").read_text().splitlines()
    rows = {}
    for line in lines[1:-1]:
        method, mae, rel, pearson, t_tf, t_pt, status, *note = line.split(maxsplit=7)
        rows[method] = {"mae": mae, "rel": rel, "pearson": pearson, "status": status, "note": " ".join(note)}
    return lines[0].split()[:7], rows, lines[-1]


def test_compare_writes_table_csv_json_and_figures(tmp_path, capsys):
    assert main(["compare", "--methods", "lrp_epsilon_0_1,gradient,grad_cam", "--out-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "[1/3] lrp_epsilon_0_1" in captured.err and "[3/3] grad_cam" in captured.err
    header, rows, summary = _table(tmp_path)
    assert header == ["method", "MAE", "rel_err", "pearson", "t_tf_ms", "t_pt_ms", "status"]
    assert list(rows) == ["lrp_epsilon_0_1", "gradient", "grad_cam"]
    for row in rows.values():
        assert row["status"] == "ok" and float(row["rel"]) < 1e-5 and float(row["pearson"]) > 0.999999
    assert summary == "3 methods within docs/equivalence.md#agreement-gates, 0 n/a, 0 failed"
    assert summary in captured.out
    report = json.loads((tmp_path / "values_method_comparison.json").read_text())
    assert [r["method"] for r in report["rows"]] == list(rows) and report["summary"]["ok"] == 3
    assert (tmp_path / "values_method_comparison.csv").read_text().startswith("method,mae,rel_error,pearson")
    for method in rows:
        with Image.open(tmp_path / "figures" / f"{method}.png") as figure:
            assert figure.size[0] > 3 * figure.size[1]  # four panels side by side


def test_compare_reports_not_applicable_names(tmp_path, capsys):
    assert main(["compare", "--methods", "grad_cam_timeseries,grad_cam_MNISTCNN,zblrp_z,gradient_x_sign_mu",
                 "--out-dir", str(tmp_path)]) == 0
    _, rows, summary = _table(tmp_path)
    assert rows["grad_cam_timeseries"]["status"] == rows["grad_cam_MNISTCNN"]["status"] == "n/a"
    assert "conv2d_1" in rows["grad_cam_MNISTCNN"]["note"]
    assert summary == "2 methods within docs/equivalence.md#agreement-gates, 2 n/a, 0 failed"


def test_compare_fails_on_a_mismatch_or_an_exception(tmp_path, capsys, monkeypatch):
    explain = signxai.calculate_relevancemap

    def broken(model, x, method, **kwargs):
        if isinstance(model, torch.nn.Module):
            if method == "lrp_z":
                raise RuntimeError("boom")
            return explain(model, x, method, **kwargs) * 1.001
        return explain(model, x, method, **kwargs)

    monkeypatch.setattr(signxai, "calculate_relevancemap", broken)
    assert main(["compare", "--methods", "gradient,lrp_z", "--out-dir", str(tmp_path)]) == 1
    _, rows, summary = _table(tmp_path)
    assert rows["gradient"]["status"] == "failed" and "gate 1: float64 error" in rows["gradient"]["note"]
    assert rows["lrp_z"]["note"] == "RuntimeError: boom"
    assert summary == "0 methods within docs/equivalence.md#agreement-gates, 0 n/a, 2 failed"


@pytest.mark.parametrize("args, message", [
    (["explain", "--model", "missing.keras", "--input", "{f}/digit.png", "--method", "lrp_z"], "no such file"),
    (["explain", "--model", "{f}/digits.keras", "--input", "{f}/not_an_image.png", "--method", "lrp_z"],
     "cannot identify image file"),
    (["explain", "--model", "{f}/digits.keras", "--input", "{f}/digit.png", "--method", "lrp_zz"],
     "Unknown method 'lrp_zz'. Did you mean: lrp_z"),
    (["explain", "--model", "{f}/digits.keras", "--input", "{f}/digit.png", "--method", "lrp_z", "--target", "10"],
     "target 10 is out of range"),
    (["explain", "--model", "{f}/digits.pt", "--input", "{f}/digit.png", "--method", "lrp_z"],
     "the model cannot take an input of shape (1, 24, 24)"),
    (["explain", "--model", "{f}/x.npy", "--input", "{f}/digit.png", "--method", "lrp_z"], "unknown model format"),
    (["explain", "--model", "{f}/digits.keras", "--input", "{f}/digit.png"], "required: --method"),
    (["compare", "--methods", "nothing_like_this*"], "no catalog method matches"),
    (["compare", "--methods", "gradient,lrp_epsilonn_1"], "Unknown method 'lrp_epsilonn_1'"),
    (["compare", "--model", "vgg99"], "no such file: vgg99"),
])
def test_errors_are_one_line_with_status_2(files, capsys, args, message):
    assert main([a.replace("{f}", str(files)) for a in args]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("signxai: error: ") and captured.err.count("\n") == 1
    assert message in captured.err
