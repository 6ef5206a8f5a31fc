"""A small trained vision transformer on scikit-learn's 8×8 digits, for the faithfulness study of AttnLRP
(docs/transformers.md#faithfulness).

The model (:func:`build_model`): 2×2 patches projected by a ``Conv2d`` with stride 2 (16 tokens of width 32), a
learned positional embedding, two pre-LN blocks with four-head self-attention (batch-first projections and
``F.scaled_dot_product_attention``), LayerNorm, an exact-erf GELU MLP (32→64→32), residual sums, a final LayerNorm,
mean pooling over the tokens and a linear head with 10 logits. Input: ``(N, 1, 8, 8)`` intensities in [0, 1].

It is trained by ``scripts/train_transformer_demo.py`` (:func:`train`: seeded, 30–75 s on one CPU thread) on the
1,297 training digits of the split that ``scripts/train_sign_experiment.py`` uses, so the 500 held-out digits of
``signxai/data/sign_experiment/digits_test.npz`` were never seen. The weights are stored in
``signxai/data/demo_vit_digits.npz`` (the ``state_dict`` as float32 arrays and the held-out ``accuracy``).
:func:`build_keras_model` gives its Keras 3 twin with the same weights (maps equal to ~1e-6 of the peak).
PyTorch and Keras are imported only when a model is built.
"""
from __future__ import annotations

from importlib import resources

import numpy as np

from signxai import _faithfulness
from signxai._faithfulness import RANDOM_ROW, score_methods  # noqa: F401  (RANDOM_ROW: public here)

