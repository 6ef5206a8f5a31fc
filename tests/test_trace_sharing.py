"""TensorFlow's compiled LRP passes take the numeric rule parameters (ε, std-x factor, α, β, SIGN μ, Z^B bounds) as
tensor inputs: one trace per model and rule *structure*, shared by every parameter value, with the maps of eager
execution (docs/api.md#compiled-passes)."""
from __future__ import annotations

import torch  # noqa: F401  (import torch before tensorflow)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import signxai  # noqa: E402
import signxai.tf_signxai.backend as tf_backend  # noqa: E402
from signxai import lrp  # noqa: E402
from signxai.tf_signxai.backend import BACKEND as TF_BACKEND  # noqa: E402

from robustness_models import cnn, cnn_input  # noqa: E402

TARGETS = [0, 1, 2]
# per structure, methods that differ only in the values of their numeric parameters
SWEEPS = {
    "epsilon": ["lrp_epsilon_0_1", "lrp_epsilon_0_5", "lrp_epsilon_2"],
    "alpha_beta": ["lrp_alpha_3_beta_2", "lrp_alpha_4_beta_3"],
    "std_x": ["lrp_epsilon_0_1_std_x", "lrp_epsilon_0_5_std_x"],
    "sign_mu": ["lrpsign_epsilon_0_1_mu_0_5", "lrpsign_epsilon_0_5_mu_neg_0_5"],
}


def _passes(model):
    return {key: function for key, function in TF_BACKEND._compiled.get(model, {}).items()
            if key[0] == "graph_backward"}


def _explain(model, x, method, **kwargs):
    return signxai.calculate_relevancemap(model, x, method, target=TARGETS, **kwargs)


def _eager(model, x, method, monkeypatch, **kwargs):
    with monkeypatch.context() as patch:
        patch.setattr(tf_backend, "COMPILE_PASSES", False)
        return _explain(model, x, method, **kwargs)


@pytest.fixture(scope="module")
def swept():
    """One model, every method of every sweep explained once (compiled, float32), and its compiled passes."""
    model, x = cnn("keras"), cnn_input("keras")
    maps = {m: _explain(model, x, m) for methods in SWEEPS.values() for m in methods}
    return model, x, maps


def test_a_sweep_traces_once_per_structure(swept):
    model, x, maps = swept
    passes = _passes(model)
    assert len(passes) == len(SWEEPS), list(passes)
    assert all(function.experimental_get_tracing_count() == 1 for function in passes.values())
    for methods in SWEEPS.values():  # the values reach the pass: every value gives its own map
        peaks = [np.abs(maps[a] - maps[b]).max() / np.abs(maps[b]).max() for a, b in zip(methods, methods[1:])]
        assert min(peaks) > 1e-3, (methods, peaks)


@pytest.mark.parametrize("method", [m for methods in SWEEPS.values() for m in methods])
def test_shared_traces_equal_eager_and_repeat_bit_for_bit(swept, method, monkeypatch):
    """Every parameter value computed in the trace of the sweep's first value equals eager execution with that value
    (float32 rounding: grappler fuses differently) and repeats bit for bit."""
    model, x, maps = swept
    eager = _eager(model, x, method, monkeypatch)
    peak = np.abs(eager).max()
    assert peak > 0
    assert np.abs(maps[method] - eager).max() <= 1e-5 * peak
    np.testing.assert_array_equal(_explain(model, x, method), maps[method])


def test_a_value_traced_first_and_a_value_sharing_a_trace_are_the_same_bits(swept):
    """The trace does not depend on the value it was traced with: ε = 2 explained on a fresh model (its own trace)
    gives the same bits as ε = 2 through the trace of ε = 0.1."""
    _, x, maps = swept
    np.testing.assert_array_equal(_explain(cnn("keras"), x, "lrp_epsilon_2"), maps["lrp_epsilon_2"])


def test_float64_sweep_equals_eager(monkeypatch):
    model, x = cnn("keras"), cnn_input("keras").astype(np.float64)
    for method in ("lrp_epsilon_0_1", "lrp_epsilon_2", "lrpsign_epsilon_0_1_mu_0_5", "lrpsign_epsilon_0_1_mu_0_3"):
        compiled = _explain(model, x, method, dtype="float64")
        eager = _eager(model, x, method, monkeypatch, dtype="float64")
        assert np.abs(compiled - eager).max() <= 1e-12 * np.abs(eager).max(), method
    assert len(_passes(TF_BACKEND._float64[model])) == 2  # float64 passes run on the model's float64 copy


def test_structure_stays_in_the_key(monkeypatch):
    """Values that change the code stay in the key: β = 0 skips the negative half and a factor 1 is not multiplied,
    so α1β0, α2β1 and α3β2 are three traces; an optional ε (None or a number) is two. Each map equals eager."""
    model, x = cnn("keras"), cnn_input("keras")
    methods = ["lrp_alpha_1_beta_0", "lrp_alpha_2_beta_1", "lrp_alpha_3_beta_2"]
    for method in methods:
        compiled, eager = _explain(model, x, method), _eager(model, x, method, monkeypatch)
        assert np.abs(compiled - eager).max() <= 1e-5 * np.abs(eager).max(), method
    assert len(_passes(model)) == 3


def test_rule_maps_share_traces_with_array_bounds(monkeypatch):
    """Rule maps are keyed like catalog names: Z^B bounds (arrays of one shape) and Epsilon values of a composite
    are tensor inputs; bounds of another shape are another trace."""
    model, x = cnn("keras"), cnn_input("keras")
    low = np.array([-1.5, -2.0], np.float32)

    def composite(scale, epsilon):
        return lrp.Composite([("input", lrp.ZBox(low * scale, -low * scale))], default=lrp.Epsilon(epsilon))

    maps = {}
    for scale, epsilon in ((1.0, 0.1), (2.0, 0.3)):
        maps[scale] = _explain(model, x, "lrp", rules=composite(scale, epsilon))
        eager = _eager(model, x, "lrp", monkeypatch, rules=composite(scale, epsilon))
        assert np.abs(maps[scale] - eager).max() <= 1e-5 * np.abs(eager).max()
    assert np.abs(maps[1.0] - maps[2.0]).max() > 1e-3 * np.abs(maps[1.0]).max()
    assert len(_passes(model)) == 1
    _explain(model, x, "lrp", rules=lrp.Composite([("input", lrp.ZBox(-1.0, 1.0))], default=lrp.Epsilon(0.1)))
    assert len(_passes(model)) == 2
