"""engine="ray": the same job on Ray Data (a local Ray instance, tiny data, at most 2 actors) writes the same store,
byte for byte, as the local engine, for PyTorch (a factory and a .npy file, resuming a partly finished store) and
Keras (a model object and an in-memory array)."""
import shutil
from pathlib import Path

import numpy as np
import pytest

import signxai
from signxai.dataset import load_results
from signxai.dataset.ray_engine import _user_error

from dataset_helpers import chunked_reference

zarr = pytest.importorskip("zarr")  # the dataset extra
ray = pytest.importorskip("ray")  # the ray extra

METHODS = ["gradient", "lrpsign_epsilon_0_25_std_x"]  # two, to keep each actor's start-up short


def _tree(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_pytorch_factory_and_npy_file_resume_a_local_store(ray_cluster, eeg, eeg_x_cf, tmp_path):
    source = tmp_path / "x.npy"
    np.save(source, eeg_x_cf)
    local = tmp_path / "local.zarr"
    signxai.explain_dataset(eeg.torch_model, source, METHODS, local, batch_size=16, progress=False)
    partial = tmp_path / "ray.zarr"
    shutil.copytree(local, partial)
    log = zarr.open_array(str(partial / "chunks"), mode="r+")
    for k in (2, 5, 6):  # three chunks unfinished (the last one holds 4 samples)
        log[k] = ""
        shutil.rmtree(partial / "maps" / "gradient" / "c" / str(k))  # their maps gone, as after a crash

    def factory():  # each actor builds its own model from the demo's weights
        from signxai.demo import load_demo
        return load_demo("eeg", "torch").torch_model

    result = signxai.explain_dataset(factory, source, METHODS, partial, batch_size=16, engine="ray", num_actors=2,
                                     progress=False)
    assert (result.computed_chunks, result.resumed_chunks) == (3, 4)
    assert _tree(partial) == _tree(local)
    stored = load_results(partial)
    for method in METHODS:
        assert stored.maps[method][:].tobytes() == chunked_reference(eeg.torch_model, eeg_x_cf, method,
                                                                     16).tobytes()


def test_keras_model_object_and_array(ray_cluster, eeg, eeg_x, tmp_path):
    x = eeg_x[:40]
    result = signxai.explain_dataset(eeg.keras_model, x, METHODS, tmp_path / "ray.zarr", batch_size=16,
                                     engine="ray", num_actors=1, progress=False)
    assert (result.computed_chunks, result.n_chunks) == (3, 3)
    signxai.explain_dataset(eeg.keras_model, x, METHODS, tmp_path / "local.zarr", batch_size=16, progress=False)
    assert _tree(tmp_path / "ray.zarr") == _tree(tmp_path / "local.zarr")
    stored = load_results(tmp_path / "ray.zarr")
    for method in METHODS:
        assert stored.maps[method][:].tobytes() == chunked_reference(eeg.keras_model, x, method, 16).tobytes()
    np.testing.assert_array_equal(stored.predictions[:], stored.logits[:].argmax(1))


def test_an_actors_user_error_reaches_the_caller_as_itself(eeg, eeg_x_cf, tmp_path):
    """Ray Data gives the driver only the text of an actor's exception, so actors return user errors as rows; here
    a factory that builds another model than the driver's (no cluster needed: the actor class is called directly)."""
    from ray import cloudpickle

    from signxai.dataset.job import Job, MethodSpec, ModelSpec
    from signxai.dataset.ray_engine import ChunkWorker, _rebuild
    from signxai.dataset.sources import ArraySource

    def factory():
        from signxai.demo import load_demo
        return load_demo("eeg", "torch").torch_model

    job = Job(ModelSpec(factory), ArraySource(eeg_x_cf), tmp_path / "m.zarr", "zarr", [MethodSpec("gradient", {})],
              None, "float32", 16, 2, "sha256:another", "raise")
    rows = ChunkWorker(cloudpickle.dumps(job))({"chunk": np.array([0, 1])})
    assert list(rows["chunk"]) == [0, 1] and all(rows["error"])
    error = _rebuild(rows["error"][0])
    assert type(error) is ValueError and "differs from the driver's" in str(error) and "sha256:another" in str(error)

    try:
        try:
            raise ValueError("cannot use sample 4 (x.npy[4])")
        except ValueError as cause:
            raise RuntimeError("a wrapper") from cause
    except RuntimeError as wrapped:
        assert type(_user_error(wrapped)) is ValueError


def test_multi_input_in_memory_and_npy_inputs_give_the_local_store(ray_cluster, tmp_path):
    """A multi-input model (docs/api.md#multi-input-datasets): one in-memory input (put in Ray's object store) and
    one .npy input; the Ray store equals the local one byte for byte."""
    from test_multi_input import TwinNet, keras_twin
    from twins import set_twin_weights

    km = keras_twin()
    set_twin_weights(km, TwinNet(), ["conv", "demo", "mix", "head"], np.random.RandomState(0), 0.7, 0.2)
    rng = np.random.RandomState(5)
    signal, demographics = rng.normal(size=(10, 16, 3)).astype(np.float32), rng.normal(size=(10, 2))
    np.save(tmp_path / "demo.npy", demographics)
    source = {"signal": signal, "demographics": tmp_path / "demo.npy"}
    local, distributed = tmp_path / "local.zarr", tmp_path / "ray.zarr"
    signxai.explain_dataset(km, source, METHODS, local, batch_size=4, progress=False)
    result = signxai.explain_dataset(km, source, METHODS, distributed, batch_size=4, engine="ray", num_actors=1,
                                     progress=False)
    assert result.computed_chunks == 3 and sorted(load_results(distributed).maps["gradient"]) == \
        ["demographics", "signal"]
    assert _tree(distributed) == _tree(local)
