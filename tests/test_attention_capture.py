"""What the captures make of attention written in other ways (docs/transformers.md#capture): explicit matmul + softmax
with a −inf mask, F.scaled_dot_product_attention with a boolean or causal mask, torch.einsum, and on Keras
``ops.einsum``/``ops.matmul`` in a custom layer and causal ``MultiHeadAttention``. Every captured graph passes the
verified capture (its logits are the model's), masked keys receive exactly zero relevance, and the gradient family
equals autograd."""
# torch must be imported before TensorFlow (see NOTES.md: triton/LLVM segfault trap).
import torch

import math

import numpy as np
import pytest
import torch.nn.functional as F
from torch import nn

import keras

import signxai
from signxai.core import graph as g
from signxai.tf_signxai.backend import BACKEND as KERAS
from signxai.torch_signxai.backend import BACKEND as TORCH
from gates import autograd_gradient

T, E = 5, 6


class Explicit(nn.Module):
    """Single-head attention written out: ``softmax(q kᵀ/√d masked) v`` with ``masked_fill(−inf)`` on the last keys
    (a padding mask as a constant buffer), ``@`` and ``torch.matmul``, or einsum."""

    def __init__(self, form):
        super().__init__()
        torch.manual_seed(0)
        self.q, self.k, self.v, self.head = nn.Linear(E, E), nn.Linear(E, E), nn.Linear(E, E), nn.Linear(E, 3)
        self.form = form
        self.register_buffer("padding", torch.arange(T) >= T - 2)  # the last two keys masked

    def forward(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        if self.form == "sdpa_bool":
            keep = ~self.padding.expand(T, T)
            o = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], attn_mask=keep)[:, 0]
        elif self.form == "sdpa_causal":
            o = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], is_causal=True)[:, 0]
        else:
            if self.form == "einsum":
                scores = torch.einsum("btd,bsd->bts", q, k) / math.sqrt(E)
            else:
                scores = (q @ k.transpose(1, 2)) / math.sqrt(E)
            a = torch.softmax(scores.masked_fill(self.padding, -math.inf), dim=-1)
            o = torch.matmul(a, v) if self.form == "matmul" else torch.einsum("bts,bsd->btd", a, v)
        return self.head(o.mean(1))


@pytest.mark.parametrize("form", ["matmul", "einsum", "sdpa_bool", "sdpa_causal"])
def test_torch_attention_forms(form):
    model = Explicit(form).eval()
    x = np.random.RandomState(0).normal(size=(2, T, E)).astype(np.float32)
    graph = TORCH.graph_for(model, torch.as_tensor(x))
    kinds = [n.kind for n in graph.nodes]
    assert kinds.count(g.BILINEAR) == 2 and kinds.count(g.SOFTMAX) == 1, kinds
    # the verified capture runs on every call: the logits are the model's
    _assert_explained(model, x, ("lrp_epsilon_0_1", "lrp_z", "guided_backprop", "deconvnet"))


def test_masked_keys_receive_exactly_zero_at_the_softmax():
    """The relevance at the softmax input is exactly 0 at masked positions (−inf logits), not NaN."""
    model = Explicit("matmul").eval()
    x = torch.as_tensor(np.random.RandomState(1).normal(size=(2, T, E)))
    model64 = TORCH.model_for(model, "float64")
    graph = TORCH.graph_for(model64, x)
    softmax = next(i for i, n in enumerate(graph.nodes) if n.kind == g.SOFTMAX)
    from signxai.core.composite import LRP, compile_method
    from signxai.methods import resolve_method
    seen = {}

    class Spy(LRP):
        def __call__(self, ops, index, node, inputs, output, R):
            shares = super().__call__(ops, index, node, inputs, output, R)
            if index == softmax:
                seen["logits"], seen["share"] = inputs[0].numpy(), shares[0].numpy()
            return shares
    TORCH.graph_backward(model64, x.numpy(), np.array([1, 1]),
                         lambda graph: Spy(compile_method(resolve_method("lrp_z")), graph), lrp_head=True)
    masked = np.isneginf(seen["logits"])
    assert masked.sum() == 2 * T * 2  # two masked keys per query
    assert np.isfinite(seen["share"]).all() and (seen["share"][masked] == 0).all()
    assert np.abs(seen["share"][~masked]).max() > 0


@keras.saving.register_keras_serializable(package="signxai_tests")
class OpsAttention(keras.layers.Layer):
    """Attention with keras.ops: ``softmax(einsum(q, k)) @ v``."""

    def build(self, input_shape):
        self.q, self.k, self.v = (keras.layers.Dense(E, name=n, dtype=self.dtype_policy) for n in "qkv")
        for layer in (self.q, self.k, self.v):
            layer.build(input_shape)

    def call(self, x):
        scores = keras.ops.einsum("btd,bsd->bts", self.q(x), self.k(x)) / math.sqrt(E)
        return keras.ops.matmul(keras.ops.softmax(scores, axis=-1), self.v(x))


@pytest.mark.parametrize("form", ["ops", "causal_mha"])
def test_keras_attention_forms(form):
    inputs = keras.Input((T, E))
    if form == "ops":
        h = OpsAttention()(inputs)
    else:
        h = keras.layers.MultiHeadAttention(2, 3)(inputs, inputs, use_causal_mask=True)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(h)))
    x = np.random.RandomState(2).normal(size=(2, T, E)).astype(np.float32)
    kinds = [n.kind for n in KERAS.graph(model).nodes]
    assert kinds.count(g.BILINEAR) == 2 and kinds.count(g.SOFTMAX) == 1, kinds
    _assert_explained(model, x, ("lrp_epsilon_0_1", "lrp_z", "guided_backprop"))


def test_rms_norm_is_the_identity_rule():
    """RMS normalisation is a ``pass`` node in both frameworks (docs/transformers.md#kinds): on a bias-free model LRP-z
    passes the relevance through it, so the logit is conserved."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(E, E, bias=False), nn.RMSNorm(E, eps=1e-6), nn.Linear(E, 3, bias=False)).eval()
    inputs = keras.Input((E,))
    h = keras.layers.Dense(E, use_bias=False)(inputs)
    h = keras.layers.RMSNormalization(epsilon=1e-6)(h)
    keras_model = keras.Model(inputs, keras.layers.Dense(3, use_bias=False)(h))
    x = np.random.RandomState(3).normal(size=(2, E)).astype(np.float32)  # (explained in float64 from here)
    for m, backend in ((model, TORCH), (keras_model, KERAS)):
        assert g.PASS in [n.kind for n in backend.graph_for(m, x if backend is KERAS else torch.as_tensor(x)).nodes]
        relevance = signxai.calculate_relevancemap(m, x, "lrp_z", dtype="float64", target=0).astype(np.float64)
        logits = backend.logits(backend.model_for(m, "float64"), x.astype(np.float64))[:, 0]
        np.testing.assert_allclose(relevance.sum(1), logits, rtol=1e-9)


def _assert_explained(model, x, methods):
    """Each rule-based method gives a finite, non-zero map in float32 and float64 (its capture verified against the
    model on every call), and the gradient is the framework's own autograd."""
    for dtype in ("float32", "float64"):
        for method in methods:
            relevance = signxai.calculate_relevancemap(model, x, method, dtype=dtype, target=1)
            assert np.isfinite(relevance).all() and np.abs(relevance).max() > 0, (method, dtype)
    gradient = signxai.calculate_relevancemap(model, x, "gradient", target=1)
    np.testing.assert_allclose(gradient, autograd_gradient(model, x, 1, "float32"), rtol=0,
                               atol=1e-6 * np.abs(gradient).max())
