"""Third-party zoo models as a new user builds them (random weights, no download, BatchNorm statistics calibrated by
three train-mode passes on random data) and the per-family check of issue 19's wild tier: the gradient equals the
framework's own autograd (≤ 1e-5 of its peak, float32), every other family gives a finite, non-zero map or is
refused by name (a ValueError naming an unsupported layer or op), and no capture that differs from the model is ever
used (a CaptureMismatch fails the check). ``python tests/wild_zoo.py`` prints the tables of the note."""
from __future__ import annotations

import time
import warnings

import numpy as np

#: one method per family (with small step/sample counts: the semantics are the same as with the defaults)
FAMILIES = {
    "gradient": ("gradient", {}),
    "input×gradient": ("input_t_gradient", {}),
    "SIGN": ("gradient_x_sign", {}),
    "integrated gradients": ("integrated_gradients", {"steps": 4}),
    "SmoothGrad": ("smoothgrad", {"num_samples": 3}),
    "VarGrad": ("vargrad", {"num_samples": 3}),
    "guided backprop": ("guided_backprop", {}),
    "DeconvNet": ("deconvnet", {}),
    "Grad-CAM": ("grad_cam", {}),
    "LRP-z": ("lrp_z", {}),
    "LRP-ε": ("lrp_epsilon_0_1", {}),
    "LRP-α1β0": ("lrp_alpha_1_beta_0", {}),
    "SIGN LRP-ε": ("lrpsign_epsilon_0_1", {}),
    "composite A": ("lrp_sequential_composite_a", {}),
}
GRADIENT_FAMILY = ("gradient", "input×gradient", "SIGN", "integrated gradients", "SmoothGrad", "VarGrad")
REFUSAL = "is not supported by the rule-based methods"

# timm: CNNs across families (incl. the 8 that were silently wrong), a hybrid, MLP-mixers, attention models
TIMM_CNN = ["lcnet_050", "tinynet_a", "cspresnet50", "ese_vovnet19b_dw", "gernet_s", "ghostnetv2_100",
            "repghostnet_050", "nf_resnet26", "resnet18", "resnet26d", "seresnext26d_32x4d", "efficientnet_b0",
            "mobilenetv3_small_050", "mobilenetv2_050", "regnetx_002", "densenet121", "dla34", "rexnet_100",
            "mixnet_s", "convnext_atto", "convnextv2_atto", "poolformer_s12", "resnest14d", "dpn68",
            "hrnet_w18_small", "fbnetc_100"]
TIMM_MLP = ["resmlp_12_224", "mixer_s32_224", "gmlp_ti16_224"]
TIMM_ATTENTION = ["vit_tiny_patch16_224", "deit_tiny_patch16_224", "swin_tiny_patch4_window7_224", "levit_128s",
                  "efficientformer_l1", "mobilevit_xxs"]
TIMM_SIZE = {"resmlp_12_224": 64, "mixer_s32_224": 64, "gmlp_ti16_224": 64, "vit_tiny_patch16_224": 64,
             "deit_tiny_patch16_224": 64, "swin_tiny_patch4_window7_224": 224, "levit_128s": 64,
             "efficientformer_l1": 224, "mobilevit_xxs": 64}  # (efficientformer's attention bias needs 224)
TIMM_KWARGS = {name: {"img_size": 64} for name in ("resmlp_12_224", "mixer_s32_224", "gmlp_ti16_224",
                                                   "vit_tiny_patch16_224", "deit_tiny_patch16_224", "levit_128s")}
