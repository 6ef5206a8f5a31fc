"""The Ray engine: the same job on Ray Data.

The dataset Ray streams is the list of unfinished chunk indices; ``map_batches`` sends them to a pool of actors.
Each actor builds the model once (from the factory, the file, or a copy of the model object), keeps it — and the
library's per-model caches — for every chunk it gets, reads its chunk from the source itself and writes it to the
store exactly as the local engine does. Chunks are therefore the same rows as in a local run, and the maps are
byte-identical. An in-memory array source is put into Ray's object store once and shared by the actors.

Without a running Ray cluster a local one is started for the job (and shut down after it); call
``ray.init(address=...)`` first to use a multi-machine cluster. Every node then needs signxai and the model's
framework installed, and the source and the store must lie on a file system that all nodes see.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os

import numpy as np

from signxai.dataset.job import Runner
from signxai.dataset.sources import ArraySource, MultiSource
from signxai.loading import import_frameworks


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError("engine='ray' needs Ray Data: pip install 'signxai[ray]' (or pip install 'ray[data]'), "
                          "or use engine='local'") from None
    return ray


_USER_ERRORS = {"ValueError": ValueError, "TypeError": TypeError, "OSError": OSError, "ImportError": ImportError}


class ChunkWorker:
    """A Ray Data actor: one model instance, explaining and writing the chunks it is sent.

    A user error (a bad sample with on_error='raise', a factory that builds another model, ...) comes back as a row
    rather than as an exception, because Ray Data hands the driver only the text of an actor's exception."""

    def __init__(self, payload: bytes, array=None):
        import_frameworks()  # PyTorch before TensorFlow, before the payload (maybe a Keras model) is unpickled
        import ray
        from ray import cloudpickle

        self.runner, self.failure = None, ""
        try:
            job = cloudpickle.loads(payload)
            if isinstance(array, dict):  # a multi-input source: its in-memory parts, by position
                parts = list(job.source.parts)
                for p, ref in array.items():
                    parts[int(p)] = ArraySource(ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref)
                job.source = MultiSource(parts, job.source.names)
            elif array is not None:
                job.source = ArraySource(ray.get(array) if isinstance(array, ray.ObjectRef) else array)
            self.runner = Runner(job)
        except tuple(_USER_ERRORS.values()) as error:
            self.failure = _describe(error)

    def __call__(self, batch):
        chunks, logs, errors = np.asarray(batch["chunk"], dtype=np.int64), [], []
        for k in chunks:
            log, error = {}, self.failure
            if not error:
                try:
                    log = self.runner.run_chunk(int(k))
                except tuple(_USER_ERRORS.values()) as failure:
                    error = _describe(failure)
            logs.append(json.dumps(log))
            errors.append(error)
        return {"chunk": chunks, "log": np.asarray(logs, dtype=object), "error": np.asarray(errors, dtype=object)}


def _describe(error) -> str:
    kind = next((name for name, cls in _USER_ERRORS.items() if isinstance(error, cls)), "ValueError")
    return json.dumps({"type": kind, "message": str(error)})


def _rebuild(description: str) -> Exception:
    error = json.loads(description)
    return _USER_ERRORS[error["type"]](error["message"])


def run_ray(job, pending, finished, *, num_actors: int, actor_options: dict) -> None:
    """Explain the chunks in ``pending`` on Ray Data; ``finished(k, log)`` as each one is committed."""
    if not pending:
        return
    ray = import_ray()
    from ray import cloudpickle

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=max(os.cpu_count() or 1, num_actors), include_dashboard=False, log_to_driver=False)
    try:
        array = None
        if isinstance(job.source, ArraySource):
            array = ray.put(job.source.array)
            job = dataclasses.replace(job, source=None)
        elif isinstance(job.source, MultiSource) and any(isinstance(p, ArraySource) for p in job.source.parts):
            source = job.source
            array = {str(p): ray.put(part.array) for p, part in enumerate(source.parts)
                     if isinstance(part, ArraySource)}  # each in-memory input put once, shared by the actors
            shell = copy.copy(source)  # the file parts travel in the payload; the arrays as object refs
            shell.parts = [None if isinstance(part, ArraySource) else part for part in source.parts]
            job = dataclasses.replace(job, source=shell)
        payload = cloudpickle.dumps(job)
        dataset = ray.data.from_items([{"chunk": int(k)} for k in pending], override_num_blocks=len(pending))
        options = {"num_cpus": 1, **actor_options}
        dataset = dataset.map_batches(ChunkWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=num_actors),
                                      fn_constructor_kwargs={"payload": payload, "array": array}, **options)
        try:
            for row in dataset.iter_rows():
                if row["error"]:
                    raise _rebuild(row["error"])
                finished(int(row["chunk"]), json.loads(row["log"]))
        except tuple(_USER_ERRORS.values()):
            raise
        except Exception as error:
            cause = _user_error(error)
            if cause is None:
                raise
            raise type(cause)(str(cause)) from error
    finally:
        if started:
            ray.shutdown()


def _user_error(error):
    """The ValueError/TypeError/OSError an actor raised, out of Ray's wrappers (None if there is none)."""
    seen = set()
    stack = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        module = type(current).__module__ or ""
        if isinstance(current, (ValueError, TypeError, OSError)) and not module.startswith("ray"):
            return current
        stack += [getattr(current, "cause", None), current.__cause__, current.__context__]
    return None
