"""``signxai evaluate``: the SIGN paper's MNIST experiment, reproduced offline on scikit-learn's 8×8 digits.

Gumpfer et al. (*SIGNed explanations*, Information Fusion 2023) trained Dense and CNN models on MNIST in three input
ranges, each with normal and inverted intensities, and showed that x-multiplied explanations (input×gradient, LRP)
lose faithfulness when the input range moves — a pixel of value 0 gets no relevance however decisive it is — while
their SIGN variants do not. The twelve models here (``scripts/train_sign_experiment.py``, stored in
``signxai/data/sign_experiment/``) repeat that on the 500 held-out digits, and this command measures, per method and
model, with :mod:`signxai.metrics`:

* pixel flipping: the area over the softmax curve (AOC, higher = more faithful) with uniform-noise replacement over
  the model's input range, and the random-order baseline;
* input-bias correlation: Pearson and Spearman between ``|x|`` and ``|R|``;
* model-parameter randomisation: Spearman between the maps of the trained and the fully randomised model (cascading,
  lower = more sensitive to the model).

No files of the user's are needed and nothing is trained at run time.
"""
from __future__ import annotations

import csv
import fnmatch
import json
import sys
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from signxai._keras_torch import channels_first

NETS = ("DENSE", "CNN")
VARIANTS = {"01": (0.0, 1.0), "10": (-1.0, 0.0), "11": (-1.0, 1.0)}
MODELS = tuple(f"{net}_{variant}{suffix}" for net in NETS for variant in VARIANTS for suffix in ("", "_INV"))
FRAMEWORKS = ("torch", "keras", "both")

# (row label, method); a method ending in "_mu" is SIGN-μ with μ = the midpoint of the model's input range
DEFAULT_METHODS = (
    "gradient", "gradient_x_input", "gradient_x_sign", "gradient_x_sign_mu",
    "lrp_z", "lrpsign_z", "lrpsign_z_mu",
    "lrp_epsilon_0_1", "lrpsign_epsilon_0_1", "lrpsign_epsilon_0_1_mu",
    "lrp_sequential_composite_a", "lrpsign_sequential_composite_a",
    "lrp_sequential_composite_b", "lrpsign_sequential_composite_b",
)
RANDOM_ROW = "random order (baseline)"
METRICS = {  # key: (title, one-line meaning)
    "aoc": ("Pixel flipping: area over the softmax curve", "higher = more faithful"),
    "pearson": ("Input bias: Pearson r between |x| and |R|", "lower = less input bias"),
    "spearman": ("Input bias: Spearman rho between |x| and |R|", "lower = less input bias"),
    "mprt": ("Model randomisation: Spearman rho between the maps of the trained and the fully randomised model",
             "lower = more sensitive to the model"),
}
AGREEMENT_TOLERANCE = 1e-4  # |Keras − PyTorch| of a metric value (float32 maps agree to ~1e-6 of their peak)


# ------------------------------------------------------------------------------------------------------ the data
def transform(v: np.ndarray, variant: str, inverted: bool) -> np.ndarray:
    """Digit intensities ``v`` in [0, 1] (0 = background) → a model's input, as in the SIGN paper's MNIST code:
    ``01``: v (inverted 1 − v); ``10``: −v (inverted v − 1); ``11``: 2v − 1 (inverted 1 − 2v)."""
    if variant == "01":
        x = 1.0 - v if inverted else v
    elif variant == "10":
        x = v - 1.0 if inverted else -v
    elif variant == "11":
        x = 1.0 - 2.0 * v if inverted else 2.0 * v - 1.0
    else:
        raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return np.asarray(x, dtype=np.float32)


def _data_file(name):
    return resources.files("signxai") / "data" / "sign_experiment" / name


