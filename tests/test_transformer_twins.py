"""Attention-aware LRP on a Keras/PyTorch transformer-encoder twin (docs/transformers.md): every method family passes
gates 1–2 of docs/equivalence.md#agreement-gates, the gradient is each framework's autograd, and on the bias-free
twin the LRP-z relevance is conserved: Σ input relevance + what the softmax's Taylor bias absorbed = the logit
(AttnLRP), Σ input relevance = the logit (CP-LRP)."""
# torch must be imported before TensorFlow (see NOTES.md: triton/LLVM segfault trap).
import torch  # noqa: F401  (import order)

import functools

import numpy as np
import pytest

import signxai
from signxai.common.agreement import sweep_kwargs
from signxai.core import graph as g
from signxai.core.composite import LRP, Composite, compile_method
from signxai.methods import resolve_method
from signxai.tf_signxai.backend import BACKEND as KERAS
from signxai.torch_signxai.backend import BACKEND as TORCH
from gates import assert_gates, assert_gradient_is_autograd
from matrix import FAMILY_SLICE
from transformer_twins import transformer_twin
from twins import torch_input

NOT_CONVOLUTIONAL = ("grad_cam", "guided_grad_cam")
METHODS = tuple(m for m in FAMILY_SLICE if m not in NOT_CONVOLUTIONAL)
#: the default tier: the rule-based families (what attention-aware LRP changes) and the gradient; the rest is slow
DEFAULT = ("gradient", "guided_backprop", "deconvnet", "lrp_z", "lrp_epsilon_0_1", "lrp_alpha_2_beta_1",
           "lrpsign_epsilon_0_25_std_x", "lrp_sequential_composite_a")


@functools.lru_cache(maxsize=None)
def twin(bias=True, attention="mha"):
    return transformer_twin(blocks=2, bias=bias, attention=attention)


def _std_x(method):
    return "std_x" in method


@pytest.mark.parametrize("method", [m if m in DEFAULT else pytest.param(m, marks=pytest.mark.slow) for m in METHODS])
def test_gates(method):
    """The nn.MultiheadAttention twin (torch.export); the std-x names on the SDPA twin (torch.fx), since
    nn.MultiheadAttention projects (tokens, batch, E) tensors that have no per-sample std (test_std_x_refusal)."""
    t = twin(attention="sdpa" if _std_x(method) else "mha")
    assert_gates(t, method, **sweep_kwargs(method, t.x))


@pytest.mark.parametrize("method", ["lrp_epsilon_0_1", "lrp_z", "lrp_alpha_1_beta_0"])
def test_gates_sdpa_twin(method):
    assert_gates(twin(attention="sdpa"), method)


def test_std_x_refusal_names_the_layer():
    t = twin()
    with pytest.raises(ValueError, match="mha.*one sample per index"):
        signxai.calculate_relevancemap(t.torch_model, torch_input(t.x), "lrp_epsilon_0_1_std_x")


@pytest.mark.parametrize("method", ["lrp_epsilon_0_1", "lrp_z", "lrpsign_epsilon_0_25_std_x"])
def test_gates_cp_lrp(method):
    t = twin(attention="sdpa" if _std_x(method) else "mha")
    assert_gates(t, method, attention="cplrp")
    attn = signxai.calculate_relevancemap(t.keras_model, t.x, method, dtype="float64")
    cp = signxai.calculate_relevancemap(t.keras_model, t.x, method, dtype="float64", attention="cplrp")
    assert np.abs(attn - cp).max() > 1e-3 * np.abs(attn).max()  # the two variants differ on this model


def test_grad_cam_is_refused_clearly():
    t = twin()
    for model, x in ((t.keras_model, t.x), (t.torch_model, torch_input(t.x))):
        with pytest.raises(ValueError, match="convolution"):
            signxai.calculate_relevancemap(model, x, "grad_cam")


def test_gradient_is_autograd():
    assert_gradient_is_autograd(twin(), target=1)


class _Absorbed:
    """An LRP mapping that records, per sample, the relevance the softmax rule does not pass on (its Taylor bias)."""

    def __init__(self, lrp, to_numpy):
        self.lrp, self.to_numpy, self.forward, self.absorbed = lrp, to_numpy, lrp.forward, 0.0

    def __call__(self, ops, index, node, inputs, output, R):
        shares = self.lrp(ops, index, node, inputs, output, R)
        if node.kind == g.SOFTMAX:
            def per_sample(t):
                return self.to_numpy(t).reshape(len(self.to_numpy(t)), -1).sum(1)
            self.absorbed = self.absorbed + per_sample(R) - per_sample(shares[0])
        return shares


