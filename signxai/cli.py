"""The ``signxai`` command line (also ``python -m signxai``).

    signxai methods
    signxai explain --model net.keras --input photo.jpg --method lrp_epsilon_0_1 --out relevance.png
    signxai explain --model ecg.keras --record patient01.hea --method lrpsign_epsilon_0_1 --out ecg.png
    signxai ecg-demo results/ecg
    signxai compare --methods 'lrp_epsilon*' --out-dir results
    signxai compare --keras-model net.keras --torch-model net.pt --input photo.jpg

User errors print one line ``signxai: error: ...`` on stderr and exit with status 2. ``compare`` exits with 1 when a
method breaks docs/equivalence.md#agreement-gates. PyTorch is imported before TensorFlow (NOTES: triton).

This module parses arguments and prints; models and inputs are loaded by :mod:`signxai.loading`. Run as a program
(``signxai ...``, ``python -m signxai ...``) it owns its process and silences TensorFlow's native (C++) logging
before TensorFlow is imported (``TF_CPP_MIN_LOG_LEVEL=3`` unless the variable is set already); ``main([...])``
called from Python leaves the environment alone.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from signxai._keras_torch import channels_first, channels_last
from signxai.cli_args import parse_param, parse_target, select_methods
from signxai.loading import (KERAS_SUFFIXES, TORCH_SUFFIXES, InputError, ModelInfo, import_keras, load_image,
                             load_keras_batch, load_model, one_line)
from signxai.methods import CATALOG, method_families, parse_method

CLIError = InputError
"""A user error: one line on stderr, exit status 2 (the library's :class:`signxai.loading.InputError`)."""
# The names of what moved to signxai.loading and signxai.cli_args, kept for scripts that import them from here
_Model, _load_model, _load_image, _import_keras = ModelInfo, load_model, load_image, import_keras
_param, _select, _one_line = parse_param, select_methods, one_line


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise CLIError(message)


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Without ``argv`` (the ``signxai`` program itself) TensorFlow's C++ log lines are silenced first
    (:func:`quiet_tensorflow_logs`)."""
    if argv is None:
        quiet_tensorflow_logs(os.environ)
    try:
        args = _parser().parse_args(argv)
        return args.command(args)
    except SystemExit as done:  # --help
        return done.code or 0
    except BrokenPipeError:  # stdout closed early, as by `signxai methods | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (InputError, ValueError, TypeError, OSError) as error:
        print(f"signxai: error: {one_line(error)}", file=sys.stderr)
        return 2


def quiet_tensorflow_logs(environ) -> None:
    """Silence TensorFlow's native logging ("Not handling type DT_DOUBLE", cuInit errors, oneDNN notices) in the
    process whose environment is ``environ``: ``TF_CPP_MIN_LOG_LEVEL=3`` unless the user set it (set it to 0 to see
    them). It takes effect only if TensorFlow is not imported yet; the command line calls it for its own process,
    the library never does."""
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _parser():
    parser = _ArgumentParser(prog="signxai", description="SIGN, LRP and gradient explanations for Keras 3 and "
                             "PyTorch models, with identical numbers in both frameworks.")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    methods = commands.add_parser("methods", help="list the method catalog by family")
    methods.set_defaults(command=_methods)

    explain = commands.add_parser(
        "explain", help="explain one input with one method",
        description="Explain one input. An image is converted to RGB or grayscale as the model's input needs, "
                    "resized (bilinear) to the model's input size where the model declares one (Keras, ONNX; a "
                    "PyTorch module declares none, so the image keeps its size) and scaled to [0, 1]; --caffe "
                    "applies VGG 'caffe' preprocessing instead (BGR, ImageNet means subtracted, not scaled). A .npy "
                    "input is passed as it is, in the model's layout (channels-first for PyTorch and ONNX "
                    "models converted from PyTorch).")
    explain.add_argument("--model", required=True, type=Path,
                         help=".keras/.h5 (Keras), .pt/.pth (a whole pickled torch.nn.Module, loaded with "
                              "torch.load(weights_only=False): only load files you trust; the module's class must "
                              "be importable) or .onnx (run as PyTorch via onnx2torch)")
    source = explain.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, help="an image file or a .npy array")
    source.add_argument("--record", type=Path,
                        help="a multi-lead record (docs/ecg.md#command-line): a WFDB header (.hea; needs "
                             "signxai[ecg]), a .npy array (T, leads) or (leads, T), or a .csv table with one column "
                             "per lead; it is given to the model in its layout ((1, T, leads) Keras, (1, leads, T) "
                             "PyTorch), and a .png --out is the 12-lead plot with the relevance drawn on the signal")
    explain.add_argument("--method", required=True, help="a method name (see `signxai methods`)")
    explain.add_argument("--target", help="the class to explain (default: the predicted class); 'negative' for a "
                                          "single-logit head, t,k for per-timestep outputs (docs/api.md#targets)")
    explain.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                         help="a method parameter, e.g. mu=0.5 or low=-1 (repeatable)")
    explain.add_argument("--out", type=Path, help=".npy: the raw map (the input's layout); .png: a heatmap")
    explain.add_argument("--cmap", default="red_white", help="heatmap colours: red_white (positive relevance, "
                                                             "default), seismic or another matplotlib colormap")
    explain.add_argument("--caffe", action="store_true", help="VGG caffe preprocessing of an image input")
    explain.add_argument("--size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                         help="resize an image input to this size instead of the model's input size")
    explain.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    explain.add_argument("--fs", type=float, metavar="HZ",
                         help="--record: the sampling rate of a .npy or .csv record (WFDB headers store it)")
    explain.add_argument("--layout", choices=("4x3", "12x1"), default="12x1",
                         help="--record: the plot's layout (12x1: one row per lead; 4x3: the clinical grid, 2.5 s "
                              "per column)")
    explain.add_argument("--normalize", choices=("global", "lead"), default="global",
                         help="--record: one colour scale for all leads (global) or one per lead")
    explain.set_defaults(command=_explain)

    compare = commands.add_parser(
        "compare", help="check that TensorFlow and PyTorch agree (docs/equivalence.md#agreement-gates) on a model "
                        "pair",
        description="Run methods on a Keras model and its PyTorch twin, check docs/equivalence.md#agreement-gates "
                    "(float32 and float64 in both frameworks), write a table, CSV, JSON and one figure per method. "
                    "The pair is a demo, a Keras file and its conversion (--model), or your own Keras model and "
                    "its PyTorch port (--keras-model with --torch-model). Before any method runs, the logits of the "
                    "two models are compared on the input: if they differ by more than 1e-4 of the largest |logit|, "
                    "the pair is not a twin and compare stops with exit status 2 and the figure (--force explains "
                    "it anyway). Exit status 1 if any method breaks docs/equivalence.md#agreement-gates.")
    compare.add_argument("--methods", help="catalog names: a glob such as 'lrp_epsilon*' and/or a comma-separated "
                                           "list (default: the whole catalog)")
    compare.add_argument("--model", help="demo (= digits, the default), digits, eeg, or a .keras/.h5 file "
                                         "(converted with convert_tf_to_torch_direct)")
    compare.add_argument("--keras-model", type=Path, metavar="FILE",
                         help="your Keras model (.keras/.h5), compared with --torch-model")
    compare.add_argument("--torch-model", type=Path, metavar="FILE",
                         help="its PyTorch twin (.pt/.pth: a whole pickled torch.nn.Module, loaded with "
                              "torch.load(weights_only=False): only load files you trust), taking the Keras input "
                              "channels-first")
    compare.add_argument("--input", type=Path,
                         help="an image file (converted to RGB or grayscale as the Keras model's input needs, "
                              "resized to its input size, scaled to [0, 1]) or a .npy array in the Keras layout "
                              "(channels-last), with or without the batch axis; default: a seeded uniform [0, 1) "
                              "batch of the Keras input shape (the demos: their held-out samples)")
    compare.add_argument("--samples", type=int, help="number of samples explained (default 4; with --input: the "
                                                     "whole input)")
    compare.add_argument("--force", action="store_true",
                         help="explain a pair whose logits differ by more than 1e-4 (relative) instead of stopping")
    compare.add_argument("--out-dir", type=Path, default=Path("results"))
    compare.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                         help="precision of the maps in the table and figures (the gates always use both)")
    compare.add_argument("--no-progress", action="store_true", help="no progress bar")
    compare.set_defaults(command=_compare)

    from signxai.explain_dataset_cli import add_parser as add_explain_dataset
    add_explain_dataset(commands)

    from signxai.evaluate import add_parser as add_evaluate
    add_evaluate(commands)

    from signxai.signals.demo import add_parser as add_ecg_demo
    add_ecg_demo(commands)
    return parser


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise CLIError(f"no such file: {path}")
    return path


# --------------------------------------------------------------------------------------------------------- methods
def _methods(args) -> int:
    families = method_families()
    for family, names in families.items():
        print(f"{family} ({len(names)})")
        print("".join(f"  {name}\n" for name in names), end="")
    print(f"{len(CATALOG)} methods in {len(families)} families")
    return 0


# --------------------------------------------------------------------------------------------------------- explain
def _explain(args) -> int:
    parse_method(args.method)  # unknown names fail before the slow imports
    if args.out is not None and args.out.suffix not in (".png", ".npy"):
        raise CLIError(f"--out must end in .png or .npy, not {args.out.name!r}")
    params = dict(parse_param(text) for text in args.param)
    if args.record is not None:
        return _explain_record(args, params)
    loaded = load_model(_existing(args.model))
    is_image = _existing(args.input).suffix != ".npy"
    x = load_image(args.input, loaded, args.caffe, args.size) if is_image else np.load(args.input)
    from signxai import calculate_relevancemap

    try:
        target = None if args.target is None else parse_target(args.target)
        relevance = calculate_relevancemap(loaded.model, x, args.method, target=target, dtype=args.dtype, **params)
    except RuntimeError as error:  # PyTorch's report of a wrong input shape
        raise CLIError(f"the model cannot take an input of shape {x.shape}: {one_line(error)}") from error
    if args.out is not None and args.out.suffix == ".npy":
        np.save(args.out, relevance)
    elif args.out is not None:
        _save_heatmap(_canonical_sample(relevance, loaded), args.out, args.cmap)
    print(f"{args.method}: relevance map {relevance.shape} {relevance.dtype}, sum {relevance.sum():.6g}, "
          f"max|R| {np.abs(relevance).max():.6g}" + (f" -> {args.out}" if args.out else ""))
    return 0


def _explain_record(args, params) -> int:
    """``explain --record``: a multi-lead record in, its relevance map (.npy, the model's layout) or the 12-lead plot
    (.png) out (docs/ecg.md#command-line)."""
    from signxai.signals.io import load_record
    from signxai.signals.plot import plot_ecg

    record = load_record(args.record, fs=args.fs)
    loaded = load_model(_existing(args.model))
    x = record.signal.astype(np.float32)
    shape = loaded.input_shape
    if shape is not None and len(shape) != 2:
        raise CLIError(f"the model takes inputs of shape {shape} per sample, not a record (time x leads)")
    channels_first = loaded.channels_first
    if shape is not None and None not in shape and x.shape[0] != x.shape[1]:
        # a fully declared shape (ONNX) tells the layout: (leads, T) is a model exported from PyTorch
        channels_first = tuple(shape) == (x.shape[1], x.shape[0]) or channels_first and tuple(shape) != x.shape
    if shape is not None:
        leads, steps = (shape[0], shape[1]) if channels_first else (shape[1], shape[0])
        if leads is not None and leads != x.shape[1]:
            raise CLIError(f"the model takes {leads} leads; the record {args.record.name} has {x.shape[1]}")
        if steps is not None and steps != x.shape[0]:
            raise CLIError(f"the model takes {steps} time steps; the record {args.record.name} has {x.shape[0]} "
                           f"({record.duration:g} s at {record.fs:g} Hz): crop or resample it")
    inputs = x.T[None] if channels_first else x[None]
    from signxai import calculate_relevancemap

    try:
        relevance = calculate_relevancemap(loaded.model, inputs, args.method, target=args.target, dtype=args.dtype,
                                           **params)
    except RuntimeError as error:  # PyTorch's report of a wrong input shape
        raise CLIError(f"the model cannot take an input of shape {inputs.shape}: {one_line(error)}") from error
    if args.out is not None and args.out.suffix == ".npy":
        np.save(args.out, relevance)
    elif args.out is not None:
        plot_ecg(record, relevance, layout=args.layout, normalize=args.normalize,
                 relevance_layout="channels_first" if channels_first else "channels_last",
                 title=f"{args.method}: {record.name}", save=args.out)
    print(f"{args.method}: relevance map {relevance.shape} {relevance.dtype} of record {record.name} "
          f"({x.shape[1]} leads, {record.duration:g} s at {record.fs:g} Hz), sum {relevance.sum():.6g}, "
          f"max|R| {np.abs(relevance).max():.6g}" + (f" -> {args.out}" if args.out else ""))
    return 0


def _canonical_sample(relevance, loaded: ModelInfo) -> np.ndarray:
    """The first sample of a map, channels-last."""
    shape = loaded.input_shape
    batched = relevance.ndim == len(shape) + 1 if shape is not None else relevance.ndim >= 2
    sample = relevance[0] if batched else relevance
    return channels_last(sample, batch=False) if loaded.channels_first and sample.ndim >= 2 else sample


def _save_heatmap(sample, path: Path, cmap: str) -> None:
    """A PNG with one pixel per input position (channels summed)."""
    from PIL import Image

    from signxai.common.visualization import relevance_to_heatmap

    heatmap = relevance_to_heatmap(sample[None] if sample.ndim == 1 else sample, cmap)
    Image.fromarray(np.round(heatmap * 255).astype(np.uint8)).save(path)


# --------------------------------------------------------------------------------------------------------- compare
@dataclass
class Row:
    """One line of the comparison table (maps of the chosen dtype; status from docs/equivalence.md#agreement-gates)."""

    method: str
    status: str  # "ok", "n/a" or "failed"
    mae: float | None = None
    rel_error: float | None = None  # max|TF − PT| / max|TF|
    pearson: float | None = None
    time_tf_ms: float | None = None
    time_pt_ms: float | None = None
    note: str = ""


COLUMNS = ("method", "mae", "rel_error", "pearson", "time_tf_ms", "time_pt_ms", "status", "note")


def _compare(args) -> int:
    methods = select_methods(args.methods)
    if args.samples is not None and args.samples < 1:
        raise CLIError("--samples must be at least 1")
    keras_model, torch_model, x, label = _pair(args)
    logit_difference = _check_logits(keras_model, torch_model, x, args.force)
    figures = args.out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    timeseries = x.ndim == 3 and any(len(getattr(getattr(layer, "kernel", None), "shape", ())) == 3
                                     for layer in keras_model.layers)
    import torch

    rows = []
    progress = _Progress(len(methods), enabled=not args.no_progress)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # interleaved with TensorFlow's, torch's worker threads made calls 10-30x slower
    try:
        for method in methods:
            progress.start(method)
            rows.append(_compare_method(method, keras_model, torch_model, x, args.dtype, figures, timeseries))
            progress.done()
    finally:
        torch.set_num_threads(threads)
        progress.close()
    counts = {status: sum(row.status == status for row in rows) for status in ("ok", "n/a", "failed")}
    summary = (f"{counts['ok']} methods within docs/equivalence.md#agreement-gates, {counts['n/a']} n/a, "
               f"{counts['failed']} failed")
    table = _table(rows) + summary + "\n"
    print(table, end="")
    (args.out_dir / "values_method_comparison.txt").write_text(table)
    with open(args.out_dir / "values_method_comparison.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, COLUMNS)
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    (args.out_dir / "values_method_comparison.json").write_text(json.dumps(
        {"model": label, "samples": len(x), "dtype": args.dtype, "logit_max_rel_diff": logit_difference,
         "rows": [asdict(row) for row in rows], "summary": counts}, indent=1))
    drawn = sum(row.mae is not None for row in rows)
    print(f"wrote {args.out_dir / 'values_method_comparison'}.txt, .csv, .json and {drawn} figure(s) in {figures} "
          f"(input | TensorFlow | PyTorch | difference per method)")
    return 0 if counts["failed"] == 0 else 1


class _Progress:
    """Progress of ``compare`` on stderr: a tqdm bar labelled ``[i/n] method`` (tqdm is installed with
    ``signxai[dataset]``), else one ``[i/n] method`` line per method."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.i, self.enabled, self.bar = total, 0, enabled, None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, desc="compare", unit="method", file=sys.stderr, dynamic_ncols=True,
                            smoothing=0.1, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")

    def start(self, method: str) -> None:
        self.i += 1
        label = f"[{self.i:>{len(str(self.total))}}/{self.total}] {method}"
        if self.bar is not None:
            self.bar.set_description_str(label)
        elif self.enabled:
            print(label, file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            if self.i == self.total:
                self.bar.set_description_str(f"compared {self.total} method(s)", refresh=False)
            self.bar.close()


LOGIT_TOLERANCE = 1e-4
"""The largest relative logit difference ``max|y_tf − y_pt| / max|y_tf|`` of a pair that ``compare`` explains."""


def _pair(args):
    """``(keras_model, torch_model, x, label)``: a demo twin pair, a Keras file and its direct conversion, or the
    user's Keras model and PyTorch twin; ``x`` (channels-last) from ``--input`` or generated."""
    import_keras()
    pair = args.keras_model is not None or args.torch_model is not None
    if pair and args.model is not None:
        raise CLIError("give either --model or --keras-model with --torch-model, not both")
    if pair and (args.keras_model is None or args.torch_model is None):
        raise CLIError("--keras-model and --torch-model go together: a Keras model and its PyTorch twin")
    samples = args.samples
    if pair:
        keras_path, torch_path = _existing(args.keras_model), _existing(args.torch_model)
        if keras_path.suffix.lower() not in KERAS_SUFFIXES:
            raise CLIError(f"--keras-model must be a .keras/.h5 file, not {keras_path.name!r}")
        if torch_path.suffix.lower() not in TORCH_SUFFIXES:
            raise CLIError(f"--torch-model must be a .pt/.pth file (a pickled torch.nn.Module), not "
                           f"{torch_path.name!r}")
        keras_model, torch_model = load_model(keras_path).model, load_model(torch_path).model
        label, x = f"{keras_path} + {torch_path}", None
    else:
        name = args.model or "digits"
        if name in ("demo", "digits", "eeg"):
            from signxai.demo import load_demo

            demo = load_demo("digits" if name == "demo" else name)
            keras_model, torch_model, label, x = demo.keras_model, demo.torch_model, f"demo {demo.name}", demo.x
        else:
            path = _existing(Path(name))
            if path.suffix.lower() not in KERAS_SUFFIXES:
                raise CLIError(f"--model must be demo, digits, eeg or a .keras/.h5 file, not {name!r}")
            from signxai.converters.direct_tf_to_torch import convert_tf_to_torch_direct

            keras_model = load_model(path).model
            torch_model, label, x = convert_tf_to_torch_direct(keras_model), str(path), None
    shape = tuple(keras_model.input_shape[1:])
    if args.input is not None:
        x = load_keras_batch(_existing(args.input), shape)
    elif x is None:
        if None in shape:
            raise CLIError(f"the Keras model's input shape {shape} has unknown axes; give an --input")
        x = np.random.RandomState(0).uniform(0, 1, (samples or 4, *shape)).astype(np.float32)
        samples = None
    elif samples is None:
        samples = 4
    return keras_model, torch_model, x[:samples] if samples else x, label


def _check_logits(keras_model, torch_model, x, force) -> float:
    """The pair's max relative logit difference on ``x``; a CLIError above LOGIT_TOLERANCE unless ``force``."""
    import torch

    keras = import_keras()
    y_tf = keras.ops.convert_to_numpy(keras_model(x, training=False)).astype(np.float64)
    training = [(m, m.training) for m in torch_model.modules()]
    torch_model.eval()
    try:
        with torch.no_grad():
            y_pt = torch_model(torch.as_tensor(channels_first(x))).double().cpu().numpy()
    except Exception as error:  # a wrong layout or input size of the PyTorch twin
        raise CLIError(f"the PyTorch model cannot take the input of shape {channels_first(x).shape} "
                       f"(channels-first): {one_line(error)}") from error
    finally:
        for module, flag in training:
            module.training = flag
    if y_tf.shape != y_pt.shape:
        raise CLIError(f"the models' outputs differ in shape: Keras {y_tf.shape}, PyTorch {y_pt.shape}")
    scale = np.abs(y_tf).max()
    difference = np.abs(y_tf - y_pt).max()
    relative = float(difference / scale) if scale else 0.0 if difference == 0 else float("inf")
    message = (f"the models' logits differ by {relative:.3g} of the largest |logit| ({scale:.3g}) on "
               f"{len(x)} sample(s), more than {LOGIT_TOLERANCE:g}")
    if relative > LOGIT_TOLERANCE:
        if not force:
            raise CLIError(f"not a twin pair: {message}; check the weights, layouts, padding and BN eps "
                           f"(docs/equivalence.md#model-equivalence), or pass --force to explain it anyway")
        print(f"signxai: warning: {message} (--force)", file=sys.stderr)
    else:
        print(f"logits: max relative difference {relative:.2g} on {len(x)} sample(s)", file=sys.stderr)
    return relative


def _compare_method(method, keras_model, torch_model, x, dtype, figures, timeseries) -> Row:
    from signxai import calculate_relevancemap
    from signxai.common.agreement import check_agreement, not_applicable, sweep_kwargs

    reason = not_applicable(method, keras_model)
    if reason:
        return Row(method, "n/a", note=reason)
    kwargs = sweep_kwargs(method, x)
    maps, seconds = {}, {}
    try:
        for precision in ("float32", "float64"):
            for framework, model, inputs, back in (("tf", keras_model, x, np.asarray),
                                                   ("pt", torch_model, channels_first(x), channels_last)):
                start = time.perf_counter()
                maps[framework, precision] = back(calculate_relevancemap(model, inputs, method, dtype=precision,
                                                                         **kwargs))
                seconds[framework, precision] = time.perf_counter() - start
        agreement = check_agreement(maps["tf", "float32"], maps["pt", "float32"], maps["tf", "float64"],
                                    maps["pt", "float64"])
    except Exception as error:  # a method that raises is a failure, reported with its message
        return Row(method, "failed", note=f"{type(error).__name__}: {one_line(error)}")
    tf, pt = maps["tf", dtype].astype(np.float64), maps["pt", dtype].astype(np.float64)
    difference = np.abs(tf - pt)
    peak, error = np.abs(tf).max(), difference.max()
    _figure(x[0], tf[0], pt[0], figures / f"{method}.png", timeseries)
    return Row(method, "ok" if agreement.passed else "failed", mae=float(difference.mean()),
               rel_error=float(error / peak) if peak else 0.0 if error == 0 else float("inf"),
               pearson=_pearson(tf, pt), time_tf_ms=1000 * seconds["tf", dtype],
               time_pt_ms=1000 * seconds["pt", dtype], note="; ".join(agreement.violations))


def _pearson(a, b) -> float:
    """Pearson's r; for a constant map 1 if both maps are equal, else NaN."""
    if np.array_equal(a, b):
        return 1.0
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    norm = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / norm) if norm else float("nan")


def _figure(x, tf, pt, path, timeseries) -> None:
    """input | TF | PT | |TF − PT| as red/white heatmaps, each scaled to its own peak (a time series shows its
    channels as rows)."""
    from signxai.common.visualization import visualize_comparison

    def shown(a):
        return np.repeat(a.T, max(1, len(a) // (4 * a.shape[1])), axis=0) if timeseries else a

    span = np.ptp(x)
    unit = (x - x.min()) / span if span else np.zeros_like(x)
    panels = [("input", shown(unit), "image"), ("TensorFlow", shown(tf), "relevance"),
              ("PyTorch", shown(pt), "relevance"),
              (f"|TF − PT| (max {np.abs(tf - pt).max():.1e})", shown(np.abs(tf - pt)), "relevance")]
    visualize_comparison(panels, path, cmap="red_white")


def _table(rows) -> str:
    def cell(value, spec):
        return f"{'-':>{spec.split('.')[0]}}" if value is None else format(value, spec)

    width = max(len("method"), *(len(row.method) for row in rows))
    lines = [f"{'method':<{width}}  {'MAE':>9}  {'rel_err':>9}  {'pearson':>9}  {'t_tf_ms':>8}  {'t_pt_ms':>8}  "
             f"status  note"]
    for row in rows:
        lines.append(f"{row.method:<{width}}  {cell(row.mae, '9.2e')}  {cell(row.rel_error, '9.2e')}  "
                     f"{cell(row.pearson, '9.6f')}  {cell(row.time_tf_ms, '8.1f')}  {cell(row.time_pt_ms, '8.1f')}  "
                     f"{row.status:<6}  {row.note}".rstrip())
    return "\n".join(lines) + "\n"
