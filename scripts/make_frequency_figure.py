"""Draw ``docs/gallery/frequency.png``: DFT-LRP (docs/frequency.md) on a held-out window of the EEG spike demo.

Run from the repository root (a few seconds; no download, no training)::

    .venv/bin/python scripts/make_frequency_figure.py

The window's LRP-ε map (the PyTorch twin; the Keras twin gives the same numbers) is drawn over the signal, then
carried into the frequency domain and into the short-time (time-frequency) domain with :mod:`signxai.frequency`.
The figure is drawn with ``matplotlib.figure.Figure`` and the module's own plot functions; the PNG carries no time
stamp, so a second run on the same software writes the same file.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import torch  # noqa: E402,F401  (PyTorch before TensorFlow: the triton trap, README)

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from signxai._keras_torch import channels_first, channels_last  # noqa: E402
from signxai.demo import load_demo  # noqa: E402
from signxai.frequency import (calculate_frequency_relevancemap, calculate_time_frequency_relevancemap,  # noqa: E402
                               plot_frequency_relevance, plot_time_frequency_relevance)

OUT = ROOT / "docs" / "gallery" / "frequency.png"
METHOD = "lrp_epsilon_0_1"
WINDOW, HOP = 16, 4


def main() -> int:
    import signxai

    demo = load_demo("eeg", "torch")
    index = int(np.flatnonzero(demo.y == 1)[0])
    x = channels_first(demo.x[index], batch=False)  # (C, T): the PyTorch twin's layout
    R = channels_last(signxai.calculate_relevancemap(demo.torch_model, x, METHOD), batch=False)
    frequencies, R_freq = calculate_frequency_relevancemap(demo.torch_model, x, METHOD)
    times, tf_frequencies, R_tf = calculate_time_frequency_relevancemap(demo.torch_model, x, METHOD, window=WINDOW,
                                                                        hop=HOP)
    signal = demo.x[index]
    fig = Figure(figsize=(6.5, 6.2), layout="constrained")
    top, middle, bottom = fig.subplots(3, 1, height_ratios=[1.1, 1.0, 1.3])
    peak = np.abs(R).max()
    offsets = -4.0 * np.arange(signal.shape[1])
    for c in range(signal.shape[1]):
        top.plot(np.arange(len(signal)), signal[:, c] + offsets[c], color="0.35", linewidth=0.8)
        top.scatter(np.arange(len(signal)), signal[:, c] + offsets[c], c=R[:, c], cmap="seismic", vmin=-peak,
                    vmax=peak, s=8, zorder=3)
    top.set_yticks(offsets, [f"ch {c}" for c in range(signal.shape[1])])
    top.set_xlim(-0.5, len(signal) - 0.5)
    top.set_title(f"EEG demo, a window with a spike: {METHOD} (red: evidence for 'spike')", fontsize=8)
    plot_frequency_relevance(frequencies, R_freq, channel_axis=0, ax=middle)  # summed over the 4 channels
    middle.set_title(f"frequency relevance (DFT-LRP, summed over channels; Σ = {R_freq.sum():.3f}, "
                     f"Σ time map = {R.sum():.3f})", fontsize=8)
    middle.set_xlabel("frequency (cycles per sample)")
    plot_time_frequency_relevance(times, tf_frequencies, R_tf, channel_axis=0, ax=bottom)
    bottom.set_title(f"time-frequency relevance (Hann window {WINDOW}, hop {HOP}, summed over channels)", fontsize=8)
    bottom.set_xlabel("time step (frame centre)")
    bottom.set_ylabel("frequency (cycles per sample)")
    for ax in (top, middle, bottom):
        ax.tick_params(labelsize=7)
        ax.xaxis.label.set_size(7)
        ax.yaxis.label.set_size(7)
    fig.savefig(OUT, dpi=100, metadata={"Software": None})
    print(f"{OUT.relative_to(ROOT)}: {OUT.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
