"""The attention rules of docs/transformers.md against independent float64 NumPy replicas, on both backends' tensor
ops: AttnLRP's uniform rule at matmul and einsum (Prop. 3.3), CP-LRP's values-only rule, the softmax rule with masked
logits (Prop. 3.1), the layer-norm ε rule with σ held constant (Prop. 3.4); plus their conservation properties."""
# torch must be imported before TensorFlow (see NOTES.md: triton/LLVM segfault trap).
import torch

import numpy as np
import pytest
import tensorflow as tf

import keras

from signxai.core import graph as g
from signxai.core import rules as r
from signxai.tf_signxai import capture as tf_capture
from signxai.tf_signxai.ops import OPS as TF_OPS
from signxai.torch_signxai import capture as torch_capture
from signxai.torch_signxai.ops import TensorOps as TorchOps

RNG = np.random.RandomState(0)
TOL = 1e-12


def sd(p, q, eps=None):
    """SD(p, q + ε·sign0(q)) of docs/lrp.md, literally."""
    if eps is not None:
        q = q + eps * np.where(q >= 0, 1.0, -1.0)
    return p / (q + 1e-7 * (q == 0))


class Torch:
    ops = TorchOps()
    tensor = staticmethod(lambda a: torch.as_tensor(np.asarray(a, np.float64)))
    numpy = staticmethod(lambda t: t.detach().numpy())
    matmul = staticmethod(torch.matmul)
    einsum = staticmethod(torch.einsum)
    softmax = staticmethod(lambda t, axis: torch.softmax(t, axis))


class TF:
    ops = TF_OPS
    tensor = staticmethod(lambda a: tf.constant(np.asarray(a, np.float64)))
    numpy = staticmethod(lambda t: t.numpy())
    matmul = staticmethod(tf.matmul)
    einsum = staticmethod(tf.einsum)
    softmax = staticmethod(lambda t, axis: tf.nn.softmax(t, axis=axis))


BACKENDS = [Torch, TF]


def node(kind, forward, **extra):
    return g.Node("n", kind, (0, 1), forward, **extra)


@pytest.mark.parametrize("fw", BACKENDS, ids=["torch", "tf"])
@pytest.mark.parametrize("eps", [None, 0.1])
def test_uniform_rule_at_a_batched_matmul(fw, eps):
    a, b, R = RNG.normal(size=(2, 3, 4)), RNG.normal(size=(2, 4, 5)), RNG.normal(size=(2, 3, 5))
    z = a @ b
    s = sd(R, z, eps)
    ref_a = 0.5 * a * (s @ b.transpose(0, 2, 1))
    ref_b = 0.5 * b * (a.transpose(0, 2, 1) @ s)
    n = node(g.BILINEAR, fw.matmul)
    share_a, share_b = r.uniform_rule(fw.ops, n, [fw.tensor(a), fw.tensor(b)], fw.tensor(z), fw.tensor(R), eps)
    np.testing.assert_allclose(fw.numpy(share_a), ref_a, rtol=0, atol=TOL * np.abs(ref_a).max())
    np.testing.assert_allclose(fw.numpy(share_b), ref_b, rtol=0, atol=TOL * np.abs(ref_b).max())
    if eps is None:  # conservation: Σ x·∂z/∂x = 2z for a bilinear map
        np.testing.assert_allclose(fw.numpy(share_a).sum() + fw.numpy(share_b).sum(), R.sum(), rtol=1e-10)


@pytest.mark.parametrize("fw", BACKENDS, ids=["torch", "tf"])
def test_uniform_rule_at_the_attention_einsum(fw):
    q, k, R = RNG.normal(size=(2, 3, 2, 4)), RNG.normal(size=(2, 5, 2, 4)), RNG.normal(size=(2, 2, 3, 5))
    z = np.einsum("btnh,bsnh->bnts", q, k)
    s = sd(R, z)
    ref_q = 0.5 * q * np.einsum("bnts,bsnh->btnh", s, k)
    ref_k = 0.5 * k * np.einsum("bnts,btnh->bsnh", s, q)
    n = node(g.BILINEAR, lambda x, y: fw.einsum("btnh,bsnh->bnts", x, y))
    shares = r.uniform_rule(fw.ops, n, [fw.tensor(q), fw.tensor(k)], fw.tensor(z), fw.tensor(R))
    for share, ref in zip(shares, (ref_q, ref_k)):
        np.testing.assert_allclose(fw.numpy(share), ref, rtol=0, atol=TOL * np.abs(ref).max())


