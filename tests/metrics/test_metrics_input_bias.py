"""Input-bias correlation: against SciPy, layout independence, twins, and what it detects."""
import numpy as np
import pytest
from scipy import stats

from signxai import calculate_relevancemaps
from signxai.metrics import input_bias_correlation
from twins import torch_input


def test_matches_scipy_on_absolute_values():
    rng = np.random.RandomState(0)
    x = rng.normal(size=(4, 5, 5, 3))
    R = rng.normal(size=x.shape) * np.abs(x) + rng.normal(0, 0.3, size=x.shape)
    R[1] = np.round(R[1])  # ties
    result = input_bias_correlation(None, x, R)
    for n in range(4):
        assert result.pearson[n] == pytest.approx(stats.pearsonr(np.abs(x[n]).ravel(), np.abs(R[n]).ravel())[0],
                                                  abs=1e-12)
        assert result.spearman[n] == pytest.approx(stats.spearmanr(np.abs(x[n]).ravel(), np.abs(R[n]).ravel())[0],
                                                   abs=1e-12)
    assert result.mean_pearson == pytest.approx(result.pearson.mean())


def test_layout_does_not_matter_and_constant_maps_give_nan():
    rng = np.random.RandomState(1)
    x, R = rng.normal(size=(3, 4, 4, 2)), rng.normal(size=(3, 4, 4, 2))
    R[2] = 0.5
    channels_last = input_bias_correlation(None, x, R)
    channels_first = input_bias_correlation(None, torch_input(x), torch_input(R))
    # the same pairs in another order: equal up to the summation order
    np.testing.assert_allclose(channels_first.pearson, channels_last.pearson, rtol=1e-12, atol=0)
    np.testing.assert_allclose(channels_first.spearman, channels_last.spearman, rtol=1e-12, atol=0)
    assert np.isnan(channels_last.pearson[2]) and np.isnan(channels_last.spearman[2])
    assert channels_last.mean_pearson == pytest.approx(np.mean(channels_last.pearson[:2]))


def test_twins_agree_and_x_multiplied_maps_show_the_input_bias(digits):
    """On [0, 1] digits input×gradient is zero wherever x is: |R| follows |x|; the gradient itself does not."""
    results = {}
    for method in ("gradient", "gradient_x_input"):
        keras_result = input_bias_correlation(digits.keras_model, digits.x[:10], method)
        torch_result = input_bias_correlation(digits.torch_model, digits.x_channels_first[:10], method)
        np.testing.assert_allclose(torch_result.pearson, keras_result.pearson, rtol=0, atol=1e-5)
        np.testing.assert_allclose(torch_result.spearman, keras_result.spearman, rtol=0, atol=1e-5)
        results[method] = keras_result
    assert results["gradient_x_input"].mean_spearman > results["gradient"].mean_spearman + 0.3


def test_method_name_uses_the_target_and_kwargs(digits):
    x = digits.x[:3]
    by_name = input_bias_correlation(digits.keras_model, x, "gradient_x_sign_mu", target=[1, 2, 3],
                                     explain_kwargs={"mu": 0.5})
    maps = calculate_relevancemaps(digits.keras_model, x, "gradient_x_sign_mu", target=[1, 2, 3], mu=0.5)
    by_maps = input_bias_correlation(None, x, maps)
    np.testing.assert_array_equal(by_name.pearson, by_maps.pearson)
