"""torchvision's MaxViT (docs/transformers.md#partitions): window and grid partitions (reshape, permute and the grid's
``swapaxes``), relative position bias added to the attention logits (a constant shift), MBConv with
squeeze-excitation (a gated product) and stochastic depth (the identity at inference). Built as the smallest
``MaxVit`` that runs the same code (``wild_zoo.maxvit_model``); the whole per-family matrix, on ``maxvit_t`` too, is
in the slow tier of ``test_wild_zoos.py``."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import signxai
from signxai.core import graph as g
from signxai.torch_signxai.backend import BACKEND as TORCH

import wild_zoo as zoo


@pytest.fixture(scope="session")
def maxvit():
    model, shape = zoo.maxvit_model(small=True)
    return model, np.random.RandomState(0).randn(2, *shape).astype(np.float32)


class _Swapped(nn.Module):
    """A linear map on the channel axis of a (N, C, H, W) tensor, moved to the last axis by one of the spellings of
    an axis permutation."""

    def __init__(self, form):
        super().__init__()
        torch.manual_seed(0)
        self.form, self.mix, self.head = form, nn.Linear(3, 5), nn.Linear(5 * 4 * 4, 3)

    def forward(self, x):
        if self.form == "swapaxes":
            t = torch.swapaxes(x, 1, -1)
        elif self.form == "method":
            t = x.swapaxes(1, 3).swapdims(1, 2).swapdims(1, 2)
        elif self.form == "movedim":
            t = torch.moveaxis(x.movedim(1, -1), 1, 2)  # (N, H, W, C), then (N, W, H, C)
        else:
            t = x.transpose(1, 3)
        return self.head(torch.relu(self.mix(t)).flatten(1))


@pytest.mark.parametrize("form", ["swapaxes", "method", "movedim"])
def test_swapaxes_and_movedim_are_permutations(form):
    """``torch.swapaxes``/``swapdims``/``movedim`` (functions and methods) are re-indexing nodes: the maps equal
    those of the same model written with ``transpose`` (bitwise: the same values flow through the same rules)."""
    x = np.random.RandomState(0).randn(2, 3, 4, 4).astype(np.float32)
    model, reference = _Swapped(form).eval(), _Swapped("transpose").eval()
    graph = TORCH.graph_for(model, torch.as_tensor(x))
    assert all(n.kind != g.UNSUPPORTED for n in graph.nodes)
    for method in ("lrp_epsilon_0_1", "guided_backprop"):
        np.testing.assert_array_equal(signxai.calculate_relevancemap(model, x, method, target=[0, 1]),
                                      signxai.calculate_relevancemap(reference, x, method, target=[0, 1]))


def test_maxvit_capture_sees_partitions_bias_and_gates(maxvit):
    """What the capture makes of MaxViT: the grid partition's ``swapaxes`` re-indexes, each of the 4 attentions is
    two einsum products around a softmax whose input is the scores plus the relative position bias (a constant
    table that absorbs its share: ADD with one parent, docs/transformers.md#constant-sources), and
    squeeze-excitation multiplies by a sigmoid gate."""
    model, x = maxvit
    graph = TORCH.graph_for(model, torch.as_tensor(x))
    nodes = graph.nodes
    assert not [n.name for n in nodes if n.kind == g.UNSUPPORTED]
    assert [n.kind for n in nodes if n.layer_type == "swapaxes"] == [g.REINDEX] * 4  # 2 layers × (in, out)
    softmaxes = [n for n in nodes if n.kind == g.SOFTMAX]
    assert len(softmaxes) == 4 and len([n for n in nodes if n.kind == g.BILINEAR]) == 8
    for softmax in softmaxes:
        shift = nodes[softmax.parents[0]]
        assert (shift.kind, shift.layer_type, len(shift.parents)) == (g.ADD, "add", 1)
        assert nodes[shift.parents[0]].kind == g.BILINEAR
    gated = [n for n in nodes if n.kind == g.PRODUCT]
    assert len(gated) == 2 and all(any(graph.value_range(p) == (0.0, 1.0) for p in n.parents) for n in gated)


def test_maxvit_guided_backprop_is_the_gradient(maxvit):
    """MaxViT has no ReLU (GELU, SiLU, sigmoid, tanh), so guided backprop is the exact vector–Jacobian product of
    the captured graph through partitions, attention, layer norms and gates: it equals autograd on the model."""
    model, x = maxvit
    targets = np.array([3, 7])
    guided = signxai.calculate_relevancemap(model, x, "guided_backprop", target=targets, dtype="float64")
    reference = zoo.own_gradient(copy.deepcopy(model).double(), x.astype(np.float64), targets)
    np.testing.assert_allclose(guided, reference, rtol=0, atol=1e-10 * np.abs(reference).max())


def test_maxvit_grad_cam_takes_the_last_departitioned_map(maxvit):
    """Grad-CAM's default layer is the last block's output in (N, C, H, W) — the departition, not a window
    partition, whose 5-axis intermediate the walk back from it must not enter (docs/methods.md#grad-cam-layer)."""
    model, x = maxvit
    activation, gradient = TORCH.cam_activations(model, x, np.array([3, 7]), None)
    assert activation.shape == gradient.shape == (2, 6, 6, 16)
    cam = signxai.calculate_relevancemap(model, x, "grad_cam", target=[3, 7])
    assert cam.shape == x.shape and np.isfinite(cam).all()


def test_maxvit_lrp_z_conserves_the_logit_without_biases(maxvit):
    """On MaxViT with every bias and LayerNorm β zero and its BatchNorms removed, LRP-z with CP-LRP conserves the
    explained logit in float64: relevance flows through the values only, so the relative position bias and the
    softmax absorb nothing; squeeze-excitation's gate passes all to the signal; GELU, SiLU and tanh take the identity
    rule; stochastic depth is the identity. (With the BatchNorms kept, their rule's fixed stabiliser 1e-7 absorbs
    1.5e-5 of the logit at these unit-scale inputs, 5e-10 at 1000× larger ones: docs/lrp.md#batchnorm-rule.)"""
    model, x = maxvit
    model = _bias_free(model)
    zoo.assert_cplrp_conserves(model, x)


def _bias_free(model):
    """A copy with every bias zero and every BatchNorm replaced by the identity."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
            for name, child in module.named_children():
                if isinstance(child, nn.BatchNorm2d):
                    setattr(module, name, nn.Identity())
    return model
