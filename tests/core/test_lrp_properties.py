"""Properties of LRP that follow from docs/lrp.md and hold on both backends."""
import numpy as np
import pytest

import signxai
from signxai.converters.spec_models import build_keras_model, build_torch_model, random_weights
from twins import to_channels_last, torch_input

BIAS_FREE_RELU_CNN = {"input_shape": [10, 9, 2], "layers": [
    {"kind": "conv2d", "filters": 6, "kernel": 3, "padding": "same", "activation": "relu", "use_bias": False},
    {"kind": "maxpool2d", "pool": 2},
    {"kind": "conv2d", "filters": 5, "kernel": 3, "padding": "valid", "activation": "relu", "use_bias": False},
    {"kind": "flatten"},
    {"kind": "dense", "units": 8, "activation": "relu", "use_bias": False},
    {"kind": "dense", "units": 4, "use_bias": False}]}


def _bias_free_weights(spec):
    weights = random_weights(spec, seed=4)
    return {k: (np.zeros_like(v) if k.endswith("/bias") else v) for k, v in weights.items()}


@pytest.fixture(scope="module")
def bias_free():
    weights = _bias_free_weights(BIAS_FREE_RELU_CNN)
    x = np.random.RandomState(0).normal(size=(3, 10, 9, 2)).astype(np.float32)
    return (build_keras_model(BIAS_FREE_RELU_CNN, weights, "float64"),
            build_torch_model(BIAS_FREE_RELU_CNN, weights, "float64"), x)


def _both(models, x, method, **kwargs):
    keras_model, torch_model = models
    return (signxai.calculate_relevancemap(keras_model, x, method, dtype="float64", **kwargs),
            to_channels_last(signxai.calculate_relevancemap(torch_model, torch_input(x), method, dtype="float64",
                                                            **kwargs)))


def test_lrp_z_conserves_relevance_without_biases(bias_free):
    keras_model, torch_model, x = bias_free
    logits = keras_model(x.astype(np.float64)).numpy()
    targets = np.array([0, 3, 1])
    for relevance in _both((keras_model, torch_model), x, "lrp_z", target=targets):
        sums = relevance.reshape(len(x), -1).sum(axis=1)
        np.testing.assert_allclose(sums, logits[np.arange(3), targets], rtol=1e-10)


def test_lrp_z_equals_gradient_x_input_without_biases(bias_free):
    keras_model, torch_model, x = bias_free
    for lrp, gxi in zip(_both((keras_model, torch_model), x, "lrp_z"),
                        _both((keras_model, torch_model), x, "gradient_x_input")):
        assert np.abs(lrp - gxi).max() <= 1e-10 * np.abs(gxi).max()


@pytest.mark.parametrize("base", ["z", "epsilon_0_1", "epsilon_0_25_std_x", "alpha_1_beta_0",
                                  "sequential_composite_b"])
def test_lrpsign_times_input_equals_lrpz_on_positive_input(bias_free, base):
    """SIGN replaces the input-layer factor ``a`` of the Z rule by ``s(a)``, which is 1 for positive input."""
    keras_model, torch_model, x = bias_free
    positive = np.abs(x) + 0.01
    for sign_map, z_map in zip(_both((keras_model, torch_model), positive, f"lrpsign_{base}"),
                               _both((keras_model, torch_model), positive, f"lrpz_{base}")):
        assert np.abs(sign_map * positive - z_map).max() <= 1e-12 * np.abs(z_map).max()
        assert not np.allclose(sign_map, z_map)


def test_lrpsign_equals_lrpz_on_binary_input(bias_free):
    keras_model, torch_model, _ = bias_free
    ones = np.ones((2, 10, 9, 2), np.float32)
    for sign_map, z_map in zip(_both((keras_model, torch_model), ones, "lrpsign_epsilon_0_1"),
                               _both((keras_model, torch_model), ones, "lrpz_epsilon_0_1")):
        np.testing.assert_array_equal(sign_map, z_map)


def test_prefixed_name_needs_a_kernel_layer():
    import keras
    import torch

    inputs = keras.Input((6, 3))
    keras_model = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(inputs))
    torch_model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten())
    x = np.random.RandomState(1).normal(size=(2, 6, 3)).astype(np.float32)
    for model, data in ((keras_model, x), (torch_model, torch_input(x))):
        with pytest.raises(ValueError, match="no kernel layer"):
            signxai.calculate_relevancemap(model, data, "lrpsign_z")
        # the plain prefix works: average pooling alone is a Z rule
        relevance = signxai.calculate_relevancemap(model, data, "lrp_z", target=1)
        np.testing.assert_allclose(relevance.sum(axis=tuple(range(1, relevance.ndim))),
                                   data.mean(axis=1 if model is keras_model else 2)[:, 1], rtol=1e-5)
