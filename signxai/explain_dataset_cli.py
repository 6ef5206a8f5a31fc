"""``signxai explain-dataset``: explain a whole dataset into a resumable Zarr store (or ``.npy`` files).

    signxai explain-dataset --model ecg.keras --input ecgs.npy --methods gradient,lrp_epsilon_0_1 --out maps.zarr
    signxai explain-dataset --model net.pt --input 'images/*.png' --methods 'lrp_epsilon*' --out maps.zarr
    signxai explain-dataset --model twin.keras --input signal=s.npy demographics=d.npy --inputs signal \\
        --methods gradient --out m.zarr
    signxai explain-dataset --model ecg.keras --input table.parquet --column ecg --methods gradient --out m.zarr \\
        --engine ray --actors 4

Re-running the same command after an interruption resumes it.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path


def add_parser(commands) -> None:
    """Register the subcommand on the ``signxai`` command line's subparsers."""
    parser = commands.add_parser(
        "explain-dataset", help="explain a whole dataset with several methods into a resumable store",
        description="Explain every sample of a dataset with each method, chunk by chunk, into a Zarr store (or one "
                    ".npy per array with --format npy) holding the maps, the logits, the predicted class and the "
                    "target of every sample. Memory is bounded by --batch-size. Re-running the same command after "
                    "an interruption skips the finished chunks; a store of another job is an error (nothing is "
                    "overwritten). Images are converted as `signxai explain` converts them; .npy inputs and Parquet "
                    "tensors are used as they are, in the model's layout.")
    parser.add_argument("--model", required=True, type=Path,
                        help=".keras/.h5, .pt/.pth (a whole pickled torch.nn.Module: only load files you trust) "
                             "or .onnx, as for `signxai explain`")
    parser.add_argument("--input", required=True, nargs="+", metavar="DIR|GLOB|FILE",
                        help="a .npy batch (N, ...), a .parquet table, a folder or quoted glob of images or "
                             "one-sample .npy files, or several such files; a multi-input model: NAME=PATH per "
                             "input (docs/api.md#multi-input-datasets)")
    parser.add_argument("--inputs", metavar="NAME[,NAME...]",
                        help="a multi-input model's explained inputs, by name or position (default: every input)")
    parser.add_argument("--methods", required=True,
                        help="method names: a comma-separated list and/or globs such as 'lrp_epsilon*'")
    parser.add_argument("--out", required=True, type=Path, help="the store: a folder (e.g. maps.zarr)")
    parser.add_argument("--format", choices=("zarr", "npy"), help="zarr (default) or npy (one .npy per array)")
    parser.add_argument("--target", help="the class to explain (default: each sample's predicted class); "
                                         "'negative' for a single-logit head (docs/api.md#targets)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter for every method, e.g. mu=0.5 (repeatable)")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per chunk (default 32)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local (default) or ray (Ray Data; needs signxai[ray])")
    parser.add_argument("--actors", type=int, default=2, help="Ray actors (default 2)")
    parser.add_argument("--ray-address", help="the Ray cluster to join, e.g. auto or ray://head:10001 (default: "
                                              "start a local one)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="an unreadable sample stops the run (raise, default) or is skipped and reported")
    parser.add_argument("--column", help="the Parquet column holding the samples")
    parser.add_argument("--shape", type=int, nargs="+", help="reshape each Parquet row to this sample shape")
    parser.add_argument("--size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                        help="resize images to this size instead of the model's input size")
    parser.add_argument("--caffe", action="store_true", help="VGG caffe preprocessing of image inputs")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(command=run)


def run(args) -> int:
    from signxai.cli_args import parse_param, parse_target, select_methods
    from signxai.loading import InputError

    methods = select_methods(args.methods)  # unknown names fail before the slow imports
    params = dict(parse_param(text) for text in args.param)
    args.target = None if args.target is None else parse_target(args.target)
    named = [p for p in args.input if "=" in p and not Path(p).exists()]
    if named and len(named) != len(args.input):
        raise InputError(f"give every --input as NAME=PATH (one per input of a multi-input model) or none: "
                         f"{[p for p in args.input if p not in named]} has no NAME=")
    if named:
        source = dict(p.split("=", 1) for p in named)
        if len(source) != len(named):
            raise InputError(f"an input is named twice in --input {named}")
    else:
        source = args.input[0] if len(args.input) == 1 else [Path(p) for p in args.input]
    if args.inputs is not None:
        args.inputs = [int(i) if i.lstrip("-").isdigit() else i for i in args.inputs.split(",") if i]
    for path in (list(source.values()) if isinstance(source, dict) else [source] if not isinstance(source, list)
                 else source):
        if not Path(path).exists() and not any(c in str(path) for c in "*?["):
            raise InputError(f"no such file or folder: {path}")
    if not args.model.is_file():
        raise InputError(f"no such file: {args.model}")
    try:
        with warnings.catch_warnings():  # skipped samples are listed at the end instead
            warnings.filterwarnings("ignore", message="skipped sample", category=UserWarning)
            result = _run(args, source, methods, params)
    except ImportError as error:
        raise InputError(str(error)) from error
    except KeyboardInterrupt:
        print(f"signxai: interrupted; finished chunks are kept in {args.out}: run the same command again to "
              f"resume", file=sys.stderr)
        return 130
    resumed = f", {result.resumed_chunks} finished earlier" if result.resumed_chunks else ""
    skipped = f", {len(result.errors)} sample(s) skipped" if result.errors else ""
    speed = f"; {result.samples_per_second:.1f} samples/s" if result.computed_chunks else ""
    print(f"{result.n_samples} samples x {len(result.methods)} method(s) -> {result.out} ({result.format}; "
          f"{result.computed_chunks} chunk(s) computed{resumed}{skipped}{speed})")
    for error in result.errors:
        print(f"skipped sample {error['index']} ({error['path']}): {error['error']}", file=sys.stderr)
    return 0


def _run(args, source, methods, params):
    from signxai.dataset import explain_dataset

    if args.engine == "ray" and args.ray_address:
        from signxai.dataset.ray_engine import import_ray
        import_ray().init(address=args.ray_address)
    return explain_dataset(
        args.model, source, methods, args.out, target=args.target, batch_size=args.batch_size, engine=args.engine,
        format=args.format, on_error=args.on_error, dtype=args.dtype, column=args.column, shape=args.shape,
        image_size=tuple(args.size) if args.size else None, caffe=args.caffe, num_actors=args.actors,
        progress=not args.no_progress, inputs=args.inputs, **params)
