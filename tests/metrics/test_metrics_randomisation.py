"""Model-parameter randomisation: identical randomised twins, untouched user models, the test's semantics."""
import numpy as np
import pytest
import torch
from torch import nn

import keras

from signxai import calculate_relevancemaps
from signxai.converters.spec_models import build_torch_model, layer_names
from signxai.metrics import model_parameter_randomisation, randomised_copy, spearman, ssim
from twins import residual_twin, spec_twin, to_channels_last, torch_input

CONV1D_FLATTEN = {"input_shape": [12, 3], "layers": [
    {"kind": "conv1d", "filters": 4, "kernel": 3, "padding": "same", "activation": "relu"},
    {"kind": "flatten"},
    {"kind": "dropout", "rate": 0.5},
    {"kind": "dense", "units": 5, "activation": "relu"},
    {"kind": "dense", "units": 3}]}


def _keras_layout_weights(spec, keras_model):
    params = {"dense": ("kernel", "bias"), "conv1d": ("kernel", "bias"), "conv2d": ("kernel", "bias")}
    weights = {}
    for name, layer, klayer in zip(layer_names(spec), spec["layers"], keras_model.layers):
        for param, value in zip(params.get(layer["kind"], ()), klayer.get_weights()):
            weights[f"{name}/{param}"] = value
    return weights


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("which", ["digits", "conv1d_flatten"])
def test_twins_get_identical_randomised_weights(digits, which):
    """The Keras copy's weights, carried to PyTorch by the converters' layout rules, are the PyTorch copy's."""
    if which == "digits":
        spec, keras_model, torch_model, x = digits.spec, digits.keras_model, digits.torch_model, digits.x[:2]
    else:
        twin = spec_twin("conv1d_flatten", CONV1D_FLATTEN, n=2)
        spec, keras_model, torch_model, x = CONV1D_FLATTEN, twin.keras_model, twin.torch_model, twin.x
    for layers in (1, 2, None):
        keras_copy = randomised_copy(keras_model, x, layers, seed=11)
        torch_copy = randomised_copy(torch_model, torch_input(x), layers, seed=11)
        expected = build_torch_model(spec, _keras_layout_weights(spec, keras_copy)).state_dict()
        got = torch_copy.state_dict()
        assert expected.keys() == got.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)
        changed = [not np.array_equal(a, b) for a, b in zip(keras_copy.get_weights(), keras_model.get_weights())]
        assert sum(changed) == 2 * (layers or len(changed) // 2)  # kernel and bias of each randomised layer
        assert changed[-1] and (layers is None or not changed[0])  # from the top


def test_the_callers_model_is_not_touched(digits):
    keras_before = [w.copy() for w in digits.keras_model.get_weights()]
    torch_before = _state(digits.torch_model)
    digits.torch_model.train()
    try:
        model_parameter_randomisation(digits.torch_model, digits.x_channels_first[:2], "gradient")
        assert all(m.training for m in digits.torch_model.modules())
        assert all(not m._forward_hooks for m in digits.torch_model.modules())
    finally:
        digits.torch_model.eval()
    model_parameter_randomisation(digits.keras_model, digits.x[:2], "gradient")
    for w, w0 in zip(digits.keras_model.get_weights(), keras_before):
        np.testing.assert_array_equal(w, w0)
    for key, value in _state(digits.torch_model).items():
        torch.testing.assert_close(value, torch_before[key], rtol=0, atol=0)


def test_twins_give_the_same_similarities(digits):
    keras_result = model_parameter_randomisation(digits.keras_model, digits.x[:6], "lrpsign_epsilon_0_1", seed=2)
    torch_result = model_parameter_randomisation(digits.torch_model, digits.x_channels_first[:6],
                                                 "lrpsign_epsilon_0_1", seed=2)
    assert keras_result.layers == torch_result.layers == ("dense_5", "dense_4", "conv2d_2", "conv2d_0")
    for field in ("spearman", "spearman_abs", "ssim"):
        a, b = getattr(keras_result, field), getattr(torch_result, field)
        assert a.shape == (6, 4)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)


def test_branching_twins_agree():
    """A Keras functional graph with an Add and its PyTorch twin written with functional ops."""
    twin = residual_twin()
    keras_result = model_parameter_randomisation(twin.keras_model, twin.x, "lrp_epsilon_0_1")
    torch_result = model_parameter_randomisation(twin.torch_model, torch_input(twin.x), "lrp_epsilon_0_1")
    assert keras_result.layers == torch_result.layers == ("fc", "conv2d_1", "conv_b", "conv_a")
    np.testing.assert_allclose(torch_result.spearman, keras_result.spearman, rtol=0, atol=1e-5)
    np.testing.assert_allclose(torch_result.ssim, keras_result.ssim, rtol=0, atol=1e-5)


