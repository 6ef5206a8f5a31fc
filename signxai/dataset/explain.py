"""``explain_dataset``: explain a whole dataset with several methods into a resumable store."""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from signxai.dataset import job as _job
from signxai.dataset import store as _store
from signxai.dataset.sources import open_multi_source, open_source
from signxai._version import __version__
from signxai.loading import ModelSpec, framework_of

ENGINES = ("local", "ray")
ON_ERROR = ("raise", "skip")
FORMATS = ("zarr", "npy")
STORE_VERSION = 1


@dataclass
class DatasetResult:
    """What a run did. ``errors``: every skipped sample of the store (this run and earlier ones)."""

    out: Path
    format: str
    n_samples: int
    methods: tuple
    n_chunks: int
    computed_chunks: int  # chunks explained by this run
    resumed_chunks: int  # chunks a previous run had finished (skipped)
    computed_samples: int
    errors: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def samples_per_second(self) -> float:
        return self.computed_samples / self.seconds if self.seconds else float("nan")

    def load(self):
        return load_results(self.out)


@dataclass
class DatasetResults:
    """A store opened for reading: lazy Zarr arrays or read-only memory-mapped ``.npy`` arrays."""

    maps: dict
    logits: object
    predictions: object
    targets: object
    valid: object
    attrs: dict

    @property
    def complete(self) -> bool:
        return bool(self.attrs.get("complete"))


def load_results(out) -> DatasetResults:
    """Open a store written by :func:`explain_dataset` (Zarr or ``.npy``) for reading. A multi-input store's
    ``maps[method]`` is a dict input name → array (docs/api.md#multi-input-datasets)."""
    store = _store.open_existing(out)
    attrs = store.attrs()
    arrays = store.arrays()
    order = attrs.get(_store.ATTRS_KEY, {}).get("inputs", {}).get("explained")
    if order:  # a multi-input store: maps[method][input], the inputs in the model's order
        arrays["maps"] = {method: {name: maps[name] for name in order if name in maps}
                          for method, maps in arrays["maps"].items()}
    return DatasetResults(**arrays, attrs=attrs)


