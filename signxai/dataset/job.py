"""What one dataset job is (model, methods, targets) and how one chunk is explained; shared by both engines.

Only the public API computes maps (``calculate_relevancemaps``); the logits come from the backends' own forward
(``BACKEND.logits``: Keras ``training=False``; PyTorch under ``no_grad`` with eval semantics and every module flag
restored), so the caller's model is never modified.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from signxai.core.targets import NEGATIVE

# Model loading (files, objects, factories) lives in signxai.loading (ModelSpec is also importable from here)
from signxai.loading import ModelSpec
from signxai.loading import framework_of as _framework

_RESERVED = {"inputs": "inputs=",
             "target": "target=", "neuron_selection": "target=", "neuron_selection_mode": "target=", "batched": None,
             "batchmode": None, "dtype": "dtype="}


# ------------------------------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: dict  # passed to calculate_relevancemaps

    def attrs(self) -> dict:
        return {"method": self.name, "params": jsonable(self.params)}


def normalize_methods(methods, common: dict) -> list[MethodSpec]:
    """``methods``: a name, a list of names, or a mapping name → parameters; ``common`` applies to every method."""
    from signxai.methods import parse_method, resolve_method

    if isinstance(methods, str):
        items = [(methods, {})]
    elif isinstance(methods, dict):
        items = list(methods.items())
    elif isinstance(methods, (list, tuple)):
        items = [(m, {}) for m in methods]
    else:
        raise TypeError(f"methods must be a method name, a list of names or a dict name -> parameters, got "
                        f"{type(methods).__name__}")
    if not items:
        raise ValueError("methods is empty: give at least one method name (see signxai.list_methods())")
    specs, seen = [], set()
    for name, own in items:
        if not isinstance(name, str):
            raise TypeError(f"method names must be strings, got {name!r}")
        if own is None:
            own = {}
        if not isinstance(own, dict):
            raise TypeError(f"the parameters of {name!r} must be a dict, got {type(own).__name__}")
        parse_method(name)  # ValueError with suggestions for an unknown name
        if name in seen:
            raise ValueError(f"method {name!r} is given twice")
        seen.add(name)
        params = {**common, **own}
        for key in params:
            if key in _RESERVED:
                where = _RESERVED[key]
                raise ValueError(f"{key}= is not a method parameter here: " +
                                 (f"give {where} to explain_dataset" if where else
                                  "explain_dataset always explains batches"))
        # TypeError for a parameter the method does not take (batch_size=, the points per pass of IG/SmoothGrad/
        # VarGrad, is checked by calculate_relevancemaps itself, in the probe)
        resolve_method(name, **{k: v for k, v in params.items() if k != "batch_size"})
        specs.append(MethodSpec(name, params))
    return specs


def jsonable(value):
    """A JSON-compatible description of a parameter value (arrays by shape and hash)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        array = np.ascontiguousarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
        return {"array": list(array.shape), "dtype": str(array.dtype),
                "blake2b": hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest()}
    return repr(value)


# -------------------------------------------------------------------------------------------------------- models
def model_fingerprint(model) -> str:
    """sha256 over the architecture (module/layer classes and their configuration, without generated names) and
    every weight's shape, dtype and bytes. Reading weights does not modify the model."""
    digest = hashlib.sha256()
    framework = _framework(model)
    if framework == "pytorch":
        digest.update(b"pytorch\n")
        for path, module in model.named_modules():
            digest.update(f"{path}:{type(module).__module__}.{type(module).__qualname__}"
                          f"({module.extra_repr()})\n".encode())
        for key, tensor in model.state_dict().items():
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
            digest.update(tensor.reshape(-1).view(__import__("torch").uint8).numpy().tobytes())
        return "sha256:" + digest.hexdigest()
    if framework != "keras":
        raise TypeError(f"cannot fingerprint a {type(model).__name__}")
    import keras

    digest.update(b"keras\n")
    for layer in model._flatten_layers(include_self=False, recursive=True):
        digest.update(f"{type(layer).__module__}.{type(layer).__qualname__}".encode())
        if not isinstance(layer, keras.Model):
            try:
                config = _without_names(layer.get_config())
                digest.update(json.dumps(config, sort_keys=True, default=str).encode())
            except Exception:  # a custom layer without get_config: its class and weights still count
                pass
        digest.update(b"\n")
    for weight in model.weights:
        value = np.ascontiguousarray(weight.numpy())
        digest.update(f"{value.dtype}:{value.shape}\n".encode())
        digest.update(value.tobytes())
    return "sha256:" + digest.hexdigest()


def _without_names(config):
    if isinstance(config, dict):
        return {k: _without_names(v) for k, v in config.items() if k != "name"}
    if isinstance(config, list):
        return [_without_names(v) for v in config]
    return config


