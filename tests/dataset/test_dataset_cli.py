"""``signxai explain-dataset``, run in-process through ``main([...])``."""
import sys

import numpy as np
import pytest
import torch

from signxai.cli import main
from signxai.dataset import load_results

from dataset_helpers import chunked_reference

pytest.importorskip("zarr")  # the dataset extra


def test_explain_dataset_command(eeg, eeg_x, eeg_x_cf, tmp_path, capsys):
    eeg.keras_model.save(tmp_path / "eeg.keras")
    torch.save(eeg.torch_model, tmp_path / "eeg.pt")
    np.save(tmp_path / "x.npy", eeg_x[:40])
    np.save(tmp_path / "x_cf.npy", eeg_x_cf[:40])
    args = ["explain-dataset", "--model", str(tmp_path / "eeg.pt"), "--input", str(tmp_path / "x_cf.npy"),
            "--methods", "lrp_epsilon,lrpsign_epsilon", "--out", str(tmp_path / "maps.zarr"), "--batch-size", "16",
            "--param", "epsilon=0.5", "--no-progress"]
    assert main(args[:6] + ["gradient,lrp_epsilon"] + args[7:]) == 2  # gradient takes no epsilon
    assert "gradient" in capsys.readouterr().err
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "40 samples x 2 method(s)" in out and "3 chunk(s) computed" in out and "samples/s" in out
    stored = load_results(tmp_path / "maps.zarr")
    assert stored.attrs["signxai"]["methods"] == {"lrp_epsilon": {"epsilon": 0.5}, "lrpsign_epsilon": {"epsilon": 0.5}}
    assert stored.maps["lrpsign_epsilon"][:].tobytes() == chunked_reference(
        eeg.torch_model, eeg_x_cf[:40], "lrpsign_epsilon", 16, epsilon=0.5).tobytes()

    assert main(args) == 0  # again: nothing to do
    assert "0 chunk(s) computed, 3 finished earlier" in capsys.readouterr().out
    assert main(args[:-5] + ["--batch-size", "8", "--param", "epsilon=0.5", "--no-progress"]) == 2
    assert "holds the results of another job (batch_size" in capsys.readouterr().err

    keras = ["explain-dataset", "--model", str(tmp_path / "eeg.keras"), "--input", str(tmp_path / "x.npy"),
             "--methods", "lrp_z", "--out", str(tmp_path / "k"), "--format", "npy", "--target", "1", "--no-progress"]
    assert main(keras) == 0
    stored = load_results(tmp_path / "k")
    np.testing.assert_array_equal(stored.targets, np.ones(40))
    assert np.asarray(stored.maps["lrp_z"]).tobytes() == chunked_reference(
        eeg.keras_model, eeg_x[:40], "lrp_z", 32, target=1).tobytes()


def test_explain_dataset_command_errors(eeg, tmp_path, capsys, monkeypatch):
    eeg.keras_model.save(tmp_path / "eeg.keras")
    np.save(tmp_path / "x.npy", np.zeros((3, 64, 4), np.float32))
    base = ["explain-dataset", "--model", str(tmp_path / "eeg.keras"), "--input", str(tmp_path / "x.npy"),
            "--out", str(tmp_path / "m.zarr"), "--no-progress"]
    for extra, message in [(["--methods", "lrp_epsilom"], "lrp_epsilon"),
                           (["--methods", "nothing*"], "no catalog method matches 'nothing*'"),
                           (["--methods", "gradient", "--engine", "ray"], "pip install 'signxai[ray]'")]:
        if "ray" in extra:
            monkeypatch.setitem(sys.modules, "ray", None)
        assert main(base + extra) == 2
        assert message in capsys.readouterr().err
    missing = ["explain-dataset", "--model", str(tmp_path / "eeg.keras"), "--input", str(tmp_path / "y.npy"),
               "--methods", "gradient", "--out", str(tmp_path / "m.zarr")]
    assert main(missing) == 2 and "no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "m.zarr").exists()