def load_test_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 500 held-out digits: intensities in [0, 1] ``(500, 8, 8)`` and labels."""
    with resources.as_file(_data_file("digits_test.npz")) as path, np.load(path) as data:
        return data["images"].astype(np.float32) / 16.0, data["labels"]


@dataclass(frozen=True)
class ExperimentModel:
    name: str  # e.g. "CNN_10_INV"
    net: str
    variant: str
    inverted: bool
    low: float
    high: float
    accuracy: float  # on the 500 held-out digits, measured by the training script
    keras_model: object
    torch_model: object

    @property
    def mu(self) -> float:
        """SIGN-μ threshold used for this model: the midpoint of its input range."""
        return (self.low + self.high) / 2

    def inputs(self, v: np.ndarray) -> np.ndarray:
        """Channels-last inputs ``(N, 8, 8, 1)`` for digit intensities ``v``."""
        return transform(v, self.variant, self.inverted)[..., None]


def load_experiment_model(name: str, framework: str = "both") -> ExperimentModel:
    """One of :data:`MODELS` as Keras and/or PyTorch twins (``framework``: "keras", "torch" or "both")."""
    from signxai.converters.spec_models import build_keras_model, build_torch_model, load_spec_npz

    if name not in MODELS:
        raise ValueError(f"unknown experiment model {name!r}; choose one of {', '.join(MODELS)}")
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")
    with resources.as_file(_data_file(f"{name}.npz")) as path:
        spec, weights, rest = load_spec_npz(path)
    torch_model = build_torch_model(spec, weights) if framework in ("torch", "both") else None
    keras_model = build_keras_model(spec, weights) if framework in ("keras", "both") else None
    return ExperimentModel(name=name, net=name.split("_")[0], variant=str(rest["variant"]),
                           inverted=bool(rest["inverted"]), low=float(rest["low"]), high=float(rest["high"]),
                           accuracy=float(rest["accuracy"]), keras_model=keras_model, torch_model=torch_model)


# -------------------------------------------------------------------------------------------------- evaluation
@dataclass
class Record:
    model: str
    method: str
    metric: str  # "aoc", "pearson", "spearman", "mprt", or "curve" (the mean pixel-flipping curve, a list)
    value: object
    framework: str


def _method_call(method: str, model: ExperimentModel):
    """(signxai name, kwargs) for a table method; ``*_mu`` gets μ = the midpoint of the model's input range."""
    return (method, {"mu": model.mu}) if method.endswith("_mu") else (method, {})


def evaluate_model(model: ExperimentModel, handle, x, methods, *, steps, seed, randomisation_samples, framework,
                   progress=None, skipped=None) -> list[Record]:
    """All metrics of every method for one model in one framework; ``x`` in that framework's layout.

    A method that does not apply to the model (e.g. Grad-CAM on a Dense model) is left out of the records and
    noted in ``skipped`` as ``(model, method, reason)``."""
    from signxai import metrics

    records = []
    value_range = (model.low, model.high)
    baseline_done = False
    for method in methods:
        name, kwargs = _method_call(method, model)
        try:
            maps = _explain(handle, x, name, kwargs)
        except (ValueError, TypeError) as error:
            if skipped is not None:
                skipped.append((model.name, method, " ".join(str(error).split())))
            if progress is not None:
                progress.step(f"{model.name} {method}")
            continue
        flipping = metrics.pixel_flipping(handle, x, maps, steps=steps, value_range=value_range, seed=seed,
                                          random_baseline=not baseline_done)
        if not baseline_done:
            baseline_done = True
            records.append(Record(model.name, RANDOM_ROW, "aoc", flipping.random_score, framework))
            records.append(Record(model.name, RANDOM_ROW, "curve", flipping.random_curves.mean(axis=0).tolist(),
                                  framework))
        bias = metrics.input_bias_correlation(None, x, maps)
        records += [Record(model.name, method, "aoc", flipping.score, framework),
                    Record(model.name, method, "curve", flipping.curves.mean(axis=0).tolist(), framework),
                    Record(model.name, method, "pearson", bias.mean_pearson, framework),
                    Record(model.name, method, "spearman", bias.mean_spearman, framework)]
        if randomisation_samples:
            randomised = metrics.model_parameter_randomisation(handle, x[:randomisation_samples], name, seed=seed,
                                                               explain_kwargs=kwargs)
            records.append(Record(model.name, method, "mprt", _nanmean(randomised.spearman[:, -1]), framework))
        if progress is not None:
            progress.step(f"{model.name} {method}")
    return records


def _explain(model, x, name, kwargs):
    from signxai import calculate_relevancemaps

    return calculate_relevancemaps(model, x, name, **kwargs)


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")


class Progress:
    """A progress bar on stderr (redrawn in place on a terminal, a line per 10 % otherwise)."""

    def __init__(self, total: int, stream=None, width: int = 30):
        self.total, self.done, self.width = total, 0, width
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.start = time.perf_counter()
        self._reported = -1

    def step(self, label: str = ""):
        self.done += 1
        fraction = self.done / self.total
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        filled = int(round(self.width * fraction))
        line = (f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} "
                f"{elapsed:4.0f}s elapsed, ~{eta:3.0f}s left  {label}")
        if self.tty:
            print(f"\r{line[:120]:<120}", end="" if self.done < self.total else "\n", file=self.stream, flush=True)
        elif int(10 * fraction) > self._reported or self.done == self.total:
            self._reported = int(10 * fraction)
            print(line, file=self.stream, flush=True)


