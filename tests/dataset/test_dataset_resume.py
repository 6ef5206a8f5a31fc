"""Kill and resume for real: a subprocess is killed with SIGKILL in the middle of a chunk (after some of the chunk's
arrays are written, before its log entry); the store stays readable, and a re-run finishes it with a store that is
byte for byte the store of an uninterrupted run."""
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import signxai
from signxai.dataset import load_results

from dataset_helpers import chunked_reference

zarr = pytest.importorskip("zarr")  # the dataset extra

ROOT = Path(__file__).resolve().parents[2]
METHODS = ["gradient", "lrp_epsilon_0_1"]
ARRAYS_PER_CHUNK = len(METHODS) + 4  # the maps, logits, predictions, targets, valid
KILLED_CHUNK = 3

SCRIPT = r"""
import os, signal, sys
import torch  # PyTorch only: this process never imports TensorFlow
import signxai
from signxai.dataset import store
from signxai.demo import load_demo

source, out, fmt, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])  # fmt: "zarr" or "npy"
cls = store.STORES[fmt]
write_array, calls = cls._write_array, []

def dying_write_array(self, name, start, value):
    if len(calls) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # as `kill -9` would, with no chance to clean up
    calls.append(name)
    write_array(self, name, start, value)

cls._write_array = dying_write_array
model = load_demo("eeg", "torch").torch_model
signxai.explain_dataset(model, source, ["gradient", "lrp_epsilon_0_1"], out, format=fmt, batch_size=16,
                        progress=False)
print("not killed")
"""


def _tree(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _check_interrupted_then_resume(fmt, eeg, x, source, killed, clean):
    # readable after the crash: three finished chunks, the killed chunk not marked valid, the store incomplete
    stored = load_results(killed)
    assert not stored.complete
    valid = np.asarray(stored.valid[:])
    assert valid[:48].all() and not valid[48:].any()
    reference = chunked_reference(eeg.torch_model, x, "gradient", 16)
    assert np.asarray(stored.maps["gradient"][:48]).tobytes() == reference[:48].tobytes()

    resumed = signxai.explain_dataset(eeg.torch_model, source, METHODS, killed, format=fmt, batch_size=16,
                                      progress=False)
    assert (resumed.resumed_chunks, resumed.computed_chunks) == (3, 4)
    signxai.explain_dataset(eeg.torch_model, source, METHODS, clean, format=fmt, batch_size=16, progress=False)
    assert _tree(killed) == _tree(clean)  # every file, attributes and log included, byte for byte
    assert not [name for name in _tree(killed) if name.endswith((".partial", ".tmp"))]
    stored = load_results(killed)
    assert stored.complete and np.asarray(stored.valid[:]).all()
    assert np.asarray(stored.maps["gradient"][:]).tobytes() == reference.tobytes()


def test_sigkill_mid_chunk_then_resume_gives_the_uninterrupted_store(eeg, eeg_x_cf, tmp_path):
    source = tmp_path / "x.npy"
    np.save(source, eeg_x_cf)  # 100 samples: 7 chunks of 16
    killed, clean = tmp_path / "killed.zarr", tmp_path / "clean.zarr"
    kill_at = KILLED_CHUNK * ARRAYS_PER_CHUNK + 2  # chunk 3: both maps written, the logits not
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(source), str(killed), "zarr", str(kill_at)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    _check_interrupted_then_resume("zarr", eeg, eeg_x_cf, source, killed, clean)


def test_npy_store_failure_mid_chunk_then_resume_gives_the_uninterrupted_store(eeg, eeg_x_cf, tmp_path,
                                                                               monkeypatch):
    """The .npy store writes rows in place: a failure injected after chunk 3's maps (same point as the SIGKILL
    above) leaves rows of an unfinished chunk written, which the resumed run overwrites with the same bytes."""
    from signxai.dataset.store import NpyStore

    source = tmp_path / "x.npy"
    np.save(source, eeg_x_cf)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    write, calls = NpyStore._write_array, []

    def failing_write(self, name, start, value):
        if len(calls) == KILLED_CHUNK * ARRAYS_PER_CHUNK + 2:
            raise MemoryError("injected")
        calls.append(name)
        write(self, name, start, value)

    with monkeypatch.context() as patch:
        patch.setattr(NpyStore, "_write_array", failing_write)
        with pytest.raises(MemoryError, match="injected"):
            signxai.explain_dataset(eeg.torch_model, source, METHODS, killed, format="npy", batch_size=16,
                                    progress=False)
    partly = np.load(killed / "maps" / "gradient.npy")
    assert np.abs(partly[48:64]).sum() > 0  # the unfinished chunk's maps are there, unmarked
    _check_interrupted_then_resume("npy", eeg, eeg_x_cf, source, killed, clean)


def test_a_torn_chunk_without_its_log_entry_is_recomputed(eeg, eeg_x, tmp_path):
    """A chunk file left garbled by a crash (for a store on a file system without atomic renames) is rewritten,
    because only the log entry marks a chunk finished."""
    out = tmp_path / "maps.zarr"
    signxai.explain_dataset(eeg.keras_model, eeg_x, METHODS, out, batch_size=32, progress=False)
    clean = _tree(out)
    zarr.open_array(str(out / "chunks"), mode="r+")[1] = ""  # chunk 1 no longer finished
    chunk_file = out / "maps" / "gradient" / "c" / "1" / "0" / "0"
    chunk_file.write_bytes(chunk_file.read_bytes()[:10])  # torn
    (out / "maps" / "gradient" / "c" / "2" / "0" / "0.abc.partial").write_bytes(b"left by a killed writer")
    again = signxai.explain_dataset(eeg.keras_model, eeg_x, METHODS, out, batch_size=32, progress=False)
    assert (again.resumed_chunks, again.computed_chunks) == (3, 1)
    assert _tree(out) == clean
