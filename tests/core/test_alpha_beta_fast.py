"""The fast paths of α-β (docs/performance.md#kernel-parts, docs/lrp.md#alpha-beta-split).

* PyTorch writes the positive and negative parts of large kernels into memory kept per weight tensor and thread,
  recomputed on every call: the maps are bit-identical to those of freshly allocated parts, a weight changed in place
  between calls (even through ``.data``, which does not bump the tensor's version) is seen by the next call, and the
  kept memory goes with the weight.
* A kernel layer whose input is nonnegative by construction (after a ReLU) skips the ``a⁻`` halves statically: it
  gives the map of the general path, and is not taken where the input has negative entries.
"""
from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
import torch

import signxai
from signxai.core import composite, graph, rules
from signxai.torch_signxai import ops as torch_ops
from twins import fast_twins, torch_input

METHODS = ("lrp_alpha_1_beta_0", "lrp_alpha_2_beta_1", "lrp_sequential_composite_b", "zblrp_alpha_1_beta_0_VGG16ILSVRC")


@pytest.fixture(scope="module")
def cnn2d():
    t = fast_twins()["cnn2d"]()
    return t.torch_model, torch_input(t.x)


def _maps(model, x, method, kept_bytes, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(torch_ops, "KERNEL_PART_BYTES", kept_bytes)
        return {d: signxai.calculate_relevancemap(model, x.astype(d), method, dtype=d)
                for d in ("float32", "float64")}


@pytest.mark.parametrize("method", METHODS)
def test_kept_kernel_parts_are_bit_identical(cnn2d, method, monkeypatch):
    model, x = cnn2d
    fresh = _maps(model, x, method, 1 << 62, monkeypatch)  # every part freshly allocated
    kept = _maps(model, x, method, 0, monkeypatch)  # every part (biases too) written into kept memory
    again = _maps(model, x, method, 0, monkeypatch)  # the second call reuses that memory
    for dtype in ("float32", "float64"):
        assert np.abs(fresh[dtype]).max() > 0
        assert np.array_equal(kept[dtype], fresh[dtype]), (method, dtype)
        assert np.array_equal(again[dtype], fresh[dtype]), (method, dtype)


def test_kept_parts_follow_in_place_weight_changes(monkeypatch):
    """A weight edited through ``.data`` keeps its tensor version: the parts are recomputed on every call anyway."""
    t = fast_twins()["cnn2d"]()
    model, x = t.torch_model, torch_input(t.x)
    monkeypatch.setattr(torch_ops, "KERNEL_PART_BYTES", 0)
    signxai.calculate_relevancemap(model, x, "lrp_sequential_composite_b")
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 3)
    version = conv.weight._version
    conv.weight.data.mul_(-0.5)  # flips the signs: W⁺ and W⁻ swap
    assert conv.weight._version == version
    edited = signxai.calculate_relevancemap(model, x, "lrp_sequential_composite_b")
    monkeypatch.setattr(torch_ops, "KERNEL_PART_BYTES", 1 << 62)
    t2 = fast_twins()["cnn2d"]()  # a fresh model with the edited weights: never saw kept memory
    t2.torch_model.load_state_dict(model.state_dict())
    expected = signxai.calculate_relevancemap(t2.torch_model, x, "lrp_sequential_composite_b")
    assert np.array_equal(edited, expected)


def test_kept_parts_are_reused_per_thread_and_released_with_the_weight():
    w = torch.randn(300, 1000)  # 1.2 MB: above KERNEL_PART_BYTES
    assert w.numel() * w.element_size() >= torch_ops.KERNEL_PART_BYTES
    first = torch_ops.TensorOps.positive_kernel(w)
    assert torch.equal(first, w.clamp(min=0))
    w.mul_(-1)
    second = torch_ops.TensorOps.positive_kernel(w)
    assert second.data_ptr() == first.data_ptr() and torch.equal(second, w.clamp(min=0))  # same memory, new values
    negative = torch_ops.TensorOps.negative_kernel(w)
    assert negative.data_ptr() != second.data_ptr() and torch.equal(negative, w.clamp(max=0))
    other = []
    thread = threading.Thread(target=lambda w=w: other.append(torch_ops.TensorOps.positive_kernel(w).data_ptr()))
    thread.start()
    thread.join()
    assert other[0] != second.data_ptr()  # another thread writes its own memory
    small = torch.randn(10, 10)  # below KERNEL_PART_BYTES: a fresh tensor each time
    parts = [torch_ops.TensorOps.positive_kernel(small) for _ in range(2)]
    assert parts[0].data_ptr() != parts[1].data_ptr() and (id(small), True) not in torch_ops._PARTS.buffers
    key = (id(w), True)
    assert key in torch_ops._PARTS.buffers
    del w, first, second, negative
    gc.collect()
    assert key not in torch_ops._PARTS.buffers


