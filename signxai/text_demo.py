"""A small trained text transformer on a sequence task with planted evidence, for the faithfulness study of AttnLRP
on token ids (docs/transformers.md#text-faithfulness).

**The task** (:func:`make_sequences`). A vocabulary of 200 ids: ``PAD`` = 0 (a dropped word), 15 positive evidence
words (1…15), 15 negative evidence words (16…30) and 169 neutral distractors (31…199). A sequence has 48 tokens:
distractors drawn uniformly, each position a ``PAD`` with probability 0.1; then ``p`` positive and ``q`` negative
evidence words (``p, q`` uniform in 0…4, ``p ≠ q``) at distinct random positions 0…46, each word uniform in its class.
The label is 1 ("positive") if ``p > q``, else 0: the model must count the evidence of two classes. The **evidence**
of a sequence (the ground truth of the localisation score) is its evidence words; nothing else decides the label.

**The model** (:func:`build_model`): ``nn.Embedding(200, 64)``, the fixed sinusoidal positional table (a constant),
four pre-LN blocks with four-head self-attention (``F.scaled_dot_product_attention``, no mask), LayerNorm, an
exact-erf GELU MLP (64→128→64), residual sums, a final LayerNorm and a linear head with 2 logits that reads the
**last position** only, so every evidence word reaches the decision through attention. Input: token ids ``(N, 48)``.
It is trained by ``scripts/train_text_transformer_demo.py`` (:func:`train`: seeded, on fresh sequences from one
random stream) and stored in ``signxai/data/demo_text_evidence.npz``; the 500 held-out sequences
(:func:`load_test_sequences`) come from another seed. PyTorch is imported only when a model is built.
"""
from __future__ import annotations

from importlib import resources

import numpy as np

from signxai import _faithfulness
from signxai._faithfulness import RANDOM_ROW, score_methods

VOCAB, LENGTH, WIDTH, HEADS, MLP, BLOCKS, CLASSES, EPS = 200, 48, 64, 4, 128, 4, 2, 1e-5
PAD = 0
POSITIVE, NEGATIVE = np.arange(1, 16), np.arange(16, 31)
NEUTRAL = np.arange(31, VOCAB)
P_PAD, MAX_EVIDENCE = 0.1, 4
SEED, TEST_SEED, N_TEST, N_STUDY = 0, 20_000, 500, 300
WEIGHTS = "demo_text_evidence.npz"


