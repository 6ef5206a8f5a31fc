"""Bad input to the metrics: a clear ValueError saying what is wrong and how to fix it."""
import numpy as np
import pytest
from torch import nn

import keras

from signxai.metrics import input_bias_correlation, model_parameter_randomisation, pixel_flipping


def test_map_of_the_wrong_shape(digits):
    x = digits.x[:2]
    for R in (np.zeros((2, 8, 8)), np.zeros((3, 8, 8, 1)), np.zeros((2, 1, 8, 8))):
        with pytest.raises(ValueError, match=r"R has shape .* but X has shape \(2, 8, 8, 1\).*one relevance map"):
            pixel_flipping(digits.keras_model, x, R)
        with pytest.raises(ValueError, match="R has shape"):
            input_bias_correlation(digits.keras_model, x, R)
        with pytest.raises(ValueError, match="R has shape"):
            input_bias_correlation(None, x, R)
    with pytest.raises(ValueError, match="non-finite"):
        pixel_flipping(digits.keras_model, x, np.full(x.shape, np.nan))


@pytest.mark.parametrize("steps", [0, -3, 2.5, True, "10"])
def test_steps_must_be_a_positive_integer(digits, steps):
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        pixel_flipping(digits.keras_model, digits.x[:1], np.zeros((1, 8, 8, 1)), steps=steps)


def test_non_classifiers_are_rejected():
    regression = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"classifier .*K >= 2"):
        pixel_flipping(regression, x, np.zeros_like(x))
    torch_regression = nn.Sequential(nn.Linear(4, 1))
    with pytest.raises(ValueError, match="classifier"):
        pixel_flipping(torch_regression, x, np.zeros_like(x))
    with pytest.raises(ValueError, match="classifier"):
        model_parameter_randomisation(torch_regression, x, "gradient")
    with pytest.raises(ValueError, match="classifier"):
        input_bias_correlation(torch_regression, x, "gradient")


def test_softmax_models_and_non_models_are_rejected():
    softmax = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="softmax"):
        pixel_flipping(softmax, x, np.zeros_like(x))
    with pytest.raises(ValueError, match="softmax"):
        pixel_flipping(nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1)), x, np.zeros_like(x))
    with pytest.raises(TypeError, match="neither a keras.Model"):
        pixel_flipping(object(), x, np.zeros_like(x))


def test_bad_options(digits):
    x, R = digits.x[:2], np.zeros((2, 8, 8, 1))
    model = digits.keras_model
    with pytest.raises(ValueError, match="features must be one of"):
        pixel_flipping(model, x, R, features="pixel")
    with pytest.raises(ValueError, match="replacement must be 'uniform' or a finite number"):
        pixel_flipping(model, x, R, replacement="black")
    with pytest.raises(ValueError, match="low <= high"):
        pixel_flipping(model, x, R, value_range=(1, 0))
    with pytest.raises(ValueError, match=r"value_range must be \(low, high\)"):
        pixel_flipping(model, x, R, value_range=(0, [1, 2]))
    with pytest.raises(ValueError, match="seed"):
        pixel_flipping(model, x, R, seed=2 ** 32)
    with pytest.raises(ValueError, match="out of range"):
        pixel_flipping(model, x, R, target=10)
    with pytest.raises(ValueError, match="explain_kwargs"):
        pixel_flipping(model, x, R, explain_kwargs={"mu": 0.5})
    with pytest.raises(ValueError, match="names a method"):
        input_bias_correlation(None, x, "gradient")


def test_inputs_need_a_batch_axis(digits):
    with pytest.raises(ValueError, match="leading batch axis"):
        pixel_flipping(digits.keras_model, digits.x[0], np.zeros((8, 8, 1)))
    with pytest.raises(ValueError, match="leading batch axis"):
        pixel_flipping(digits.torch_model, digits.x_channels_first[0], np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="non-finite"):
        pixel_flipping(digits.keras_model, np.full((1, 8, 8, 1), np.inf), np.zeros((1, 8, 8, 1)))