@pytest.mark.parametrize("attention", ["attnlrp", "cplrp"])
@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_conservation_on_the_bias_free_twin(attention, framework):
    t = twin(bias=False)
    backend, model, x = ((KERAS, t.keras_model, t.x) if framework == "keras"
                         else (TORCH, t.torch_model, torch_input(t.x)))
    model64, x64 = backend.model_for(model, "float64"), x.astype(np.float64)
    composite = compile_method(resolve_method("lrp_z", attention=attention))
    mappings = []

    def factory(graph):
        mappings.append(_Absorbed(LRP(composite, graph), backend.to_numpy))
        return mappings[-1]
    target = 2
    relevance = backend.graph_backward(model64, x64, np.array([target] * len(x)), factory, lrp_head=True)
    logits = backend.logits(model64, x64)[:, target]
    absorbed = mappings[-1].absorbed
    total = relevance.reshape(len(x), -1).sum(1) + absorbed
    np.testing.assert_allclose(total, logits, rtol=1e-6, atol=1e-9)
    if attention == "cplrp":
        assert np.all(absorbed == 0)  # no relevance reaches the attention weights
    else:
        assert np.abs(absorbed).max() > 1e-6  # the softmax's bias term is real here


class _Constants(_Absorbed):
    """Also records, per sample, what each sum with a constant operand (``x + P``: an ADD node whose constant is no
    parent, docs/transformers.md#constant-sources) absorbs, and checks it is ``Σ P ⊙ SD(R, y)`` with ``P = y − x``."""

    def __init__(self, lrp, to_numpy):
        super().__init__(lrp, to_numpy)
        self.constant, self.constant_nodes = 0.0, 0

    def __call__(self, ops, index, node, inputs, output, R):
        shares = super().__call__(ops, index, node, inputs, output, R)
        if node.kind == g.ADD and len(node.parents) == 1:
            x, y, r = (self.to_numpy(t).reshape(len(self.to_numpy(t)), -1) for t in (inputs[0], output, R))
            taken = r.sum(1) - self.to_numpy(shares[0]).reshape(len(r), -1).sum(1)
            np.testing.assert_allclose(taken, ((y - x) * r / y).sum(1), rtol=1e-9, atol=1e-12)
            self.constant, self.constant_nodes = self.constant + taken, self.constant_nodes + 1
        return shares


@pytest.mark.parametrize("attention", ["attnlrp", "cplrp"])
def test_the_positional_table_absorbs_relevance(attention):
    """On the bias-free twin with a random positional table (float64, LRP-z): the table absorbs its Z-rule share
    ``P ⊙ SD(R, h + P)`` at ``h + P`` (docs/transformers.md#constant-sources), so Σ input relevance + what the table
    absorbed (+ the softmax's bias term for AttnLRP) = the logit; the table's share is real, and the same number on
    both frameworks."""
    t = transformer_twin(blocks=2, bias=False, attention="sdpa", position=True)
    composite = compile_method(resolve_method("lrp_z", attention=attention))
    target, absorbed = 2, []
    for backend, model, x in ((KERAS, t.keras_model, t.x), (TORCH, t.torch_model, torch_input(t.x))):
        model64, x64 = backend.model_for(model, "float64"), x.astype(np.float64)
        mappings = []

        def factory(graph, mappings=mappings, to_numpy=backend.to_numpy):
            mappings.append(_Constants(LRP(composite, graph), to_numpy))
            return mappings[-1]
        relevance = backend.graph_backward(model64, x64, np.array([target] * len(x)), factory, lrp_head=True)
        logits = backend.logits(model64, x64)[:, target]
        mapping = mappings[-1]
        assert mapping.constant_nodes == 1  # the positional table; nothing else in the twin is a constant shift
        total = relevance.reshape(len(x), -1).sum(1) + mapping.absorbed + mapping.constant
        np.testing.assert_allclose(total, logits, rtol=1e-6, atol=1e-9)
        assert np.abs(mapping.constant).min() > 1e-3 * np.abs(logits).max()
        absorbed.append(mapping.constant)
    np.testing.assert_allclose(absorbed[0], absorbed[1], rtol=1e-9)


def test_rule_map_targets_the_attention_kinds():
    """The selectors "bilinear", "softmax", "norm" reach the new kinds: the identity rule at every layer norm and
    CP-LRP's values-only rule written as a rule map equal the catalog name with attention="cplrp"."""
    t = twin()
    from signxai import lrp
    rules = Composite([("bilinear", lrp.ValuesOnly())], default=lrp.Epsilon(0.1))
    by_map = signxai.calculate_relevancemap(t.torch_model, torch_input(t.x), rules, dtype="float64")
    by_name = signxai.calculate_relevancemap(t.torch_model, torch_input(t.x), "lrp_epsilon_0_1", dtype="float64",
                                             attention="cplrp")
    np.testing.assert_array_equal(by_map, by_name)
    identity = Composite([("norm", lrp.Pass())], default=lrp.Epsilon(0.1))
    changed = signxai.calculate_relevancemap(t.keras_model, t.x, identity, dtype="float64")
    default = signxai.calculate_relevancemap(t.keras_model, t.x, "lrp_epsilon_0_1", dtype="float64")
    assert np.abs(changed - default).max() > 1e-3 * np.abs(default).max()


def test_attention_parameter_is_validated():
    with pytest.raises(ValueError, match="attention=.*'attnlrp' or 'cplrp'"):
        signxai.calculate_relevancemap(twin().keras_model, twin().x, "lrp_z", attention="cp")
