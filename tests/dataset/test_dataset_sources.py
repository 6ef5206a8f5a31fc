"""Sources (folders and globs of .npy files and images, Parquet tables) and bad input: unreadable files skipped or
fatal per on_error= and reported with their path, mixed shapes, foreign stores, bad arguments."""
import sys

import numpy as np
import pytest
from PIL import Image

import signxai
from signxai.dataset import load_results

from dataset_helpers import chunked_reference

pytest.importorskip("zarr")  # the dataset extra
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _write_samples(folder, x):
    folder.mkdir()
    for i, sample in enumerate(x):
        np.save(folder / f"s{i:03d}.npy", sample)
    return folder


def test_a_folder_of_npy_files_with_an_unreadable_one(eeg, eeg_x_cf, tmp_path):
    x = eeg_x_cf[:20]
    folder = _write_samples(tmp_path / "samples", x)
    (folder / "s007.npy").write_bytes(b"\x93NUMPY garbage")
    (folder / "notes.txt").write_text("ignored: not a sample")

    with pytest.raises(ValueError, match=r"cannot read .*s007\.npy.*on_error='skip'"):
        signxai.explain_dataset(eeg.torch_model, folder, "lrp_z", tmp_path / "fatal.zarr", batch_size=8)
    assert not (tmp_path / "fatal.zarr").exists()  # fatal before anything is written

    with pytest.warns(UserWarning, match=r"skipped sample 7 \(.*s007\.npy\)"):
        result = signxai.explain_dataset(eeg.torch_model, folder, "lrp_z", tmp_path / "maps.zarr", batch_size=8,
                                         on_error="skip", progress=False)
    assert [(e["index"], e["path"]) for e in result.errors] == [(7, str(folder / "s007.npy"))]
    stored = load_results(tmp_path / "maps.zarr")
    valid = stored.valid[:]
    assert not valid[7] and valid.sum() == 19 and stored.predictions[7] == -1 and stored.targets[7] == -1
    maps = stored.maps["lrp_z"][:]
    assert np.isnan(maps[7]).all() and np.isnan(stored.logits[7]).all()
    keep = np.r_[0:7, 8:16]  # chunk 1 is explained without the broken sample: calculate_relevancemaps of the rest
    expected = np.concatenate([signxai.calculate_relevancemaps(eeg.torch_model, x[keep], "lrp_z"),
                               signxai.calculate_relevancemaps(eeg.torch_model, x[16:], "lrp_z")])
    assert maps[valid].tobytes() == expected.tobytes()
    assert stored.attrs["errors"] == result.errors and stored.attrs["n_valid"] == 19
    assert stored.attrs["signxai"]["files"] == [f"s{i:03d}.npy" for i in range(20)]

    glob_result = signxai.explain_dataset(eeg.torch_model, str(folder / "s01*.npy"), "lrp_z", tmp_path / "g.zarr",
                                          batch_size=8, progress=False)
    assert glob_result.n_samples == 10
    assert load_results(tmp_path / "g.zarr").maps["lrp_z"][:].tobytes() == chunked_reference(
        eeg.torch_model, x[10:], "lrp_z", 8).tobytes()


def test_mixed_shapes_are_an_error_naming_both_files(eeg, eeg_x_cf, tmp_path):
    folder = _write_samples(tmp_path / "samples", eeg_x_cf[:3])
    np.save(folder / "s001.npy", eeg_x_cf[1, :, :32])
    with pytest.raises(ValueError, match=r"mixed shapes: .*s001\.npy holds an array of shape \(4, 32\), but "
                                         r".*s000\.npy holds \(4, 64\)"):
        signxai.explain_dataset(eeg.torch_model, folder, "gradient", tmp_path / "maps.zarr", on_error="skip")
    assert not (tmp_path / "maps.zarr").exists()


