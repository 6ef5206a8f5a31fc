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

import keras
import numpy as np
import pytest
import torch
import torchvision

import signxai

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
KERAS_FAST = {"MobileNetV3Small": 64, "EfficientNetB0": 64, "Xception": 71}
KERAS_SLOW = {"EfficientNetV2B0": 64, "ConvNeXtTiny": 64, "NASNetMobile": 64, "MobileNetV3Large": 64,
              "MobileNetV2": 64, "ResNet50": 64, "ResNet50V2": 64, "DenseNet121": 64, "InceptionV3": 75,
              "InceptionResNetV2": 75, "VGG16": 64}
CLASSES = 10


def _params(fast, slow):
    return list(fast) + [pytest.param(name, marks=pytest.mark.slow) for name in slow]


# --- builders ----------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def torch_model(name: str, bias_free: bool = False):
    torch.manual_seed(0)  # the tests' own models; the library itself never seeds
    extra = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    model = getattr(torchvision.models, name)(weights=None, num_classes=CLASSES, **extra)
    size = {**TORCH_FAST, **TORCH_SLOW}[name]
    if bias_free:
        with torch.no_grad():
            for module in model.modules():
                if getattr(module, "bias", None) is not None and not isinstance(module, torch.nn.LayerNorm):
                    module.bias.zero_()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # cumulative averages over the calibration batches
    model.train()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(8, 3, size, size, generator=generator))
    if bias_free:
        for module in norms:
            module.running_mean.zero_()
    model.eval()
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    return model, x.numpy()


@functools.lru_cache(maxsize=2)
def keras_model(name: str, bias_free: bool = False):
    size = {**KERAS_FAST, **KERAS_SLOW}[name]
    model = getattr(keras.applications, name)(weights=None, classes=CLASSES, input_shape=(size, size, 3),
                                              classifier_activation=None)
    rng = np.random.RandomState(0)
    for layer in model.layers:  # deterministic He-scaled weights from a private RandomState
        weights = layer.get_weights()
        if not weights or isinstance(layer, keras.layers.BatchNormalization):
            continue
        new = []
        for w, v in zip(weights, layer.weights):
            if "bias" in v.path:
                new.append(np.zeros_like(w) if bias_free else rng.normal(0, 0.05, w.shape).astype(w.dtype))
            elif w.ndim >= 2:
                fan_in = np.prod(w.shape[:-1]) if "depthwise" not in v.path else np.prod(w.shape[:-2])
                new.append(rng.normal(0, np.sqrt(2.0 / fan_in), w.shape).astype(w.dtype))
            else:
                new.append(w)
        layer.set_weights(new)
    # raw pixel range for the models that rescale their input themselves (EfficientNet, ConvNeXt)
    high = 255.0 if name.startswith(("EfficientNet", "ConvNeXt")) else 1.0
    rng = np.random.RandomState(2)
    calibration = rng.uniform(0, high, (8, size, size, 3)).astype(np.float32)
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # the moving statistics become those of the calibration batch
    model(calibration, training=True)
    for layer in norms:
        layer.momentum = 0.99
        if bias_free:
            layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, np.float32))
            if layer.center:
                layer.beta.assign(np.zeros(layer.beta.shape, np.float32))
    return model, rng.uniform(0, high, (2, size, size, 3)).astype(np.float32)


def _check_maps(model, x, name):
    for method, kwargs in METHODS.items():
        with warnings.catch_warnings():
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
