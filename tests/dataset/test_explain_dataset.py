"""explain_dataset on the local engine: the maps are calculate_relevancemaps' on every chunk, for Keras and PyTorch,
with logits, predictions and targets; the store's attributes; resuming; nothing of the caller's is modified."""
import copy
import sys
import tracemalloc

import numpy as np
import pytest
import torch

import signxai
from signxai.dataset import load_results
from signxai.dataset.job import model_fingerprint

from dataset_helpers import METHODS, chunked_reference, logits_of

pytest.importorskip("zarr")  # the dataset extra


@pytest.mark.parametrize("framework", ["keras", "pytorch"])
def test_maps_logits_and_targets_equal_calculate_relevancemaps(framework, eeg, eeg_x, eeg_x_cf, tmp_path):
    model, x = (eeg.keras_model, eeg_x) if framework == "keras" else (eeg.torch_model, eeg_x_cf)
    methods = {**{m: {} for m in METHODS}, "lrp_epsilon": {"epsilon": 0.37}}
    result = signxai.explain_dataset(model, x, methods, tmp_path / "maps.zarr", batch_size=16, progress=False)
    assert (result.n_samples, result.n_chunks, result.computed_chunks, result.resumed_chunks) == (100, 7, 7, 0)
    assert result.computed_samples == 100 and result.errors == [] and result.samples_per_second > 0

    stored = load_results(tmp_path / "maps.zarr")
    assert stored.complete and sorted(stored.maps) == sorted(methods)
    for method, params in methods.items():
        maps = stored.maps[method][:]
        assert maps.dtype == np.float32 and maps.shape == x.shape
        assert maps.tobytes() == chunked_reference(model, x, method, 16, **params).tobytes(), method
    logits = stored.logits[:]
    np.testing.assert_array_equal(logits, np.concatenate([logits_of(model, x[i:i + 16]) for i in range(0, 100, 16)]))
    np.testing.assert_array_equal(stored.predictions[:], logits.argmax(1))
    np.testing.assert_array_equal(stored.targets[:], logits.argmax(1))  # target=None: the predicted class
    assert stored.valid[:].all() and set(stored.predictions[:]) == {0, 1}

    attrs = stored.attrs["signxai"]
    assert attrs["methods"] == {**{m: {} for m in METHODS}, "lrp_epsilon": {"epsilon": 0.37}}
    assert attrs["signxai_version"] == signxai.__version__ and attrs["target"] == "predicted"
    assert attrs["model"]["fingerprint"] == model_fingerprint(model)
    assert attrs["model"]["framework"] == framework and attrs["n_classes"] == 2 and attrs["dtype"] == "float32"
    assert dict(stored.maps["lrp_epsilon"].attrs) == {"method": "lrp_epsilon", "params": {"epsilon": 0.37}}


def test_explicit_targets_float64_and_the_npy_format(eeg, eeg_x_cf, tmp_path):
    model, x = eeg.torch_model, eeg_x_cf[:40]
    targets = np.arange(40) % 2
    result = signxai.explain_dataset(model, x, "lrp_alpha_1_beta_0", tmp_path / "maps", format="npy",
                                     target=targets, batch_size=16, dtype="float64", progress=False)
    assert result.format == "npy"
    stored = load_results(tmp_path / "maps")
    maps = np.asarray(stored.maps["lrp_alpha_1_beta_0"])
    assert isinstance(stored.maps["lrp_alpha_1_beta_0"], np.memmap) and maps.dtype == np.float64
    reference = np.concatenate([signxai.calculate_relevancemaps(model, x[i:i + 16], "lrp_alpha_1_beta_0",
                                                                target=targets[i:i + 16], dtype="float64")
                                for i in range(0, 40, 16)])
    assert maps.tobytes() == reference.tobytes()
    np.testing.assert_array_equal(stored.targets, targets)
    assert stored.attrs["signxai"]["target"]["per_sample"] == 40 and stored.complete

    one = signxai.explain_dataset(model, x, ["gradient"], tmp_path / "one.zarr", target=1, batch_size=16,
                                  progress=False)
    np.testing.assert_array_equal(one.load().targets[:], np.ones(40))
    assert one.load().maps["gradient"][:].tobytes() == chunked_reference(model, x, "gradient", 16,
                                                                         target=1).tobytes()