def model_logits(model, x, names=None) -> np.ndarray:
    """The model's logits for a float32 batch, from the backend's inference forward (no flag is changed). A
    multi-input model (``names``: its inputs) takes ``x`` as a list in input order; it runs as the bound view with
    input 0 explained and the others fixed (docs/api.md#multi-input), integer inputs as int64."""
    framework = _framework(model)
    if names is not None and len(names) > 1:
        from signxai.core.inputs import Bound

        fixed = [a if a.dtype == np.int64 else a.astype(np.float32) for a in x[1:]]
        model, x = Bound(model, 0, names, fixed), x[0].astype(np.float32)
    if framework == "pytorch":
        from signxai.torch_signxai.backend import BACKEND
    elif framework == "keras":
        from signxai.tf_signxai.backend import BACKEND
    else:
        raise TypeError(f"model of type {type(model).__name__} is neither a keras.Model nor a torch.nn.Module")
    with BACKEND.computation():
        logits = np.asarray(BACKEND.logits(model, x))
    if logits.ndim == 1:  # a regression output (N,): its single output (docs/api.md#targets)
        logits = logits[:, None]
    if logits.ndim != 2:
        raise ValueError(f"the model output has shape {logits.shape}: explain_dataset stores (N, K) logits (or the "
                         f"single output of (N,) / (N, 1) heads) and one class per sample. Explain per-timestep "
                         f"outputs with calculate_relevancemaps(model, X, method, target=(t, k)) chunk by chunk "
                         f"(docs/api.md#targets)")
    return logits


