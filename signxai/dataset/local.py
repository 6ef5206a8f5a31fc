"""The local engine: chunks explained one after the other in this process, with the caller's model object.

Writing chunk k (compression, file writes) overlaps with explaining chunk k+1 in one private writer thread, so at
most two chunks are in memory; a chunk is reported finished only once its log entry is written.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from signxai.dataset.job import Runner


def run_local(job, pending, finished, *, model, store) -> None:
    """Explain and write every chunk in ``pending``; ``finished(k, log)`` after each one is committed."""
    runner = Runner(job, model=model, store=store)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="signxai-dataset-writer") as writer:
        previous = None
        try:
            for k in pending:
                arrays, log = runner.compute_chunk(k)
                if previous is not None:
                    _commit(previous, finished)
                previous = (writer.submit(runner.write_chunk, k, arrays, log), k, log)
            if previous is not None:
                _commit(previous, finished)
        except BaseException:
            if previous is not None:  # let a chunk being written finish (or fail) before the error propagates
                previous[0].exception()
            raise


def _commit(previous, finished) -> None:
    future, k, log = previous
    future.result()  # re-raises a failed write
    finished(k, log)