# residual branches initialised to (almost) nothing: LeViT's and MobileViT's last BatchNorm γ = 0, EfficientFormer's
# layer scale 1e-5, and linear weights of std 0.02. With them the attention branches add ~nothing and LeViT's maps are
# ~1e-15 (rounding): ``revive`` sets γ to 1 and re-draws the weights, so that the maps test what attention computes
TIMM_REVIVED = ("levit_128s", "efficientformer_l1", "mobilevit_xxs")
HF_MODELS = ["resnet", "convnext", "mobilenetv2", "regnet", "vit", "swinv2"]
HF_TRANSFORMERS = ["vit", "deit", "swin", "swinv2"]  # every family runs on each (docs/transformers.md)
# HF EfficientNet built from its config outputs logits of ~1e-29 with random weights (even after BatchNorm calibration
# and a Kaiming re-initialisation): a degenerate model whose maps underflow; it is left out of the checks
HF_DEGENERATE = ["efficientnet"]
KERAS_HUB_MODELS = ["resnet", "resnet_v2", "vit"]


def calibrate(model, shape, seed=0):
    """PyTorch: BatchNorm statistics from three train-mode passes on random data, eval mode after."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn((4,) + tuple(shape), generator=generator))
    return model.eval()


def revive(model, seed=1):
    """Residual scales initialised to a constant near 0 (a BatchNorm γ = 0, a layer scale 1e-5) set to 1, and every
    linear and convolution weight re-drawn with std 1/√fan-in (timm's and torchvision's std 0.02 shrinks the signal
    at every layer of a deep transformer: its maps fall towards rounding)."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
                torch.nn.init.normal_(module.weight, std=module.weight[0].numel() ** -0.5, generator=generator)
        for name, parameter in model.named_parameters():
            if (parameter.dim() == 1 and parameter.numel() > 1 and not name.endswith("bias")
                    and bool((parameter == parameter[0]).all()) and abs(float(parameter[0])) < 1e-3):
                parameter.fill_(1.0)
    return model


def timm_model(name):
    import timm
    import torch
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10, **TIMM_KWARGS.get(name, {}))
    head = model.get_classifier()
    if isinstance(head, torch.nn.Linear) and not head.weight.any():  # zero-initialised heads (MLP-mixers, ViTs)
        torch.nn.init.normal_(head.weight, std=0.02, generator=torch.Generator().manual_seed(1))
    if name in TIMM_REVIVED:
        revive(model)
    size = TIMM_SIZE.get(name, 64)
    return calibrate(model, (3, size, size)), (3, size, size)


def maxvit_model(small=True):
    """torchvision's MaxViT (random weights, ``revive``d, calibrated): ``maxvit_t`` at 224×224, or (``small``) the
    smallest ``MaxVit`` that runs the same code — MBConv with and without its pooled projection, squeeze-excitation,
    window and grid partitions of different sizes (a 6×6 grid in 2×2 windows and a 3×3 grid of strides: the grid
    partition's ``swapaxes``), two heads with relative position bias, stochastic depth 0 and > 0 — at 24×24."""
    import torch
    import torchvision
    torch.manual_seed(0)
    if small:
        model = torchvision.models.maxvit.MaxVit(input_size=(24, 24), stem_channels=8, partition_size=2,
                                                 block_channels=[16], block_layers=[2], head_dim=8,
                                                 stochastic_depth_prob=0.2, num_classes=10)
    else:
        model = torchvision.models.maxvit_t(weights=None, num_classes=10)
    size = 24 if small else 224
    return calibrate(revive(model), (3, size, size)), (3, size, size)


