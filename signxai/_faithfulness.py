"""What the two faithfulness studies of docs/transformers.md#faithfulness share: the pre-LN encoder blocks of their
small PyTorch transformers (:mod:`signxai.vit_demo`, :mod:`signxai.text_demo`), the loop that scores every method's
maps by perturbation in both orders (MoRF and LeRF, mean over the replacement seeds), the markdown table with
paired differences and the figure of the mean curves. PyTorch and matplotlib are imported only when used."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

RANDOM_ROW = "random order (baseline)"


def encoder_blocks(width: int, heads: int, mlp: int, blocks: int, eps: float):
    """``nn.Sequential`` of ``blocks`` pre-LN encoder blocks: ``h + attention(LN(h))``, then ``h + fc2(GELU(fc1(
    LN(h))))``; self-attention with ``heads`` heads through batch-first ``query``/``key``/``value``/``out`` linear
    projections and ``F.scaled_dot_product_attention`` (no mask), exact-erf GELU, LayerNorm with ``eps``. Parameters
    are created (and drawn from the global torch RNG) in the same order for every caller."""
    from torch import nn
    from torch.nn import functional as F

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.query, self.key, self.value = (nn.Linear(width, width) for _ in range(3))
            self.out = nn.Linear(width, width)

        def forward(self, a):
            n, t, _ = a.shape
            q, k, v = (f(a).reshape(n, t, heads, width // heads).transpose(1, 2)
                       for f in (self.query, self.key, self.value))
            o = F.scaled_dot_product_attention(q, k, v)
            return self.out(o.transpose(1, 2).reshape(n, t, width))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(width, eps=eps), nn.LayerNorm(width, eps=eps)
            self.attention = SelfAttention()
            self.fc1, self.act, self.fc2 = nn.Linear(width, mlp), nn.GELU(), nn.Linear(mlp, width)

        def forward(self, h):
            h = h + self.attention(self.ln1(h))
            return h + self.fc2(self.act(self.fc1(self.ln2(h))))

    return nn.Sequential(*[Block() for _ in range(blocks)])


def score_methods(explain: Callable, flip: Callable, methods, seeds) -> tuple[dict, dict, np.ndarray]:
    """Every method's maps (``explain(method, kwargs)``) scored in both orders, averaged over ``seeds``.

    ``flip(maps, seed, random_baseline)`` returns a :class:`signxai.metrics.PixelFlippingResult`; it is called with
    ``maps`` (MoRF) and ``-maps`` (LeRF) per seed, with the random-order baseline asked for on the first method only.
    Returns ``(rows, seconds, fractions)``: ``rows[label]`` holds per-sample ``morf``, ``lerf`` (areas under the
    curves), ``abpc = AUC(LeRF) − AUC(MoRF)``, ``morf_curve``, ``lerf_curve`` and the ``maps``; the random order is
    the last row, :data:`RANDOM_ROW` (one order for both directions: ABPC 0)."""
    rows: dict = {}
    seconds: dict = {}
    fractions = None
    for label, method, kwargs in methods:
        start = time.perf_counter()
        maps = np.asarray(explain(method, kwargs), dtype=np.float64)
        runs = []
        for seed in seeds:
            morf = flip(maps, seed, RANDOM_ROW not in rows)
            lerf = flip(-maps, seed, False)
            runs.append((morf, lerf))
        seconds[label] = time.perf_counter() - start
        fractions = runs[0][0].fractions
        rows[label] = {key: np.mean(values, axis=0) for key, values in dict(
            morf=[1 - m.aoc for m, _ in runs], lerf=[1 - le.aoc for _, le in runs],
            abpc=[m.aoc - le.aoc for m, le in runs], morf_curve=[m.curves for m, _ in runs],
            lerf_curve=[le.curves for _, le in runs]).items()}
        rows[label]["maps"] = maps
        randoms = [(m.random_aoc, m.random_curves) for m, _ in runs
                   if m.random_aoc is not None and m.random_curves is not None]
        if randoms:
            auc = 1 - np.mean([aoc for aoc, _ in randoms], axis=0)
            curve = np.mean([c for _, c in randoms], axis=0)
            rows[RANDOM_ROW] = dict(morf=auc, lerf=auc, abpc=np.zeros(len(maps)), morf_curve=curve,
                                    lerf_curve=curve)
    if RANDOM_ROW in rows:
        rows[RANDOM_ROW] = rows.pop(RANDOM_ROW)  # last
    return rows, seconds, np.asarray(fractions)


def mean_se(values) -> str:
    """``"mean ± standard error"`` with three decimals."""
    values = np.asarray(values, dtype=np.float64)
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return f"{values.mean():.3f} ± {se:.3f}"


def markdown_table(study: dict, reference: str, sample: str = "digit") -> str:
    """The study as a markdown table (mean ± standard error over the samples, sorted by ABPC) and the paired
    per-sample ABPC differences of ``reference`` minus every other method."""
    lines = ["| method | ABPC = AUC(LeRF) − AUC(MoRF) ↑ | AUC(MoRF) ↓ | AUC(LeRF) ↑ |", "|---|---|---|---|"]
    order = sorted(study["rows"], key=lambda k: -float(np.mean(study["rows"][k]["abpc"])))
    for label in order:
        r = study["rows"][label]
        lines.append(f"| {label} | {mean_se(r['abpc'])} | {mean_se(r['morf'])} | {mean_se(r['lerf'])} |")
    if reference in study["rows"]:
        lines += ["", f"Paired per-{sample} ABPC differences, {reference} − method (mean ± standard error; > 0: "
                      f"{reference.split(' (')[0]} more faithful):", "", "| method | ΔABPC |", "|---|---|"]
        for label in order:
            if label not in (reference, RANDOM_ROW):
                difference = study["rows"][reference]["abpc"] - study["rows"][label]["abpc"]
                lines.append(f"| {label} | {mean_se(difference)} |")
    return "\n".join(lines) + "\n"


def paired_difference(study: dict, label: str, reference: str, key: str = "abpc") -> tuple[float, float]:
    """Mean and standard error of the per-sample ``key`` of ``reference`` minus ``label``'s."""
    difference = np.asarray(study["rows"][reference][key]) - np.asarray(study["rows"][label][key])
    return float(difference.mean()), float(difference.std(ddof=1) / np.sqrt(len(difference)))


def plot_curves(study: dict, xlabel: str, title: str, axes=None):
    """Mean MoRF (solid) and LeRF (dashed) softmax curves per method, on ``axes`` or on a new
    ``matplotlib.figure.Figure`` (no pyplot state is touched); returns the figure."""
    from matplotlib.figure import Figure

    if axes is None:
        figure = Figure(figsize=(7.5, 4.2), dpi=100)
        axes = figure.add_subplot(1, 1, 1)
    colours = ("tab:red", "tab:orange", "tab:purple", "tab:blue", "tab:green", "tab:brown", "tab:gray")
    for colour, (label, r) in zip(colours, study["rows"].items()):
        axes.plot(study["fractions"], r["morf_curve"].mean(axis=0), color=colour, label=label)
        if label != RANDOM_ROW:
            axes.plot(study["fractions"], r["lerf_curve"].mean(axis=0), color=colour, linestyle="--")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("softmax probability of the explained class")
    axes.set_title(title, fontsize=10)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.legend(fontsize=7, loc="center right")
    axes.figure.tight_layout()
    return axes.figure