# --------------------------------------------------------------------------------------------------------- CLI
def add_parser(commands):
    """Register ``signxai evaluate`` on the sub-command parsers of the command line (``signxai.cli``)."""
    parser = commands.add_parser(
        "evaluate", help="measure explanation quality: the SIGN paper's experiment on the built-in digits models",
        description="Reproduce the SIGN paper's MNIST experiment offline on scikit-learn's 8x8 digits: twelve "
                    "shipped models (Dense and CNN; input ranges [0,1], [-1,0], [-1,1], normal and inverted), "
                    "explained with each method and scored by pixel flipping (area over the softmax curve, uniform "
                    "noise over the input range, random-order baseline), input-bias correlation (|x| vs |R|) and "
                    "the model-parameter randomisation test. Prints one table per metric and architecture (with "
                    "the spread over the six input ranges) and writes evaluation.txt/.csv/.json and plots to "
                    "--out-dir. Methods ending in _mu use mu = the midpoint of each model's input range.")
    parser.add_argument("--models", help=f"model names or globs, comma-separated (default: all {len(MODELS)}: "
                                         f"{', '.join(MODELS)})")
    parser.add_argument("--methods", help="method names, comma-separated (default: "
                                          f"{', '.join(DEFAULT_METHODS)})")
    parser.add_argument("--samples", type=int, default=100, help="held-out digits per model (1-500, default 100)")
    parser.add_argument("--steps", type=int, default=250,
                        help="pixel-flipping steps (default 250, as in the paper; at most one per pixel, so 64 on "
                             "8x8 digits)")
    parser.add_argument("--randomisation-samples", type=int, default=16,
                        help="samples for the randomisation test (default 16; 0 skips it)")
    parser.add_argument("--framework", choices=FRAMEWORKS, default="torch",
                        help="backend that computes the numbers; 'both' computes every number with the Keras and "
                             "the PyTorch twin and reports the largest difference (default torch)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and the random orders (default 0)")
    parser.add_argument("--out-dir", type=Path, default=Path("results") / "evaluate")
    parser.set_defaults(command=run)
    return parser


def _selection(text, universe, what):
    if text is None:
        return list(universe)
    chosen = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        matches = fnmatch.filter(universe, part) if any(c in part for c in "*?[") else \
            [part] if part in universe else []
        if not matches:
            raise ValueError(f"no {what} matches {part!r}; choose from {', '.join(universe)}")
        chosen += [m for m in matches if m not in chosen]
    if not chosen:
        raise ValueError(f"--{what}s selects nothing")
    return sorted(chosen, key=list(universe).index)


def _methods(text):
    from signxai.methods import parse_method

    if text is None:
        return list(DEFAULT_METHODS)
    methods = []
    for name in filter(None, (p.strip() for p in text.split(","))):
        parse_method(name)  # ValueError with suggestions for an unknown name
        if name not in methods:
            methods.append(name)
    if not methods:
        raise ValueError("--methods selects no method")
    return methods