def hf_model(kind):
    import torch
    import transformers as T
    torch.manual_seed(0)
    small = dict(num_labels=10)
    if kind == "resnet":
        model = T.ResNetForImageClassification(T.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32],
                                                              depths=[1, 1], **small))
    elif kind == "convnext":
        model = T.ConvNextForImageClassification(T.ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1],
                                                                  num_stages=2, **small))
    elif kind == "mobilenetv2":
        model = T.MobileNetV2ForImageClassification(T.MobileNetV2Config(depth_multiplier=0.35, image_size=64,
                                                                        **small))
    elif kind == "regnet":
        model = T.RegNetForImageClassification(T.RegNetConfig(embedding_size=16, hidden_sizes=[16, 32],
                                                              depths=[1, 1], groups_width=8, **small))
    elif kind == "efficientnet":
        model = T.EfficientNetForImageClassification(T.EfficientNetConfig(image_size=64, **small))
    elif kind == "vit":
        model = T.ViTForImageClassification(T.ViTConfig(image_size=32, patch_size=8, hidden_size=32,
                                                        num_hidden_layers=2, num_attention_heads=2,
                                                        intermediate_size=64, **small))
    elif kind == "deit":
        model = T.DeiTForImageClassification(T.DeiTConfig(image_size=32, patch_size=8, hidden_size=32,
                                                          num_hidden_layers=2, num_attention_heads=2,
                                                          intermediate_size=64, **small))
    elif kind == "swin":
        model = T.SwinForImageClassification(T.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
                                                          num_heads=[1, 2], window_size=4, **small))
    elif kind == "swinv2":
        model = T.Swinv2ForImageClassification(T.Swinv2Config(image_size=32, patch_size=4, embed_dim=16,
                                                              depths=[1, 1], num_heads=[1, 2], window_size=4,
                                                              **small))
    else:
        raise KeyError(kind)
    size = 32 if kind in ("vit", "deit", "swin", "swinv2") else 64
    return calibrate(model, (3, size, size)), (3, size, size)


def keras_hub_model(kind):
    """keras_hub backbones with a logits head (random weights)."""
    import keras
    import keras_hub
    inputs = keras.Input((32, 32, 3))
    if kind in ("resnet", "resnet_v2"):
        backbone = keras_hub.models.ResNetBackbone(
            input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 32],
            stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
            use_pre_activation=kind == "resnet_v2", image_shape=(32, 32, 3))
        h = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    elif kind == "vit":
        backbone = keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2,
                                                hidden_dim=16, mlp_dim=32)
        h = backbone(inputs)[:, 0]
    else:
        raise KeyError(kind)
    return keras.Model(inputs, keras.layers.Dense(10)(h)), (32, 32, 3)


def own_gradient(model, x, targets):
    """The framework's own autograd of the chosen logits (PyTorch eval mode; Keras training=False)."""
    if hasattr(model, "parameters"):
        import torch
        xt = torch.tensor(x, requires_grad=True)
        out = model(xt)
        out = out if isinstance(out, torch.Tensor) else out["logits"]
        (grad,) = torch.autograd.grad(out[torch.arange(len(x)), torch.as_tensor(targets)].sum(), xt)
        return grad.numpy()
    import tensorflow as tf
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = model(xt, training=False)
        selected = tf.reduce_sum(tf.gather(out, targets, batch_dims=1))
    return tape.gradient(selected, xt).numpy()


def check_families(model, x, families=tuple(FAMILIES)):
    """``{family: (outcome, seconds)}`` with outcome "ok" or "refused: <reason>"; raises AssertionError for a wrong
    gradient, a non-finite or all-zero map, a capture mismatch or any other error."""
    import signxai
    from signxai.core.verify import CaptureMismatch
    targets = np.arange(len(x)) % 10
    results = {}
    for family in families:
        method, params = FAMILIES[family]
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = signxai.calculate_relevancemap(model, x, method, target=targets, **params)
        except CaptureMismatch as error:
            raise AssertionError(f"{family}: a capture that is not the model: {error}") from error
        except ValueError as error:
            assert family not in GRADIENT_FAMILY, f"{family} refused: {error}"
            assert REFUSAL in str(error) or "Grad-CAM" in str(error), f"{family}: {error}"
            results[family] = ("refused: " + str(error).split(" is not supported")[0].replace("layer ", ""),
                               time.perf_counter() - start)
            continue
        assert result.shape == x.shape and np.isfinite(result).all(), family
        if family == "Grad-CAM":
            _assert_zero_cams_are_right(model, x, targets, result)
        else:
            assert np.abs(result).max() > 0, f"{family}: an all-zero map"
        if family == "gradient":
            reference = own_gradient(model, x, targets)
            error = np.abs(result - reference).max() / np.abs(reference).max()
            assert error <= 1e-5, f"gradient differs from autograd by {error:.2g} of its peak"
        results[family] = ("ok", time.perf_counter() - start)
    return results


