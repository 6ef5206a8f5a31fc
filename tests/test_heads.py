"""Output heads as clinical models have them (docs/api.md#targets, D22): single-logit binary heads with
``target="negative"``, (N,) regression outputs, per-timestep (N, T, K) outputs with (t, k) targets, callable targets,
and sigmoid outputs refused like softmax — in every method family, on Keras/PyTorch twins (docs/equivalence.md gates 1
and 2), against the frameworks' own autograd."""
from __future__ import annotations

import torch  # noqa: F401  (torch before TensorFlow)

import copy

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch.nn.functional as F
from torch import nn

import signxai
from gates import assert_gates, explain_both
from signxai.common.agreement import sweep_kwargs
from signxai.tf_signxai import backend as tf_backend
from signxai.torch_signxai.utils import remove_sigmoid as torch_remove_sigmoid
from signxai.utils.utils import remove_sigmoid as keras_remove_sigmoid
from twins import Twin, set_twin_weights, torch_input

T, C = 10, 2  # sequence length and input channels of every twin
FAST = {"integrated_gradients": {"steps": 6}, "smoothgrad": {"num_samples": 4}, "vargrad": {"num_samples": 4}}
# one name per family (gradient, input×gradient, SIGN, IG, SmoothGrad, VarGrad, GBP, DCN, Grad-CAM, guided Grad-CAM)
# and the LRP rules (z, ε, std-x ε, α-β, SIGN/SIGN-μ input rules, W², flat, Z^B, composites)
METHODS = ("gradient", "input_t_gradient", "gradient_x_sign", "integrated_gradients", "smoothgrad", "vargrad",
           "guided_backprop", "deconvnet", "grad_cam_timeseries", "guided_grad_cam", "lrp_z", "lrp_epsilon_0_1",
           "lrpsign_epsilon_0_25_std_x", "lrp_alpha_1_beta_0", "lrp_alpha_2_beta_1", "lrpsign_z",
           "lrpsign_epsilon_0_1_mu_0_5", "w2lrp_epsilon_0_1", "flatlrp_z", "zblrp_epsilon_0_1",
           "lrp_sequential_composite_a")
LRP = tuple(m for m in METHODS if "lrp" in m)
LINEAR_IN_THE_HEAD = ("gradient", "input_t_gradient", "gradient_x_sign", "integrated_gradients", "smoothgrad") + LRP


def kwargs_for(method, x):
    return dict(FAST.get(method, {}), **sweep_kwargs(method, x))


# --- the twins ---------------------------------------------------------------------------------------------------

class TorchHead(nn.Module):
    """Conv1d → ReLU → Conv1d → ReLU → mean over time → Linear(units); optional squeeze / sigmoid."""

    def __init__(self, units, squeeze=False, sigmoid=None):
        super().__init__()
        self.conv_a, self.conv_b, self.fc = nn.Conv1d(C, 4, 3, padding=1), nn.Conv1d(4, 5, 3, padding=1), nn.Linear(
            5, units)
        self.squeeze, self.functional_sigmoid = squeeze, sigmoid == "functional"
        self.out = nn.Sigmoid() if sigmoid == "module" else nn.Identity()

    def forward(self, x):
        y = self.fc(F.relu(self.conv_b(F.relu(self.conv_a(x)))).mean(dim=2))
        y = torch.sigmoid(y) if self.functional_sigmoid else self.out(y)
        return y.squeeze(-1) if self.squeeze else y