def run(args) -> int:
    models = _selection(args.models, MODELS, "model")
    methods = _methods(args.methods)
    if not 1 <= args.samples <= 500:
        raise ValueError(f"--samples must be in 1 … 500 (the held-out digits), got {args.samples}")
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    if args.randomisation_samples < 0:
        raise ValueError(f"--randomisation-samples must be >= 0, got {args.randomisation_samples}")
    randomisation_samples = min(args.randomisation_samples, args.samples)
    frameworks = ("torch", "keras") if args.framework == "both" else (args.framework,)
    _import_frameworks(keras_needed="keras" in frameworks)
    import torch

    digits, _ = load_test_digits()
    digits = digits[:args.samples]
    progress = Progress(len(models) * len(methods) * len(frameworks))
    records, accuracies, skipped = [], {}, []
    threads = torch.get_num_threads()
    # Tiny models: torch's intra-op threads only contend (with TensorFlow's pools, 10-30x slower calls); restored below
    torch.set_num_threads(1)
    try:
        for name in models:
            model = load_experiment_model(name, "both" if len(frameworks) == 2 else frameworks[0])
            accuracies[name] = model.accuracy
            x = model.inputs(digits)
            for framework in frameworks:
                handle = model.torch_model if framework == "torch" else model.keras_model
                inputs = channels_first(x) if framework == "torch" else x
                records += evaluate_model(model, handle, inputs, methods, steps=args.steps, seed=args.seed,
                                          randomisation_samples=randomisation_samples, framework=framework,
                                          progress=progress, skipped=skipped)
    finally:
        torch.set_num_threads(threads)
    if not records:
        raise ValueError("none of the methods applies to the selected models: "
                         + "; ".join(f"{method} on {model}: {reason}" for model, method, reason in skipped[:3]))
    shown = frameworks[0]
    header = (f"SIGN paper protocol on scikit-learn's digits: {args.samples} held-out samples per model, "
              f"{'PyTorch' if shown == 'torch' else 'Keras'} models, pixel flipping in "
              f"{min(args.steps, 64)} steps with uniform noise over the input range (seed {args.seed})"
              + (f", randomisation test on {randomisation_samples} samples" if randomisation_samples else "") + ".\n"
              "Input ranges: 01 = [0, 1], 10 = [-1, 0], 11 = [-1, 1]; INV = inverted (background and strokes "
              "swapped). *_mu methods: mu = midpoint of the range (0.5, -0.5, 0).\n"
              "spread = max - min over the six input ranges of one architecture.\n"
              "Held-out accuracy: " + ", ".join(f"{m} {a:.3f}" for m, a in accuracies.items()) + "\n")
    text = header + _tables(records, models, [RANDOM_ROW] + methods, shown)
    reasons = {}
    for model_name, method, reason in skipped:
        reasons.setdefault((method, reason), []).append(model_name)
    for (method, reason), names in reasons.items():
        text += f"\nn/a: {method} on {', '.join(dict.fromkeys(names))}: {reason}"
    text += "\n" if reasons else ""
    if len(frameworks) == 2:
        worst = _max_difference(records)
        text += (f"\nKeras vs PyTorch: largest difference of any metric value {worst:.2e} "
                 f"({'within' if worst <= AGREEMENT_TOLERANCE else 'ABOVE'} {AGREEMENT_TOLERANCE:g})\n")
    print(text, end="")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "evaluation.txt").write_text(text)
    scalar = [r for r in records if r.metric != "curve"]
    with open(args.out_dir / "evaluation.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, ("model", "method", "metric", "value", "framework"))
        writer.writeheader()
        writer.writerows(asdict(r) for r in scalar)
    (args.out_dir / "evaluation.json").write_text(json.dumps(
        {"samples": args.samples, "steps": min(args.steps, 64), "seed": args.seed,
         "randomisation_samples": randomisation_samples, "frameworks": list(frameworks), "accuracy": accuracies,
         "records": [asdict(r) for r in records]}, indent=1))
    _plot_curves(records, models, methods, shown, args.out_dir / "pixel_flipping_curves.png")
    _plot_heatmaps(records, models, methods, shown, args.out_dir / "metrics_heatmap.png")
    print(f"wrote {args.out_dir}/evaluation.txt, .csv, .json, pixel_flipping_curves.png, metrics_heatmap.png")
    if len(frameworks) == 2 and not _max_difference(records) <= AGREEMENT_TOLERANCE:
        return 1
    return 0


def _import_frameworks(keras_needed: bool):
    """torch before TensorFlow (triton); TensorFlow only when needed, with its start-up logs hidden."""
    from signxai.loading import import_keras

    import torch  # noqa: F401

    if keras_needed:
        import_keras()


def _value(records, model, method, metric, framework):
    for r in records:
        if r.model == model and r.method == method and r.metric == metric and r.framework == framework:
            return r.value
    return None


def _tables(records, models, rows, framework) -> str:
    metrics_present = [m for m in METRICS if any(r.metric == m for r in records)]
    width = max(len(row) for row in rows) + 2
    out = []
    for metric in metrics_present:
        title, meaning = METRICS[metric]
        for net in NETS:
            columns = [m for m in models if m.startswith(net + "_")]
            if not columns:
                continue
            out.append(f"\n{title} ({meaning}) - {net}\n")
            labels = [c[len(net) + 1:].replace("_", " ") for c in columns]
            spread = len(columns) > 1
            out.append(f"{'method':<{width}}" + "".join(f"{label:>9}" for label in labels)
                       + (f"{'spread':>9}" if spread else "") + "\n")
            for row in rows:
                values = [_value(records, c, row, metric, framework) for c in columns]
                if all(v is None for v in values):
                    continue
                cells = "".join(f"{'-':>9}" if v is None else f"{v:9.3f}" for v in values)
                finite = [v for v in values if v is not None and np.isfinite(v)]
                if spread:
                    cells += f"{max(finite) - min(finite):9.3f}" if finite else f"{'-':>9}"
                out.append(f"{row:<{width}}{cells}\n")
    return "".join(out)


def _max_difference(records) -> float:
    keyed = {}
    for r in records:
        if r.metric != "curve":
            keyed.setdefault((r.model, r.method, r.metric), {})[r.framework] = r.value
    differences = [abs(v["torch"] - v["keras"]) for v in keyed.values() if len(v) == 2
                   and np.isfinite(v["torch"]) and np.isfinite(v["keras"])]
    mismatched_nan = sum(1 for v in keyed.values()
                         if len(v) == 2 and np.isfinite(v["torch"]) != np.isfinite(v["keras"]))
    return float("inf") if mismatched_nan else max(differences, default=0.0)


def _style(method, index):
    """Colour by base method, line style by variant: x-multiplied/plain solid, SIGN dashed, SIGN-μ dash-dotted."""
    from matplotlib import colormaps

    if method == RANDOM_ROW:
        return dict(color="black", linestyle=(0, (1, 1)), linewidth=1.6)
    sign_mu = method.endswith("_mu") or "_mu_" in method
    sign = sign_mu or method.startswith("lrpsign") or "_x_sign" in method
    base = method.replace("lrpsign_", "lrp_").split("_x_")[0].split("_mu")[0]
    bases = ["gradient", "lrp_z", "lrp_epsilon_0_1", "lrp_sequential_composite_a", "lrp_sequential_composite_b"]
    colour = colormaps["tab10"](bases.index(base) if base in bases else 5 + index % 5)
    if method == "gradient":
        return dict(color=colour, linestyle=(0, (1, 2)), linewidth=1.2)
    return dict(color=colour, linestyle="-." if sign_mu else "--" if sign else "-", linewidth=1.2)


def _plot_curves(records, models, methods, framework, path):
    from matplotlib.figure import Figure

    nets = [net for net in NETS if any(m.startswith(net + "_") for m in models)]
    columns = max(sum(m.startswith(net + "_") for m in models) for net in nets)
    fig = Figure(figsize=(3.0 * columns + 3.2, 2.9 * len(nets) + 0.4), layout="constrained")
    axes = fig.subplots(len(nets), columns, squeeze=False)
    for row, net in enumerate(nets):
        names = [m for m in models if m.startswith(net + "_")]
        for col in range(columns):
            ax = axes[row][col]
            if col >= len(names):
                ax.axis("off")
                continue
            for i, method in enumerate([RANDOM_ROW] + methods):
                curve = _value(records, names[col], method, "curve", framework)
                if curve is not None:
                    ax.plot(np.linspace(0, 100, len(curve)), curve, label=method if row == col == 0 else None,
                            **_style(method, i))
            ax.set_title(names[col].replace("_", " "), fontsize=9)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("features removed (%)", fontsize=8)
            if col == 0:
                ax.set_ylabel("softmax of the class", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.legend(loc="outside right upper", fontsize=7, title="solid: x-multiplied, dashed: SIGN,\n"
                                                            "dash-dot: SIGN-\u03bc (\u03bc = range midpoint)",
               title_fontsize=7)
    fig.suptitle("Pixel flipping (most relevant first, uniform noise over the input range): mean softmax curve of "
                 "the explained class; area over the curve = AOC", fontsize=10)
    fig.savefig(path, format="png", dpi=100)


def _plot_heatmaps(records, models, methods, framework, path):
    from matplotlib.figure import Figure

    panels = [m for m in ("aoc", "pearson", "spearman", "mprt") if any(r.metric == m for r in records)]
    ncols = 2 if len(panels) > 1 else 1
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(ncols * (0.5 * len(models) + 3.6), nrows * (0.3 * len(methods) + 2.4)),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.axis("off")
    for ax, metric in zip(axes, panels):
        rows = ([RANDOM_ROW] if metric == "aoc" else []) + methods
        grid = np.array([[np.nan if (v := _value(records, m, row, metric, framework)) is None else v
                          for m in models] for row in rows], dtype=float)
        limits = dict(vmin=np.nanmin(grid), vmax=np.nanmax(grid)) if metric == "aoc" else dict(vmin=-1, vmax=1)
        image = ax.imshow(grid, cmap="viridis" if metric == "aoc" else "coolwarm", aspect="auto", **limits)
        middle = (limits["vmin"] + limits["vmax"]) / 2
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                dark = metric == "aoc" and v < middle
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if dark else "black")
        ax.set_xticks(range(len(models)), [m.replace("_", " ") for m in models], rotation=90, fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_title(f"{METRICS[metric][0]}\n({METRICS[metric][1]})", fontsize=8)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.savefig(path, format="png", dpi=100)