# ----------------------------------------------------------------------------------------------------- the task
def make_sequences(n: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` sequences of the task (module docstring) from ``rng`` (a ``numpy.random.RandomState``): token ids
    ``(n, 48)`` int64, labels ``(n,)`` int64 and the evidence mask ``(n, 48)`` bool."""
    ids = NEUTRAL[rng.randint(0, len(NEUTRAL), size=(n, LENGTH))]
    ids[rng.random_sample((n, LENGTH)) < P_PAD] = PAD
    labels = np.empty(n, dtype=np.int64)
    evidence = np.zeros((n, LENGTH), dtype=bool)
    for i in range(n):
        while True:
            positive, negative = rng.randint(0, MAX_EVIDENCE + 1, size=2)
            if positive != negative:
                break
        positions = rng.choice(LENGTH - 1, size=positive + negative, replace=False)
        ids[i, positions[:positive]] = POSITIVE[rng.randint(0, len(POSITIVE), size=positive)]
        ids[i, positions[positive:]] = NEGATIVE[rng.randint(0, len(NEGATIVE), size=negative)]
        evidence[i, positions] = True
        labels[i] = int(positive > negative)
    return ids.astype(np.int64), labels, evidence


def load_test_sequences(n: int = N_TEST) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``n`` of the 500 held-out sequences (seed ``TEST_SEED``; training draws from seed ``SEED``):
    ids, labels, evidence mask as :func:`make_sequences` returns them."""
    ids, labels, evidence = make_sequences(N_TEST, np.random.RandomState(TEST_SEED))
    return ids[:n], labels[:n], evidence[:n]


# ---------------------------------------------------------------------------------------------------- the model
def sinusoidal_positions():
    """The fixed positional table of Vaswani et al. (2017), ``(LENGTH, WIDTH)`` float32: sin/cos of ``t / 10000^(2i/
    WIDTH)`` interleaved (a constant added to the embeddings: a ``pass`` node for LRP, docs/transformers.md#text)."""
    import torch

    t = np.arange(LENGTH)[:, None]
    frequencies = 1.0 / 10000 ** (np.arange(0, WIDTH, 2) / WIDTH)
    table = np.zeros((LENGTH, WIDTH))
    table[:, 0::2], table[:, 1::2] = np.sin(t * frequencies), np.cos(t * frequencies)
    return torch.from_numpy(table.astype(np.float32))


def build_model():
    """The untrained text transformer (PyTorch, eval mode), with PyTorch's default initialisation from the global
    RNG."""
    from torch import nn

    class EvidenceTransformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(VOCAB, WIDTH)
            self.register_buffer("position", sinusoidal_positions(), persistent=False)
            self.blocks = _faithfulness.encoder_blocks(WIDTH, HEADS, MLP, BLOCKS, EPS)
            self.ln_f = nn.LayerNorm(WIDTH, eps=EPS)
            self.head = nn.Linear(WIDTH, CLASSES)

        def forward(self, ids):
            h = self.embedding(ids) + self.position
            return self.head(self.ln_f(self.blocks(h)[:, -1]))

    return EvidenceTransformer().eval()


def load_model():
    """The trained model (PyTorch, eval mode, float32) and its accuracy on the 500 held-out sequences."""
    import torch

    with resources.as_file(resources.files("signxai") / "data" / WEIGHTS) as path, np.load(path) as data:
        state = {k[2:]: torch.from_numpy(data[k].astype(np.float32)) for k in data.files if k.startswith("w:")}
        accuracy = float(data["accuracy"])
    model = build_model()
    model.load_state_dict(state)
    return model.eval(), accuracy


def train(steps: int = 800, batch_size: int = 64, learning_rate: float = 1e-3, seed: int = SEED):
    """Train the model seeded (``seed``: initialisation and the stream of training sequences, ``steps`` batches of
    fresh sequences; the global torch RNG is forked, so the caller's state is untouched); returns ``(model,
    held-out accuracy)``."""
    import torch
    from torch.nn import functional as F

    rng = np.random.RandomState(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model().train()
        optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-2)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, learning_rate, total_steps=steps)
        for _ in range(steps):
            ids, labels, _ = make_sequences(batch_size, rng)
            loss = F.cross_entropy(model(torch.from_numpy(ids)), torch.from_numpy(labels))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    model.eval()
    ids, labels, _ = load_test_sequences()
    with torch.no_grad():
        predicted = model(torch.from_numpy(ids)).argmax(1).numpy()
    return model, float((predicted == labels).mean())


# ------------------------------------------------------------------------------------------ the faithfulness study
# (row label, method name, keyword arguments); docs/transformers.md#faithfulness says why ε = 0.1
METHODS: tuple[tuple[str, str, dict], ...] = (
    ("AttnLRP (ε-LRP, ε = 0.1)", "lrp_epsilon_0_1", {}),
    ("AttnLRP (LRP-z)", "lrp_z", {}),
    ("CP-LRP (ε-LRP, ε = 0.1)", "lrp_epsilon_0_1", {"attention": "cplrp"}),
    ("input × gradient", "gradient_x_input", {}),
    ("integrated gradients (50 steps, zero embedding)", "integrated_gradients", {}),
    ("gradient (norm per token)", "gradient", {}),
)
REPLACEMENTS = ("pad", "random")


def localisation(maps: np.ndarray, evidence: np.ndarray) -> dict:
    """How much of each map lies on the planted evidence (module docstring), from ``|R|`` (evidence against the
    explained class counts as evidence): ``mass`` = Σ_evidence |R| / Σ |R| (chance: the evidence's share of the
    tokens) and ``auroc`` = the probability that an evidence token has a larger |R| than a distractor (ties ½;
    chance 0.5). One value per sequence."""
    a = np.abs(np.asarray(maps, dtype=np.float64))
    total = a.sum(axis=1)
    mass = np.where(total > 0, (a * evidence).sum(axis=1) / np.where(total > 0, total, 1), 0.0)
    auroc = np.empty(len(a))
    for i, (values, truth) in enumerate(zip(a, evidence)):
        pos, neg = values[truth], values[~truth]
        greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
        auroc[i] = greater / (len(pos) * len(neg))
    return dict(mass=mass, auroc=auroc)


def faithfulness_study(n: int = N_STUDY, replacement: str = "pad", seeds=(0, 1, 2), methods=METHODS,
                       batch_size: int = 512) -> dict:
    """Explain the first ``n`` of the 500 held-out sequences (for each one's predicted class) with every method and
    score the token maps by token flipping with :func:`signxai.metrics.token_flipping` (48 steps: one token per step)
    in both orders, MoRF and LeRF (the negated map); per sequence ``AUC`` of each softmax curve and ``ABPC = AUC(LeRF) −
    AUC(MoRF)``; and the localisation of every map on the planted evidence (:func:`localisation`).

    ``replacement="pad"``: a removed token becomes ``PAD`` (the dropped word, seen in training; one pass, ``seeds``
    ignored). ``"random"``: a random id from the whole vocabulary, one replacement sequence per seed (the same for
    every sequence), every value the mean over ``seeds``. Returns ``{"fractions", "accuracy", "n", "seeds",
    "replacement", "seconds", "rows": {label: {"morf", "lerf", "abpc", "mass", "auroc": (n,) arrays, "maps":
    (n, 48), "morf_curve", "lerf_curve": (n, 49)}}}``, the random-order baseline last (``RANDOM_ROW``; its
    localisation is that of a uniformly random map)."""
    import torch

    from signxai.api import calculate_relevancemaps
    from signxai.metrics import token_flipping

    if not 1 <= int(n) <= N_TEST:
        raise ValueError(f"n must be between 1 and {N_TEST} (the held-out sequences), got {n!r}")
    if replacement not in REPLACEMENTS:
        raise ValueError(f"replacement must be one of {REPLACEMENTS}, got {replacement!r}")
    seeds = tuple(seeds) if replacement == "random" else (0,)
    if not seeds:
        raise ValueError("seeds must name at least one seed of the random replacement")
    model, accuracy = load_model()
    ids, labels, evidence = load_test_sequences(int(n))
    options = dict(replacement=PAD) if replacement == "pad" else dict(replacement="random", vocabulary=VOCAB)

    def explain(method, kwargs):
        return calculate_relevancemaps(model, ids, method, **kwargs)

    def flip(maps, seed, random_baseline):
        return token_flipping(model, ids, maps, seed=seed, batch_size=batch_size, random_baseline=random_baseline,
                              **options)

    rows, seconds, fractions = score_methods(explain, flip, methods, seeds)
    for label, row in rows.items():
        if label == RANDOM_ROW:
            row["maps"] = np.random.RandomState(0).random_sample(ids.shape)
        row.update(localisation(row["maps"], evidence))
    with torch.no_grad():
        predicted = model(torch.from_numpy(ids)).argmax(1).numpy()
    return dict(fractions=fractions, accuracy=accuracy, n=len(ids), seeds=seeds, seconds=seconds, rows=rows,
                replacement=replacement, evidence=evidence, labels=labels, predicted=predicted)


def markdown_table(study: dict) -> str:
    """The flipping table with paired differences (:func:`signxai._faithfulness.markdown_table`) and the
    localisation table: mean ± standard error over the sequences."""
    text = _faithfulness.markdown_table(study, METHODS[0][0], "sequence")
    chance = float(np.mean(study["evidence"].mean(axis=1)))
    reference = METHODS[0][0]
    lines = ["", f"Localisation on the planted evidence (|R|; chance: mass {chance:.3f}, AUROC 0.5); Δ: paired "
                 f"per-sequence difference, {reference} − method:", "",
             "| method | evidence mass ↑ | evidence AUROC ↑ | Δ mass | Δ AUROC |", "|---|---|---|---|---|"]
    order = sorted(study["rows"], key=lambda k: -float(np.mean(study["rows"][k]["auroc"])))
    for label in order:
        r = study["rows"][label]
        name = "random map (baseline)" if label == RANDOM_ROW else label
        deltas = ["", ""] if label == reference or reference not in study["rows"] else [
            _faithfulness.mean_se(study["rows"][reference][key] - r[key]) for key in ("mass", "auroc")]
        lines.append(f"| {name} | {_faithfulness.mean_se(r['mass'])} | {_faithfulness.mean_se(r['auroc'])} | "
                     f"{deltas[0]} | {deltas[1]} |")
    return text + "\n".join(lines) + "\n"


def paired_difference(study: dict, label: str, reference: str | None = None, key: str = "abpc"):
    """Mean and standard error of the per-sequence ``key`` (``"abpc"``, ``"mass"``, ``"auroc"``) of ``reference``
    (default: AttnLRP ε) minus ``label``'s."""
    return _faithfulness.paired_difference(study, label, reference or METHODS[0][0], key)


def plot_curves(study: dict, axes=None):
    """Mean MoRF (solid) and LeRF (dashed) softmax curves per method (a ``matplotlib.figure.Figure``)."""
    what = "PAD" if study["replacement"] == "pad" else "random tokens"
    return _faithfulness.plot_curves(study, f"fraction of tokens replaced by {what}",
                                     f"Evidence transformer, {study['n']} held-out sequences, {what}:\n"
                                     f"MoRF (solid), LeRF (dashed)", axes=axes)


def figure(studies):
    """One panel of :func:`plot_curves` per study, side by side (a ``matplotlib.figure.Figure``)."""
    from matplotlib.figure import Figure

    result = Figure(figsize=(6 * len(studies), 3.8), dpi=80)
    for k, study in enumerate(studies):
        plot_curves(study, axes=result.add_subplot(1, len(studies), k + 1))
    return result


def main(argv=None) -> int:
    """``python -m signxai.text_demo OUTDIR [--n 300] [--replacement pad|random|both] [--seeds S ...]``: write
    ``faithfulness.md``, ``faithfulness.png`` and ``faithfulness.npz`` (every per-sequence value, curve and map)."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m signxai.text_demo",
                                     description="Faithfulness of AttnLRP, CP-LRP and gradient methods on the "
                                                 "evidence transformer (token flipping, ABPC, localisation).")
    parser.add_argument("outdir")
    parser.add_argument("--n", type=int, default=N_STUDY, help=f"held-out sequences to explain (1…{N_TEST})")
    parser.add_argument("--replacement", choices=REPLACEMENTS + ("both",), default="both",
                        help="a removed token becomes PAD, a random id, or both studies are run (the default)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="seeds of the random replacement sequences (results are averaged over them)")
    args = parser.parse_args(argv)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    kinds = REPLACEMENTS if args.replacement == "both" else (args.replacement,)
    studies = [faithfulness_study(args.n, kind, args.seeds) for kind in kinds]
    parts = []
    for study in studies:
        what = ("PAD" if study["replacement"] == "pad" else
                f"a random id of the vocabulary (mean over the replacement sequences of seeds "
                f"{', '.join(map(str, study['seeds']))})")
        parts.append(f"## Replacement: {study['replacement']}\n\nEvidence transformer (held-out accuracy "
                     f"{study['accuracy']:.3f}), first {study['n']} held-out sequences, token flipping in "
                     f"{LENGTH} steps, a removed token becomes {what}; mean ± standard error.\n\n"
                     + markdown_table(study))
    text = "\n".join(parts)
    (out / "faithfulness.md").write_text(text, encoding="utf-8")
    figure(studies).savefig(out / "faithfulness.png", dpi=80, metadata={"Software": None})
    arrays = {f"{study['replacement']}/{key}:{label}": value for study in studies
              for label, r in study["rows"].items() for key, value in r.items()}
    ids, labels, evidence = load_test_sequences(studies[0]["n"])
    np.savez_compressed(out / "faithfulness.npz", fractions=studies[0]["fractions"], ids=ids, labels=labels,
                        evidence=evidence, predicted=studies[0]["predicted"], **arrays)
    print(text)
    for study in studies:
        print(f"{study['replacement']}: seconds per method (explain + both curves): "
              + ", ".join(f"{k}: {v:.1f}" for k, v in study["seconds"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
