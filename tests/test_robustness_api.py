"""Robustness of the public API on both backends (docs/api.md, §3.3): method names, kwargs, inputs, batch axis, targets.

Every test runs on a Keras 3 model and on its PyTorch twin (same weights, channels-first).
"""
from __future__ import annotations

import re

import torch  # noqa: F401  (import torch before tensorflow: NOTES.md)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import signxai  # noqa: E402
import signxai.tf_signxai  # noqa: E402
import signxai.torch_signxai  # noqa: E402
from signxai.methods import CATALOG, resolve_method  # noqa: E402

from robustness_models import BACKENDS, K, assert_close, cnn, cnn_input, mlp, vectors  # noqa: E402

RANGE = f"0 … {K - 1}"  # how every target error names the valid range (docs/api.md#targets)
# Few examples, no shrinking (a failure is reported as found): each file stays within its time budget.
HYPOTHESIS = settings(max_examples=25, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module", params=BACKENDS)
def case(request):
    """(backend, CNN model, batch of 3 inputs in the backend's layout)."""
    return request.param, cnn(request.param), cnn_input(request.param)


@pytest.fixture(scope="module")
def mlps():
    return {backend: mlp(backend) for backend in BACKENDS}


def explain(model, x, method="gradient", **kwargs):
    return signxai.calculate_relevancemap(model, x, method, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Method names (docs/methods.md#names, D15)

SUGGESTION = re.compile(r"Did you mean: (.*)\?")


@pytest.mark.parametrize("name, expected", [
    ("gradiant", "gradient"),
    ("Gradient", "gradient"),                        # names are case-sensitive
    ("smoothgrad_x_inputs", "smoothgrad_x_input"),
    ("lrp_epsilon_0_1_stdx", "lrp_epsilon_0_1_std_x"),
    ("lrp_epsilonn_0_1", "lrp_epsilon_0_1"),
    ("integrated_gradient", "integrated_gradients"),
    ("grad_cam_VGG16", "grad_cam_VGG16ILSVRC"),
])
def test_unknown_name_suggests_catalog_names(case, name, expected):
    _, model, x = case
    with pytest.raises(ValueError, match="Did you mean") as info:
        explain(model, x, name)
    suggestions = SUGGESTION.search(str(info.value)).group(1).split(", ")
    assert expected in suggestions
    assert 1 <= len(suggestions) <= 3 and all(s in CATALOG for s in suggestions)
    assert repr(name) in str(info.value)


@pytest.mark.parametrize("name, fragment", [
    ("", "Unknown method"),
    ("xyzzy_qwerty_123", "Unknown method"),
    ("lrp_alpha_1", "Unknown method"),                      # alpha without beta
    ("lrp_epsilon_0_1_mu_0_5", "'_mu' suffix is allowed only with the 'lrpsign' prefix"),
    ("lrp_z_VGG16ILSVRC", "'_VGG16ILSVRC' suffix is allowed only with the 'zblrp' prefix"),
    ("gradient_x_input_x_input", "Unknown method"),
    ("gradient_", "Unknown method"),
    ("_gradient", "Unknown method"),
    ("lrp_epsilon_0.1", "Unknown method"),
    ("lrp_epsilon_1e-3", "Unknown method"),
])
def test_malformed_names_raise_value_error(case, name, fragment):
    _, model, x = case
    with pytest.raises(ValueError, match=re.escape(fragment)):
        explain(model, x, name)


_WORDS = sorted({w for name in CATALOG for w in name.split("_")} | {"neg", "mu", "x", "std", "0", "1", "", "Mu", "1e3"})
_NAMES = st.one_of(st.text(max_size=24),
                   st.lists(st.sampled_from(_WORDS), min_size=1, max_size=8).map("_".join),
                   st.sampled_from(sorted(CATALOG)).flatmap(lambda n: st.text(max_size=3).map(lambda s: n + s)))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_NAMES)
def test_parser_raises_only_value_error_on_random_strings(name):
    try:
        method = resolve_method(name)
    except ValueError:
        return
    assert method.name == name


@HYPOTHESIS
@given(name=_NAMES)
def test_api_raises_only_value_error_on_random_strings(case, name):
    backend, model, x = case
    try:
        result = explain(model, x[:1], name)
    except ValueError:
        return
    assert result.shape == x[:1].shape and result.dtype == np.float32 and np.isfinite(result).all()


def test_non_string_method_is_a_type_error(case):
    _, model, x = case
    with pytest.raises(TypeError, match="must be a str"):
        explain(model, x, None)


# ---------------------------------------------------------------------------------------------------------------
# Keyword parameters (docs/methods.md#parameters)

@pytest.mark.parametrize("name, kwargs", [
    ("lrp_epsilon_0_1", {"epsilon": 0.2}),
    ("lrp_epsilon_0_25_std_x", {"stdfactor": 0.5}),
    ("lrp_alpha_1_beta_0", {"alpha": 2.0}),
    ("lrp_alpha_1_beta_0", {"beta": 1.0}),
    ("gradient_x_sign_mu_0_5", {"mu": -0.5}),
    ("lrpsign_epsilon_0_1_mu_neg_0_5", {"mu": 0.5}),
    ("grad_cam_MNISTCNN", {"layer": "conv2d_0"}),
])
def test_kwarg_conflicting_with_the_name(case, name, kwargs):
    _, model, x = case
    with pytest.raises(ValueError, match="conflicts with the value embedded in the method name"):
        explain(model, x, name, **kwargs)


@pytest.mark.parametrize("name, kwargs", [
    ("lrp_epsilon_0_1", {"epsilon": 0.1}),
    ("lrp_alpha_1_beta_0", {"alpha": 1, "beta": 0}),
    ("gradient_x_sign_mu_0_5", {"mu": 0.5}),
    ("lrp_epsilon_0_25_std_x", {"stdfactor": 0.25}),
])
def test_kwarg_repeating_the_embedded_value_is_allowed(case, name, kwargs):
    _, model, x = case
    np.testing.assert_array_equal(explain(model, x, name, **kwargs), explain(model, x, name))


@pytest.mark.parametrize("name, explicit", [
    ("lrp_epsilon", ("lrp_epsilon_0_1", {"epsilon": 0.1})),
    ("gradient_x_sign_mu", ("gradient_x_sign_mu_0_5", {"mu": 0.5})),
    ("lrp_alpha_beta", ("lrp_alpha_2_beta_1", {"alpha": 2, "beta": 1})),
])
def test_parameter_given_as_kwarg_equals_embedded(case, name, explicit):
    _, model, x = case
    embedded, kwargs = explicit
    np.testing.assert_array_equal(explain(model, x, name, **kwargs), explain(model, x, embedded))


@pytest.mark.parametrize("alias, primary, value", [
    ("neuron_selection", "target", 1),
    ("neuron_selection_mode", "target", 1),
    ("batchmode", "batched", True),
    ("last_conv_layer_name", "layer", "conv2d_0"),
])
def test_alias_and_primary_together_raise(case, alias, primary, value):
    _, model, x = case
    with pytest.raises(ValueError, match=f"{primary}=.*{alias}=|{alias}=.*{primary}="):
        explain(model, x, "grad_cam", **{alias: value, primary: value})


def test_aliases_alone_equal_their_primary_names(case):
    backend, model, x = case
    layer = "conv2d_0"
    np.testing.assert_array_equal(explain(model, x, "gradient", neuron_selection=2),
                                  explain(model, x, "gradient", target=2))
    by_target = explain(model, x, "gradient", target=2)
    np.testing.assert_array_equal(explain(model, x, "gradient", neuron_selection_mode=2), by_target)
    argmax = explain(model, x, "gradient")
    np.testing.assert_array_equal(explain(model, x, "gradient", neuron_selection_mode="max_activation"), argmax)
    assert not np.array_equal(by_target, argmax)  # class 2 is not every sample's argmax: the alias selects
    with pytest.raises(ValueError, match="target 'first' is not valid"):
        explain(model, x, "gradient", neuron_selection_mode="first")
    np.testing.assert_array_equal(explain(model, x, "gradient", batchmode=True), explain(model, x, "gradient"))
    np.testing.assert_array_equal(explain(model, x, "grad_cam", last_conv_layer_name=layer),
                                  explain(model, x, "grad_cam", layer=layer))


def test_seed_compatible_entry_points(case):
    backend, model, x = case
    expected = explain(model, x, "lrp_epsilon_0_1", target=2)
    if backend == "keras":
        np.testing.assert_array_equal(signxai.tf_signxai.calculate_relevancemap("lrp_epsilon_0_1", x, model,
                                                                                neuron_selection=2), expected)
        np.testing.assert_array_equal(signxai.tf_signxai.calculate_relevancemap("gradient", x, model),
                                      explain(model, x, "gradient"))
        # the 1.x module path and the 1.x diagnostic script's keyword
        from signxai.tf_signxai.methods.wrappers import calculate_relevancemap
        assert calculate_relevancemap is signxai.tf_signxai.calculate_relevancemap
        np.testing.assert_array_equal(calculate_relevancemap("lrp_epsilon_0_1", x, model, neuron_selection_mode=2),
                                      expected)
    else:
        np.testing.assert_array_equal(signxai.torch_signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_1",
                                                                                   target_class=2), expected)
        np.testing.assert_array_equal(signxai.torch_signxai.calculate_relevancemap(model, x, "gradient"),
                                      explain(model, x, "gradient"))


@pytest.mark.parametrize("name, kwargs, accepted", [
    ("gradient", {"epsilon": 0.1}, ["target", "batched", "dtype"]),
    ("lrp_z", {"epsilon": 0.1}, ["target", "batched", "dtype"]),
    ("lrp_epsilon_0_1", {"stdfactor": 0.1}, ["epsilon", "target"]),
    ("smoothgrad", {"steps": 10}, ["num_samples", "noise_level", "seed"]),
    ("integrated_gradients", {"num_samples": 3}, ["steps", "reference"]),
    ("grad_cam", {"epsilon": 1.0}, ["layer"]),
    ("random_uniform", {"noise_level": 0.1}, ["seed"]),
    ("gradient", {"colour": "red"}, ["target", "batched", "dtype"]),
])
def test_unknown_kwargs_are_type_errors_listing_accepted(case, name, kwargs, accepted):
    _, model, x = case
    with pytest.raises(TypeError) as info:
        explain(model, x, name, **kwargs)
    message = str(info.value)
    assert repr(next(iter(kwargs))) in message and "accepts" in message
    for key in accepted:
        assert key in message.split("accepts")[1], (key, message)


def test_mu_for_a_name_without_mu_points_to_the_mu_name(case):
    _, model, x = case
    with pytest.raises(TypeError, match="gradient_x_sign_mu"):
        explain(model, x, "gradient_x_sign", mu=0.5)


@pytest.mark.parametrize("name, kwargs, key, constraint", [
    ("lrp_epsilon", {"epsilon": 0}, "epsilon", "> 0"),
    ("lrp_epsilon", {"epsilon": -0.1}, "epsilon", "> 0"),
    ("lrp_epsilon", {"epsilon": float("nan")}, "epsilon", "> 0"),
    ("lrp_epsilon", {"epsilon": float("inf")}, "epsilon", "> 0"),
    ("lrp_epsilon", {"epsilon": "0.1"}, "epsilon", "> 0"),
    ("lrp_epsilon_0", {}, "epsilon", "> 0"),
    ("lrp_epsilon_std_x", {"stdfactor": 0}, "stdfactor", "> 0"),
    ("lrp_epsilon_std_x", {"stdfactor": -1.0}, "stdfactor", "> 0"),
    ("lrp_epsilon_0_std_x", {}, "stdfactor", "> 0"),
    ("integrated_gradients", {"steps": 1}, "steps", "integer >= 2"),
    ("integrated_gradients", {"steps": 0}, "steps", "integer >= 2"),
    ("integrated_gradients", {"steps": 2.5}, "steps", "integer >= 2"),
    ("integrated_gradients", {"steps": True}, "steps", "integer >= 2"),
    ("integrated_gradients", {"reference": np.array([np.nan])}, "reference", "finite"),
    ("smoothgrad", {"num_samples": 0}, "num_samples", "integer >= 1"),
    ("vargrad", {"num_samples": -3}, "num_samples", "integer >= 1"),
    ("smoothgrad", {"noise_level": -0.1}, "noise_level", ">= 0"),
    ("lrp_alpha_beta", {"alpha": -1.0, "beta": 0.0}, "alpha", ">= 0"),
    ("lrp_alpha_beta", {"alpha": 1.0, "beta": -0.5}, "beta", ">= 0"),
    ("lrp_alpha_1_beta_0", {"alpha": -1.0}, "alpha", ">= 0"),
    ("zblrp_z", {"low": 1.0, "high": 0.0}, "low", "<= high"),
    ("zblrp_z_VGG16ILSVRC", {"low": 200.0}, "low", "<= high"),
    ("zblrp_z", {"low": float("nan"), "high": 1.0}, "low", "finite"),
    ("smoothgrad", {"seed": -1}, "seed", "[0, 2**32)"),
    ("smoothgrad", {"seed": 2**32}, "seed", "[0, 2**32)"),
    ("vargrad", {"seed": 1.5}, "seed", "[0, 2**32)"),
    ("random_uniform", {"seed": -1}, "seed", "[0, 2**32)"),
    ("gradient_x_sign_mu", {"mu": float("nan")}, "mu", "finite"),
])
def test_out_of_range_parameters(case, name, kwargs, key, constraint):
    _, model, x = case
    with pytest.raises(ValueError) as info:
        explain(model, x, name, **kwargs)
    message = str(info.value)
    assert key in message and constraint in message, message


@pytest.mark.parametrize("name, fragment", [
    ("lrp_epsilon", "epsilon="),
    ("lrp_epsilon_std_x", "stdfactor="),
    ("lrp_alpha_beta", "alpha="),
    ("gradient_x_sign_mu", "mu="),
    ("zblrp_epsilon_0_1", "low= and high="),
])
def test_missing_required_parameters(case, name, fragment):
    _, model, x = case
    with pytest.raises(ValueError, match="requires") as info:
        explain(model, x, name)
    assert fragment in str(info.value)


@pytest.mark.parametrize("name, kwargs", [
    ("integrated_gradients", {"steps": 2}),
    ("smoothgrad", {"num_samples": 1, "seed": 2**32 - 1}),
    ("vargrad", {"num_samples": 2, "noise_level": 0.0, "seed": np.uint32(7)}),
    ("lrp_epsilon", {"epsilon": 1e-12}),
    ("lrp_alpha_beta", {"alpha": 0, "beta": 0}),
    ("zblrp_z", {"low": -1.0, "high": -1.0}),
    ("gradient_x_sign_mu", {"mu": -3}),
])
def test_boundary_parameters_are_accepted(case, name, kwargs):
    _, model, x = case
    result = explain(model, x, name, **kwargs)
    assert result.shape == x.shape and result.dtype == np.float32 and np.isfinite(result).all()


@pytest.mark.parametrize("dtype", ["float16", "int32", "double", None])
def test_invalid_dtype(case, dtype):
    _, model, x = case
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        explain(model, x, dtype=dtype)


def test_noise_level_zero_smoothgrad_is_the_gradient(case):
    _, model, x = case
    assert_close(explain(model, x, "smoothgrad", noise_level=0.0, num_samples=3), explain(model, x), 1e-6)
    np.testing.assert_array_equal(explain(model, x, "vargrad", noise_level=0.0, num_samples=3), 0.0)


# ---------------------------------------------------------------------------------------------------------------
# Inputs (docs/api.md#arguments, §2.2)

@pytest.mark.parametrize("shape", [(6, 6), (6,), (1, 1, 6, 6, 2), ()])
def test_wrong_rank_names_the_expected_rank(case, shape):
    _, model, _ = case
    with pytest.raises(ValueError, match="samples with 3 axes.*rank 3 or a batch of rank 4"):
        explain(model, np.zeros(shape, np.float32))


def test_wrong_rank_dense_models(mlps):
    with pytest.raises(ValueError, match="samples with 1 axes"):
        explain(mlps["keras"], np.zeros((2, 3, 5), np.float32))
    # PyTorch without a leading convolution: any x with ndim != 1 is a batch (docs/api.md#batch-axis); a 3-D one gives a
    # (1, 2, K)-shaped output, which is not (N, K).
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        explain(mlps["torch"], np.zeros((1, 2, 5), np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_scalar_input_is_a_value_error(mlps, backend):
    with pytest.raises(ValueError, match="axes"):
        explain(mlps[backend], np.float32(1.0))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kind", ["numpy", "torch", "tf"])
def test_non_finite_input_rejected(case, bad, kind):
    _, model, x = case
    x = x.copy()
    x[1, 1, 2, 0] = bad
    given = {"numpy": x, "torch": torch.tensor(x), "tf": tf.constant(x)}[kind]
    for method in ("gradient", "lrp_epsilon_0_1", "smoothgrad"):
        with pytest.raises(ValueError, match=r"1 non-finite value\(s\)"):
            explain(model, given, method)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_float64_overflow_to_inf_is_rejected(case):
    _, model, x = case
    with pytest.raises(ValueError, match="non-finite"):
        explain(model, x.astype(np.float64) * 1e300)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_input_rejected_before_any_computation(backend):
    """A model that counts its forward calls: a non-finite input must not reach it."""
    import keras

    calls = []
    if backend == "keras":
        class Counting(keras.layers.Layer):
            def call(self, t):
                calls.append(1)
                return t * 1.0
        inp = keras.Input((5,))
        model = keras.Model(inp, keras.layers.Dense(K)(Counting()(inp)))
    else:
        class Counting(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(5, K)

            def forward(self, t):
                calls.append(1)
                return self.fc(t)
        model = Counting()
    x = vectors()
    calls.clear()
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        explain(model, bad)
    assert calls == []
    explain(model, x)
    assert calls  # the counter does see a normal call


def test_empty_batch(case):
    _, model, x = case
    for method in ("gradient", "lrp_epsilon_0_1", "grad_cam"):
        with pytest.raises(ValueError, match="empty batch"):
            explain(model, x[:0], method)
    with pytest.raises(ValueError, match="empty batch"):
        signxai.calculate_relevancemaps(model, x[:0], "gradient")


@pytest.mark.parametrize("method", ["gradient", "lrp_epsilon_0_1", "grad_cam"])
def test_integer_and_bool_inputs_equal_their_float32_cast(case, method):
    """uint8 images (and other integer/bool arrays) are converted to float32 (docs/api.md#arguments)."""
    _, model, x = case
    image = np.clip(np.abs(x) * 60, 0, 255).astype(np.uint8)
    for given_x in (image, image.astype(np.int64), image.astype(np.int16), x > 0):
        result = explain(model, given_x, method)
        assert result.dtype == np.float32 and result.shape == x.shape
        np.testing.assert_array_equal(result, explain(model, given_x.astype(np.float32), method))
    np.testing.assert_array_equal(explain(model, torch.tensor(image), method),
                                  explain(model, image.astype(np.float32), method))
    np.testing.assert_array_equal(explain(model, tf.constant(image), method),
                                  explain(model, image.astype(np.float32), method))


def test_float16_and_float64_inputs_are_cast_to_float32(case):
    _, model, x = case
    expected = explain(model, x.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(explain(model, x.astype(np.float16)), expected)
    np.testing.assert_array_equal(explain(model, torch.tensor(x).half()), expected)
    np.testing.assert_array_equal(explain(model, x.astype(np.float64)), explain(model, x))


@pytest.mark.parametrize("kind", ["torch", "tf"])
def test_bfloat16_tensors_are_cast_to_float32(case, kind):
    """docs/api.md#arguments: a tensor of the model's framework (or the other's) is converted to float32."""
    _, model, x = case
    given = torch.tensor(x).to(torch.bfloat16) if kind == "torch" else tf.cast(tf.constant(x), tf.bfloat16)
    rounded = (given.float().numpy() if kind == "torch" else tf.cast(given, tf.float32).numpy())
    np.testing.assert_array_equal(explain(model, given), explain(model, rounded))


@pytest.mark.parametrize("bad", [np.array([["a"] * 6] * 6), np.ones((1, 6, 6, 2), complex)])
def test_non_numeric_inputs(case, bad):
    _, model, _ = case
    with pytest.raises(ValueError, match="numeric|real-valued"):
        explain(model, bad)


def _views(x):
    """Non-contiguous and read-only variants of the batch ``x`` (N, a, b, c) with equal spatial sides."""
    reversed_axis1 = np.ascontiguousarray(x[:, ::-1])[:, ::-1]         # negative strides
    swapped = np.swapaxes(np.ascontiguousarray(np.swapaxes(x, 2, 3)), 2, 3)  # a transposed view
    padded = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    padded[..., ::2] = x
    read_only = x.copy()
    read_only.setflags(write=False)
    read_only_view = np.swapaxes(np.ascontiguousarray(np.swapaxes(x, 2, 3)), 2, 3)
    read_only_view.setflags(write=False)
    return {"negative strides": reversed_axis1, "transposed view": swapped, "strided": padded[..., ::2],
            "Fortran order": np.asfortranarray(x), "read-only": read_only, "read-only view": read_only_view,
            "broadcast (zero strides, read-only)": np.broadcast_to(x[:1], x.shape)}


@pytest.mark.parametrize("method", ["gradient", "lrp_epsilon_0_1", "smoothgrad", "grad_cam"])
def test_non_contiguous_and_read_only_inputs(case, method):
    backend, model, x = case
    contiguous = explain(model, x, method)
    for label, view in _views(x).items():
        assert not (view.flags.c_contiguous and view.flags.writeable), label
        snapshot = view.copy()
        expected = contiguous if np.array_equal(view, x) else explain(model, np.ascontiguousarray(view), method)
        np.testing.assert_array_equal(explain(model, view, method), expected, err_msg=label)
        np.testing.assert_array_equal(view, snapshot, err_msg=label)


def test_non_contiguous_tensors(case):
    _, model, x = case
    expected = explain(model, x)
    t = torch.tensor(np.ascontiguousarray(np.swapaxes(x, 2, 3))).transpose(2, 3)
    assert not t.is_contiguous()
    np.testing.assert_array_equal(explain(model, t), expected)
    np.testing.assert_array_equal(explain(model, tf.transpose(tf.constant(np.swapaxes(x, 2, 3)), [0, 1, 3, 2])),
                                  expected)


@pytest.mark.parametrize("kind", ["torch", "tf", "tf.Variable", "list"])
@pytest.mark.parametrize("method", ["gradient", "lrp_epsilon_0_1", "grad_cam"])
def test_tensor_inputs_of_either_framework(case, kind, method):
    """Observed and asserted: each framework's tensors work with either backend's model, identically to NumPy."""
    _, model, x = case
    given = {"torch": lambda: torch.tensor(x), "tf": lambda: tf.constant(x), "tf.Variable": lambda: tf.Variable(x),
             "list": lambda: x.tolist()}[kind]()
    result = explain(model, given, method)
    assert isinstance(result, np.ndarray) and result.dtype == np.float32
    np.testing.assert_array_equal(result, explain(model, x, method))


def test_torch_tensor_requiring_grad_is_left_alone(case):
    _, model, x = case
    leaf = torch.tensor(x, requires_grad=True)
    non_leaf = leaf * 1.0
    for given_x in (leaf, non_leaf):
        np.testing.assert_array_equal(explain(model, given_x), explain(model, x))
        np.testing.assert_array_equal(explain(model, given_x, "lrp_epsilon_0_1"), explain(model, x, "lrp_epsilon_0_1"))
    assert leaf.grad is None and leaf.requires_grad
    np.testing.assert_array_equal(leaf.detach().numpy(), x)


@pytest.mark.parametrize("method", ["gradient", "lrp_epsilon_0_1", "grad_cam", "random_uniform", "smoothgrad"])
def test_unbatched_input_gives_unbatched_result(case, method):
    _, model, x = case
    single = explain(model, x[0], method)
    assert single.shape == x[0].shape and single.dtype == np.float32
    np.testing.assert_array_equal(single, explain(model, x[:1], method)[0])
    np.testing.assert_array_equal(explain(model, x[0], method, batched=False), single)
    np.testing.assert_array_equal(explain(model, x[0], method, target=[1]), explain(model, x[0], method, target=1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_unbatched_dense_input(mlps, backend):
    x = vectors()
    single = explain(mlps[backend], x[1])
    assert single.shape == (5,)
    np.testing.assert_array_equal(single, explain(mlps[backend], x[1:2])[0])


def test_batched_override_contradicting_the_model(case):
    _, model, x = case
    with pytest.raises(ValueError, match="batched=False contradicts the model"):
        explain(model, x, batched=False)
    with pytest.raises(ValueError, match="batched=True contradicts the model"):
        explain(model, x[0], batched=True)
    with pytest.raises(ValueError, match="batchmode|batched"):
        explain(model, x[0], batchmode=True)
    with pytest.raises(ValueError, match="batched must be True, False or None"):
        explain(model, x, batched="yes")
    with pytest.raises(ValueError):
        signxai.calculate_relevancemaps(model, x[0], "gradient")
    with pytest.raises(ValueError, match="do not pass batched"):
        signxai.calculate_relevancemaps(model, x, "gradient", batched=True)
    np.testing.assert_array_equal(explain(model, x, batched=True), explain(model, x))
    np.testing.assert_array_equal(signxai.calculate_relevancemaps(model, x, "gradient"), explain(model, x))


def test_batched_true_on_a_1d_input_of_a_dense_torch_model(mlps):
    with pytest.raises(ValueError, match="batch axis"):
        explain(mlps["torch"], vectors()[0], batched=True)
    with pytest.raises(ValueError, match="contradicts"):
        explain(mlps["keras"], vectors()[0], batched=True)


# ---------------------------------------------------------------------------------------------------------------
# Targets (docs/api.md#targets, D14)

BAD_TARGETS = {
    "K": K, "-1": -1, "huge": 2**70, "float": 1.0, "numpy float": np.float32(1), "nan": float("nan"), "str": "1",
    "'all'": "all", "bool": True, "numpy bool": np.bool_(False), "bytes": b"1", "complex": 1 + 0j,
    "wrong length": [0, 1], "too long": [0, 1, 2, 3], "2-D": [[0], [1], [2]], "2-D array": np.zeros((1, 3), int),
    "empty": [], "float list": [0.0, 1.0, 2.0], "bool list": [True, False, True], "None in list": [0, None, 1],
    "out of range in list": [0, K, 1], "negative in list": [0, -1, 1], "huge in list": [2**70, 1, 1],
    "float tensor": torch.tensor(1.0), "set": {0, 1, 2}, "dict": {"a": 1}, "object": object(),
}


@pytest.mark.parametrize("label", sorted(BAD_TARGETS))
def test_invalid_targets_name_the_range(case, label):
    _, model, x = case
    with pytest.raises(ValueError) as info:
        explain(model, x, "gradient", target=BAD_TARGETS[label])
    assert RANGE in str(info.value), str(info.value)


def test_invalid_targets_for_other_families(case):
    _, model, x = case
    for method in ("lrp_epsilon_0_1", "grad_cam", "smoothgrad", "integrated_gradients", "random_uniform"):
        with pytest.raises(ValueError, match=RANGE):
            explain(model, x, method, target=K)
    with pytest.raises(ValueError, match=RANGE):
        explain(model, x[0], "gradient", target=[0, 1])  # unbatched: length 1


@HYPOTHESIS
@given(target=st.one_of(st.integers(), st.floats(), st.text(max_size=4), st.booleans(),
                        st.lists(st.integers(), max_size=5), st.lists(st.floats(), min_size=3, max_size=3)))
def test_random_targets_work_or_name_the_range(case, target):
    _, model, x = case
    valid = (isinstance(target, int) and not isinstance(target, bool) and 0 <= target < K) or (
        isinstance(target, list) and len(target) == len(x) and all(isinstance(t, int) and 0 <= t < K for t in target))
    if valid:
        expected = np.stack([explain(model, x[i:i + 1], target=int(np.broadcast_to(target, len(x))[i]))[0]
                             for i in range(len(x))])
        assert_close(explain(model, x, target=target), expected, 1e-6)
    else:
        with pytest.raises(ValueError, match=RANGE):
            explain(model, x, target=target)


@pytest.mark.parametrize("method", ["gradient", "lrp_epsilon_0_1", "grad_cam"])
def test_integer_like_targets(case, method):
    _, model, x = case
    expected = explain(model, x, method, target=2)
    for given_target in (np.int64(2), np.int32(2), np.uint8(2), np.array(2), torch.tensor(2), tf.constant(2),
                  [2, 2, 2], (2, 2, 2), np.array([2, 2, 2], np.uint64), torch.tensor([2, 2, 2]),
                  tf.constant([2, 2, 2])):
        np.testing.assert_array_equal(explain(model, x, method, target=given_target), expected,
                                      err_msg=repr(given_target))
    np.testing.assert_array_equal(explain(model, x, method, target="max_activation"), explain(model, x, method))


@pytest.mark.parametrize("method", ["gradient", "lrp_epsilon_0_1", "grad_cam", "smoothgrad", "guided_backprop"])
def test_per_sample_targets_equal_separate_calls(case, method):
    _, model, x = case
    targets = [3, 0, 2]
    batch = explain(model, x, method, target=targets)
    separate = np.stack([explain(model, x[i], method, target=t) for i, t in enumerate(targets)])
    assert_close(batch, separate)
    for given_target in (np.array(targets), torch.tensor(targets), tf.constant(targets), tuple(targets)):
        np.testing.assert_array_equal(explain(model, x, method, target=given_target), batch)


def test_default_target_is_the_argmax_per_sample(case):
    backend, model, x = case
    if backend == "keras":
        logits = model(x, training=False).numpy()
    else:
        with torch.no_grad():
            logits = model(torch.tensor(x)).numpy()
    assert len(set(logits.argmax(1))) > 1  # the samples have different argmaxes: the test can tell them apart
    np.testing.assert_array_equal(explain(model, x), explain(model, x, target=logits.argmax(1)))
