"""TensorFlow's compiled passes (the default, docs/api.md#compiled-passes): a bounded number of traces per model,
the same numbers as eager execution up to float32 rounding, and float64 passes equal to eager ones."""
from __future__ import annotations

import torch  # noqa: F401  (import torch before tensorflow)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import signxai  # noqa: E402
import signxai.tf_signxai.backend as tf_backend  # noqa: E402
from signxai.tf_signxai.backend import BACKEND as TF_BACKEND  # noqa: E402

from robustness_models import cnn, cnn_input  # noqa: E402

METHODS = ["gradient", "lrp_epsilon_0_1", "lrp_alpha_1_beta_0", "lrp_alpha_2_beta_1", "lrpsign_z",
           "lrp_sequential_composite_b", "guided_backprop", "deconvnet", "grad_cam", "smoothgrad"]


def test_compiled_is_the_default():
    assert tf_backend.COMPILE_PASSES is True
    model, x = cnn("keras"), cnn_input("keras")
    signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_1")
    assert any(key[0] == "graph_backward" for key in TF_BACKEND._compiled[model])


def test_compiled_passes_per_model_are_bounded(monkeypatch):
    """Many rule structures (each its own pass) keep only the most recently used passes; a dropped pass is traced
    again when needed and gives the same map."""
    monkeypatch.setattr(tf_backend, "COMPILED_PER_MODEL", 3)
    model, x = cnn("keras"), cnn_input("keras")
    first = signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_5", target=1)
    for method in ("lrp_z", "lrp_epsilon_1_std_x", "lrp_alpha_1_beta_0", "lrpsign_z", "w2lrp_z", "flatlrp_z"):
        signxai.calculate_relevancemap(model, x, method, target=1)
        assert len(TF_BACKEND._compiled[model]) <= 3
    np.testing.assert_array_equal(signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_5", target=1), first)


@pytest.mark.parametrize("method", METHODS)
def test_compiled_equals_eager(method, monkeypatch):
    """Traced and eager passes compute the same function: float64 to 1e-12 of the peak, float32 within float32
    rounding (grappler's fused kernels sum in another order)."""
    model = cnn("keras")
    x = cnn_input("keras")
    compiled = {d: signxai.calculate_relevancemap(model, x.astype(d), method, target=[0, 1, 2], dtype=d)
                for d in ("float32", "float64")}
    monkeypatch.setattr(tf_backend, "COMPILE_PASSES", False)
    eager = {d: signxai.calculate_relevancemap(model, x.astype(d), method, target=[0, 1, 2], dtype=d)
             for d in ("float32", "float64")}
    for dtype, rtol in (("float64", 1e-12), ("float32", 1e-5)):
        peak = np.abs(eager[dtype]).max()
        assert peak > 0, f"{method} {dtype}: all-zero map"
        assert np.abs(compiled[dtype] - eager[dtype]).max() <= rtol * peak, (method, dtype)


def test_many_methods_log_no_retracing_warning(caplog):
    """Each pass is its own tf.function, traced once: TensorFlow's "triggered tf.function retracing" warning (which
    counts traces per code object) must not fire for a session that runs many methods on one model."""
    import logging

    model, x = cnn("keras"), cnn_input("keras")
    methods = ["lrp_z", "lrp_epsilon_1", "lrp_epsilon_1_std_x", "lrp_alpha_1_beta_0", "lrp_alpha_2_beta_1", "lrpsign_z",
               "w2lrp_z", "flatlrp_z"]  # eight rule structures: eight passes
    with caplog.at_level(logging.WARNING):
        for method in methods:
            signxai.calculate_relevancemap(model, x, method, target=1)
    assert len([k for k in TF_BACKEND._compiled[model] if k[0] == "graph_backward"]) == 8
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
