"""The synthetic 12-lead ECG (signxai.signals.synthetic) and the demo models (signxai.signals.demo)."""
import numpy as np
import pytest

from signxai.signals import STANDARD_LEADS
from signxai.signals.synthetic import ST_LEADS, lead_matrix, make_dataset, simulate_ecg, st_mask, st_shape


def _lead(x, name):
    return x[:, STANDARD_LEADS.index(name)]


def test_limb_leads_obey_einthoven_and_goldberger():
    x, _ = simulate_ecg(np.random.default_rng(5), noise=0.0, wander=0.0)
    i, ii = _lead(x, "I"), _lead(x, "II")
    np.testing.assert_allclose(_lead(x, "III"), ii - i, atol=1e-12)
    np.testing.assert_allclose(_lead(x, "aVR"), -(i + ii) / 2, atol=1e-12)
    np.testing.assert_allclose(_lead(x, "aVL"), i - ii / 2, atol=1e-12)
    np.testing.assert_allclose(_lead(x, "aVF"), ii - i / 2, atol=1e-12)
    assert lead_matrix().shape == (3, 12)
    # textbook polarities of the QRS: upright in II and V6, inverted in aVR, mostly negative in V1
    peak = np.argmax(np.abs(ii))
    assert ii[peak] > 0.5 and _lead(x, "aVR")[peak] < -0.3 and _lead(x, "V6")[peak] > 0.5
    assert _lead(x, "V1")[peak - 3:peak + 6].min() < -0.5


def test_st_elevation_is_planted_in_v1_to_v4_only():
    normal, peaks = simulate_ecg(np.random.default_rng(7), noise=0.0, wander=0.0)
    elevated, peaks_again = simulate_ecg(np.random.default_rng(7), st_elevation=0.3, noise=0.0, wander=0.0)
    np.testing.assert_array_equal(peaks, peaks_again)
    difference = elevated - normal
    t = np.arange(len(normal)) / 100.0
    mask = st_mask(t, peaks)
    assert np.abs(difference[~mask]).max() < 1e-12  # nothing outside the planted leads and ST windows
    for name in ST_LEADS:
        assert _lead(difference, name).max() == pytest.approx(0.3)
    np.testing.assert_allclose(_lead(difference, "V2"), 0.3 * st_shape(t, peaks), atol=1e-12)
    assert mask[:, [STANDARD_LEADS.index(n) for n in ("I", "V5", "V6")]].sum() == 0


def test_dataset_is_seeded_balanced_and_prefix_stable():
    x, y, peaks = make_dataset(10, seed=3)
    assert x.shape == (10, 1000, 12) and x.dtype == np.float32 and y.sum() == 5
    again, y_again, _ = make_dataset(10, seed=3)
    np.testing.assert_array_equal(x, again)
    np.testing.assert_array_equal(y, y_again)
    other, _, _ = make_dataset(10, seed=4)
    assert not np.allclose(x, other)
    assert len(peaks) == 10 and all(8 <= len(p) <= 18 for p in peaks)  # 55-95 bpm over 10 s
    # baseline wander removed: every lead's mean is near 0
    assert np.abs(x.mean(axis=1)).max() < 0.05


def test_keras_twin_of_the_demo_cnn_has_the_same_logits():
    import torch  # noqa: F401

    from signxai.loading import import_keras
    from signxai.signals.demo import ARCHITECTURES

    import_keras()
    arch = ARCHITECTURES["cnn"]
    model = arch.build_torch(0).eval()
    twin = arch.keras_twin(model)
    x, expected = _assert_same_logits(model, twin)