def test_images_are_converted_as_signxai_explain_converts_them(tmp_path):
    from signxai.cli import _load_image, _Model
    from signxai.demo import load_demo

    digits = load_demo("digits", "keras")
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        pixels = np.repeat(np.round(digits.x[i] * 255).astype(np.uint8), 3, axis=-1)
        Image.fromarray(pixels).resize((16, 16), Image.NEAREST).save(folder / f"d{i}.png")
    good = (folder / "d3.png").read_bytes()
    (folder / "d3.png").write_bytes(good[:len(good) // 2])  # truncated: the header reads, the pixels do not
    (folder / "d4.png").write_text("not an image")
    with pytest.warns(UserWarning) as warned:
        result = signxai.explain_dataset(digits.keras_model, folder, ["gradient", "lrp_epsilon_0_1"],
                                         tmp_path / "maps.zarr", on_error="skip", batch_size=2, progress=False)
    assert [str(w.message).split(" (")[0] for w in warned] == ["skipped sample 3", "skipped sample 4"]
    assert "d3.png" in str(warned[0].message) and "d4.png" in str(warned[1].message)
    assert sorted(e["path"].rsplit("/", 1)[1] for e in result.errors) == ["d3.png", "d4.png"]
    info = _Model(None, False, (8, 8, 1))
    x = np.stack([_load_image(folder / f"d{i}.png", info, False) for i in range(3)])
    stored = load_results(tmp_path / "maps.zarr")
    assert list(stored.valid[:]) == [True, True, True, False, False]
    maps = stored.maps["lrp_epsilon_0_1"][:3]
    expected = np.concatenate([signxai.calculate_relevancemaps(digits.keras_model, x[:2], "lrp_epsilon_0_1"),
                               signxai.calculate_relevancemaps(digits.keras_model, x[2:], "lrp_epsilon_0_1")])
    assert maps.shape == (3, 8, 8, 1) and maps.tobytes() == expected.tobytes()


def test_parquet_tensor_columns(eeg, eeg_x_cf, tmp_path):
    x = eeg_x_cf[:30]
    tensor_type = pa.fixed_shape_tensor(pa.float32(), (4, 64))
    tensors = pa.ExtensionArray.from_storage(tensor_type, pa.array([row.ravel() for row in x],
                                                                   pa.list_(pa.float32(), 4 * 64)))
    nested = pa.array([[list(channel) for channel in row] for row in x[:10]] + [None] +
                      [[list(channel) for channel in row] for row in x[11:]], pa.list_(pa.list_(pa.float32())))
    table = pa.table({"id": np.arange(30), "ecg": tensors, "nested": nested,
                      "flat": pa.array([row.ravel() for row in x], pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=12)
    reference = chunked_reference(eeg.torch_model, x, "lrp_epsilon_0_1", 8)

    with pytest.raises(ValueError, match="3 tensor columns .*ecg, nested, flat.*column="):
        signxai.explain_dataset(eeg.torch_model, tmp_path / "t.parquet", "gradient", tmp_path / "no.zarr")
    with pytest.raises(ValueError, match="no column 'ekg'; its columns: id, ecg, nested, flat"):
        signxai.explain_dataset(eeg.torch_model, tmp_path / "t.parquet", "gradient", tmp_path / "no.zarr",
                                column="ekg")
    for column, kwargs in [("ecg", {}), ("flat", {"shape": (4, 64)})]:
        out = tmp_path / f"{column}.zarr"
        signxai.explain_dataset(eeg.torch_model, tmp_path / "t.parquet", "lrp_epsilon_0_1", out, column=column,
                                batch_size=8, progress=False, **kwargs)
        assert load_results(out).maps["lrp_epsilon_0_1"][:].tobytes() == reference.tobytes(), column

    with pytest.warns(UserWarning, match=r"t\.parquet row 10\): the row is null"):
        result = signxai.explain_dataset(eeg.torch_model, tmp_path / "t.parquet", "lrp_epsilon_0_1",
                                         tmp_path / "nested.zarr", column="nested", batch_size=8, on_error="skip",
                                         progress=False)
    assert [e["index"] for e in result.errors] == [10]
    maps = load_results(tmp_path / "nested.zarr").maps["lrp_epsilon_0_1"][:]
    assert np.isnan(maps[10]).all()
    np.testing.assert_array_equal(maps[16:], reference[16:])  # chunks without the null row are unchanged


def test_non_finite_samples_and_bad_arguments(eeg, eeg_x, tmp_path):
    x = eeg_x[:10].copy()
    x[4, 3, 1] = np.nan
    with pytest.raises(ValueError, match=r"sample 4 \(array\[4\]\): contains 1 non-finite value"):
        signxai.explain_dataset(eeg.keras_model, x, "gradient", tmp_path / "a.zarr")
    with pytest.warns(UserWarning, match=r"array\[4\]"):
        result = signxai.explain_dataset(eeg.keras_model, x, "gradient", tmp_path / "a.zarr", on_error="skip",
                                         progress=False)
    assert [e["index"] for e in result.errors] == [4]

    x, model, out = eeg_x[:10], eeg.keras_model, tmp_path / "b.zarr"
    with pytest.raises(ValueError, match="lrp_epsilom.*lrp_epsilon"):
        signxai.explain_dataset(model, x, ["gradient", "lrp_epsilom_0_1"], out)
    with pytest.raises(TypeError, match="mu"):
        signxai.explain_dataset(model, x, {"gradient": {"mu": 0.5}}, out)
    with pytest.raises(ValueError, match="give target= to explain_dataset"):
        signxai.explain_dataset(model, x, {"gradient": {"target": 1}}, out)
    with pytest.raises(ValueError, match=r"target 2 is outside the model's classes 0 … 1"):
        signxai.explain_dataset(model, x, "gradient", out, target=2)
    with pytest.raises(ValueError, match="target holds 3 class indices, but the source has 10"):
        signxai.explain_dataset(model, x, "gradient", out, target=[0, 1, 0])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        signxai.explain_dataset(model, x, "gradient", out, batch_size=0)
    with pytest.raises(ValueError, match="on_error must be"):
        signxai.explain_dataset(model, x, "gradient", out, on_error="ignore")
    with pytest.raises(ValueError, match="engine must be one of"):
        signxai.explain_dataset(model, x, "gradient", out, engine="spark")
    with pytest.raises(TypeError, match="model_or_factory must be"):
        signxai.explain_dataset(42, x, "gradient", out)
    with pytest.raises(ValueError, match=r"samples have shape \(4,\), but the model takes samples of shape "
                                         r"\(64, 4\) \(channels-last\)"):
        signxai.explain_dataset(model, x[0], "gradient", out)
    with pytest.raises(ValueError, match="shape \\(64,\\); give a batch"):
        signxai.explain_dataset(model, x[0, :, 0], "gradient", out)
    with pytest.raises(ValueError, match="no such file or folder"):
        signxai.explain_dataset(model, tmp_path / "missing.npy", "gradient", out)
    with pytest.raises(ValueError, match=r"samples have shape \(64, 4, 1\), but the model takes samples of "
                                         r"shape \(4, \?\) \(channels-first\)"):
        signxai.explain_dataset(eeg.torch_model, x[:, :, :, None], "gradient", out)
    with pytest.raises(ValueError, match=r"the model cannot take the source.s samples of shape \(4, 1\)"):
        signxai.explain_dataset(eeg.torch_model, np.zeros((2, 4, 1), np.float32), "gradient", out)
    assert not out.exists()

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="exists and is not a store written by signxai.explain_dataset"):
        signxai.explain_dataset(model, x, "gradient", foreign)
    assert [p.name for p in foreign.iterdir()] == ["thesis.tex"]
    signxai.explain_dataset(model, x[:4], "gradient", tmp_path / "n", format="npy", progress=False)
    with pytest.raises(ValueError, match="is a npy store, not zarr"):
        signxai.explain_dataset(model, x[:4], "gradient", tmp_path / "n", format="zarr")


def test_without_ray_the_ray_engine_says_how_to_install_it(eeg, eeg_x, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'signxai\[ray\]'"):
        signxai.explain_dataset(eeg.keras_model, eeg_x, "gradient", tmp_path / "maps.zarr", engine="ray")
    assert not (tmp_path / "maps.zarr").exists()


def test_without_zarr_the_error_names_the_extra_and_the_npy_format(eeg, eeg_x, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(ImportError, match=r"pip install 'signxai\[dataset\]'.*format='npy'"):
        signxai.explain_dataset(eeg.keras_model, eeg_x, "gradient", tmp_path / "maps.zarr")
