"""The α-β split forward (docs/lrp.md#alpha-beta-split): where β ≠ 0 and a kernel layer's input is nonnegative by
construction, the layer's output is computed from the two halves W⁺a and W⁻a that the rule needs anyway. It is the
same function as the unsplit rule (float64 to 1e-12, float32 within rounding) on both backends, and it saves one
convolution per such layer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import signxai
from signxai.core import composite
from twins import fast_twins, torch_input

TWINS = ("cnn2d", "bn_gap_cnn", "residual_add")
METHODS = ("lrp_alpha_2_beta_1", "lrp_sequential_composite_b", "lrpsign_alpha_2_beta_1")


def _maps(model, x, method, monkeypatch, split):
    with monkeypatch.context() as patch:
        if not split:
            patch.setattr(composite.AlphaBeta, "forward", lambda self, ops, layer, inputs: None)
        return {d: signxai.calculate_relevancemap(model, x.astype(d), method, dtype=d)
                for d in ("float32", "float64")}


@pytest.mark.parametrize("framework", ["tensorflow", "pytorch"])
@pytest.mark.parametrize("twin_name", TWINS)
@pytest.mark.parametrize("method", METHODS)
def test_split_forward_is_the_same_function(twin_name, method, framework, monkeypatch):
    t = fast_twins()[twin_name]()
    model, x = (t.keras_model, t.x) if framework == "tensorflow" else (t.torch_model, torch_input(t.x))
    split, unsplit = _maps(model, x, method, monkeypatch, True), _maps(model, x, method, monkeypatch, False)
    for dtype, rtol in (("float64", 1e-12), ("float32", 1e-5)):
        peak = np.abs(unsplit[dtype]).max()
        assert peak > 0
        assert np.abs(split[dtype] - unsplit[dtype]).max() <= rtol * peak, (dtype, method)


def test_split_forward_saves_a_convolution(monkeypatch):
    """cnn2d: the first convolution sees the raw input (no split), the second follows a ReLU (split): 7 convolution
    calls instead of 8 for α2β1 (forward, halves and adjoints); the gate-4 check (docs/api.md#verified-capture)
    runs the model itself once more, its two convolutions included."""
    t = fast_twins()["cnn2d"]()
    x = torch_input(t.x)
    calls = []
    conv_forward = torch.nn.Conv2d._conv_forward
    monkeypatch.setattr(torch.nn.Conv2d, "_conv_forward",
                        lambda self, *args: calls.append(1) or conv_forward(self, *args))
    signxai.calculate_relevancemap(t.torch_model, x, "lrp_alpha_2_beta_1")
    split = len(calls)
    calls.clear()
    monkeypatch.setattr(composite.AlphaBeta, "forward", lambda self, ops, layer, inputs: None)
    signxai.calculate_relevancemap(t.torch_model, x, "lrp_alpha_2_beta_1")
    assert (split, len(calls)) == (7 + 2, 8 + 2)


def test_split_forward_skipped_where_beta_is_zero(monkeypatch):
    t = fast_twins()["cnn2d"]()
    seen = []
    forward = composite.AlphaBeta.forward
    monkeypatch.setattr(composite.AlphaBeta, "forward",
                        lambda self, *args: seen.append(forward(self, *args)) or seen[-1])
    signxai.calculate_relevancemap(t.torch_model, torch_input(t.x), "lrp_alpha_1_beta_0")
    assert seen and all(result is None for result in seen)