# ----------------------------------------------------------------------------------------------------------- job
@dataclass
class Job:
    """Everything an engine needs to explain chunk ``k`` (picklable apart from a model object, which the Ray engine
    serialises with cloudpickle)."""

    model_spec: ModelSpec
    source: object  # a signxai.dataset.sources.Source
    out: Path
    format: str
    methods: list
    target: object  # None, an int, 'negative', or an int64 array of length n
    dtype: str
    batch_size: int
    n_classes: int
    fingerprint: str
    on_error: str
    names: list | None = None  # a multi-input model's inputs, in order (None: one input)
    explained: list | None = None  # the positions of the explained inputs (docs/api.md#multi-input-datasets)

    @property
    def multi(self) -> bool:
        return self.names is not None

    def map_names(self, method: str) -> list:
        """The store's arrays of one method: ``maps/<method>``, or ``maps/<method>/<input>`` per explained input."""
        if not self.multi:
            return [f"maps/{method}"]
        return [f"maps/{method}/{self.names[p]}" for p in self.explained]

    @property
    def n(self) -> int:
        return self.source.n

    @property
    def n_chunks(self) -> int:
        return -(-self.n // self.batch_size)

    def bounds(self, k: int):
        start = k * self.batch_size
        return start, min(self.n, start + self.batch_size)


def normalize_target(target, n: int):
    """None (the predicted class), one class index, or one index per sample (int64 array of length n)."""
    if target is None or (isinstance(target, str) and target == "max_activation"):
        return None
    if isinstance(target, str) and target == NEGATIVE:
        return NEGATIVE  # the negative class of a single-logit head (docs/api.md#targets)
    if callable(target) and not hasattr(target, "dtype"):
        raise ValueError("explain_dataset takes None, a class index, one index per sample or 'negative': a callable "
                         "target cannot be stored or compared when a job is resumed; call calculate_relevancemaps "
                         "with it chunk by chunk (docs/api.md#targets)")
    if isinstance(target, (bool, np.bool_)):
        raise ValueError(f"target must be None, a class index or one index per sample, got {target!r}")
    if hasattr(target, "detach"):
        target = target.detach().cpu().numpy()
    array = np.asarray(target)
    if array.ndim == 0 and np.issubdtype(array.dtype, np.integer):
        return int(array)
    if array.ndim == 1 and (np.issubdtype(array.dtype, np.integer) or len(array) == 0):
        if len(array) != n:
            raise ValueError(f"target holds {len(array)} class indices, but the source has {n} samples: give one "
                             f"per sample, one index for all, or None for the predicted class")
        return array.astype(np.int64)
    raise ValueError(f"target must be None, a class index or one index per sample (a 1-D integer array of length "
                     f"{n}), got {target!r:.80}")


def check_target(target, n_classes: int) -> None:
    if target is None:
        return
    if isinstance(target, str):  # NEGATIVE
        if n_classes != 1:
            raise ValueError(f"target='negative' explains the negative class of a single-logit binary head, but "
                             f"the model has {n_classes} outputs: give a class index in 0 … {n_classes - 1}")
        return
    values = np.atleast_1d(target)
    bad = values[(values < 0) | (values >= n_classes)]
    if len(bad):
        raise ValueError(f"target {int(bad[0])} is outside the model's classes 0 … {n_classes - 1}")


def target_description(target):
    if target is None:
        return "predicted"
    if isinstance(target, (int, str)):
        return target
    return {"per_sample": len(target), "blake2b": hashlib.blake2b(target.tobytes(), digest_size=16).hexdigest()}


def layout(job: Job) -> dict:
    """name → (shape, dtype, fill value, attrs) of every array in the store."""
    if job.multi:
        arrays = {name: ((job.n, *job.source.sample_shape[p]), job.dtype, float("nan"),
                         {**m.attrs(), "input": job.names[p], "position": p})
                  for m in job.methods for name, p in zip(job.map_names(m.name), job.explained)}
    else:
        arrays = {f"maps/{m.name}": ((job.n, *job.source.sample_shape), job.dtype, float("nan"), m.attrs())
                  for m in job.methods}
    arrays["logits"] = ((job.n, job.n_classes), "float32", float("nan"),
                        {"description": "the model's logits"})
    arrays["predictions"] = ((job.n,), "int64", -1, {"description": "argmax of the logits (-1: not computed)"})
    arrays["targets"] = ((job.n,), "int64", -1, {"description": "the class each map explains (-1: not computed; "
                                                                "with target='negative': output 0, negated)"})
    arrays["valid"] = ((job.n,), "bool", False,
                       {"description": "True where the sample was explained (False: skipped or not yet computed)"})
    return arrays


class Runner:
    """Explains and writes chunks of a job with one model instance (kept, with the library's caches, for every
    chunk it runs)."""

    def __init__(self, job: Job, model=None, store=None):
        from signxai.dataset.store import attach_store

        self.job = job
        if model is None:
            model, _ = job.model_spec.build()
            fingerprint = model_fingerprint(model)
            if fingerprint != job.fingerprint:
                raise ValueError(f"the model built in this worker differs from the driver's (fingerprint "
                                 f"{fingerprint} != {job.fingerprint}): a model factory must build the same "
                                 f"architecture and weights every time")
        self.model = model
        self.store = store if store is not None else attach_store(job.out, job.format)

    def run_chunk(self, k: int) -> dict:
        """Read, explain and write chunk ``k``; returns its log entry (rows, errors)."""
        arrays, log = self.compute_chunk(k)
        self.write_chunk(k, arrays, log)
        return log

    def compute_chunk(self, k: int):
        """Read and explain chunk ``k``: ``(arrays, log entry)``."""
        job = self.job
        start, stop = job.bounds(k)
        chunk = job.source.read(start, stop)
        if chunk.errors and job.on_error == "raise":
            first = chunk.errors[0]
            raise ValueError(f"cannot use sample {first['index']} ({first['path']}): {first['error']} (fix or "
                             f"remove it, or pass on_error='skip' to skip bad samples; finished chunks are kept "
                             f"and a re-run resumes)")
        arrays = explain_chunk(self.model, chunk.x, chunk.ok, job, start)
        return arrays, {"chunk": int(k), "rows": [int(start), int(stop)], "errors": chunk.errors}

    def write_chunk(self, k: int, arrays: dict, log: dict) -> None:
        self.store.write_chunk(k, self.job.bounds(k)[0], arrays, log)


def explain_chunk(model, x, ok, job: Job, start: int) -> dict:
    """The arrays of one chunk (layout names → values); rows with ``ok == False`` get NaN maps and -1 classes. A
    multi-input job's ``x`` is a list of arrays, one per input, and each method gives one map per explained input
    (docs/api.md#multi-input-datasets)."""
    from signxai.api import calculate_relevancemaps

    n = len(ok)
    xs = x if job.multi else [x]
    positions = job.explained if job.multi else [0]
    arrays = {name: np.full((n, *xs[p].shape[1:]), np.nan, job.dtype)
              for m in job.methods for name, p in zip(job.map_names(m.name), positions)}
    arrays["logits"] = np.full((n, job.n_classes), np.nan, np.float32)
    arrays["predictions"] = np.full(n, -1, np.int64)
    arrays["targets"] = np.full(n, -1, np.int64)
    arrays["valid"] = ok.copy()
    if not ok.any():
        return arrays
    batches = [a if ok.all() else a[ok] for a in xs]
    logits = model_logits(model, batches if job.multi else batches[0], job.names)
    predictions = logits.argmax(axis=1).astype(np.int64)  # ties: the lowest index, as calculate_relevancemaps
    explained = targets = predictions
    if isinstance(job.target, str):  # NEGATIVE: the single output, negated (stored as output 0)
        explained, targets = job.target, np.zeros(len(predictions), np.int64)
    elif isinstance(job.target, int):
        explained = targets = np.full(len(predictions), job.target, np.int64)
    elif job.target is not None:
        explained = targets = job.target[start:start + n][ok]
    arrays["logits"][ok] = logits
    arrays["predictions"][ok] = predictions
    arrays["targets"][ok] = targets
    for method in job.methods:
        if job.multi:
            maps = calculate_relevancemaps(model, batches, method.name, target=explained, dtype=job.dtype,
                                           inputs=list(job.explained), **method.params)
        else:
            maps = [calculate_relevancemaps(model, batches[0], method.name, target=explained, dtype=job.dtype,
                                            **method.params)]
        for name, value in zip(job.map_names(method.name), maps):
            arrays[name][ok] = value
    return arrays
