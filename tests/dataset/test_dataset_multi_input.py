"""explain_dataset on multi-input models (docs/api.md#multi-input-datasets): list/dict sources of per-input arrays or
files, ``inputs=``, one store array per method and explained input, resuming with the inputs checked; the maps are
``calculate_relevancemaps``' on every chunk, for the Keras and PyTorch twins of tests/test_multi_input.py."""
import shutil
from pathlib import Path

import numpy as np
import pytest

import signxai
from signxai.common.agreement import check_agreement
from signxai.dataset import load_results

from test_multi_input import TwinNet, keras_twin, pt
from twins import set_twin_weights

zarr = pytest.importorskip("zarr")  # the dataset extra

N, BATCH = 10, 4  # 3 chunks, the last one short
METHODS = ["gradient", "lrp_epsilon_0_1"]
NAMES = ["signal", "demographics"]


@pytest.fixture(scope="module")
def twins():
    km, tm = keras_twin(), TwinNet().eval()
    set_twin_weights(km, tm, ["conv", "demo", "mix", "head"], np.random.RandomState(0), 0.7, 0.2)
    rng = np.random.RandomState(5)
    signal = rng.normal(size=(N, 16, 3)).astype(np.float32)
    demographics = rng.normal(size=(N, 2)).astype(np.float32)
    return km, tm, signal, demographics


