"""Model-zoo architectures with random weights and calibrated BatchNorm statistics, for tests, benchmarks and sanity
checks without downloads.

An untrained network with default BatchNorm statistics (mean 0, variance 1) has activations far from order 1:
they can shrink below the BN rule's 1e-7 stabiliser, and LRP maps then vanish (docs/layers.md, vanishing relevance).
The builders here calibrate the statistics on random batches from a private ``RandomState``/``Generator``; nothing
global is seeded.

    model, x = torchvision_model("efficientnet_b0", size=64)          # (module in eval mode, (2, 3, 64, 64) batch)
    model, x = keras_application("MobileNetV3Small", size=64)          # (keras.Model, (2, 64, 64, 3) batch)
"""
from __future__ import annotations

import numpy as np

# keras.applications that rescale raw pixels themselves (their calibration and example inputs lie in [0, 255])
_RAW_PIXEL_PREFIXES = ("EfficientNet", "ConvNeXt", "RegNet")


def torchvision_model(name: str, size: int = 64, classes: int = 10, bias_free: bool = False, seed: int = 0,
                      batch: int = 2):
    """``(model, x)``: ``torchvision.models.<name>(weights=None)`` in eval mode with calibrated BatchNorm statistics,
    and a float32 batch of ``batch`` uniform [0, 1) samples.

    ``bias_free=True`` zeroes every kernel bias and, after calibration, every BN running mean and shift, so that
    LRP-z conserves relevance (tests).
    """
    import torch
    import torchvision

    extra = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    fork = torch.random.fork_rng(devices=[])  # the global torch RNG is restored afterwards
    with fork:
        torch.random.manual_seed(seed)
        model = getattr(torchvision.models, name)(weights=None, num_classes=classes, **extra)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        if bias_free:
            for module in model.modules():
                if isinstance(module, (torch.nn.Linear, torch.nn.modules.conv._ConvNd)) and module.bias is not None:
                    module.bias.zero_()
        for module in norms:
            module.reset_running_stats()
            module.momentum = None  # cumulative averages over the calibration batches
        model.train()
        generator = torch.Generator().manual_seed(seed + 1)
        for _ in range(3):
            model(torch.rand(8, 3, size, size, generator=generator))
        model.eval()
        for module in norms:
            module.momentum = 0.1
            if bias_free:
                module.running_mean.zero_()
                if module.bias is not None:
                    module.bias.zero_()
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed + 2))
    return model, x.numpy()


def keras_application(name: str, size: int = 64, classes: int = 10, bias_free: bool = False, seed: int = 0,
                      batch: int = 2):
    """``(model, x)``: ``keras.applications.<name>(weights=None, classifier_activation=None)`` with He-scaled
    weights from a private RandomState, calibrated BatchNorm statistics, and a float32 batch (channels-last; raw
    pixels in [0, 255] for the models that rescale their input themselves, else [0, 1))."""
    import keras

    model = getattr(keras.applications, name)(weights=None, classes=classes, input_shape=(size, size, 3),
                                              classifier_activation=None)
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights or isinstance(layer, keras.layers.BatchNormalization):
            continue
        new = []
        for w, variable in zip(weights, layer.weights):
            path = variable.path
            if "bias" in path:
                new.append(np.zeros_like(w) if bias_free else rng.normal(0, 0.05, w.shape).astype(w.dtype))
            elif w.ndim >= 2:
                fan_in = np.prod(w.shape[:-2] if "depthwise" in path else w.shape[:-1])
                new.append(rng.normal(0, np.sqrt(2.0 / fan_in), w.shape).astype(w.dtype))
            else:  # LayerScale, normalisation constants: keep their initial values
                new.append(w)
        layer.set_weights(new)
    high = 255.0 if name.startswith(_RAW_PIXEL_PREFIXES) else 1.0
    data = np.random.RandomState(seed + 1)
    calibration = data.uniform(0, high, (8, size, size, 3)).astype(np.float32)
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0  # the moving statistics become those of the calibration batch
    model(calibration, training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
        if bias_free:
            layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, layer.moving_mean.dtype))
            if layer.center:
                layer.beta.assign(np.zeros(layer.beta.shape, layer.beta.dtype))
    return model, data.uniform(0, high, (batch, size, size, 3)).astype(np.float32)