@pytest.mark.parametrize("fw", BACKENDS, ids=["torch", "tf"])
def test_values_only_rule_holds_the_attention_weights_constant(fw):
    logits, v, R = RNG.normal(size=(2, 3, 4)), RNG.normal(size=(2, 4, 5)), RNG.normal(size=(2, 3, 5))
    attention = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    z = attention @ v
    ref_v = v * (attention.transpose(0, 2, 1) @ sd(R, z))
    n = node(g.BILINEAR, fw.matmul)
    shares = r.values_only_rule(fw.ops, n, 1, [fw.tensor(attention), fw.tensor(v)], fw.tensor(z), fw.tensor(R))
    assert shares[0] is None
    np.testing.assert_allclose(fw.numpy(shares[1]), ref_v, rtol=0, atol=TOL * np.abs(ref_v).max())
    np.testing.assert_allclose(fw.numpy(shares[1]).sum(), R.sum(), rtol=1e-10)  # all of R reaches the values


@pytest.mark.parametrize("fw", BACKENDS, ids=["torch", "tf"])
@pytest.mark.parametrize("mask_value", [-np.inf, -0.7 * 3.38953e38, None])
def test_softmax_rule_and_masked_logits(fw, mask_value):
    x, R = RNG.normal(size=(2, 3, 6)), RNG.normal(size=(2, 3, 6))
    masked = np.zeros(x.shape, bool)
    if mask_value is not None:
        masked[..., 4:] = True  # the last two keys masked (as a padding mask)
        x = np.where(masked, mask_value, x)
    s = np.exp(x - x.max(-1, keepdims=True))
    s = s / s.sum(-1, keepdims=True)
    ref = np.where(masked, 0.0, np.where(masked, 0.0, x) * (R - s * R.sum(-1, keepdims=True)))
    n = g.Node("softmax", g.SOFTMAX, (0,), lambda t: fw.softmax(t, -1), axis=-1)
    xs = fw.tensor(x)
    out = fw.numpy(r.softmax_rule(fw.ops, n, xs, fw.softmax(xs, -1), fw.tensor(R)))
    assert np.isfinite(out).all()
    assert (out[masked] == 0).all()  # masked positions receive exactly 0
    np.testing.assert_allclose(out, ref, rtol=0, atol=TOL * np.abs(ref).max())
    # Deep Taylor with bias: Σ R_in = Σ x·R − (Σ x·s)·ΣR (what the softmax's bias absorbs is the rest)
    live = np.where(masked, 0.0, x)
    expected = (live * R).sum(-1) - (live * s).sum(-1) * R.sum(-1)
    np.testing.assert_allclose(out.sum(-1), expected, rtol=1e-10)


def _torch_layer_norm(gamma, beta, eps):
    w, b = torch.as_tensor(gamma), torch.as_tensor(beta)
    return (lambda t: torch.nn.functional.layer_norm(t, (t.shape[-1],), w, b, eps),
            torch_capture._layer_normalization((len(gamma),), w, b, eps))


def _tf_layer_norm(gamma, beta, eps):
    layer = keras.layers.LayerNormalization(epsilon=eps, dtype="float64")
    layer.build((None, len(gamma)))
    layer.set_weights([gamma, beta])
    return layer, tf_capture._layer_normalization(layer)


@pytest.mark.parametrize("fw", BACKENDS, ids=["torch", "tf"])
@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_rule_with_sigma_held_constant(fw, bias):
    d, eps = 7, 1e-5
    a, R = RNG.normal(size=(3, 4, d)), RNG.normal(size=(3, 4, d))
    gamma, beta = 1 + 0.3 * RNG.normal(size=d), (0.3 * RNG.normal(size=d) if bias else np.zeros(d))
    sigma = np.sqrt(a.var(-1, keepdims=True) + eps)
    y = gamma * (a - a.mean(-1, keepdims=True)) / sigma + beta
    g_s = gamma / sigma * sd(R, y)
    ref = a * (g_s - g_s.mean(-1, keepdims=True))  # x ⊙ Jᵀ SD(R, y), J = diag(γ/σ)(I − 𝟙𝟙ᵀ/D)
    forward, normalization = (_torch_layer_norm if fw is Torch else _tf_layer_norm)(gamma, beta, eps)
    n = g.Node("ln", g.NORM, (0,), forward, normalization=normalization)
    at = fw.tensor(a)
    np.testing.assert_allclose(fw.numpy(forward(at)), y, rtol=0, atol=1e-12)  # the frozen-σ map is the layer
    out = fw.numpy(r.layer_norm_rule(fw.ops, n, at, fw.tensor(y), fw.tensor(R)))
    np.testing.assert_allclose(out, ref, rtol=0, atol=TOL * np.abs(ref).max())
    if not bias:  # β = 0: the rule conserves (Σ_i x_i J_ji = y_j)
        np.testing.assert_allclose(out.sum(-1), R.sum(-1), rtol=1e-9)