def test_kept_parts_keep_the_kernel_layout():
    w = torch.randn(64, 32, 3, 3).contiguous(memory_format=torch.channels_last) * 10
    part = torch_ops.TensorOps.negative_kernel(w)
    assert part.stride() == w.clamp(max=0).stride() and torch.equal(part, w.clamp(max=0))


# --- the static nonnegative path ------------------------------------------------------------------------------

def _rule_calls(monkeypatch):
    """Records, per α-β rule application, whether the static nonnegative path was taken."""
    calls = []
    relevance = composite.AlphaBeta.relevance

    def spy(self, ops, layer, inputs, output, R, saved=None):
        calls.append((layer.name, layer.input_nonnegative, bool((inputs[0] >= 0).all())))
        return relevance(self, ops, layer, inputs, output, R, saved)
    monkeypatch.setattr(composite.AlphaBeta, "relevance", spy)
    return calls


@pytest.mark.parametrize("method", ["lrp_alpha_1_beta_0", "lrp_alpha_2_beta_1"])
def test_static_nonnegative_path_equals_the_general_path(cnn2d, method, monkeypatch):
    model, x = cnn2d
    calls = _rule_calls(monkeypatch)
    fast = _maps(model, x, method, 1 << 62, monkeypatch)
    taken = calls[:len(calls) // 2]  # the float32 call
    # the first convolution sees the raw input, which has negative entries: not taken there, taken after ReLUs
    assert taken[-1][1:] == (False, False)  # the backward pass visits the first layer last
    assert any(nonnegative for _, nonnegative, _ in taken)
    assert all(has_no_negative for _, nonnegative, has_no_negative in taken if nonnegative)
    with monkeypatch.context() as patch:  # the general path: run-time check of the input, no split forward
        patch.setattr(graph.Graph, "is_nonnegative", lambda self, index: False)
        patch.setattr(composite.AlphaBeta, "forward", lambda self, ops, layer, inputs: None)
        general = _maps(model, x, method, 1 << 62, monkeypatch)
    for dtype, rtol in (("float64", 1e-12), ("float32", 1e-5)):
        peak = np.abs(general[dtype]).max()
        assert peak > 0
        assert np.abs(fast[dtype] - general[dtype]).max() <= rtol * peak, (method, dtype)


def test_kernel_maps_fall_back_for_ops_without_kernel_parts():
    class Minimal:
        positive = staticmethod(lambda t: "positive")
        negative = staticmethod(lambda t: "negative")
    positive, negative = rules.kernel_maps(Minimal())
    assert (positive(0), negative(0)) == ("positive", "negative")


def test_add_into_is_the_sum_and_writes_only_into_its_own_temporary():
    """The α-β bias sums are written into the rule's own temporaries (``ops.add_into``), bit for bit ``t + other``."""
    import tensorflow as tf

    from signxai.tf_signxai.ops import OPS as TF_OPS

    rng = np.random.RandomState(0)
    t, bias = rng.normal(size=(2, 5, 4, 4)), rng.normal(size=(5, 1, 1))
    for dtype in (torch.float32, torch.float64):
        expected = torch.tensor(t, dtype=dtype) + torch.tensor(bias, dtype=dtype)
        own = torch.tensor(t, dtype=dtype)
        result = torch_ops.OPS.add_into(own, torch.tensor(bias, dtype=dtype))
        assert result.data_ptr() == own.data_ptr() and torch.equal(result, expected)
        view = torch.tensor(bias, dtype=dtype).expand(5, 4, 4)  # a broadcast view: never written into
        before = view.clone()
        assert torch.equal(torch_ops.OPS.add_into(view, 1.0), before + 1.0) and torch.equal(view, before)
        small = torch.tensor(bias, dtype=dtype)  # the sum is larger than t: a new tensor
        assert torch.equal(torch_ops.OPS.add_into(small, torch.tensor(t, dtype=dtype)), expected)
    tf_sum = TF_OPS.add_into(tf.constant(t), tf.constant(bias))
    assert np.array_equal(tf_sum.numpy(), t + bias)