def keras_head(units, squeeze=False, activation=None, separate=False):
    inputs = keras.Input((T, C))
    h = keras.layers.Conv1D(4, 3, padding="same", activation="relu", name="conv_a")(inputs)
    h = keras.layers.Conv1D(5, 3, padding="same", activation="relu", name="conv_b")(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    y = keras.layers.Dense(units, activation=None if separate else activation, name="fc")(h)
    if separate == "op":
        y = keras.ops.sigmoid(y)
    elif separate:
        y = keras.layers.Activation(activation, name="probability")(y)
    return keras.Model(inputs, keras.ops.squeeze(y, axis=-1) if squeeze else y)


def head_twin(units, squeeze=False, seed=0):
    keras_model, torch_model = keras_head(units, squeeze), TorchHead(units, squeeze).eval()
    rng = np.random.RandomState(seed)
    set_twin_weights(keras_model, torch_model, ("conv_a", "conv_b", "fc"), rng, 0.8, 0.3)
    x = rng.normal(0, 1, (3, T, C)).astype(np.float32)
    return Twin(f"head_{units}{'_squeezed' if squeeze else ''}", keras_model, torch_model, x, 1)


class TorchSequence(nn.Module):
    """A per-timestep classifier: (N, C, T) → (N, T, K)."""

    def __init__(self, k):
        super().__init__()
        self.conv_a, self.conv_b, self.head = nn.Conv1d(C, 4, 3, padding=1), nn.Conv1d(4, 4, 3, padding=1), nn.Conv1d(
            4, k, 1)

    def forward(self, x):
        return self.head(F.relu(self.conv_b(F.relu(self.conv_a(x))))).permute(0, 2, 1)


def sequence_twin(k=3, seed=1):
    inputs = keras.Input((T, C))
    h = keras.layers.Conv1D(4, 3, padding="same", activation="relu", name="conv_a")(inputs)
    h = keras.layers.Conv1D(4, 3, padding="same", activation="relu", name="conv_b")(h)
    keras_model = keras.Model(inputs, keras.layers.Conv1D(k, 1, name="head")(h))
    torch_model = TorchSequence(k).eval()
    rng = np.random.RandomState(seed)
    set_twin_weights(keras_model, torch_model, ("conv_a", "conv_b", "head"), rng, 0.8, 0.3)
    x = rng.normal(0, 1, (3, T, C)).astype(np.float32)
    return Twin("per_timestep", keras_model, torch_model, x, 1)


@pytest.fixture(scope="session")
def binary():
    return head_twin(1, seed=2)  # output weights of both signs: guided backprop of −z is not zero


@pytest.fixture(scope="session")
def regression():
    """The binary twin's weights with the output squeezed to (N,)."""
    twin, source = head_twin(1, squeeze=True), head_twin(1, seed=2)
    twin.keras_model.set_weights(source.keras_model.get_weights())
    twin.torch_model.load_state_dict(source.torch_model.state_dict())
    return twin


@pytest.fixture(scope="session")
def negated():
    """The binary twin with its output layer negated: its logit is −z."""
    twin, source = head_twin(1), head_twin(1, seed=2)
    twin.keras_model.set_weights([-w if i >= 4 else w for i, w in enumerate(source.keras_model.get_weights())])
    state = {k: -v if k.startswith("fc.") else v for k, v in source.torch_model.state_dict().items()}
    twin.torch_model.load_state_dict(state)
    return twin


@pytest.fixture(scope="session")
def multiclass():
    return head_twin(4, seed=3)


@pytest.fixture(scope="session")
def sequence():
    return sequence_twin()


@pytest.fixture(scope="session")
def multilabel():
    """The multiclass twin's weights under a final sigmoid: fused (Keras) / nn.Sigmoid (PyTorch), plus the
    separate-layer and functional forms."""
    source = head_twin(4, seed=3)
    models = {"keras fused": keras_head(4, activation="sigmoid"),
              "keras layer": keras_head(4, activation="sigmoid", separate=True),
              "keras op": keras_head(4, activation="sigmoid", separate="op"),
              "torch module": TorchHead(4, sigmoid="module").eval(),
              "torch functional": TorchHead(4, sigmoid="functional").eval()}
    for name, model in models.items():
        if name.startswith("keras"):
            model.set_weights(source.keras_model.get_weights())
        else:
            model.load_state_dict(source.torch_model.state_dict())
    return source, models


def autograd(model, x, f, dtype="float64"):
    """``∂Σ_n f(y)_n/∂x`` by the framework's own autograd on the model itself; ``x`` in the model's layout. PyTorch
    in float64 on a deep copy; Keras in float32 (its float64 form is signxai's clone)."""
    if isinstance(model, nn.Module):
        model = copy.deepcopy(model).eval().to(torch.float64 if dtype == "float64" else torch.float32)
        xt = torch.tensor(np.asarray(x, dtype=dtype), requires_grad=True)
        (grad,) = torch.autograd.grad(f(model(xt)).sum(), xt)
        return grad.numpy()
    xt = tf.constant(np.asarray(x, dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(xt)
        total = tf.reduce_sum(f(model(xt, training=False)))
    return tape.gradient(total, xt).numpy()


def both(twin):
    return ((twin.keras_model, twin.x), (twin.torch_model, torch_input(twin.x)))


def explain(model, x, method="gradient", **kwargs):
    return signxai.calculate_relevancemap(model, x, method, **kwargs)


def assert_close(a, b, rtol):
    peak = max(np.abs(b).max(), 1e-30)
    assert np.abs(a - b).max() <= rtol * peak, (np.abs(a - b).max(), peak)


# --- single-logit binary heads (N, 1) ----------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_binary_head_negative_class_cross_framework(binary, method):
    assert_gates(binary, method, target="negative", **kwargs_for(method, binary.x))


@pytest.mark.parametrize("method", ["gradient", "lrp_epsilon_0_1", "guided_backprop", "grad_cam_timeseries"])
def test_binary_head_default_is_the_logit_cross_framework(binary, method):
    assert_gates(binary, method, **kwargs_for(method, binary.x))


def test_binary_head_gradients_are_autograd(binary):
    for model, x in both(binary):
        logit = explain(model, x, dtype="float64")
        np.testing.assert_array_equal(explain(model, x, target=0, dtype="float64"), logit)
        reference = autograd(model, x, lambda y: y[:, 0], "float64" if isinstance(model, nn.Module) else "float32")
        assert_close(logit, reference, 1e-12 if isinstance(model, nn.Module) else 1e-6)
        np.testing.assert_array_equal(explain(model, x, target="negative", dtype="float64"), -logit)


@pytest.mark.parametrize("method", LINEAR_IN_THE_HEAD)
def test_negative_class_negates_every_map_linear_in_its_head(binary, method):
    """−z explained: gradients −∂z/∂x and the LRP head −z·e; every LRP rule is linear in the relevance it
    receives, so the map is exactly the negated map of the logit."""
    for model, x in both(binary):
        kwargs = kwargs_for(method, x)
        np.testing.assert_array_equal(explain(model, x, method, target="negative", **kwargs),
                                      -explain(model, x, method, target=0, **kwargs))


@pytest.mark.parametrize("method", ["gradient", "guided_backprop", "deconvnet", "grad_cam_timeseries",
                                    "guided_grad_cam", "vargrad", "integrated_gradients"])
def test_negative_class_is_the_negated_model(binary, negated, method):
    """``target="negative"`` explains −z: the same map as the logit of a copy whose output layer is negated
    (W, b → −W, −b), for the families that are not linear in their head too (guided backprop gates the negated
    signal, Grad-CAM rectifies it, VarGrad squares it)."""
    for (model, x), (minus, _) in zip(both(binary), both(negated)):
        kwargs = kwargs_for(method, x)
        expected = explain(minus, x, method, target=0, dtype="float64", **kwargs)
        assert np.abs(expected).max() > 0
        assert_close(explain(model, x, method, target="negative", dtype="float64", **kwargs), expected, 1e-12)


def test_binary_head_target_errors(binary):
    for model, x in both(binary):
        with pytest.raises(ValueError, match=r"out of range.*0 … 0.*'negative' explains the negative class"):
            explain(model, x, target=1)
        with pytest.raises(ValueError, match=r"'negative' for the negative class"):
            explain(model, x, "lrp_epsilon_0_1", target="positive")


def test_negative_needs_a_single_logit(multiclass):
    for model, x in both(multiclass):
        for method in ("gradient", "lrp_z", "smoothgrad"):
            with pytest.raises(ValueError, match=r"single-logit binary head.*4 outputs.*lambda y: -y\[:, c\]"):
                explain(model, x, method, target="negative")


# --- regression outputs (N,) -------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["gradient", "integrated_gradients", "guided_backprop", "grad_cam_timeseries",
                                    "lrp_epsilon_0_1", "lrp_alpha_1_beta_0", "lrpsign_z"])
def test_regression_output_is_the_single_output(regression, binary, method):
    """(N,) equals the (N, 1) head with the same weights, in each framework, and the twins agree."""
    kwargs = kwargs_for(method, binary.x)
    for target in (None, "negative"):
        for (model, x), (same, _) in zip(both(regression), both(binary)):
            assert_close(explain(model, x, method, target=target, **kwargs),
                         explain(same, x, method, target=target, **kwargs), 1e-6)
    assert_gates(regression, method, **kwargs)


def test_regression_gradient_is_autograd(regression):
    model, x = both(regression)[1]
    assert_close(explain(model, x, dtype="float64"), autograd(model, x, lambda y: y), 1e-12)
    model, x = both(regression)[0]
    assert_close(explain(model, x), autograd(model, x, lambda y: y), 1e-6)


# --- per-timestep outputs (N, T, K) ------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_per_timestep_target_cross_framework(sequence, method):
    assert_gates(sequence, method, target=(4, 2), **kwargs_for(method, sequence.x))


@pytest.mark.parametrize("method", ["gradient", "lrp_epsilon_0_1", "guided_backprop", "smoothgrad"])
def test_per_timestep_targets_per_sample(sequence, method):
    pairs = np.array([[0, 1], [9, 0], [5, 2]])
    assert_gates(sequence, method, target=pairs, **kwargs_for(method, sequence.x))
    for model, x in both(sequence):
        kwargs = kwargs_for(method, x)
        batch = explain(model, x, method, target=pairs, **kwargs)
        for n, pair in enumerate(pairs):
            assert_close(batch[n], explain(model, x[n], method, target=tuple(pair), **kwargs), 1e-6)


def test_per_timestep_gradient_is_autograd(sequence):
    model, x = both(sequence)[1]
    assert_close(explain(model, x, target=(4, 2), dtype="float64"), autograd(model, x, lambda y: y[:, 4, 2]), 1e-12)
    model, x = both(sequence)[0]
    assert_close(explain(model, x, target=(4, 2)), autograd(model, x, lambda y: y[:, 4, 2]), 1e-6)
    # the receptive field: a target at t = 0 has no gradient beyond t = 2 (two kernel-3 convolutions)
    assert not explain(model, x, target=(0, 1))[:, 3:].any()


@pytest.mark.parametrize("target, message", [
    (None, r"per-timestep outputs.*give target=\(t, k\)"), ("max_activation", r"\(t, k\)"),
    ("negative", r"has no meaning here"), (3, r"not valid.*\(t, k\)"), ((10, 0), r"\(10, 0\).*out of range"),
    ((0, 3), r"out of range.*0 ≤ index 1 ≤ 2"), ((0, -4), r"\(0, -4\).*out of range"), ((1, 2, 0), r"shape \(3, 3\)"),
    (np.zeros((2, 2), int), r"shape \(2, 2\).*3 sample"), ((1.0, 2.0), "not valid"), ("all", "not valid")])
def test_per_timestep_target_errors(sequence, target, message):
    for model, x in both(sequence):
        for method in ("gradient", "lrp_epsilon_0_1", "integrated_gradients", "random_uniform"):
            with pytest.raises(ValueError, match=message):
                explain(model, x, method, target=target)


# --- callable targets --------------------------------------------------------------------------------------------

def difference(y):
    return y[:, 2] - y[:, 0]


@pytest.mark.parametrize("method", METHODS)
def test_callable_target_cross_framework(multiclass, method):
    assert_gates(multiclass, method, target=difference, **kwargs_for(method, multiclass.x))


@pytest.mark.parametrize("method", LINEAR_IN_THE_HEAD)
def test_linear_callable_is_the_difference_of_class_maps(multiclass, method):
    for model, x in both(multiclass):
        kwargs = kwargs_for(method, x)
        expected = (explain(model, x, method, target=2, dtype="float64", **kwargs)
                    - explain(model, x, method, target=0, dtype="float64", **kwargs))
        assert_close(explain(model, x, method, target=difference, dtype="float64", **kwargs), expected, 1e-12)


def test_callable_on_per_timestep_outputs(sequence):
    """A callable sees the whole (N, T, K) output: the summed logit of class 1 over time."""
    for model, x in both(sequence):
        total = explain(model, x, "lrp_epsilon_0_1", target=lambda y: tf.reduce_sum(y[:, :, 1], axis=1)
                        if isinstance(y, tf.Tensor) else y[:, :, 1].sum(dim=1), dtype="float64")
        parts = sum(explain(model, x, "lrp_epsilon_0_1", target=(t, 1), dtype="float64") for t in range(T))
        assert_close(total, parts, 1e-12)


def test_nonlinear_callable_gradient_family(multiclass):
    """Gradients follow any differentiable f (∂Σf(y)/∂x, autograd's chain rule); IG/SmoothGrad fix the
    coefficients C = ∂f/∂y at the explained x (D4): SmoothGrad of f = y_1² is 2·y_1(x)·SmoothGrad of class 1."""
    def squared(y):
        return y[:, 1] ** 2
    for model, x in both(multiclass):
        is_torch = isinstance(model, nn.Module)
        dtype = "float64" if is_torch else "float32"
        assert_close(explain(model, x, target=squared, dtype=dtype), autograd(model, x, squared, dtype),
                     1e-12 if is_torch else 1e-6)
        logits = (model(torch.tensor(x)).detach().numpy() if is_torch else model(x).numpy()).astype(np.float64)
        scale = (2 * logits[:, 1]).reshape((-1,) + (1,) * (x.ndim - 1))
        assert_close(explain(model, x, "smoothgrad", target=squared, num_samples=4, dtype="float64"),
                     scale * explain(model, x, "smoothgrad", target=1, num_samples=4, dtype="float64"), 1e-6)
    assert_gates(multiclass, "gradient", target=squared)


@pytest.mark.parametrize("f", [lambda y: y[:, 1] ** 2, lambda y: y[:, 0] + 1.0], ids=["square", "offset"])
def test_lrp_refuses_a_nonlinear_callable(multiclass, f):
    for model, x in both(multiclass):
        with pytest.raises(ValueError, match=r"needs f linear in the outputs.*use a gradient method"):
            explain(model, x, "lrp_epsilon_0_1", target=f)
        assert np.abs(explain(model, x, "gradient", target=f)).max() > 0  # the gradient family explains it


def test_callable_target_errors(multiclass):
    for model, x in both(multiclass):
        ones = (lambda y: tf.ones(3)) if isinstance(model, keras.Model) else (lambda y: torch.ones(3))
        for method in ("gradient", "lrp_z", "integrated_gradients"):
            with pytest.raises(ValueError, match=r"returned shape \(3, 1\).*shape \(3,\)"):
                explain(model, x, method, target=lambda y: y[:, :1])
            with pytest.raises(ValueError, match="returned float"):
                explain(model, x, method, target=lambda y: 1.0)
            with pytest.raises(ValueError, match="does not depend on the model outputs"):
                explain(model, x, method, target=ones)


# --- multi-label sigmoid heads: refused like softmax (D22) -----------------------------------------------------

@pytest.mark.parametrize("name", ["keras fused", "keras layer", "keras op", "torch module", "torch functional"])
def test_sigmoid_output_is_refused_with_the_fix(multilabel, name):
    source, models = multilabel
    model = models[name]
    x = source.x if name.startswith("keras") else torch_input(source.x)
    fix = "signxai.utils.utils.remove_sigmoid" if name.startswith("keras") else "remove_sigmoid"
    for method in ("gradient", "smoothgrad", "lrp_epsilon_0_1", "guided_backprop", "grad_cam_timeseries"):
        with pytest.raises(ValueError, match=rf"applies a sigmoid to the model's output.*{fix}"):
            explain(model, x, method, target=1)


@pytest.mark.parametrize("name", ["keras fused", "keras layer", "torch module"])
def test_remove_sigmoid_explains_the_label_logit(multilabel, name):
    source, models = multilabel
    keras_side = name.startswith("keras")
    model = models[name]
    stripped = (keras_remove_sigmoid if keras_side else torch_remove_sigmoid)(model)
    reference, x = (source.keras_model, source.x) if keras_side else (source.torch_model, torch_input(source.x))
    for method in ("gradient", "lrp_epsilon_0_1", "guided_backprop"):
        np.testing.assert_array_equal(explain(stripped, x, method, target=2), explain(reference, x, method, target=2))
    with pytest.raises(ValueError, match="sigmoid"):  # the caller's model keeps its sigmoid
        explain(model, x, target=2)


def test_remove_sigmoid_refuses_what_it_cannot_strip(multilabel):
    source, models = multilabel
    with pytest.raises(ValueError, match=r"applied by a function in forward\(\)"):
        torch_remove_sigmoid(models["torch functional"])
    with pytest.raises(ValueError, match="is a keras.ops call"):
        keras_remove_sigmoid(models["keras op"])
    with pytest.raises(ValueError, match="not produced by a sigmoid"):
        keras_remove_sigmoid(source.keras_model)
    with pytest.raises(ValueError, match="not produced by a sigmoid"):
        torch_remove_sigmoid(source.torch_model)


# --- compiled passes: one per kind of target ---------------------------------------------------------------------

def test_one_compiled_pass_per_target_kind(monkeypatch):
    monkeypatch.setattr(tf_backend, "COMPILE_PASSES", True)
    twin = head_twin(1, seed=5)  # a model of its own: its compiled passes are only this test's
    model, x = twin.keras_model, twin.x
    for target in (None, 0, "negative", [0, 0, 0]):
        explain(model, x, target=target)
        explain(model, x, "lrp_epsilon_0_1", target=target)
    for f in (lambda y: 2.0 * y[:, 0], lambda y: -y[:, 0]):
        explain(model, x, target=f)
    compiled = tf_backend.BACKEND._compiled[model]
    kinds = {name: [k for k in compiled if k[0] == name] for name in ("gradients", "graph_backward")}
    assert len(kinds["gradients"]) == 2 and len(kinds["graph_backward"]) == 1, list(compiled)
    for function in compiled.values():
        assert function.experimental_get_tracing_count() == 1


def test_batch_functions_accept_the_new_targets(sequence, binary):
    for model, x in both(sequence):
        one = signxai.calculate_relevancemaps(model, x, "lrp_z", target=(3, 1))
        assert_close(one, np.stack([explain(model, x[n:n + 1], "lrp_z", target=(3, 1))[0] for n in range(len(x))]),
                     1e-6)
    keras_map, torch_map = explain_both(binary, "gradient", "float64", target="negative")
    assert_close(keras_map, torch_map, 1e-9)


# --- explain_dataset ---------------------------------------------------------------------------------------------

def test_explain_dataset_single_output_heads(binary, regression, sequence, multiclass, tmp_path):
    """A single-logit head with target='negative' and an (N,) output are stored with logits of width 1; per-timestep
    outputs and callable targets are refused with the alternative named."""
    from signxai.dataset import load_results

    for name, twin in (("binary", binary), ("regression", regression)):
        for model, x in both(twin):
            out = tmp_path / f"{name}_{type(model).__name__}"
            signxai.explain_dataset(model, x, ["gradient", "lrp_epsilon_0_1"], out, target="negative", batch_size=2,
                                    format="npy", progress=False)
            stored = load_results(out)
            for method in ("gradient", "lrp_epsilon_0_1"):
                expected = np.concatenate([signxai.calculate_relevancemaps(model, x[i:i + 2], method,
                                                                           target="negative") for i in (0, 2)])
                assert np.asarray(stored.maps[method]).tobytes() == expected.tobytes()
            assert np.asarray(stored.logits).shape == (len(x), 1) and not np.asarray(stored.targets).any()
            assert stored.attrs["signxai"]["target"] == "negative"
    model, x = both(multiclass)[0]
    with pytest.raises(ValueError, match="single-logit binary head.*4 outputs"):
        signxai.explain_dataset(model, x, "gradient", tmp_path / "m", target="negative", format="npy", progress=False)
    with pytest.raises(ValueError, match="a callable target cannot be stored"):
        signxai.explain_dataset(model, x, "gradient", tmp_path / "c", target=difference, format="npy", progress=False)
    model, x = both(sequence)[1]
    with pytest.raises(ValueError, match=r"per-timestep.*target=\(t, k\)"):
        signxai.explain_dataset(model, x, "gradient", tmp_path / "s", format="npy", progress=False)


# --- the whole catalog (slow tier) -------------------------------------------------------------------------------

def _catalog():
    return sorted(signxai.list_methods())


@pytest.mark.slow
@pytest.mark.parametrize("method", _catalog())
def test_every_catalog_name_on_the_negative_class(binary, method):
    """Every catalog name explains −z of the binary twin identically in both frameworks (gates 1 and 2); every LRP
    name gives exactly the negated map of the logit."""
    kwargs = _applicable(method, binary)
    assert_gates(binary, method, target="negative", **kwargs)
    if "lrp" in method:
        for model, x in both(binary):
            np.testing.assert_array_equal(explain(model, x, method, target="negative", **kwargs),
                                          -explain(model, x, method, target=0, **kwargs))


@pytest.mark.slow
@pytest.mark.parametrize("method", _catalog())
def test_every_catalog_name_on_per_timestep_and_callable_targets(sequence, multiclass, method):
    assert_gates(sequence, method, target=np.array([[0, 1], [9, 0], [5, 2]]), **_applicable(method, sequence))
    assert_gates(multiclass, method, target=difference, **_applicable(method, multiclass))


def _applicable(method, twin):
    from signxai.common.agreement import not_applicable

    reason = not_applicable(method, twin.keras_model)
    if reason is not None:
        pytest.skip(reason)
    return kwargs_for(method, twin.x)


# --- the command line ----------------------------------------------------------------------------------------------

def test_command_line_targets(binary, sequence, tmp_path):
    """``signxai explain --target negative`` and ``--target 4,2`` give the API's maps."""
    from signxai.cli import main

    for name, twin, given, target in (("binary", binary, "negative", "negative"),
                                      ("sequence", sequence, "4,2", (4, 2))):
        model_file, x_file, out = tmp_path / f"{name}.keras", tmp_path / f"{name}.npy", tmp_path / f"{name}_map.npy"
        twin.keras_model.save(model_file)
        np.save(x_file, twin.x)
        assert main(["explain", "--model", str(model_file), "--input", str(x_file), "--method", "lrp_epsilon_0_1",
                     "--target", given, "--out", str(out)]) == 0
        np.testing.assert_allclose(np.load(out), explain(twin.keras_model, twin.x, "lrp_epsilon_0_1", target=target),
                                   rtol=1e-6, atol=1e-7)
    assert main(["explain", "--model", str(tmp_path / "binary.keras"), "--input", str(tmp_path / "binary.npy"),
                 "--method", "gradient", "--target", "first"]) == 2