def test_npy_file_source_is_read_chunk_by_chunk_with_bounded_memory(eeg, tmp_path, monkeypatch):
    """A 4,000-sample .npy (4 MB) explained in chunks of 64: every read and write holds one chunk, and the NumPy
    memory traced during the run (at most two chunks: one explained while the previous one is written) stays far
    below the dataset's size."""
    from signxai.dataset.sources import NpySource
    from signxai.dataset.store import ZarrStore

    x = np.random.RandomState(0).normal(0, 1, (4000, 4, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    reads, writes = [], []
    read, write = NpySource._read, ZarrStore._write_array
    monkeypatch.setattr(NpySource, "_read", lambda self, a, b: (reads.append(b - a), read(self, a, b))[1])
    monkeypatch.setattr(ZarrStore, "_write_array",
                        lambda self, name, start, value: (writes.append(len(value)), write(self, name, start, value)))
    tracemalloc.start()
    try:
        signxai.explain_dataset(eeg.torch_model, tmp_path / "x.npy", "lrp_z", tmp_path / "maps.zarr", batch_size=64,
                                progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert max(reads) == 64 and sum(reads) == 4000 + 64  # every chunk once, and the probe's first chunk
    assert max(writes) == 64 and sum(writes) == 5 * 4000  # the maps, logits, predictions, targets, valid
    assert peak < x.nbytes / 4, f"peak traced memory {peak / 1e6:.1f} MB for a {x.nbytes / 1e6:.1f} MB dataset"
    stored = load_results(tmp_path / "maps.zarr").maps["lrp_z"][:]
    assert stored.tobytes() == chunked_reference(eeg.torch_model, x, "lrp_z", 64).tobytes()


def test_rerun_resumes_and_a_store_of_another_job_is_refused(eeg, eeg_x, tmp_path):
    model, out = eeg.keras_model, tmp_path / "maps.zarr"
    first = signxai.explain_dataset(model, eeg_x, METHODS[:2], out, batch_size=32, progress=False)
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = signxai.explain_dataset(model, eeg_x, METHODS[:2], out, batch_size=32, progress=False)
    assert (again.computed_chunks, again.resumed_chunks, first.computed_chunks) == (0, 4, 4)
    changed_runs = [
        ({"methods": ["gradient"]}, "methods"),
        ({"methods": METHODS[:2], "other_model": True}, "model.fingerprint"),
        ({"methods": METHODS[:2], "batch_size": 16}, "batch_size"),
        ({"methods": METHODS[:2], "target": 0}, "target"),
        ({"methods": METHODS[:2], "x": eeg_x[:90]}, "n_samples"),
        ({"methods": METHODS[:2], "x": eeg_x + 1}, "source.sampled_hash"),
    ]
    from signxai.demo import load_demo

    other = load_demo("eeg", "keras").keras_model
    other.layers[-1].kernel.assign(other.layers[-1].kernel * 2)
    for change, word in changed_runs:
        kwargs = {"batch_size": change.get("batch_size", 32), "target": change.get("target")}
        with pytest.raises(ValueError, match=f"holds the results of another job.*{word}.*Nothing was overwritten"):
            signxai.explain_dataset(other if "other_model" in change else model, change.get("x", eeg_x),
                                    change["methods"], out, progress=False, **kwargs)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


def test_the_callers_model_and_array_are_not_modified(eeg, eeg_x_cf, tmp_path):
    model = copy.deepcopy(eeg.torch_model).train()  # training flags set: the run must leave them so
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = eeg_x_cf[:20].copy()
    before = x.copy()
    signxai.explain_dataset(model, x, ["gradient", "lrp_z"], tmp_path / "maps.zarr", batch_size=8, progress=False)
    assert all(m.training for m in model.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert np.array_equal(x, before) and x.flags.writeable


def test_a_factory_is_called_once_and_progress_shows_samples_per_second(eeg, eeg_x, tmp_path, capsys):
    calls = []

    def factory():
        calls.append(1)
        return eeg.keras_model

    signxai.explain_dataset(factory, eeg_x[:20], "gradient", tmp_path / "maps.zarr", batch_size=8)
    assert calls == [1]
    assert "sample/s" in capsys.readouterr().err


def test_fingerprints_are_stable_across_builds(eeg):
    from signxai.demo import load_demo

    again = load_demo("eeg")  # a second Keras build in the same process gets generated layer names
    assert model_fingerprint(again.keras_model) == model_fingerprint(eeg.keras_model)
    assert model_fingerprint(again.torch_model) == model_fingerprint(eeg.torch_model)
    assert model_fingerprint(again.torch_model) != model_fingerprint(eeg.keras_model)


def test_import_signxai_stays_light():
    import subprocess

    code = ("import sys, signxai; signxai.explain_dataset; "
            "print(sorted(m for m in ('zarr', 'ray', 'torch', 'tensorflow', 'pyarrow', 'tqdm') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