def test_keras_twin_of_the_demo_lstm_has_the_same_logits_and_pickles():
    import io

    import torch

    from signxai.loading import import_keras
    from signxai.signals.demo import ARCHITECTURES, ECGConvLSTM

    import_keras()
    arch = ARCHITECTURES["lstm"]
    state = torch.random.get_rng_state()
    model = arch.build_torch(0).eval()
    assert torch.equal(torch.random.get_rng_state(), state)  # weights from NumPy; the global torch RNG untouched
    again = arch.build_torch(0)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    twin = arch.keras_twin(model)
    assert [layer.name for layer in twin.layers] == ["conv1", "conv2", "lstm", "head"]
    assert twin.get_layer("conv2").output.shape[1] == 61  # 1000 samples -> 249 -> 61 steps
    x, expected = _assert_same_logits(model, twin)
    # the Keras -> PyTorch converter reads the twin back into a module computing the original model
    from signxai.converters.direct_tf_to_torch import convert_tf_to_torch_direct

    with torch.no_grad():
        back = convert_tf_to_torch_direct(twin).eval()(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1))))
    np.testing.assert_allclose(back.numpy(), expected, atol=1e-5 * np.abs(expected).max())
    buffer = io.BytesIO()
    torch.save(model, buffer)  # the demo saves the whole module; the class must be found by name
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded) is ECGConvLSTM


@pytest.mark.slow
def test_demo_trains_and_explains_the_planted_evidence(tmp_path):
    """The whole demo: about 25 s of training (CNN and LSTM) and 45 s of explaining and plotting on 2 cores."""
    from signxai.signals.demo import run_demo

    summary = run_demo(tmp_path, records=2, verbose=False)
    import json
    meta = json.loads((tmp_path / "models" / "ecg_demo.json").read_text())
    cnn, lstm = meta["models"]["cnn"], meta["models"]["lstm"]
    assert cnn["test_accuracy"] >= 0.95 and cnn["logit_max_rel_diff"] <= 1e-4
    assert lstm["test_accuracy"] >= 0.9 and lstm["logit_max_rel_diff"] <= 1e-4
    for name, lead_share in (("cnn", 0.45), ("lstm", 0.38)):  # 4 of 12 leads: 0.33 by chance
        assert summary["models"][name]["predictions"] == [1, 0], name
        assert set(summary["models"][name]["methods"]) == {"gradient", "gradient_x_sign", "lrp_epsilon_0_1",
                                                           "lrpsign_epsilon_0_1"}, name
        for method, values in summary["models"][name]["methods"].items():
            assert values["keras_vs_torch_max_rel_diff"] <= 1e-4, (name, method)
            assert values["st_records_share_in_V1_V4"] > lead_share, (name, method)
        assert len(list(tmp_path.glob(f"{name}_rec*_*.png"))) == 16, name
    # LRP-epsilon on the LSTM concentrates on the planted leads more than its gradient does, and reaches further back
    # in time: the gradient vanishes through the forget gates, LRP splits the cell sum by contribution
    # (docs/ecg.md#demo)
    lstm_methods = summary["models"]["lstm"]["methods"]
    lrp, gradient = lstm_methods["lrp_epsilon_0_1"], lstm_methods["gradient"]
    assert lrp["st_records_share_in_V1_V4"] > gradient["st_records_share_in_V1_V4"]
    assert gradient["st_records_share_in_last_quarter"] > 0.9 > lrp["st_records_share_in_last_quarter"]
    rows = (tmp_path / "per_lead.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2 * 4 * 2 * 12
    assert sum(row.startswith("lstm,") for row in rows) == 2 * 4 * 2 * 12


def test_demo_command_rejects_bad_arguments_before_training(tmp_path, capsys):
    from signxai.signals.demo import main

    assert main([str(tmp_path / "out"), "--records", "0"]) == 2
    assert "--records must be at least 1" in capsys.readouterr().err
    assert main([str(tmp_path / "out"), "--methods", "lrp_zz"]) == 2
    assert "lrp_zz" in capsys.readouterr().err
    assert main([str(tmp_path / "out"), "--models", str(tmp_path)]) == 2
    assert "holds no ecg_demo.json" in capsys.readouterr().err
    assert not (tmp_path / "out" / "models").exists()  # nothing was trained


def test_importing_signals_loads_no_framework_scipy_or_wfdb():
    import subprocess
    import sys

    code = ("import sys, signxai.signals, signxai.signals.demo, signxai.signals.synthetic; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'scipy', 'wfdb', 'matplotlib.pyplot') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _assert_same_logits(model, twin):
    """The Keras twin's logits equal the PyTorch model's on four demo records; returns the records and the logits."""
    import torch

    x, _, _ = make_dataset(4, seed=9)
    with torch.no_grad():
        expected = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1)))).numpy()
    got = np.asarray(twin(x, training=False))
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())
    return x, expected