def explain_dataset(model_or_factory, source, methods, out, *, target=None, batch_size=32, engine="local",
                    format=None, on_error="raise", dtype="float32", column=None, shape=None, image_size=None,
                    caffe=False, num_actors=2, actor_options=None, progress=True, inputs=None,
                    **params) -> DatasetResult:
    """Explain every sample of ``source`` with each of ``methods`` into the store ``out``, chunk by chunk.

    * ``model_or_factory``: a Keras 3 model, a ``torch.nn.Module``, a zero-argument callable that builds one (each
      Ray actor calls it once), or a ``.keras``/``.h5``/``.pt``/``.pth``/``.onnx`` file (as ``signxai explain``).
    * ``source``: a NumPy array (N, ...) in the model's layout, a ``.npy`` file (read chunk by chunk), a folder,
      glob or list of images or one-sample ``.npy`` files, or a Parquet file with one tensor per row in ``column``
      (``shape=`` reshapes flat rows). Images are converted as ``signxai explain`` converts them (``image_size``,
      ``caffe``). A multi-input model takes a list (its inputs in order) or a dict (by input name) with one such
      entry per input, all with the same number of samples; ``column=``/``shape=`` may then be given per input
      (docs/api.md#multi-input-datasets).
    * ``inputs``: a multi-input model's explained input(s) (positions or names, as ``calculate_relevancemap``;
      default: every input); the store holds ``maps/<method>/<input name>`` per explained input.
    * ``methods``: a method name, a list of names, or a dict name → parameters; ``**params`` apply to every method.
    * ``out``: the store (Zarr by default; ``format="npy"``: one ``.npy`` per array). A store of the same job is
      resumed: finished chunks are skipped. A store of another job is an error; nothing is overwritten.
    * ``target``: None (the predicted class of each sample), a class index, one index per sample, or
      ``"negative"`` (the negative class of a single-logit head, docs/api.md#targets). Models with one output per
      sample, ``(N,)`` or ``(N, 1)``, store it as ``logits`` of width 1; per-timestep outputs and callable targets
      are refused (call ``calculate_relevancemaps`` chunk by chunk).
    * ``batch_size``: samples per chunk (one ``calculate_relevancemaps`` call per method and chunk); memory is
      bounded by it whatever the dataset size.
    * ``engine``: ``"local"`` (this process) or ``"ray"`` (Ray Data, ``num_actors`` actors each building the model
      once; uses the running Ray cluster — ``ray.init(address=...)`` first for several machines — or starts a local
      one). ``actor_options``: Ray resources per actor, e.g. ``{"num_gpus": 1}``.
    * ``on_error``: ``"raise"`` stops at an unreadable sample (finished chunks are kept), ``"skip"`` records it
      (path and reason in ``errors``; ``valid`` False, NaN maps) and goes on.

    The maps are those of ``calculate_relevancemaps(model, X[chunk], method, target=..., dtype=dtype)`` on each chunk
    (multi-input: ``calculate_relevancemaps(model, [X1[chunk], X2[chunk], ...], method, inputs=[...], ...)``),
    identical for both engines.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be 'raise' (stop at an unreadable sample) or 'skip', got {on_error!r}")
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    dtype = dtype if isinstance(dtype, str) else getattr(dtype, "__name__", dtype)
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if engine == "ray":
        if isinstance(num_actors, bool) or not isinstance(num_actors, (int, np.integer)) or num_actors < 1:
            raise ValueError(f"num_actors must be a positive integer, got {num_actors!r}")
        from signxai.dataset.ray_engine import import_ray
        import_ray()  # a clear ImportError before any work
    out = Path(out)
    format = _choose_format(out, format)
    methods = _job.normalize_methods(methods, params)

    model_spec = ModelSpec(model_or_factory)
    model, info = model_spec.build()
    names, explained = _model_inputs(model, source, inputs)
    fingerprint = _job.model_fingerprint(model)
    if names is None:
        source = open_source(source, info, column=column, shape=shape, image_size=image_size, caffe=caffe,
                             on_error=on_error)
        _check_sample_shape(info, source.sample_shape)
    else:
        source = open_multi_source(source, names, column=column, shape=shape, image_size=image_size, caffe=caffe,
                                   on_error=on_error)
        integral = [names[p] for p in explained if names[p] in source.integral()]
        if integral:
            raise ValueError(f"input(s) {integral} hold integers (indices, e.g. for an embedding): they are held fixed "
                             f"as int64 but cannot be explained; leave them out with inputs= "
                             f"(docs/api.md#multi-input)")
    target = _job.normalize_target(target, source.n)
    n_classes = _probe(model, source, methods, dtype, batch_size, on_error, names, explained)
    _job.check_target(target, n_classes)
    job = _job.Job(model_spec, source, out, format, methods, target, dtype, batch_size, n_classes, fingerprint,
                   on_error, names, explained)

    signature = {
        "store_version": STORE_VERSION, "signxai_version": __version__,
        "model": {"fingerprint": fingerprint, "class": f"{type(model).__module__}.{type(model).__qualname__}",
                  "framework": framework_of(model)},
        "methods": {m.name: _job.jsonable(m.params) for m in methods}, "dtype": dtype,
        "target": _job.target_description(target), "n_samples": source.n,
        "sample_shape": list(source.sample_shape), "n_classes": n_classes, "batch_size": batch_size,
        "source": source.identity(), "files": source.files(),
    }
    if names is not None:  # a resumed job must explain the same inputs (docs/api.md#multi-input-datasets)
        signature["inputs"] = {"names": list(names), "explained": [names[p] for p in explained]}
    store = _open_store(out, format, signature, job)
    done = store.done()
    pending = [k for k in range(job.n_chunks) if k not in done]
    resumed = len(done)

    logs = dict(done)
    bar = _progress(progress, source.n, sum(b - a for a, b in map(job.bounds, done)))

    def finished(k, log):
        logs[k] = log
        for error in log["errors"]:
            warnings.warn(f"skipped sample {error['index']} ({error['path']}): {error['error']}", stacklevel=3)
        if bar is not None:
            bar.update(log["rows"][1] - log["rows"][0])

    computing = time.perf_counter()
    try:
        if engine == "local":
            from signxai.dataset.local import run_local
            run_local(job, pending, finished, model=model, store=store)
        else:
            from signxai.dataset.ray_engine import run_ray
            run_ray(job, pending, finished, num_actors=int(num_actors), actor_options=actor_options or {})
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - computing
    errors = sorted((e for log in logs.values() for e in log["errors"]), key=lambda e: e["index"])
    store.finish({"complete": len(logs) == job.n_chunks, "errors": errors,
                  "n_valid": source.n - len(errors)})
    return DatasetResult(out=out, format=format, n_samples=source.n, methods=tuple(m.name for m in methods),
                         n_chunks=job.n_chunks, computed_chunks=len(pending), resumed_chunks=resumed,
                         computed_samples=sum(b - a for a, b in map(job.bounds, pending)), errors=errors,
                         seconds=seconds)


def _model_inputs(model, source, inputs):
    """``(names, explained positions)`` of a multi-input model, ``(None, None)`` for a one-input model (whose
    ``inputs=`` may only name its input, and whose source must not hold several inputs)."""
    from signxai.api import _backend_for, _selected_inputs
    names = list(_backend_for(model).input_names(model))
    if len(names) > 1:
        positions, _ = _selected_inputs(inputs, names)
        return names, positions
    if inputs is not None and not (inputs in (0, [0]) or (names and inputs in (names[0], [names[0]]))):
        raise ValueError(f"inputs={inputs!r}: the model has one input {names}; leave inputs= out")
    arrays = isinstance(source, (list, tuple)) and len(source) > 1 and all(hasattr(s, "shape") for s in source)
    if isinstance(source, dict) or (arrays and len({tuple(s.shape) for s in source}) > 1):
        what = "a dict" if isinstance(source, dict) else "arrays of different shapes"
        raise ValueError(f"the source holds several inputs ({what}), but the model takes one input {names}: give "
                         f"one array (N, ...), file, folder or glob (docs/api.md#multi-input-datasets)")
    return None, None


def _choose_format(out: Path, format):
    existing = _store.detect_format(out)
    if format is None:
        format = existing if existing in FORMATS else "zarr"
    if format not in FORMATS:
        raise ValueError(f"format must be 'zarr' or 'npy', got {format!r}")
    if existing == "foreign":
        raise ValueError(f"{out} exists and is not a store written by signxai.explain_dataset; choose a new path "
                         f"(nothing was written)")
    if existing is not None and existing != format:
        raise ValueError(f"{out} is a {existing} store, not {format}; choose another path or format={existing!r}")
    if format == "zarr":
        _store.zarr_module()
    return format


def _check_sample_shape(info, shape) -> None:
    expected = info.input_shape
    if expected is None:
        return
    if len(expected) != len(shape) or any(e is not None and e != s for e, s in zip(expected, shape)):
        wanted = "(" + ", ".join("?" if e is None else str(e) for e in expected) + ("," if len(expected) == 1 else "")
        layout = "channels-first" if info.channels_first else "channels-last"
        raise ValueError(f"the source's samples have shape {tuple(shape)}, but the model takes samples of shape "
                         f"{wanted}) ({layout}): give a batch (N, ...) of such samples in the model's layout")


def _probe(model, source, methods, dtype, batch_size, on_error, names=None, explained=None) -> int:
    """Explain the first readable sample with every method (so that a bad model, method or parameter fails before
    anything is written); returns the number of classes."""
    from signxai.api import calculate_relevancemaps

    for start in range(0, source.n, batch_size):
        chunk = source.read(start, min(source.n, start + batch_size))
        if chunk.errors and on_error == "raise":
            first = chunk.errors[0]
            raise ValueError(f"cannot use sample {first['index']} ({first['path']}): {first['error']} (fix or "
                             f"remove it, or pass on_error='skip' to skip bad samples)")
        rows = np.flatnonzero(chunk.ok)
        if len(rows):
            x = [a[rows[:1]] for a in chunk.x] if names is not None else chunk.x[rows[:1]]
            break
    else:
        raise ValueError(f"no sample of the source can be read (first error: "
                         f"{chunk.errors[0]['path']}: {chunk.errors[0]['error']})")
    try:
        logits = _job.model_logits(model, x, names)
    except Exception as error:
        message = " ".join(str(error).split())
        shapes = [tuple(a.shape[1:]) for a in x] if names is not None else x.shape[1:]
        raise ValueError(f"the model cannot take the source's samples of shape {shapes}: {message:.300}") \
            from error
    target = logits.argmax(axis=1)
    extra = {} if names is None else {"inputs": list(explained)}
    for method in methods:
        try:
            calculate_relevancemaps(model, x, method.name, target=target, dtype=dtype, **extra, **method.params)
        except (ValueError, TypeError) as error:
            raise type(error)(f"{method.name}: {error}") from error
    return int(logits.shape[1])


def _open_store(out: Path, format: str, signature: dict, job):
    store_class = _store.STORES[format]
    if _store.detect_format(out) is None:
        return store_class.create(out, _job.layout(job), signature, job.batch_size, job.n_chunks)
    store = store_class(out)
    attrs = store.attrs()
    stored = attrs.get(_store.ATTRS_KEY)
    if stored is None:
        raise ValueError(f"{out} is a {format} store, but not one written by signxai.explain_dataset; choose a new "
                         f"path (nothing was written)")
    import json

    new = json.loads(json.dumps(signature))
    differences = _differences(stored, new)
    if differences:
        details = "; ".join(f"{key}: the store has {_short(old)}, this run {_short(value)}"
                            for key, old, value in differences[:4])
        raise ValueError(f"{out} holds the results of another job ({details}). Nothing was overwritten: choose "
                         f"another output path, or delete {out} to start over")
    store.clean()
    return store


def _differences(stored, new, prefix=""):
    """(dotted key, stored value, new value) for every leaf that differs; lists of files count as one leaf."""
    found = []
    for key in sorted(set(stored) | set(new)):
        a, b = stored.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "methods":
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append((f"{prefix}{key}", a, b))
    return found


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _progress(enabled, total, initial):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="sample", desc="explain-dataset", smoothing=0.1,
                dynamic_ncols=True)