def _assert_zero_cams_are_right(model, x, targets, result):
    """A Grad-CAM map is zero exactly where ``max(Σ_k α_k A_k) ≤ 0`` (no positive evidence at the layer: a correct
    result on a random-weight model); every other sample's map is non-zero."""
    from signxai.api import _backend_for
    activation, gradient = _backend_for(model).cam_activations(model, x, targets, None)
    axes = tuple(range(1, activation.ndim - 1))
    alpha = gradient.astype(np.float64).mean(axis=axes, keepdims=True)
    evidence = (activation * alpha).sum(axis=-1).reshape(len(x), -1).max(axis=1)
    zero = np.abs(result).reshape(len(x), -1).max(axis=1) == 0
    np.testing.assert_array_equal(zero, evidence <= 0)


def assert_cplrp_conserves(model, x, targets=(3, 7)):
    """LRP-z with CP-LRP on a bias-free ``model`` (float64): the input relevance of each sample sums to its explained
    logit (docs/transformers.md#cp-lrp: relevance flows through the values only, so softmaxes and constant tables
    absorb nothing)."""
    import torch

    import signxai
    targets = np.asarray(targets)
    relevance = signxai.calculate_relevancemap(model, x, "lrp_z", target=targets, dtype="float64",
                                               attention="cplrp")
    with torch.no_grad():
        logits = model.double()(torch.as_tensor(x, dtype=torch.float64))[np.arange(len(x)), targets].numpy()
    assert np.abs(logits).min() > 1e-2
    np.testing.assert_allclose(relevance.reshape(len(x), -1).sum(1), logits, rtol=1e-12)


def capture_seconds(model, x):
    """Seconds to capture the model's graph for ``x`` (torch.fx, torch.export or the Keras walk), or the reason
    there is none."""
    from signxai.api import _backend_for
    backend = _backend_for(model)
    start = time.perf_counter()
    try:
        graph = backend.graph_for(model, x)
    except ValueError as error:
        return f"none ({type(error).__name__})"
    exported = getattr(backend, "_exported", {}).get(model)
    how = "export" if exported else "fx" if hasattr(model, "parameters") else "keras"
    return f"{time.perf_counter() - start:.2f} ({how}, {len(graph.nodes)} nodes)"


def _table(title, rows):
    families = list(FAMILIES)
    print(f"\n### {title}\n")
    print("| model | capture s | " + " | ".join(families) + " |")
    print("|---" * (len(families) + 2) + "|")
    for name, build, results in rows:
        cells = []
        for family in families:
            outcome = results.get(family, ("error", 0))[0]
            cells.append("ok" if outcome == "ok" else outcome.replace("refused: ", "✗ "))
        print(f"| {name} | {build} | " + " | ".join(cells) + " |")


def main():
    import torch  # noqa: F401  (before TensorFlow)
    import tensorflow  # noqa: F401
    for title, names, build in (("timm", TIMM_CNN + TIMM_MLP + TIMM_ATTENTION, timm_model),
                                ("torchvision MaxViT", ["MaxVit (small)", "maxvit_t"],
                                 lambda name: maxvit_model(small=name != "maxvit_t")),
                                ("HuggingFace transformers", HF_MODELS, hf_model),
                                ("keras_hub", KERAS_HUB_MODELS, keras_hub_model)):
        rows = []
        for name in names:
            try:
                model, shape = build(name)
            except Exception as error:
                print(f"{name}: could not be built: {error}")
                continue
            x = np.random.RandomState(0).randn(2, *shape).astype(np.float32)
            built = capture_seconds(model, x)
            try:
                rows.append((name, built, check_families(model, x)))
            except AssertionError as error:
                rows.append((name, built, {"gradient": (f"FAIL {error}", 0)}))
            print(name, {k: v[0][:40] for k, v in rows[-1][2].items()}, flush=True)
        _table(title, rows)


if __name__ == "__main__":
    main()
