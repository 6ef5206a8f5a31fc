"""``signxai compare`` on a user's own pair: ``--keras-model A.keras --torch-model B.pt``, ``--input`` (image or .npy),
and the logit check that stops a pair that is not a twin before any method runs."""
import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

import signxai
from signxai.cli import main
from signxai.demo import load_demo


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The digits demo twins saved as .keras and .pt (the PyTorch twin is a hand-written module, not a conversion),
    a twin with one perturbed weight, a state_dict, a 24x24 digit PNG and .npy inputs."""
    folder = tmp_path_factory.mktemp("pair")
    demo = load_demo("digits")
    demo.keras_model.save(folder / "digits.keras")
    torch.save(demo.torch_model, folder / "digits.pt")
    off = copy.deepcopy(demo.torch_model)
    with torch.no_grad():
        next(off.parameters()).add_(0.05)
    torch.save(off, folder / "off.pt")
    torch.save(demo.torch_model.state_dict(), folder / "weights.pt")
    torch.save(load_demo("eeg", "torch").torch_model, folder / "eeg.pt")
    pixels = np.repeat(np.round(demo.x[0] * 255).astype(np.uint8), 3, axis=-1)
    Image.fromarray(pixels).resize((24, 24), Image.NEAREST).save(folder / "digit.png")
    np.save(folder / "x.npy", demo.x[:3])
    np.save(folder / "x_one.npy", demo.x[5])
    np.save(folder / "x_wrong.npy", demo.x[:3, :, :4])
    return folder


def _pair(files, torch_file="digits.pt"):
    return ["compare", "--keras-model", str(files / "digits.keras"), "--torch-model", str(files / torch_file)]


def _report(out_dir):
    return json.loads((out_dir / "values_method_comparison.json").read_text())


def _relative_logit_difference(demo, torch_model, x):
    y_tf = demo.keras_model(x).numpy().astype(np.float64)
    with torch.no_grad():
        y_pt = torch_model(torch.tensor(np.ascontiguousarray(np.moveaxis(x, -1, 1)))).double().numpy()
    return np.abs(y_tf - y_pt).max() / np.abs(y_tf).max()


def test_pair_on_the_default_batch(files, tmp_path, capsys):
    assert main(_pair(files) + ["--methods", "gradient,lrp_epsilon_0_1", "--out-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "logits: max relative difference" in captured.err
    report = _report(tmp_path)
    assert report["samples"] == 4 and report["model"] == f"{files / 'digits.keras'} + {files / 'digits.pt'}"
    assert report["logit_max_rel_diff"] < 1e-6  # the twins compute the same logits
    assert [row["status"] for row in report["rows"]] == ["ok", "ok"]
    assert all(row["rel_error"] < 1e-5 for row in report["rows"])
    assert "2 methods within docs/equivalence.md#agreement-gates, 0 n/a, 0 failed" in captured.out


def test_pair_on_an_image(files, tmp_path):
    """The image is converted to grayscale, resized to the Keras input size (8x8, bilinear) and scaled to [0, 1]; the
    reported error is the one of the maps of exactly that input."""
    assert main(_pair(files) + ["--input", str(files / "digit.png"), "--methods", "gradient_x_sign",
                                "--out-dir", str(tmp_path)]) == 0
    report = _report(tmp_path)
    assert report["samples"] == 1
    with Image.open(files / "digit.png") as image:
        x = (np.asarray(image.convert("L").resize((8, 8), Image.BILINEAR), dtype=np.float32) / 255)[None, ..., None]
    demo = load_demo("digits")
    keras_map = signxai.calculate_relevancemap(demo.keras_model, x, "gradient_x_sign")
    torch_map = np.moveaxis(signxai.calculate_relevancemap(
        demo.torch_model, np.ascontiguousarray(np.moveaxis(x, -1, 1)), "gradient_x_sign"), 1, -1)
    difference = np.abs(keras_map.astype(np.float64) - torch_map)
    (row,) = report["rows"]
    assert row["status"] == "ok"
    assert row["mae"] == pytest.approx(difference.mean(), rel=1e-9, abs=1e-15)
    assert row["rel_error"] == pytest.approx(difference.max() / np.abs(keras_map).max(), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("name, extra, samples", [("x.npy", [], 3), ("x_one.npy", [], 1),
                                                   ("x.npy", ["--samples", "2"], 2)])
def test_pair_on_an_npy_input(files, tmp_path, name, extra, samples):
    assert main(_pair(files) + ["--input", str(files / name), "--methods", "grad_cam", "--out-dir", str(tmp_path)]
                + extra) == 0
    report = _report(tmp_path)
    assert report["samples"] == samples and report["rows"][0]["status"] == "ok"


def test_a_pair_that_is_not_a_twin_stops_before_any_method(files, tmp_path, capsys):
    out_dir = tmp_path / "out"
    assert main(_pair(files, "off.pt") + ["--methods", "gradient", "--out-dir", str(out_dir)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("signxai: error: not a twin pair: the models' logits differ by ")
    assert captured.err.count("\n") == 1 and "--force" in captured.err and "[1/1]" not in captured.err
    x = np.random.RandomState(0).uniform(0, 1, (4, 8, 8, 1)).astype(np.float32)  # the default batch
    expected = _relative_logit_difference(load_demo("digits"), torch.load(files / "off.pt", weights_only=False), x)
    assert expected > 1e-4 and f"differ by {expected:.3g} of the largest |logit|" in captured.err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_force_explains_a_pair_that_is_not_a_twin(files, tmp_path, capsys):
    status = main(_pair(files, "off.pt") + ["--force", "--methods", "gradient", "--out-dir", str(tmp_path)])
    captured = capsys.readouterr()
    assert "signxai: warning: the models' logits differ by" in captured.err and "(--force)" in captured.err
    report = _report(tmp_path)
    assert report["logit_max_rel_diff"] > 1e-4
    assert status == 1 and report["rows"][0]["status"] == "failed"  # different weights: different gradients


def test_single_file_conversion_takes_an_input(files, tmp_path):
    assert main(["compare", "--model", str(files / "digits.keras"), "--input", str(files / "x.npy"), "--methods",
                 "lrp_z", "--out-dir", str(tmp_path)]) == 0
    report = _report(tmp_path)
    assert report["samples"] == 3 and report["rows"][0]["status"] == "ok" and report["logit_max_rel_diff"] < 1e-6


def test_help_documents_the_pair_and_force(capsys):
    assert main(["compare", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--keras-model" in out and "--torch-model" in out and "--input" in out
    assert "--force" in out and "1e-4" in out and "exit status 2" in out


@pytest.mark.parametrize("args, message", [
    (["compare", "--keras-model", "{f}/digits.keras"], "--keras-model and --torch-model go together"),
    (["compare", "--torch-model", "{f}/digits.pt"], "--keras-model and --torch-model go together"),
    (["compare", "--model", "digits", "--keras-model", "{f}/digits.keras", "--torch-model", "{f}/digits.pt"],
     "either --model or --keras-model with --torch-model, not both"),
    (["compare", "--keras-model", "{f}/digits.keras", "--torch-model", "{f}/x.npy"], "must be a .pt/.pth file"),
    (["compare", "--keras-model", "{f}/digits.pt", "--torch-model", "{f}/digits.pt"], "must be a .keras/.h5 file"),
    (["compare", "--keras-model", "{f}/digits.keras", "--torch-model", "{f}/missing.pt"], "no such file"),
    (["compare", "--keras-model", "{f}/digits.keras", "--torch-model", "{f}/weights.pt"],
     "not a pickled torch.nn.Module"),
    (["compare", "--keras-model", "{f}/digits.keras", "--torch-model", "{f}/eeg.pt"],
     "the PyTorch model cannot take the input of shape (4, 1, 8, 8)"),
    (["compare", "--keras-model", "{f}/digits.keras", "--torch-model", "{f}/digits.pt", "--input",
      "{f}/x_wrong.npy"], "the input has shape (3, 8, 4, 1); the Keras model takes (8, 8, 1)"),
    (["compare", "--keras-model", "{f}/digits.keras", "--torch-model", "{f}/digits.pt", "--samples", "0"],
     "--samples must be at least 1"),
])
def test_pair_errors_are_one_line_with_status_2(files, capsys, args, message):
    assert main([a.replace("{f}", str(files)) for a in args]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("signxai: error: ") and captured.err.count("\n") == 1
    assert message in captured.err