PATCH, WIDTH, HEADS, MLP, BLOCKS, CLASSES, EPS = 2, 32, 4, 64, 2, 10, 1e-5
TOKENS = (8 // PATCH) ** 2
SEED = 0
N_TEST = 500
WEIGHTS = "demo_vit_digits.npz"


def build_model():
    """The untrained ViT (PyTorch, eval mode), with PyTorch's default initialisation from the global RNG."""
    import torch
    from torch import nn

    from signxai._faithfulness import encoder_blocks

    class DigitsViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(1, WIDTH, PATCH, stride=PATCH)
            self.position = nn.Parameter(torch.zeros(TOKENS, WIDTH))
            self.blocks = encoder_blocks(WIDTH, HEADS, MLP, BLOCKS, EPS)
            self.ln_f = nn.LayerNorm(WIDTH, eps=EPS)
            self.head = nn.Linear(WIDTH, CLASSES)

        def forward(self, x):
            h = self.patch(x).flatten(2).transpose(1, 2) + self.position
            return self.head(self.ln_f(self.blocks(h)).mean(dim=1))

    return DigitsViT().eval()


def load_model():
    """The trained ViT (PyTorch, eval mode, float32) and its accuracy on the 500 held-out digits."""
    import torch

    with resources.as_file(resources.files("signxai") / "data" / WEIGHTS) as path, np.load(path) as data:
        state = {k[2:]: torch.from_numpy(data[k].copy()) for k in data.files if k.startswith("w:")}
        accuracy = float(data["accuracy"])
    model = build_model()
    model.load_state_dict(state)
    return model.eval(), accuracy


def build_keras_model(torch_model):
    """The Keras 3 twin of a digits ViT with the same weights (docs/transformers.md#faithfulness): ``Conv2D`` patches
    and a ``Reshape`` to 16 tokens (row-major, as PyTorch's ``flatten(2)``), a positional table added by a small
    layer, ``MultiHeadAttention`` (4 heads of 8), ``LayerNormalization`` (ε = 1e-5), exact GELU ``Dense`` layers,
    ``GlobalAveragePooling1D`` and the head. Input ``(N, 8, 8, 1)`` (channels-last). The PyTorch model is only read."""
    from signxai.loading import import_keras

    keras = import_keras()

    class PositionEmbedding(keras.layers.Layer):  # type: ignore[name-defined]  # keras is imported at run time
        """``x + P`` with a learned (T, E) table P."""

        def build(self, input_shape):
            self.table = self.add_weight(shape=tuple(input_shape[1:]), initializer="zeros", name="table")

        def call(self, x):
            return x + self.table

    key_dim = WIDTH // HEADS
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(WIDTH, PATCH, strides=PATCH, name="patch")(inputs)
    h = keras.layers.Reshape((TOKENS, WIDTH), name="tokens")(h)
    h = PositionEmbedding(name="position")(h)
    for b in range(BLOCKS):
        a = keras.layers.LayerNormalization(epsilon=EPS, name=f"ln1_{b}")(h)
        a = keras.layers.MultiHeadAttention(HEADS, key_dim, name=f"mha_{b}")(a, a)
        h = keras.layers.Add(name=f"res1_{b}")([h, a])
        m = keras.layers.LayerNormalization(epsilon=EPS, name=f"ln2_{b}")(h)
        m = keras.layers.Dense(MLP, activation="gelu", name=f"fc1_{b}")(m)
        m = keras.layers.Dense(WIDTH, name=f"fc2_{b}")(m)
        h = keras.layers.Add(name=f"res2_{b}")([h, m])
    h = keras.layers.LayerNormalization(epsilon=EPS, name="ln_f")(h)
    h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, name="head")(h), name="digits_vit")

    w = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in torch_model.state_dict().items()}
    model.get_layer("patch").set_weights([w["patch.weight"].transpose(2, 3, 1, 0), w["patch.bias"]])
    model.get_layer("position").set_weights([w["position"]])
    for b in range(BLOCKS):
        p = f"blocks.{b}."
        mha = []
        for name in ("query", "key", "value"):
            mha += [w[p + f"attention.{name}.weight"].T.reshape(WIDTH, HEADS, key_dim),
                    w[p + f"attention.{name}.bias"].reshape(HEADS, key_dim)]
        mha += [w[p + "attention.out.weight"].T.reshape(HEADS, key_dim, WIDTH), w[p + "attention.out.bias"]]
        model.get_layer(f"mha_{b}").set_weights(mha)
        for name in ("ln1", "ln2"):
            model.get_layer(f"{name}_{b}").set_weights([w[p + f"{name}.weight"], w[p + f"{name}.bias"]])
        for name in ("fc1", "fc2"):
            model.get_layer(f"{name}_{b}").set_weights([w[p + f"{name}.weight"].T, w[p + f"{name}.bias"]])
    model.get_layer("ln_f").set_weights([w["ln_f.weight"], w["ln_f.bias"]])
    model.get_layer("head").set_weights([w["head.weight"].T, w["head.bias"]])
    return model


def load_test_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 500 held-out digits as ``(500, 1, 8, 8)`` float32 intensities in [0, 1] and their labels."""
    from signxai.evaluate import load_test_digits as load

    images, labels = load()
    return images[:, None].astype(np.float32), labels


def digits_split():
    """scikit-learn's digits split as in ``scripts/train_sign_experiment.py``: (train, test) images 0…16, labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.RandomState(SEED).permutation(len(digits.images))
    test, train = order[:N_TEST], order[N_TEST:]
    return (digits.images[train], digits.target[train]), (digits.images[test], digits.target[test])


