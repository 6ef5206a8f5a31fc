"""The wild tier of issue 19: third-party zoo models (timm, HuggingFace transformers, keras_hub) with random weights
and calibrated BatchNorm statistics; every family is checked by ``wild_zoo.check_families`` (the gradient equals the
framework's autograd, every other family is finite and non-zero or refused by name, no capture mismatch).

The default run takes one model per property: a timm model whose BatchNorm subclass applies its activation
(``lcnet_050``), one with weight-standardised convolutions (``nf_resnet26``), a HuggingFace CNN that only torch.export
captures, a HuggingFace ViT (attention: the gradient family runs, the rule-based methods name the attention op), and
a keras_hub backbone. ``./test.sh --slow`` runs every zoo model of ``wild_zoo``.
"""
from __future__ import annotations

import numpy as np
import pytest

import wild_zoo as zoo

RULE_BASED = ("guided backprop", "DeconvNet", "LRP-z", "LRP-ε", "LRP-α1β0", "SIGN LRP-ε", "composite A")


def _run(build, name, seed=0):
    model, shape = build(name)
    x = np.random.RandomState(seed).randn(2, *shape).astype(np.float32)
    return zoo.check_families(model, x)


def _all_ok(results):
    return {family for family, (outcome, _) in results.items() if outcome != "ok"}


@pytest.mark.parametrize("name", ["lcnet_050", "nf_resnet26"])
def test_timm_models_that_were_silently_wrong(name):
    """Both were replayed as their base classes (BatchNormAct2d as a plain BatchNorm, ScaledStdConv2d as a plain
    Conv2d); now every family runs on what the model computes."""
    assert _all_ok(_run(zoo.timm_model, name)) == set()


def test_hf_cnn_captured_by_torch_export():
    assert _all_ok(_run(zoo.hf_model, "resnet")) == set()


def test_hf_vit_every_family_runs_with_attention_aware_lrp():
    """HuggingFace ViT (torch.export: ``aten.scaled_dot_product_attention`` with a size-derived mask, the class token
    expanded to the batch): every family runs on the verified capture (docs/transformers.md#capture)."""
    assert _all_ok(_run(zoo.hf_model, "vit", seed=1)) == set()


def test_keras_hub_pre_activation_resnet():
    assert _all_ok(_run(zoo.keras_hub_model, "resnet_v2")) == set()


# --- every zoo model (slow) ------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.TIMM_CNN + zoo.TIMM_MLP)
def test_timm_cnn_and_mlp_every_family(name):
    refused = _all_ok(_run(zoo.timm_model, name))
    assert refused <= set(RULE_BASED) | {"Grad-CAM"}, refused  # refusals only by name, never the gradient family


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_patch16_224"])
def test_timm_vits_every_family(name):
    """Attention-aware LRP (docs/transformers.md): every family runs on timm's ViT and DeiT (torch.export)."""
    assert _all_ok(_run(zoo.timm_model, name)) <= {"Grad-CAM"}


@pytest.mark.slow
def test_torchvision_vit_b_16_every_family():
    """torchvision's vit_b_16 (nn.MultiheadAttention, class token; its zero-initialised head re-drawn)."""
    import torch
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None, num_classes=10, image_size=32).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    x = np.random.RandomState(0).randn(2, 3, 32, 32).astype(np.float32)
    assert _all_ok(zoo.check_families(model, x)) <= {"Grad-CAM"}


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in zoo.TIMM_ATTENTION if n not in zoo.TIMM_REVIVED
                                  and n not in ("vit_tiny_patch16_224", "deit_tiny_patch16_224")])
def test_timm_attention_models_gradient_family(name):
    model, shape = zoo.timm_model(name)
    x = np.random.RandomState(0).randn(2, *shape).astype(np.float32)
    assert _all_ok(zoo.check_families(model, x, zoo.GRADIENT_FAMILY)) == set()


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.TIMM_REVIVED)
def test_timm_hybrid_attention_models_every_family(name):
    """LeViT (attention biases added to the logits, strided-subsample attention, Hardswish), EfficientFormer (pooling
    mixers, its last stage's attention with a bias table) and MobileViT (unfold/fold of patches around the
    transformer): every family runs on the verified capture, Grad-CAM too (they keep a spatial map); weights
    ``revive``d so that the maps are far above rounding (wild_zoo.TIMM_REVIVED)."""
    assert _all_ok(_run(zoo.timm_model, name)) == set()


@pytest.mark.slow
def test_timm_levit_lrp_z_conserves_the_logit_without_biases():
    """LeViT with every bias zero and its BatchNorms removed: LRP-z with CP-LRP conserves the explained logit in
    float64 (its attention biases are a constant shift that CP-LRP routes no relevance to; the distilled heads' mean
    is a sum and a constant scaling)."""
    import copy
    import torch
    model, shape = zoo.timm_model("levit_128s")
    model = copy.deepcopy(model)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(getattr(module, "bias", None), torch.Tensor):
                module.bias.zero_()
            for name, child in module.named_children():
                if type(child) in (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d):
                    setattr(module, name, torch.nn.Identity())
    x = np.random.RandomState(0).randn(2, *shape).astype(np.float32)
    zoo.assert_cplrp_conserves(model, x)


@pytest.mark.slow
def test_torchvision_maxvit_every_family():
    """torchvision's MaxViT as the smallest ``MaxVit`` that runs maxvit_t's code (wild_zoo.maxvit_model): every
    family runs on the verified capture (docs/transformers.md#partitions)."""
    assert _all_ok(_run(lambda _: zoo.maxvit_model(small=True), None)) == set()


@pytest.mark.slow
def test_torchvision_maxvit_t():
    """``maxvit_t`` itself at 224×224 (one sample): every family runs on the verified capture."""
    model, shape = zoo.maxvit_model(small=False)
    x = np.random.RandomState(0).randn(1, *shape).astype(np.float32)
    assert _all_ok(zoo.check_families(model, x)) == set()


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.HF_MODELS)
def test_hf_image_classifiers_every_family(name):
    refused = _all_ok(_run(zoo.hf_model, name))
    assert refused <= set(RULE_BASED) | {"Grad-CAM"}, refused


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.HF_TRANSFORMERS)
def test_hf_vision_transformers_every_family(name):
    """HuggingFace ViT, DeiT, Swin and Swin-V2 (small random configs): every family runs, none is refused."""
    assert _all_ok(_run(zoo.hf_model, name)) == set()


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.KERAS_HUB_MODELS)
def test_keras_hub_backbones_every_family(name):
    refused = _all_ok(_run(zoo.keras_hub_model, name))
    assert refused <= set(RULE_BASED) | {"Grad-CAM"}, refused
