"""Quantus interop: ``signxai.quantus.explain_func`` inside the installed Quantus (PyTorch), and the same numbers from
signxai.metrics on the Keras 3 twin (Quantus's TensorFlow path needs Keras 2)."""
import numpy as np
import pytest
import torch

from signxai import calculate_relevancemaps
from signxai.demo import load_demo
from signxai.metrics import pixel_flipping, spearman
from signxai.quantus import explain_func

quantus = pytest.importorskip("quantus")


@pytest.fixture(scope="module")
def digits():
    return load_demo("digits")


@pytest.fixture(autouse=True)
def _keep_torch_rng():
    """Quantus's randomisation seeds torch's global generator; leave it as it was for the other tests."""
    state = torch.random.get_rng_state()
    yield
    torch.random.set_rng_state(state)


def test_explain_func_is_calculate_relevancemaps(digits):
    x, y = digits.x_channels_first[:4], digits.y[:4]
    expected = calculate_relevancemaps(digits.torch_model, x, "lrpsign_epsilon_0_1", target=y)
    np.testing.assert_array_equal(explain_func(digits.torch_model, x, y, method="lrpsign_epsilon_0_1", device="cpu"),
                                  expected)
    np.testing.assert_array_equal(explain_func(model=digits.torch_model, inputs=torch.from_numpy(x),
                                               targets=torch.from_numpy(y)[:, None], method="lrpsign_epsilon_0_1"),
                                  expected)
    keras_maps = explain_func(digits.keras_model, digits.x[:4], y, method="gradient_x_sign_mu", mu=0.5)
    np.testing.assert_array_equal(keras_maps, calculate_relevancemaps(digits.keras_model, digits.x[:4],
                                                                      "gradient_x_sign_mu", target=y, mu=0.5))
    assert keras_maps.dtype == np.float32 and keras_maps.shape == (4, 8, 8, 1)


def test_explain_func_errors(digits):
    x, y = digits.x_channels_first[:2], digits.y[:2]
    with pytest.raises(ValueError, match="needs method="):
        explain_func(digits.torch_model, x, y)
    with pytest.raises(ValueError, match="one-hot"):
        explain_func(digits.torch_model, x, np.eye(10)[y], method="gradient")
    with pytest.raises(ValueError, match="out of range"):
        explain_func(digits.torch_model, x, [0, 10], method="gradient")


def test_quantus_pixel_flipping_gives_our_curves_on_both_twins(digits):
    """Quantus's PixelFlipping (one pixel per step, constant baseline) with our explain_func = our pixel_flipping with
    the same constant replacement, on the PyTorch model and on its Keras 3 twin."""
    x, y = digits.x_channels_first[:6], digits.y[:6]
    metric = quantus.PixelFlipping(features_in_step=1, perturb_baseline=0.25, normalise=False, disable_warnings=True)
    scores = np.asarray(metric(model=digits.torch_model, x_batch=x, y_batch=y, explain_func=explain_func,
                               explain_func_kwargs={"method": "gradient"}, device="cpu"))
    maps = calculate_relevancemaps(digits.torch_model, x, "gradient", target=y)
    assert all(len(np.unique(m)) == m.size for m in maps)  # no ties, so both sorts give one removal order
    assert scores.shape == (6, 64)
    ours = pixel_flipping(digits.torch_model, x, "gradient", target=y, steps=64, replacement=0.25,
                          random_baseline=False)
    keras = pixel_flipping(digits.keras_model, digits.x[:6], "gradient", target=y, steps=64, replacement=0.25,
                           random_baseline=False)
    np.testing.assert_allclose(ours.curves[:, 1:], scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(keras.curves[:, 1:], scores, rtol=0, atol=1e-5)
    assert np.ptp(scores) > 0.5  # the curves do fall


def test_quantus_mprt_with_our_explain_func(digits):
    """Quantus's randomisation test (its own layer re-initialisation) calls explain_func on its randomised copies;
    its scores are the Spearman correlations of |R| that signxai.metrics computes for the same copies."""
    from quantus.helpers.model.pytorch_model import PyTorchModel

    x, y = digits.x_channels_first[:4], digits.y[:4]
    metric = quantus.MPRT(layer_order="top_down", seed=42, disable_warnings=True)
    scores = metric(model=digits.torch_model, x_batch=x, y_batch=y, explain_func=explain_func,
                    explain_func_kwargs={"method": "lrp_epsilon_0_1"}, device="cpu")
    original = np.abs(calculate_relevancemaps(digits.torch_model, x, "lrp_epsilon_0_1", target=y))
    wrapped = PyTorchModel(digits.torch_model, channel_first=True, softmax=False, device="cpu")
    layers = []
    for name, random_model in wrapped.get_random_layer_generator(order="top_down", seed=42):
        maps = np.abs(explain_func(random_model, x, y, method="lrp_epsilon_0_1"))
        np.testing.assert_allclose(scores[name], spearman(original, maps), rtol=0, atol=1e-10)
        layers.append(name)
    assert layers == ["dense_5", "dense_4", "conv2d_2", "conv2d_0"]
    np.testing.assert_allclose(scores["original"], 1.0, rtol=0, atol=1e-12)
