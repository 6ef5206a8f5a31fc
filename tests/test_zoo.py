"""Model-zoo architectures (torchvision, keras.applications) with random weights: every method family runs on both
backends and gives finite, non-zero maps of the input's shape; LRP-z conserves relevance on bias-free variants.

BatchNorm statistics are calibrated on random batches so that activations are of order 1 (with default statistics
an untrained network's activations can fall below the BN rule's stabiliser and LRP maps vanish; the library warns
then, and these tests turn that warning into a failure). No weights are downloaded. The bigger architectures run
under the ``slow`` marker (``./test.sh --slow``).
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

import signxai
from signxai.zoo import keras_application, torchvision_model

# one or more representatives of every family of the catalog (signxai.methods.method_families())
METHODS = {
    "gradient": {}, "gradient_x_input": {}, "gradient_x_sign": {}, "guided_backprop": {}, "deconvnet": {},
    "integrated_gradients": {"steps": 4}, "smoothgrad": {"num_samples": 3}, "vargrad": {"num_samples": 3},
    "grad_cam": {}, "guided_grad_cam": {}, "lrp_z": {}, "lrp_epsilon_0_1": {}, "lrpsign_epsilon_0_25_std_x": {},
    "lrpz_epsilon_0_1_std_x": {}, "lrp_alpha_1_beta_0": {}, "lrp_alpha_2_beta_1": {},
    "lrp_sequential_composite_a": {}, "lrp_sequential_composite_b": {}, "w2lrp_epsilon_0_1": {},
    "flatlrp_z": {}, "zblrp_z": {"low": 0.0, "high": 1.0}, "lrpsign_z": {},
}

TORCH_FAST = {"mobilenet_v3_small": 64, "efficientnet_b0": 64, "regnet_y_400mf": 64, "shufflenet_v2_x1_0": 64,
              "squeezenet1_1": 64, "resnet18": 64, "mnasnet0_5": 64, "convnext_tiny": 64}
TORCH_SLOW = {"densenet121": 64, "resnet50": 64, "mobilenet_v2": 64, "mobilenet_v3_large": 64, "vgg16": 64,
              "efficientnet_v2_s": 64, "regnet_x_400mf": 64, "resnext50_32x4d": 64, "googlenet": 96,
              "inception_v3": 96, "alexnet": 96, "wide_resnet50_2": 64}
# The default run explains one Keras application with every family (MobileNetV3Small: depthwise convolutions, hard
# swish, squeeze-excitation gates, Rescaling); EfficientNetB0 and Xception add no layer kind that the Keras layer zoo
# of tests/converters/test_zoo_conversion.py does not explain with every family (Normalization, swish, separable
# convolutions), so their every-family runs are slow while their conservation checks stay in the default run.
KERAS_FAST = {"MobileNetV3Small": 64}
KERAS_SLOW = {"EfficientNetB0": 64, "Xception": 71, "EfficientNetV2B0": 64, "ConvNeXtTiny": 64, "NASNetMobile": 64,
              "MobileNetV3Large": 64, "MobileNetV2": 64, "ResNet50": 64, "ResNet50V2": 64, "DenseNet121": 64,
              "InceptionV3": 75, "InceptionResNetV2": 75, "VGG16": 64}
CLASSES = 10


def _params(fast, slow):
    return list(fast) + [pytest.param(name, marks=pytest.mark.slow) for name in slow]


# --- builders (signxai.zoo: random weights, calibrated BatchNorm statistics) ------------------------------------

@functools.lru_cache(maxsize=2)
def torch_model(name: str, bias_free: bool = False):
    return torchvision_model(name, size={**TORCH_FAST, **TORCH_SLOW}[name], classes=CLASSES, bias_free=bias_free)


@functools.lru_cache(maxsize=2)
def keras_model(name: str, bias_free: bool = False):
    return keras_application(name, size={**KERAS_FAST, **KERAS_SLOW}[name], classes=CLASSES, bias_free=bias_free)


# TensorFlow compiles every pass by default, and tracing a pass of a zoo model costs several of its calls: the Keras
# every-family tests would spend ~3.5 of their ~4.5 minutes tracing passes that run once. These methods, one per
# kind of compiled pass (input gradient, LRP backward, guided backward, Grad-CAM), run compiled on every
# architecture; the others run eagerly (the same Python code; compiled = eager is tests/test_compiled_passes.py).
COMPILED_ON_ZOO = ("gradient", "lrp_epsilon_0_1", "lrp_sequential_composite_b", "guided_backprop", "grad_cam")


def _check_maps(model, x, name):
    import signxai.tf_signxai.backend as tf_backend

    for method, kwargs in METHODS.items():
        with warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
            if method not in COMPILED_ON_ZOO:
                patch.setattr(tf_backend, "COMPILE_PASSES", False)
            warnings.simplefilter("error", RuntimeWarning)  # vanished relevance is a failure here
            maps = signxai.calculate_relevancemaps(model, x, method, **kwargs)
        assert maps.shape == x.shape and maps.dtype == np.float32, (name, method)
        assert np.isfinite(maps).all(), (name, method)
        for i, sample in enumerate(maps):
            assert np.abs(sample).max() > 0, f"{name} {method}: all-zero map for sample {i}"


@pytest.mark.parametrize("name", _params(TORCH_FAST, TORCH_SLOW))
def test_torchvision_every_family(name):
    model, x = torch_model(name)
    _check_maps(model, x, name)


@pytest.mark.parametrize("name", _params(KERAS_FAST, KERAS_SLOW))
def test_keras_applications_every_family(name):
    model, x = keras_model(name)
    _check_maps(model, x, name)


# --- conservation ------------------------------------------------------------------------------------------------
# LRP-z on a network without biases (kernel biases 0, BatchNorm with μ_run = 0 and β = 0) conserves relevance: the
# map sums to the explained logit. Every node kind conserves (Z rules without bias, pass-through, routing by the
# gradient, signal-take-all at gates); the only loss is the BN rule's 1e-7·sign0 stabiliser, relative ~1e-7 per BN
# layer at activations of order 1.

def _assert_conserves(model, x, logits):
    maps = signxai.calculate_relevancemaps(model, x, "lrp_z", dtype="float64")
    target = logits.argmax(axis=1)
    totals = maps.reshape(len(x), -1).sum(axis=1)
    expected = logits[np.arange(len(x)), target]
    assert np.abs(expected).min() > 1e-3
    np.testing.assert_allclose(totals, expected, rtol=1e-4)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0", "shufflenet_v2_x1_0", "regnet_y_400mf",
                                  pytest.param("densenet121", marks=pytest.mark.slow)])
def test_torchvision_lrp_z_conserves_without_biases(name):
    model, x = torch_model(name, bias_free=True)
    from signxai.torch_signxai.backend import BACKEND
    logits = BACKEND.logits(BACKEND.model_for(model, "float64"), x.astype(np.float64))
    _assert_conserves(model, x, logits)


@pytest.mark.parametrize("name", ["MobileNetV3Small", "EfficientNetB0", "Xception",
                                  pytest.param("ConvNeXtTiny", marks=pytest.mark.slow)])
def test_keras_lrp_z_conserves_without_biases(name):
    model, x = keras_model(name, bias_free=True)
    from signxai.tf_signxai.backend import BACKEND
    logits = BACKEND.logits(BACKEND.model_for(model, "float64"), x.astype(np.float64))
    _assert_conserves(model, x, logits)