def test_columns_are_the_similarities_of_the_randomised_copies(digits):
    x = digits.x[:4]
    result = model_parameter_randomisation(digits.keras_model, x, "gradient", seed=5)
    original = calculate_relevancemaps(digits.keras_model, x, "gradient", target=result.targets).astype(np.float64)
    for step in range(len(result.layers)):
        maps = calculate_relevancemaps(randomised_copy(digits.keras_model, x, step + 1, seed=5), x, "gradient",
                                       target=result.targets).astype(np.float64)
        np.testing.assert_array_equal(result.spearman[:, step], spearman(original, maps))
        np.testing.assert_array_equal(result.spearman_abs[:, step], spearman(np.abs(original), np.abs(maps)))
        peaks = [np.abs(m.sum(-1)).max(axis=(1, 2)).reshape(-1, 1, 1) for m in (original, maps)]
        np.testing.assert_allclose(result.ssim[:, step], ssim(original.sum(-1) / peaks[0], maps.sum(-1) / peaks[1],
                                                              data_range=2.0), rtol=0, atol=1e-12)


def test_independent_mode_randomises_one_layer_at_a_time(digits):
    x = digits.x_channels_first[:4]
    cascading = model_parameter_randomisation(digits.torch_model, x, "gradient", seed=1)
    independent = model_parameter_randomisation(digits.torch_model, x, "gradient", mode="independent", seed=1)
    np.testing.assert_array_equal(independent.spearman[:, 0], cascading.spearman[:, 0])  # top layer alone: same
    assert not np.allclose(independent.spearman[:, -1], cascading.spearman[:, -1])


def test_a_model_independent_method_fails_the_sanity_check_and_gradient_passes(digits):
    x = digits.x[:6]
    blind = model_parameter_randomisation(digits.keras_model, x, "random_uniform")
    np.testing.assert_array_equal(blind.spearman, np.ones((6, 4)))
    gradient = model_parameter_randomisation(digits.keras_model, x, "gradient")
    assert np.all(gradient.spearman[:, -1] < 0.5)


def test_randomised_weights_keep_the_layer_scale_and_zero_biases():
    keras_model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(40, activation="relu"),
                                    keras.layers.Dense(4, bias_initializer="zeros")])
    keras_model.layers[0].set_weights([np.random.RandomState(0).normal(0, 0.2, (30, 40)).astype(np.float32),
                                       np.full(40, 0.3, np.float32)])
    x = np.random.RandomState(1).normal(size=(2, 30)).astype(np.float32)
    copy_ = randomised_copy(keras_model, x)
    kernel, bias = copy_.layers[0].get_weights()
    assert kernel.std() == pytest.approx(keras_model.layers[0].kernel.numpy().std(), rel=0.1)
    np.testing.assert_array_equal(bias, np.zeros(40))  # a constant bias has σ = 0
    np.testing.assert_array_equal(copy_.layers[1].get_weights()[1], np.zeros(4))


def test_time_series_have_no_ssim():
    twin = spec_twin("conv1d_flatten", CONV1D_FLATTEN, n=2)
    keras_result = model_parameter_randomisation(twin.keras_model, twin.x, "gradient")
    torch_result = model_parameter_randomisation(twin.torch_model, torch_input(twin.x), "gradient")
    assert keras_result.ssim is None and torch_result.ssim is None
    np.testing.assert_allclose(torch_result.spearman, keras_result.spearman, rtol=0, atol=1e-5)
    assert to_channels_last(torch_input(twin.x)).shape == twin.x.shape


def test_unsupported_layers_and_bad_arguments_raise(digits):
    with pytest.raises(ValueError, match="scale|parameters"):
        randomised_copy(_ScaledModel(), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="layers must be an integer in 1 … 4"):
        randomised_copy(digits.keras_model, digits.x[:1], 5)
    with pytest.raises(ValueError, match="mode"):
        model_parameter_randomisation(digits.keras_model, digits.x[:1], "gradient", mode="bottom_up")
    with pytest.raises(ValueError, match="method name"):
        model_parameter_randomisation(digits.keras_model, digits.x[:1], np.zeros((1, 8, 8, 1)))
    with pytest.raises(ValueError, match="seed"):
        model_parameter_randomisation(digits.keras_model, digits.x[:1], "gradient", seed=-1)


class _ScaledModel(nn.Module):
    """A Linear followed by a learned elementwise scale: a parameter outside the supported layer kinds."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.out = _Scale()

    def forward(self, x):
        return self.out(self.fc(x))


class _Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))

    def forward(self, x):
        return x * self.scale
