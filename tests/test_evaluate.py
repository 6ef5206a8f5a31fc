"""The SIGN-paper experiment: the shipped models and ``signxai evaluate`` (run in-process through ``main``)."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from signxai import calculate_relevancemaps
from signxai.cli import main
from signxai.evaluate import MODELS, NETS, VARIANTS, load_experiment_model, load_test_digits, transform
from signxai.metrics import input_bias_correlation, pixel_flipping


def test_the_inputs_follow_the_papers_ranges():
    v, labels = load_test_digits()
    assert v.shape == (500, 8, 8) and v.min() == 0 and v.max() == 1 and set(labels) == set(range(10))
    for variant, (low, high) in VARIANTS.items():
        normal, inverted = transform(v, variant, False), transform(v, variant, True)
        for x in (normal, inverted):
            assert x.min() == low and x.max() == high
        np.testing.assert_allclose(normal + inverted, low + high, atol=1e-7)  # inversion mirrors the range
    np.testing.assert_array_equal(transform(v, "10", False), -v)  # strokes -1 on a 0 background


def test_the_shipped_models_are_twins_with_their_stated_accuracy():
    v, labels = load_test_digits()
    for name in MODELS:
        model = load_experiment_model(name)
        assert model.name == name and model.net in name and model.variant in name
        assert model.inverted == name.endswith("_INV")
        x = model.inputs(v)
        keras_logits = np.asarray(model.keras_model(x, training=False))
        with torch.no_grad():
            torch_logits = model.torch_model(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))).numpy()
        np.testing.assert_allclose(torch_logits, keras_logits, rtol=0, atol=1e-4)
        assert np.mean(keras_logits.argmax(axis=1) == labels) == pytest.approx(model.accuracy, abs=1e-12)
        assert model.accuracy >= 0.9


def _rows(path):
    with open(path, newline="") as file:
        return {(r["model"], r["method"], r["metric"], r["framework"]): float(r["value"]) for r in csv.DictReader(file)}


def test_evaluate_writes_the_table_and_agrees_with_the_metrics(tmp_path, capsys):
    out = tmp_path / "ev"
    assert main(["evaluate", "--models", "DENSE_01,CNN_1[0]", "--methods", "gradient_x_input,lrpsign_z_mu",
                 "--samples", "5", "--steps", "16", "--randomisation-samples", "3", "--framework", "both",
                 "--seed", "3", "--out-dir", str(out)]) == 0
    captured = capsys.readouterr()
    assert "[##############################] 8/8" in captured.err  # the progress bar
    text = captured.out
    assert "Pixel flipping: area over the softmax curve (higher = more faithful) - DENSE" in text
    assert "Keras vs PyTorch: largest difference of any metric value" in text and "(within 0.0001)" in text
    assert (out / "evaluation.txt").read_text() in text
    rows = _rows(out / "evaluation.csv")
    model = load_experiment_model("CNN_10", "keras")
    x = model.inputs(load_test_digits()[0][:5])
    maps = calculate_relevancemaps(model.keras_model, x, "lrpsign_z_mu", mu=-0.5)
    flipping = pixel_flipping(model.keras_model, x, maps, steps=16, value_range=(-1, 0), seed=3)
    bias = input_bias_correlation(None, x, maps)
    assert rows["CNN_10", "lrpsign_z_mu", "aoc", "keras"] == pytest.approx(flipping.score, abs=1e-12)
    assert rows["CNN_10", "random order (baseline)", "aoc", "keras"] == pytest.approx(flipping.random_score,
                                                                                          abs=1e-12)
    assert rows["CNN_10", "lrpsign_z_mu", "pearson", "keras"] == pytest.approx(bias.mean_pearson, abs=1e-12)
    assert rows["CNN_10", "lrpsign_z_mu", "aoc", "torch"] == pytest.approx(flipping.score, abs=1e-4)
    lines = text.splitlines()
    cnn_table = lines.index("Pixel flipping: area over the softmax curve (higher = more faithful) - CNN")
    table_line = next(line for line in lines[cnn_table:] if line.startswith("lrpsign_z_mu"))
    assert f"{rows['CNN_10', 'lrpsign_z_mu', 'aoc', 'torch']:.3f}" in table_line
    assert {key[0] for key in rows} == {"CNN_10", "DENSE_01"}
    assert {key[2] for key in rows} == {"aoc", "pearson", "spearman", "mprt"}
    report = json.loads((out / "evaluation.json").read_text())
    assert report["steps"] == 16 and report["frameworks"] == ["torch", "keras"]
    curve = next(r["value"] for r in report["records"] if r["metric"] == "curve" and r["framework"] == "keras"
                 and r["model"] == "CNN_10" and r["method"] == "lrpsign_z_mu")
    np.testing.assert_allclose(curve, flipping.curves.mean(axis=0), rtol=0, atol=1e-12)
    for name in ("pixel_flipping_curves.png", "metrics_heatmap.png"):
        with Image.open(out / name) as figure:
            assert figure.size[0] > 500 and figure.size[1] > 300


def test_methods_that_do_not_apply_are_reported(tmp_path, capsys):
    assert main(["evaluate", "--models", "DENSE_01", "--methods", "grad_cam,gradient", "--samples", "2", "--steps",
                 "4", "--randomisation-samples", "0", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "n/a: grad_cam on DENSE_01: Grad-CAM needs a convolution layer" in out
    assert {key[1] for key in _rows(tmp_path / "evaluation.csv")} == {"gradient", "random order (baseline)"}
    assert main(["evaluate", "--models", "DENSE_01", "--methods", "grad_cam", "--samples", "2",
                 "--out-dir", str(tmp_path)]) == 2
    assert "none of the methods applies" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["--samples", "0"], "--samples must be in 1 … 500"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--models", "MLP_01"], "no model matches 'MLP_01'"),
    (["--methods", "lrp_epsilom"], "lrp_epsilon"),
    (["--framework", "jax"], "invalid choice"),
    (["--randomisation-samples", "-1"], "must be >= 0"),
])
def test_evaluate_rejects_bad_arguments(arguments, message, tmp_path, capsys):
    assert main(["evaluate", *arguments, "--out-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("signxai: error:") and message in error


@pytest.mark.slow
def test_default_run_sign_mu_keeps_its_score_across_input_ranges(tmp_path, capsys):
    """The SIGN paper's claim on the default run (about a minute): SIGN-μ (μ = the range midpoint) keeps its
    pixel-flipping score over the six input encodings, x-multiplied methods do not."""
    assert main(["evaluate", "--randomisation-samples", "0", "--out-dir", str(tmp_path)]) == 0
    rows = _rows(tmp_path / "evaluation.csv")
    for net in NETS:
        def spread(method, net=net):  # called in this iteration only
            values = [rows[m, method, "aoc", "torch"] for m in MODELS if m.startswith(net + "_")]
            return max(values) - min(values)

        for sign_mu, x_multiplied in (("gradient_x_sign_mu", "gradient_x_input"), ("lrpsign_z_mu", "lrp_z"),
                                      ("lrpsign_epsilon_0_1_mu", "lrp_epsilon_0_1")):
            assert spread(sign_mu) < 0.1 < spread(x_multiplied)
            for model in (m for m in MODELS if m.startswith(net + "_")):
                assert rows[model, sign_mu, "aoc", "torch"] > rows[model, "random order (baseline)", "aoc", "torch"]
