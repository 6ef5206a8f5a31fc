"""Equality with LXT (rachtibat/LRP-eXplains-Transformers 2.1), a test-only oracle, on torchvision's ViT in float64
(docs/transformers.md#lxt): LXT's efficient CP-LRP preset for torchvision ViT (its own patches: GELU identity rule,
LayerNorm with σ detached, nn.MultiheadAttention with query and key detached; Input×Gradient) equals signxai's
``lrp_z`` with ``attention="cplrp"``.

LXT is not a dependency: the test is skipped where it is not installed (``pip install --no-deps lxt==2.1``; its
package ``__init__`` imports HuggingFace model code that transformers 5 no longer has, so the three patch functions are
loaded from LXT's own modules without it). LXT patches classes process-wide: the originals are restored afterwards.
The positional embedding is zeroed: LXT lets a constant shift absorb relevance (Input×Gradient), signxai passes it
through (a ``pass`` node, docs/layers.md)."""
import torch

import importlib.util
import sys
import types

import numpy as np
import pytest

import signxai

pytestmark = pytest.mark.slow


def _lxt_patches():
    spec = importlib.util.find_spec("lxt")
    if spec is None:
        pytest.skip("LXT is not installed (test-only oracle)")
    root = spec.submodule_search_locations[0]
    if "lxt.efficient" not in sys.modules:  # without lxt/efficient/__init__.py (HuggingFace model imports)
        package = types.ModuleType("lxt.efficient")
        package.__path__ = [f"{root}/efficient"]
        sys.modules["lxt.efficient"] = package
    import lxt.efficient.patches as patches
    return patches


def test_torchvision_vit_equals_lxt_cp_lrp_in_float64():
    torchvision = pytest.importorskip("torchvision")
    patches = _lxt_patches()
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None, num_classes=10, image_size=32).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zero-initialises the head
        model.encoder.pos_embedding.zero_()
    x = np.random.RandomState(0).randn(2, 3, 32, 32)
    target = 3
    mine = signxai.calculate_relevancemap(model, x.astype(np.float32), "lrp_z", dtype="float64", target=target,
                                          attention="cplrp").astype(np.float64)

    nn = torch.nn
    saved = {cls: cls.forward for cls in (nn.GELU, nn.LayerNorm, nn.MultiheadAttention)}
    try:
        for cls, fn in ((nn.GELU, patches.non_linear_forward), (nn.LayerNorm, patches.layer_norm_forward),
                        (nn.MultiheadAttention, patches.cp_multi_head_attention_forward)):
            patches.patch_method(fn, cls, keep_original=cls is not nn.LayerNorm)
        import copy
        oracle = copy.deepcopy(model).double()
        xt = torch.tensor(x, requires_grad=True)
        oracle(xt)[:, target].sum().backward()
        theirs = (xt * xt.grad).detach().numpy()
    finally:
        for cls, forward in saved.items():
            cls.forward = forward
            if hasattr(cls, "original_forward"):
                del cls.original_forward
    peak = np.abs(theirs).max()
    assert peak > 0
    # measured 6.4e-8·peak: LXT's GELU rule divides by x + 1e-10, signxai's stabiliser is SD's 1e-7 at exact zeros
    np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6 * peak)
