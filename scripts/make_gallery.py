"""Draw the gallery of ``docs/gallery/``: small PNGs of what signxai computes, from the trained models it ships.

Run from the repository root (about a minute on 2 cores; no download; only the ECG demo CNN is trained, seeded, in
about 10 s)::

    .venv/bin/python scripts/make_gallery.py

It writes

* ``methods.png`` — one column per method family (gradient, input×gradient, guided backprop, integrated gradients,
  SmoothGrad, Grad-CAM, LRP-ε, LRP-α1β0, an LRP composite, and the SIGN-μ variants of gradient and LRP-ε) on held-out
  digits of the digits demo (``signxai.demo``: a CNN on scikit-learn's 8×8 digits, the PyTorch twin);
* ``keras_vs_pytorch.png`` — the same maps computed on the Keras model and on its PyTorch twin, and their difference on
  the same colour scale, with the largest difference relative to the map's peak;
* ``sign_vs_input_bias.png`` — the finding of ``signxai evaluate`` (the SIGN paper's experiment): on the six input
  encodings of the shipped experiment CNNs, input×gradient and LRP-ε lose faithfulness where the background is 0 and
  their |R| then follows |x|, while the SIGN-μ variants do not; numbers from :func:`signxai.evaluate.evaluate_model`
  with the defaults of ``signxai evaluate`` (100 held-out digits, seed 0, PyTorch), maps of one digit beside them;
* ``eeg.png`` — LRP-ε-SIGN on a held-out window of the EEG spike-detection demo;
* ``frequency.png`` — DFT-LRP (``signxai.frequency``, docs/frequency.md): the LRP-ε map of an EEG demo window carried
  into the frequency and the time-frequency domain.
* ``ecg_12lead.png`` — LRP-ε on a held-out synthetic 12-lead record with planted ST elevation (V1–V4), the clinical 4×3
  layout of :func:`signxai.signals.plot_ecg`; the CNN of ``signxai.signals.demo`` is trained first (docs/ecg.md#demo).
* ``ecg_lstm.png`` — the same record explained by the demo's Conv1D + LSTM model, 12×1 layout (the whole record).
* ``transformer_faithfulness.png`` — the mean MoRF and LeRF pixel-flipping curves of AttnLRP, CP-LRP and the gradient
  methods on the digits ViT (:mod:`signxai.vit_demo`, docs/transformers.md#faithfulness; 500 held-out digits, five
  noise images, about a minute).
* ``text_faithfulness.png`` — the same with token flipping (``PAD`` and random ids) on the evidence transformer
  (:mod:`signxai.text_demo`, docs/transformers.md#text-faithfulness; 300 held-out sequences, 10–25 minutes on 2 cores).

Every figure is drawn with ``matplotlib.figure.Figure`` (no pyplot state); PNGs carry no time stamp, so a second run
on the same software writes the same files.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # this script owns its process: no TensorFlow C++ log lines

import torch  # noqa: E402  (PyTorch before TensorFlow: the triton trap, README)

import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import signxai  # noqa: E402
from signxai._keras_torch import channels_first, channels_last  # noqa: E402
from signxai.common.visualization import relevance_to_heatmap  # noqa: E402

OUT = ROOT / "docs" / "gallery"
PNG = {"dpi": 100, "metadata": {"Software": None}}

FAMILIES = (  # (column title, catalog or grammar name)
    ("gradient", "gradient"),
    ("input × gradient", "gradient_x_input"),
    ("guided backprop", "guided_backprop"),
    ("integrated\ngradients", "integrated_gradients"),
    ("SmoothGrad", "smoothgrad"),
    ("Grad-CAM", "grad_cam"),
    ("LRP-ε (0.1)", "lrp_epsilon_0_1"),
    ("LRP-α1β0", "lrp_alpha_1_beta_0"),
    ("LRP composite A", "lrp_sequential_composite_a"),
    ("gradient ×\nSIGN-μ (0.5)", "gradient_x_sign_mu_0_5"),
    ("LRP-ε\nSIGN-μ (0.5)", "lrpsign_epsilon_0_1_mu_0_5"),
)
FAMILIES_BY_NAME = tuple((method, title.replace("\n", " ")) for title, method in FAMILIES)
SEED_KWARGS = {"smoothgrad": {"seed": 0}}


def explain(model, x, method):
    return signxai.calculate_relevancemaps(model, x, method, **SEED_KWARGS.get(method, {}))


def _panel(ax, image, title=None, fontsize=8):
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def _digit(x):
    return np.repeat(np.clip(x, 0, 1), 3, axis=-1)


def methods_grid(demo, count=4):
    """The first ``count`` held-out digits of different classes on which every method's map is non-zero (Grad-CAM's
    ReLU zeroes the whole map of some digits: no feature map of its layer speaks for the class there)."""
    everything = {method: channels_last(explain(demo.torch_model, demo.x_channels_first, method))
                  for _, method in FAMILIES}
    samples, seen = [], set()
    for index, label in enumerate(demo.y):
        if label not in seen and all(np.abs(m[index]).max() > 0 for m in everything.values()):
            samples.append(index)
            seen.add(label)
        if len(samples) == count:
            break
    maps = {method: m[samples] for method, m in everything.items()}
    fig = Figure(figsize=(0.95 * (len(FAMILIES) + 1), 1.05 * len(samples) + 0.55), layout="constrained")
    axes = fig.subplots(len(samples), len(FAMILIES) + 1, squeeze=False)
    for row, index in enumerate(samples):
        _panel(axes[row][0], _digit(demo.x[index]), "input" if row == 0 else None)
        axes[row][0].set_ylabel(f"digit {demo.y[index]}", fontsize=8)
        for col, (title, method) in enumerate(FAMILIES, 1):
            _panel(axes[row][col], relevance_to_heatmap(maps[method][row], "seismic"), title if row == 0 else None,
                   fontsize=7)
    fig.suptitle("One model, every method family (digits demo, PyTorch; red: evidence for the predicted digit, "
                 "blue: against)", fontsize=9)
    fig.savefig(OUT / "methods.png", **PNG)


def keras_vs_pytorch(demo, index=3, methods=("gradient_x_input", "lrp_epsilon_0_1", "lrpsign_epsilon_0_1_mu_0_5",
                                            "integrated_gradients", "grad_cam")):
    x = demo.x[index:index + 1]
    fig = Figure(figsize=(4 * 1.45, 1.5 * len(methods) + 0.5), layout="constrained")
    axes = fig.subplots(len(methods), 4, squeeze=False)
    for row, method in enumerate(methods):
        tf_map = np.asarray(explain(demo.keras_model, x, method))[0].astype(np.float64)
        pt_map = channels_last(explain(demo.torch_model, channels_first(x), method))[0].astype(np.float64)
        peak = np.abs(tf_map).max()
        difference = tf_map - pt_map
        relative = np.abs(difference).max() / peak if peak else 0.0
        # the difference on the map's own colour scale: a blank panel is what "identical" looks like
        scale = np.abs(tf_map.sum(-1)).max() or 1.0
        shown = colormaps["seismic"]((np.clip(difference.sum(-1) / scale, -1, 1) + 1) / 2)[..., :3]
        _panel(axes[row][0], _digit(x[0]), "input" if row == 0 else None)
        axes[row][0].set_ylabel(dict(FAMILIES_BY_NAME)[method], fontsize=7)
        _panel(axes[row][1], relevance_to_heatmap(tf_map, "seismic"), "Keras 3" if row == 0 else None)
        _panel(axes[row][2], relevance_to_heatmap(pt_map, "seismic"), "PyTorch" if row == 0 else None)
        _panel(axes[row][3], shown, "Keras − PyTorch" if row == 0 else None)
        axes[row][3].set_xlabel(f"max |Δ| = {relative:.0e} of peak", fontsize=7)
    fig.suptitle("Same model in both frameworks, same maps (float32)", fontsize=9)
    fig.savefig(OUT / "keras_vs_pytorch.png", **PNG)


SIGN_PAIRS = (("gradient_x_input", "gradient_x_sign_mu"), ("lrp_epsilon_0_1", "lrpsign_epsilon_0_1_mu"))
LABELS = {"gradient_x_input": "input × gradient", "gradient_x_sign_mu": "gradient × SIGN-μ",
          "lrp_epsilon_0_1": "LRP-ε", "lrpsign_epsilon_0_1_mu": "LRP-ε SIGN-μ"}
COLOURS = {"gradient_x_input": "#f4a582", "gradient_x_sign_mu": "#ca0020", "lrp_epsilon_0_1": "#92c5de",
           "lrpsign_epsilon_0_1_mu": "#0571b0"}


def sign_vs_input_bias(samples=100, digit_index=1):
    from signxai.evaluate import MODELS, evaluate_model, load_experiment_model, load_test_digits

    methods = [m for pair in SIGN_PAIRS for m in pair]
    names = [m for m in MODELS if m.startswith("CNN_")]
    digits, _ = load_test_digits()
    digits = digits[:samples]
    values, examples = {}, {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: intra-op threads only contend
    try:
        for name in names:
            model = load_experiment_model(name, "torch")
            x = channels_first(model.inputs(digits))
            for record in evaluate_model(model, model.torch_model, x, methods, steps=250, seed=0,
                                         randomisation_samples=0, framework="torch"):
                if record.metric in ("aoc", "spearman"):
                    values[name, record.method, record.metric] = record.value
            if name in ("CNN_01", "CNN_01_INV", "CNN_11"):
                one = x[digit_index:digit_index + 1]
                examples[name] = (model.inputs(digits[digit_index:digit_index + 1])[0],
                                  {m: channels_last(signxai.calculate_relevancemaps(
                                      model.torch_model, one, m, **({"mu": model.mu} if m.endswith("_mu") else {})))[0]
                                   for m in methods})
    finally:
        torch.set_num_threads(threads)

    fig = Figure(figsize=(11.5, 4.6), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1.0, 1.35])
    axes = left.subplots(len(examples), len(methods) + 1, squeeze=False)
    for row, (name, (inputs, maps)) in enumerate(examples.items()):
        low, high = (-1.0, 1.0) if "_11" in name else (0.0, 1.0)
        _panel(axes[row][0], np.repeat((inputs - low) / (high - low), 3, axis=-1), "input" if row == 0 else None)
        axes[row][0].set_ylabel(name.replace("CNN_", "").replace("_INV", " inv."), fontsize=8)
        for col, method in enumerate(methods, 1):
            _panel(axes[row][col], relevance_to_heatmap(maps[method], "seismic"),
                   LABELS[method].replace(" × ", " ×\n").replace(" SIGN", "\nSIGN") if row == 0 else None, 7)
    left.suptitle("One digit, three input encodings (01: background 0;\ninv.: strokes 0; 11: range [−1, 1])",
                  fontsize=8)

    bars = right.subplots(1, 2)
    positions = np.arange(len(names))
    width = 0.2
    for ax, metric, title in ((bars[0], "aoc", "Pixel flipping AOC (higher = more faithful)"),
                              (bars[1], "spearman", "Input bias: Spearman ρ(|x|, |R|) (lower = less bias)")):
        for k, method in enumerate(methods):
            ax.bar(positions + (k - 1.5) * width, [values[n, method, metric] for n in names], width,
                   color=COLOURS[method], label=LABELS[method])
        ax.set_xticks(positions, [n.replace("CNN_", "").replace("_INV", "\ninv.") for n in names], fontsize=7)
        ax.set_title(title, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        lowest = min(values[n, m, metric] for n in names for m in methods)
        ax.set_ylim(0 if metric == "aoc" else min(0.0, 1.1 * lowest), 1)
        ax.axhline(0, color="0.5", linewidth=0.5)
    right.legend(*bars[0].get_legend_handles_labels(), loc="outside lower center", ncols=4, fontsize=7)
    right.suptitle(f"signxai evaluate: {samples} held-out digits per CNN, six input encodings (μ = the range's "
                   "midpoint)", fontsize=8)
    fig.savefig(OUT / "sign_vs_input_bias.png", **PNG)
    return values


def eeg_window():
    from signxai.common.visualization import normalize_relevance_map
    from signxai.demo import load_demo

    demo = load_demo("eeg", "torch")
    index = int(np.flatnonzero(demo.y == 1)[0])
    x = demo.x[index]
    R = channels_last(signxai.calculate_relevancemap(demo.torch_model, channels_first(x, batch=False),
                                                     "lrpsign_epsilon_0_1"), batch=False)
    R = normalize_relevance_map(R)
    t = np.arange(len(x))
    fig = Figure(figsize=(6.5, 3.0), layout="constrained")
    axes = fig.subplots(x.shape[1], 1, sharex=True)
    for c, ax in enumerate(axes):
        ax.plot(t, x[:, c], color="0.35", linewidth=0.8)
        ax.scatter(t, x[:, c], c=R[:, c], cmap="seismic", vmin=-1, vmax=1, s=9, zorder=3)
        ax.set_ylabel(f"ch {c}", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[-1].set_xlabel("time step", fontsize=7)
    fig.suptitle("EEG demo: a held-out window with a spike, LRP-ε SIGN (red: evidence for 'spike')", fontsize=8)
    fig.savefig(OUT / "eeg.png", **PNG)


def frequency_window(method="lrp_epsilon_0_1", window=16, hop=4):
    from signxai.demo import load_demo
    from signxai.frequency import (calculate_frequency_relevancemap, calculate_time_frequency_relevancemap,
                                   plot_frequency_relevance, plot_time_frequency_relevance)

    demo = load_demo("eeg", "torch")
    index = int(np.flatnonzero(demo.y == 1)[0])
    signal = demo.x[index]
    x = channels_first(signal, batch=False)  # (C, T): the PyTorch twin's layout
    R = channels_last(signxai.calculate_relevancemap(demo.torch_model, x, method), batch=False)
    frequencies, R_freq = calculate_frequency_relevancemap(demo.torch_model, x, method)
    times, tf_frequencies, R_tf = calculate_time_frequency_relevancemap(demo.torch_model, x, method, window=window,
                                                                        hop=hop)
    fig = Figure(figsize=(6.5, 6.2), layout="constrained")
    top, middle, bottom = fig.subplots(3, 1, height_ratios=[1.1, 1.0, 1.3])
    peak = np.abs(R).max()
    offsets = -4.0 * np.arange(signal.shape[1])
    t = np.arange(len(signal))
    for c in range(signal.shape[1]):
        top.plot(t, signal[:, c] + offsets[c], color="0.35", linewidth=0.8)
        top.scatter(t, signal[:, c] + offsets[c], c=R[:, c], cmap="seismic", vmin=-peak, vmax=peak, s=8, zorder=3)
    top.set_yticks(offsets, [f"ch {c}" for c in range(signal.shape[1])])
    top.set_xlim(-0.5, len(signal) - 0.5)
    top.set_title(f"EEG demo, a window with a spike: {method} (red: evidence for 'spike')", fontsize=8)
    plot_frequency_relevance(frequencies, R_freq, channel_axis=0, ax=middle)  # summed over the 4 channels
    middle.set_title(f"frequency relevance (DFT-LRP, summed over channels; Σ = {R_freq.sum():.3f}, "
                     f"Σ time map = {R.sum():.3f})", fontsize=8)
    middle.set_xlabel("frequency (cycles per sample)")
    plot_time_frequency_relevance(times, tf_frequencies, R_tf, channel_axis=0, ax=bottom)
    bottom.set_title(f"time-frequency relevance (Hann window {window}, hop {hop}, summed over channels)", fontsize=8)
    bottom.set_xlabel("time step (frame centre)")
    bottom.set_ylabel("frequency (cycles per sample)")
    for ax in (top, middle, bottom):
        ax.tick_params(labelsize=7)
        ax.xaxis.label.set_size(7)
        ax.yaxis.label.set_size(7)
    fig.savefig(OUT / "frequency.png", **PNG)


def ecg_12lead():
    import tempfile

    from signxai.loading import load_model
    from signxai.signals import STANDARD_LEADS, plot_ecg
    from signxai.signals.demo import FS, demo_records, train_demo_models

    with tempfile.TemporaryDirectory() as folder:
        train_demo_models(folder, verbose=False)
        model = load_model(Path(folder) / "ecg_cnn.pt").model
        lstm = load_model(Path(folder) / "ecg_lstm.pt").model
    x, _, _ = demo_records(1)  # an ST-elevation record
    R = signxai.calculate_relevancemap(model, channels_first(x), "lrp_epsilon_0_1")[0]
    fig = plot_ecg(x[0], R, FS, STANDARD_LEADS, layout="4x3", relevance_layout="channels_first", figsize=(13, 5.6),
                   title="ECG demo: synthetic ST elevation in V1–V4, LRP-ε (red: evidence for 'ST elevation')")
    fig.savefig(OUT / "ecg_12lead.png", **PNG)
    R = signxai.calculate_relevancemap(lstm, channels_first(x), "lrp_epsilon_0_1")[0]
    fig = plot_ecg(x[0], R, FS, STANDARD_LEADS, layout="12x1", relevance_layout="channels_first", figsize=(8, 5.5),
                   title="ECG demo, Conv1D + LSTM model: the same record, LRP-ε over the whole 10 s")
    fig.savefig(OUT / "ecg_lstm.png", **PNG)


def transformer_faithfulness():
    from signxai.vit_demo import faithfulness_study, plot_curves

    plot_curves(faithfulness_study()).savefig(OUT / "transformer_faithfulness.png", **PNG)


def text_faithfulness():
    from signxai import text_demo

    studies = [text_demo.faithfulness_study(replacement=kind) for kind in text_demo.REPLACEMENTS]
    text_demo.figure(studies).savefig(OUT / "text_faithfulness.png", **{**PNG, "dpi": 80})  # ≤ 150 KB


def main() -> int:
    from signxai.demo import load_demo
    from signxai.loading import import_keras

    import_keras()
    OUT.mkdir(parents=True, exist_ok=True)
    demo = load_demo("digits")
    methods_grid(demo)
    keras_vs_pytorch(demo)
    sign_vs_input_bias()
    eeg_window()
    frequency_window()
    ecg_12lead()
    transformer_faithfulness()
    text_faithfulness()
    for path in sorted(OUT.glob("*.png")):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