def _tree(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def reference(model, x, method, inputs=None, **params):
    """What explain_dataset promises: calculate_relevancemaps on each chunk of BATCH samples, one map per input."""
    chunks = [signxai.calculate_relevancemaps(model, [a[i:i + BATCH] for a in x], method, inputs=inputs, **params)
              for i in range(0, N, BATCH)]
    if not isinstance(chunks[0], list):
        return np.concatenate(chunks)
    return [np.concatenate([c[j] for c in chunks]) for j in range(len(chunks[0]))]


def logits_of(model, x):
    import torch

    if isinstance(model, torch.nn.Module):
        with torch.no_grad():
            return model(*[torch.from_numpy(a) for a in x]).numpy()
    return model([a for a in x], training=False).numpy()


@pytest.mark.parametrize("framework", ["keras", "pytorch"])
def test_stores_equal_calculate_relevancemaps_per_input(framework, twins, tmp_path):
    """Keras: a list of arrays into Zarr; PyTorch: a dict of arrays into .npy files."""
    km, tm, signal, demographics = twins
    if framework == "keras":
        model, x, source, fmt = km, [signal, demographics], [signal, demographics], "zarr"
    else:
        x = [pt(signal), demographics]
        model, source, fmt = tm, {"demographics": demographics, "signal": x[0]}, "npy"
    out = tmp_path / "maps"
    result = signxai.explain_dataset(model, source, METHODS, out, format=fmt, batch_size=BATCH, progress=False)
    assert (result.n_samples, result.n_chunks, result.computed_chunks) == (N, 3, 3) and result.errors == []

    stored = load_results(out)
    assert stored.complete and sorted(stored.maps) == METHODS
    for method in METHODS:
        assert list(stored.maps[method]) == NAMES  # the model's input order
        expected = reference(model, x, method)
        for name, a, want in zip(NAMES, x, expected):
            maps = np.asarray(stored.maps[method][name][:])
            assert maps.dtype == np.float32 and maps.shape == a.shape
            assert np.abs(maps).max() > 0
            assert maps.tobytes() == want.tobytes(), (method, name)
    logits = np.asarray(stored.logits[:])
    np.testing.assert_allclose(logits, logits_of(model, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(stored.predictions[:], logits.argmax(1))
    np.testing.assert_array_equal(stored.targets[:], logits.argmax(1))
    attrs = stored.attrs["signxai"]
    assert attrs["inputs"] == {"names": NAMES, "explained": NAMES}
    assert attrs["sample_shape"] == [list(a.shape[1:]) for a in x]
    assert sorted(attrs["source"]["inputs"]) == sorted(NAMES)


def test_the_twins_stores_pass_the_cross_framework_gates(twins, tmp_path):
    """Gates 1-2 (docs/equivalence.md#agreement-gates) between the Keras and the PyTorch store, per input."""
    km, tm, signal, demographics = twins
    stores = {}
    for framework, model, source in (("tf", km, [signal, demographics]),
                                     ("pt", tm, {"signal": pt(signal), "demographics": demographics})):
        for dtype in ("float32", "float64"):
            out = tmp_path / f"{framework}{dtype}"
            signxai.explain_dataset(model, source, METHODS, out, format="npy", dtype=dtype, batch_size=BATCH,
                                    target=np.arange(N) % 3, progress=False)
            stores[framework, dtype] = load_results(out).maps
    for method in METHODS:
        for name in NAMES:
            maps = [np.asarray(stores[key][method][name]) for key in
                    (("tf", "float32"), ("pt", "float32"), ("tf", "float64"), ("pt", "float64"))]
            maps[1], maps[3] = (m.transpose(0, 2, 1) if m.ndim == 3 else m for m in (maps[1], maps[3]))
            agreement = check_agreement(*maps)
            assert agreement.passed, f"{method}, {name}: {agreement.violations}"
            assert np.abs(maps[2]).max() > 0


def test_inputs_selection_and_one_npy_file_per_input(twins, tmp_path):
    km, tm, signal, demographics = twins
    files = {"signal": tmp_path / "signal.npy", "demographics": tmp_path / "demo.npy"}
    np.save(files["signal"], pt(signal))
    np.save(files["demographics"], demographics.astype(np.float64))
    out = tmp_path / "maps.zarr"
    signxai.explain_dataset(tm, files, {"gradient": {}, "lrp_epsilon": {"epsilon": 0.3}}, out, batch_size=BATCH,
                            inputs="demographics", progress=False)
    stored = load_results(out)
    assert {m: list(v) for m, v in stored.maps.items()} == {"gradient": ["demographics"],
                                                            "lrp_epsilon": ["demographics"]}
    assert sorted(p.name for p in (out / "maps" / "gradient").iterdir() if p.is_dir()) == ["demographics"]
    x = [pt(signal), demographics]
    for method, params in (("gradient", {}), ("lrp_epsilon", {"epsilon": 0.3})):
        want = reference(tm, x, method, inputs="demographics", **params)
        assert np.asarray(stored.maps[method]["demographics"][:]).tobytes() == want.tobytes()
    assert dict(stored.maps["lrp_epsilon"]["demographics"].attrs) == {
        "method": "lrp_epsilon", "params": {"epsilon": 0.3}, "input": "demographics", "position": 1}
    assert stored.attrs["signxai"]["inputs"]["explained"] == ["demographics"]
    assert stored.attrs["signxai"]["source"]["inputs"]["signal"]["kind"] == "npy"


def test_a_held_fixed_input_of_indices_stays_integral(tmp_path):
    """An Embedding input (int64 indices) held fixed while the other input is explained: the stored maps equal
    calculate_relevancemaps on the integer indices (a float32 round trip of the indices would change nothing here,
    but the source must not turn them into floats the framework refuses)."""
    import torch
    from torch import nn

    class Tagged(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.dense, self.head = nn.Embedding(5, 3), nn.Linear(4, 3), nn.Linear(3, 2)

        def forward(self, x, tag):
            return self.head(torch.relu(self.dense(x) + self.embed(tag)))

    model = Tagged().eval()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    rng = np.random.RandomState(2)
    x, tag = rng.normal(size=(N, 4)).astype(np.float32), rng.randint(0, 5, size=N)
    out = tmp_path / "maps"
    signxai.explain_dataset(model, [x, tag], "lrp_epsilon_0_1", out, format="npy", inputs="x", batch_size=BATCH,
                            progress=False)
    stored = np.asarray(load_results(out).maps["lrp_epsilon_0_1"]["x"])
    assert stored.tobytes() == reference(model, [x, tag], "lrp_epsilon_0_1", inputs="x").tobytes()
    with pytest.raises(ValueError, match=r"input\(s\) \['tag'\] hold integers .* leave them out with inputs="):
        signxai.explain_dataset(model, [x, tag], "lrp_epsilon_0_1", tmp_path / "tag", progress=False)
    assert not (tmp_path / "tag").exists()


@pytest.mark.parametrize("fmt", ["zarr", "npy"])
def test_resume_is_byte_identical_and_checks_the_inputs(fmt, twins, tmp_path):
    km, _, signal, demographics = twins
    source = {"signal": signal, "demographics": demographics}
    clean, partial = tmp_path / "clean", tmp_path / "partial"
    signxai.explain_dataset(km, source, METHODS, clean, format=fmt, batch_size=BATCH, progress=False)
    shutil.copytree(clean, partial)
    if fmt == "zarr":
        zarr.open_array(str(partial / "chunks"), mode="r+")[1] = ""
    else:
        (partial / "_chunks" / "00000001.json").unlink()
    resumed = signxai.explain_dataset(km, source, METHODS, partial, format=fmt, batch_size=BATCH, progress=False)
    assert (resumed.resumed_chunks, resumed.computed_chunks) == (2, 1)
    assert _tree(partial) == _tree(clean)

    before = _tree(clean)
    with pytest.raises(ValueError, match=r"another job \(inputs\.explained: the store has \['signal', "
                                         r"'demographics'\], this run \['signal'\]"):
        signxai.explain_dataset(km, source, METHODS, clean, batch_size=BATCH, inputs=[0], progress=False)
    other = {"signal": signal, "demographics": demographics + 1}
    with pytest.raises(ValueError, match=r"another job \(source\.inputs\.demographics\.sampled_hash"):
        signxai.explain_dataset(km, other, METHODS, clean, batch_size=BATCH, progress=False)
    assert _tree(clean) == before  # nothing overwritten


def test_bad_multi_input_sources_are_refused_clearly(twins, eeg, eeg_x, tmp_path):
    km, tm, signal, demographics = twins
    out = tmp_path / "store"
    cases = [
        (km, [signal, demographics[:7]], {}, r"different numbers of samples \{'signal': 10, 'demographics': 7\}"),
        (km, {"signal": signal, "demo": demographics}, {},
         r"keys \['signal', 'demo'\], but the model's inputs are \['signal', 'demographics'\]; unknown: \['demo'\]; "
         r"missing: \['demographics'\]"),
        (tm, [pt(signal)], {}, r"a list of 1 entries, but the model takes 2 inputs"),
        (tm, pt(signal), {}, r"the model takes 2 inputs \['signal', 'demographics'\], but the source is one ndarray"),
        (km, [signal[:, 1:], demographics], {}, r"the model cannot take the source's samples of shape "
                                                 r"\[\(15, 3\), \(2,\)\]: .*'signal'"),
        (km, [signal, demographics], {"inputs": "age"}, r"inputs='age' is not an input of the model"),
        (km, [signal, demographics], {"inputs": [0, "signal"]}, r"names an input twice"),
        (km, [signal, tmp_path / "missing.npy"], {}, r"input 'demographics' of the source: no such file"),
        (km, tmp_path / "both.npz", {}, r"a \.npz archive cannot be read chunk by chunk"),
        (km, [signal, [tmp_path / "a.png"]], {}, r"input 'demographics' of the source: images are not read as one "
                                                  r"input of a multi-input model"),
        (km, [signal, demographics], {"column": {"age": "x"}}, r"column= names \['age'\]"),
        (eeg.keras_model, {"input": eeg_x}, {}, r"the source holds several inputs \(a dict\), but the model takes "
                                                r"one input"),
        (eeg.keras_model, eeg_x, {"inputs": 1}, r"inputs=1: the model has one input"),
    ]
    (tmp_path / "both.npz").write_bytes(b"")
    from PIL import Image
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    for model, source, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            signxai.explain_dataset(model, source, "gradient", out, progress=False, **kwargs)
        assert not out.exists()
    with pytest.raises(ValueError, match=r"cannot use sample 3 \(demographics: array\[3\]\): contains 1 non-finite"):
        bad = demographics.copy()
        bad[3, 1] = np.nan
        signxai.explain_dataset(km, [signal, bad], "gradient", out, batch_size=BATCH, progress=False)


def test_an_unreadable_sample_of_one_input_is_skipped_for_all_inputs(twins, tmp_path):
    km, _, signal, demographics = twins
    bad = demographics.copy()
    bad[5, 0] = np.inf
    with pytest.warns(UserWarning, match=r"skipped sample 5 \(demographics: array\[5\]\)"):
        result = signxai.explain_dataset(km, [signal, bad], "gradient", tmp_path / "maps", format="npy",
                                         batch_size=BATCH, on_error="skip", progress=False)
    assert [(e["index"], e["path"]) for e in result.errors] == [(5, "demographics: array[5]")]
    stored = load_results(tmp_path / "maps")
    valid = np.asarray(stored.valid)
    assert valid.tolist() == [i != 5 for i in range(N)]
    for name, want in zip(NAMES, reference(km, [signal, demographics], "gradient")):
        maps = np.asarray(stored.maps["gradient"][name])
        assert np.isnan(maps[5]).all()
        # chunk 1 (rows 4..7) is explained without row 5: rows of other chunks are the reference's exactly
        rows = [0, 1, 2, 3, 8, 9]
        assert maps[rows].tobytes() == want[rows].tobytes()
        kept = [4, 6, 7]
        solo = signxai.calculate_relevancemaps(km, [signal[kept], demographics[kept]], "gradient", inputs=name)
        assert maps[kept].tobytes() == solo.tobytes()



def test_the_command_line_takes_one_named_file_per_input(twins, tmp_path, capsys):
    from signxai.cli import main

    km, _, signal, demographics = twins
    km.save(tmp_path / "twin.keras")
    np.save(tmp_path / "s.npy", signal)
    np.save(tmp_path / "d.npy", demographics)
    args = ["explain-dataset", "--model", str(tmp_path / "twin.keras"), "--input", f"demographics={tmp_path}/d.npy",
            f"signal={tmp_path}/s.npy", "--inputs", "signal", "--methods", "lrp_epsilon_0_1", "--out",
            str(tmp_path / "m.zarr"), "--batch-size", str(BATCH), "--no-progress"]
    assert main(args) == 0
    assert f"{N} samples x 1 method(s)" in capsys.readouterr().out
    stored = load_results(tmp_path / "m.zarr")
    assert list(stored.maps["lrp_epsilon_0_1"]) == ["signal"]
    want = reference(km, [signal, demographics], "lrp_epsilon_0_1", inputs="signal")
    assert stored.maps["lrp_epsilon_0_1"]["signal"][:].tobytes() == want.tobytes()
    assert main(args[:4] + [f"signal={tmp_path}/s.npy", str(tmp_path / "d.npy")] + args[6:]) == 2
    assert "give every --input as NAME=PATH" in capsys.readouterr().err
    assert main(args[:4] + [str(tmp_path / "s.npy")] + args[6:]) == 2
    assert "the model takes 2 inputs ['signal', 'demographics'], but the source is one" in capsys.readouterr().err


def test_one_parquet_table_with_a_column_per_input(twins, tmp_path):
    """Both inputs from one Parquet file: column= and shape= per input (flat rows reshaped)."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    km, _, signal, demographics = twins
    table = pa.table({"s": pa.array([row.ravel() for row in signal], pa.list_(pa.float32())),
                      "d": pa.array([list(row) for row in demographics], pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=3)
    path = tmp_path / "t.parquet"
    out = tmp_path / "maps"
    signxai.explain_dataset(km, {"signal": path, "demographics": path}, "gradient", out, format="npy",
                            column={"signal": "s", "demographics": "d"}, shape={"signal": (16, 3)},
                            batch_size=BATCH, progress=False)
    stored = load_results(out).maps["gradient"]
    for name, want in zip(NAMES, reference(km, [signal, demographics], "gradient")):
        assert np.asarray(stored[name]).tobytes() == want.tobytes()