def augmented(images: np.ndarray, labels: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Images in [0, 1] (N, 8, 8), their four diagonal one-pixel shifts, and a copy of all five with 10 % of the
    pixels replaced by uniform noise in [0, 1] (the replacement pixel flipping uses): (10N, 1, 8, 8)."""
    out = [images]
    for dy, dx in ((-1, 1), (-1, -1), (1, 1), (1, -1)):
        out.append(np.roll(np.roll(images, dy, axis=1), dx, axis=2))
        if dy < 0:
            out[-1][:, -1, :] = 0
        else:
            out[-1][:, 0, :] = 0
        if dx < 0:
            out[-1][:, :, -1] = 0
        else:
            out[-1][:, :, 0] = 0
    x = np.concatenate(out)
    noisy = np.where(rng.random_sample(x.shape) < 0.1, rng.random_sample(x.shape), x)
    return np.concatenate([x, noisy])[:, None].astype(np.float32), np.tile(labels, 10)


def train(epochs: int = 30, batch_size: int = 128, learning_rate: float = 3e-3, seed: int = SEED):
    """Train the ViT seeded (``seed``: initialisation, augmentation noise and batch order; the split is fixed; the
    global torch RNG is forked, so the caller's state is untouched); returns ``(model, held-out accuracy)``."""
    import torch
    from torch.nn import functional as F

    (train_images, train_labels), (test_images, test_labels) = digits_split()
    rng = np.random.RandomState(seed)
    x, y = augmented(train_images / 16.0, train_labels, rng)
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model().train()
        optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
        steps = epochs * ((len(x) + batch_size - 1) // batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, learning_rate, total_steps=steps)
        for _ in range(epochs):
            order = torch.from_numpy(rng.permutation(len(x)))
            for start in range(0, len(x), batch_size):
                index = order[start:start + batch_size]
                loss = F.cross_entropy(model(x_t[index]), y_t[index])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy((test_images / 16.0)[:, None].astype(np.float32))).argmax(1).numpy()
    return model, float((predicted == test_labels).mean())


# ------------------------------------------------------------------------------------------ the faithfulness study
# (row label, method name, keyword arguments); docs/transformers.md#faithfulness says why ε = 0.1
METHODS: tuple[tuple[str, str, dict], ...] = (
    ("AttnLRP (ε-LRP, ε = 0.1)", "lrp_epsilon_0_1", {}),
    ("AttnLRP (LRP-z)", "lrp_z", {}),
    ("CP-LRP (ε-LRP, ε = 0.1)", "lrp_epsilon_0_1", {"attention": "cplrp"}),
    ("input × gradient", "gradient_x_input", {}),
    ("integrated gradients (50 steps, reference 0)", "integrated_gradients", {}),
    ("gradient", "gradient", {}),
)
def faithfulness_study(n: int = 500, seeds=(0, 1, 2, 3, 4), methods=METHODS, batch_size: int = 256,
                       replacement="uniform", framework: str = "torch") -> dict:
    """Explain the first ``n`` held-out digits (for each one's predicted class) with every method and score the maps
    by pixel flipping with :func:`signxai.metrics.pixel_flipping` (64 steps: one pixel per step) in both orders:
    MoRF (most relevant first) and LeRF (least relevant first: the negated map). Per digit: ``AUC = 1 − AOC`` of each
    curve and ``ABPC = AUC(LeRF) − AUC(MoRF)`` (higher = more faithful). With ``replacement="uniform"`` a removed
    pixel takes the value of one noise image over the digit's own range; ``pixel_flipping`` draws that image from its
    ``seed`` (the same image for every digit), so every value and curve here is the mean over the noise images of
    ``seeds``. ``replacement=0.0`` sets removed pixels to the background (no noise; one pass).

    Returns ``{"fractions", "accuracy", "n", "seeds", "seconds", "rows": {label: {"morf", "lerf", "abpc": (n,)
    arrays, "morf_curve", "lerf_curve": (n, 65) arrays}}}``, with the random-order baseline as the row
    ``RANDOM_ROW`` (its order is the same for both directions, so its ABPC is 0). ``framework="keras"`` runs the
    study on the Keras twin (:func:`build_keras_model`, channels-last digits): the same numbers to float32 rounding."""
    from signxai.api import calculate_relevancemaps
    from signxai.metrics import pixel_flipping

    if not 1 <= int(n) <= N_TEST:
        raise ValueError(f"n must be between 1 and {N_TEST} (the held-out digits), got {n!r}")
    seeds = tuple(seeds) if replacement == "uniform" else (0,)
    if not seeds:
        raise ValueError("seeds must name at least one seed of the replacement noise")
    if framework not in ("torch", "keras"):
        raise ValueError(f"framework must be 'torch' or 'keras', got {framework!r}")
    model, accuracy = load_model()
    x, _ = load_test_digits()
    x = x[:int(n)]
    if framework == "keras":
        model, x = build_keras_model(model), np.ascontiguousarray(x.transpose(0, 2, 3, 1))

    def explain(method, kwargs):
        return calculate_relevancemaps(model, x, method, **kwargs)

    def flip(maps, seed, random_baseline):
        return pixel_flipping(model, x, maps, steps=64, seed=seed, batch_size=batch_size, replacement=replacement,
                              random_baseline=random_baseline)

    rows, seconds, fractions = score_methods(explain, flip, methods, seeds)
    return dict(fractions=fractions, accuracy=accuracy, n=len(x), seeds=seeds, seconds=seconds, rows=rows,
                framework=framework)


def markdown_table(study: dict) -> str:
    """The study as a markdown table: mean ± standard error over the digits, sorted by ABPC."""
    return _faithfulness.markdown_table(study, METHODS[0][0], "digit")


def paired_difference(study: dict, label: str, reference: str | None = None) -> tuple[float, float]:
    """Mean and standard error of the per-digit ABPC of ``reference`` (default: AttnLRP ε) minus ``label``'s."""
    return _faithfulness.paired_difference(study, label, reference or METHODS[0][0])


def plot_curves(study: dict):
    """Mean MoRF (solid) and LeRF (dashed) softmax curves per method: a ``matplotlib.figure.Figure`` (no pyplot
    state is touched)."""
    return _faithfulness.plot_curves(
        study, "fraction of pixels replaced by uniform noise",
        f"Digits ViT, {study['n']} held-out digits: MoRF (solid) and LeRF (dashed)")


def main(argv=None) -> int:
    """``python -m signxai.vit_demo OUTDIR [--n N] [--seeds S ...] [--replacement R] [--framework F]``: write
    ``faithfulness.md``, ``faithfulness.png`` and ``faithfulness.npz`` (every per-digit value and curve) to OUTDIR."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m signxai.vit_demo",
                                     description="Faithfulness of AttnLRP, CP-LRP and gradient methods on the "
                                                 "digits ViT (pixel flipping, ABPC).")
    parser.add_argument("outdir")
    parser.add_argument("--n", type=int, default=N_TEST, help=f"held-out digits to explain (1…{N_TEST})")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="seeds of the replacement noise images (results are averaged over them)")
    parser.add_argument("--framework", choices=("torch", "keras"), default="torch",
                        help="explain the PyTorch model or its Keras twin (same weights, same numbers)")
    parser.add_argument("--replacement", default="uniform",
                        help="'uniform' (noise over the digit's range, the default) or a number (e.g. 0: background)")
    args = parser.parse_args(argv)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    replacement = args.replacement if args.replacement == "uniform" else float(args.replacement)
    study = faithfulness_study(args.n, args.seeds, replacement=replacement, framework=args.framework)
    table = markdown_table(study)
    noise = f"uniform noise (mean over the noise images of seeds {', '.join(map(str, study['seeds']))})"
    name = "Keras twin" if args.framework == "keras" else "PyTorch"
    text = (f"Digits ViT ({name}; held-out accuracy {study['accuracy']:.3f}), first {study['n']} held-out digits, "
            f"pixel flipping in 64 steps, "
            f"replacement {noise if replacement == 'uniform' else replacement}; "
            f"mean ± standard error.\n\n{table}")
    (out / "faithfulness.md").write_text(text, encoding="utf-8")
    plot_curves(study).savefig(out / "faithfulness.png", dpi=100, metadata={"Software": None})
    arrays = {f"{key}:{label}": value for label, r in study["rows"].items() for key, value in r.items()}
    np.savez_compressed(out / "faithfulness.npz", fractions=study["fractions"], **arrays)
    print(text)
    print("seconds per method (explain + both curves): "
          + ", ".join(f"{k}: {v:.1f}" for k, v in study["seconds"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
