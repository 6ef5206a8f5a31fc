"""The Swin family with attention-aware LRP (docs/transformers.md#swin): timm's Swin (torch.fx: ``torch.roll`` is a
re-indexing), torchvision's (``shifted_window_attention`` is wrapped with ``torch.fx.wrap``: captured with
torch.export, which records what it runs), HuggingFace's Swin and Swin-V2 (torch.export; Swin-V2's cosine attention
divides q and k by their L2 norms: one ``norm`` node each, the norm held constant by the LRP rule). Random weights,
no download; small configurations (one stage in the default tier, two with patch merging in the slow tier).

Evidence: every family of ``wild_zoo.FAMILIES`` runs on each model (the gradient equals autograd to 1e-5 of its peak,
every other family finite and non-zero, the capture verified against the model); on a bias-free Swin LRP-z conserves
the logit in float64 (Σ input relevance + what the softmax's Taylor bias absorbed); the L2-normalisation rule equals a
NumPy replica in float64, and guided backprop takes its exact Jacobian."""
# torch must be imported before TensorFlow (see NOTES.md: triton/LLVM segfault trap).
import torch

import functools

import numpy as np
import pytest
import torch.nn.functional as F
from torch import nn

import signxai
from signxai import lrp
from signxai.core import graph as g
from signxai.core.composite import LRP, Composite, compile_method
from signxai.methods import resolve_method
from signxai.torch_signxai.backend import BACKEND as TORCH
import wild_zoo as zoo

SIZE = 32
#: the default tier: the gradient (autograd), one modified-gradient and two LRP families
QUICK = ("gradient", "guided backprop", "LRP-ε", "LRP-α1β0")


def _small(depths):
    return dict(embed_dim=16, depths=list(depths), num_heads=[1, 2][:len(depths)])


@functools.lru_cache(maxsize=None)
def torchvision_swin(depths=(2,), v2=False):
    from torchvision.models import swin_transformer as S
    torch.manual_seed(0)
    extra = dict(block=S.SwinTransformerBlockV2, downsample_layer=S.PatchMergingV2) if v2 else {}
    model = S.SwinTransformer(patch_size=[4, 4], window_size=[4, 4], num_classes=10, **_small(depths), **extra)
    return zoo.calibrate(model, (3, SIZE, SIZE))


@functools.lru_cache(maxsize=None)
def timm_swin(name="swin_tiny_patch4_window7_224", depths=(2,)):
    import timm
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10, img_size=SIZE, window_size=4,
                              **{k: tuple(v) if isinstance(v, list) else v for k, v in _small(depths).items()})
    return zoo.calibrate(model, (3, SIZE, SIZE))


@functools.lru_cache(maxsize=None)
def hf_swin(v2=True, depths=(2,)):
    import transformers as T
    torch.manual_seed(0)
    config, model = ((T.Swinv2Config, T.Swinv2ForImageClassification) if v2
                     else (T.SwinConfig, T.SwinForImageClassification))
    cfg = config(image_size=SIZE, patch_size=4, window_size=4, num_labels=10, **_small(depths))
    return zoo.calibrate(model(cfg), (3, SIZE, SIZE))


def _x(seed=0):
    return np.random.RandomState(seed).randn(2, 3, SIZE, SIZE).astype(np.float32)


def _ok(results):
    return {family for family, (outcome, _) in results.items() if outcome != "ok"}


def _kinds(model):
    return [n.kind for n in TORCH.graph_for(model, torch.as_tensor(_x())).nodes]


# --- default tier: one small model per property ----------------------------------------------------------------------

def test_timm_swin_roll_is_a_reindexing():
    """timm (torch.fx): the cyclic shift ``torch.roll`` is a permutation, routed by its gradient."""
    model = timm_swin()
    graph = TORCH.graph_for(model, torch.as_tensor(_x()))
    rolls = [n for n in graph.nodes if n.layer_type == "roll"]
    assert len(rolls) == 2 and all(n.kind == g.REINDEX for n in rolls)  # shift and its reversal in block 1
    assert _ok(zoo.check_families(model, _x(), QUICK)) == set()


def test_torchvision_swin_is_captured_through_the_wrapped_function():
    """torchvision: ``shifted_window_attention`` (torch.fx.wrap) is captured by torch.export: its matmuls, softmax
    and rolls are nodes of the graph, not one opaque call."""
    model = torchvision_swin()
    kinds = _kinds(model)
    assert kinds.count(g.BILINEAR) == 4 and kinds.count(g.SOFTMAX) == 2, kinds  # two blocks, q kᵀ and A v each
    assert g.UNSUPPORTED not in kinds
    assert _ok(zoo.check_families(model, _x(), QUICK)) == set()


def test_hf_swinv2_cosine_attention_is_a_norm_node():
    """HuggingFace Swin-V2: ``q/‖q‖`` and ``k/‖k‖`` (F.normalize as exported: norm, clamp_min, expand_as, div) are
    one ``norm`` node each."""
    model = hf_swin(v2=True)
    graph = TORCH.graph_for(model, torch.as_tensor(_x()))
    divisions = [n for n in graph.nodes if n.kind == g.NORM and n.layer_type == "div"]
    assert len(divisions) == 4 and all(len(n.parents) == 1 for n in divisions)  # q and k in two blocks
    assert _ok(zoo.check_families(model, _x(), QUICK)) == set()


class _FilledMask(nn.Module):
    """A constant built in the forward as torchvision's shift mask is: ``x.new_zeros(...)`` filled slice by slice in
    place, and an in-place update of a clone of a tensor attribute; ``int(x.shape[0])`` makes torch.fx fail, so the
    model is exported."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear, self.offset = nn.Linear(4, 3), torch.ones(3)

    def forward(self, x):
        rows = int(x.shape[0])
        mask = x.new_zeros((rows, 3))
        mask[:, 1:] = 2.0
        offset = self.offset.clone()
        offset.add_(1.0)
        return self.linear(x) + mask + offset


def test_in_place_fills_of_constants_built_in_the_graph():
    """The exported in-place fills are evaluated in place at capture (the verified capture reproduces the logits,
    which it would not with the fills dropped), and the model's own tensors are not touched."""
    model = _FilledMask().eval()
    x = np.random.RandomState(4).randn(2, 4).astype(np.float32)
    relevance = signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_1", target=2)
    assert relevance.shape == x.shape and np.abs(relevance).max() > 0
    assert TORCH._exported.get(model)  # (captured by torch.export)
    assert torch.equal(model.offset, torch.ones(3))


class _Absorbed:
    """An LRP mapping that records, per sample, the relevance the softmax rule does not pass on (its Taylor bias) and
    what each sum with a constant table absorbs (``s + C``, the relative position bias and the shift mask: an ADD
    node whose constant is no parent, docs/transformers.md#constant-sources), checked to be ``Σ C ⊙ R / y``."""

    def __init__(self, lrp_, samples):
        self.lrp, self.forward, self.absorbed, self.samples = lrp_, lrp_.forward, 0.0, samples
        self.constant, self.constant_nodes = 0.0, 0
        self.softmax = []  # (probabilities, relevance at the logits) per softmax

    def __call__(self, ops, index, node, inputs, output, R):
        shares = self.lrp(ops, index, node, inputs, output, R)
        if node.kind == g.SOFTMAX:
            self.softmax.append((output.detach().numpy(), shares[0].detach().numpy()))
            def per_sample(t):
                # (windows are batch-major: (N·windows, heads, tokens, tokens))
                return t.detach().numpy().reshape(self.samples, -1).sum(1)
            self.absorbed = self.absorbed + per_sample(R) - per_sample(shares[0])
        if node.kind == g.ADD and len(node.parents) == 1:
            x, y, r = (t.detach().numpy().reshape(self.samples, -1) for t in (inputs[0], output, R))
            taken = r.sum(1) - shares[0].detach().numpy().reshape(self.samples, -1).sum(1)
            np.testing.assert_allclose(taken, ((y - x) * r / y).sum(1), rtol=1e-9, atol=1e-12)
            self.constant, self.constant_nodes = self.constant + taken, self.constant_nodes + 1
        return shares


def _bias_free(model):
    """A copy with every kernel bias and LayerNorm β zero (the relative position bias, a constant shift of the
    attention logits, stays)."""
    import copy
    model = copy.deepcopy(model)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.LayerNorm)) and module.bias is not None:
                module.bias.zero_()
    return model


def _conserved(model, attention="attnlrp", target=3):
    model64 = TORCH.model_for(model, "float64")
    x64 = _x(1).astype(np.float64)
    composite = compile_method(resolve_method("lrp_z", attention=attention))
    mappings = []

    def factory(graph):
        mappings.append(_Absorbed(LRP(composite, graph), len(x64)))
        return mappings[-1]
    relevance = TORCH.graph_backward(model64, x64, np.array([target] * len(x64)), factory, lrp_head=True)
    logits = TORCH.logits(model64, x64)[:, target]
    mapping = mappings[-1]
    return relevance.reshape(len(x64), -1).sum(1), mapping.absorbed, logits, mapping.softmax, mapping


def test_conservation_on_a_bias_free_swin():
    """torchvision Swin with its shifted block (roll, the −100 shift mask, the relative position bias): LRP-z with
    AttnLRP conserves the logit in float64 once the softmax's Taylor bias and the constant tables' shares (position
    bias, shift mask) are counted; CP-LRP conserves it alone."""
    model = _bias_free(torchvision_swin())
    total, absorbed, logits, softmax, mapping = _conserved(model)
    np.testing.assert_allclose(total + absorbed + mapping.constant, logits, rtol=1e-9, atol=1e-12)
    # the position bias of both blocks and the shifted block's mask are constant tables added to the scores
    assert mapping.constant_nodes >= 2 and np.abs(mapping.constant).max() > 0
    # the softmax's bias term is real here (measured: 6e-4 of the larger logit; attention of random weights is flat)
    assert np.abs(absorbed).max() > 1e-4 * np.abs(logits).max()
    assert not np.allclose(total, logits, rtol=1e-6, atol=0)
    # the shifted block's masked keys (logit −100 + score: probability ≈ e^−100 of the row's) receive relevance of
    # that order, not exactly 0 (docs/transformers.md#swin); the unshifted block has no masked key
    probabilities, shares = softmax[0]  # (relevance runs backwards: the shifted block's softmax first)
    masked = probabilities < 1e-30
    assert masked.sum() == 2 * 2 * 16 * 8 + 2 * 16 * 12 and not (softmax[1][0] < 1e-30).any()
    assert np.abs(shares[masked]).max() < 1e-38 * np.abs(shares).max()
    total, absorbed, logits, _, mapping = _conserved(model, attention="cplrp")
    assert np.all(absorbed == 0) and np.all(mapping.constant == 0)  # no relevance reaches the scores
    np.testing.assert_allclose(total, logits, rtol=1e-9, atol=1e-12)


# --- the L2 normalisation rule against NumPy (float64) -------------------------------------------------------------

class Cosine(nn.Module):
    """``W₂ (h/‖h‖)`` with ``h = W₁x``: written out as Swin-V2 exports it, or with ``F.normalize``."""

    def __init__(self, form):
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second, self.form = nn.Linear(6, 5, bias=False), nn.Linear(5, 3, bias=False), form

    def forward(self, x):
        h = self.first(x)
        if self.form == "normalize":
            y = F.normalize(h, dim=-1)
        else:
            y = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12).expand_as(h)
        return self.second(y)


def _numpy_lrp(model, x, target, epsilon):
    """LRP-z at the kernels, the norm rule ``R_h = y ⊙ R_y / (y + ε·sign0(y))`` at ``y = h/‖h‖`` (the ε rule of
    ``h ↦ h/‖h‖`` with the norm held constant: docs/transformers.md#l2-norm)."""
    W1, W2 = (m.weight.detach().double().numpy() for m in (model.first, model.second))
    h = x @ W1.T
    y = h / np.linalg.norm(h, axis=-1, keepdims=True)
    z = y @ W2.T
    Rz = np.zeros_like(z)
    Rz[:, target] = z[:, target]
    Ry = y * ((Rz / z) @ W2)
    den = y + (0.0 if epsilon is None else epsilon) * np.where(y >= 0, 1.0, -1.0)
    Rh = y * Ry / den
    return x * ((Rh / h) @ W1)


@pytest.mark.parametrize("form", ["written_out", "normalize"])
def test_l2_normalisation_rule_equals_numpy(form):
    model = Cosine(form).eval()
    x = np.random.RandomState(2).normal(size=(4, 6)).astype(np.float32).astype(np.float64)  # (read as float32)
    assert [n.kind for n in TORCH.graph_for(model, torch.as_tensor(x)).nodes].count(g.NORM) == 1
    for epsilon in (None, 0.1):
        rules = Composite([("norm", lrp.LayerNormRule(epsilon=epsilon))], default=lrp.Z())
        ours = signxai.calculate_relevancemap(model, x, rules, dtype="float64", target=1)
        expected = _numpy_lrp(model, x, 1, epsilon)
        np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-13)
    # with ε None the rule is the identity: the logit is conserved
    logits = model.double()(torch.as_tensor(x)).detach().numpy()[:, 1]
    np.testing.assert_allclose(_numpy_lrp(model, x, 1, None).sum(1), logits, rtol=1e-10)
    model.float()


def test_guided_backprop_takes_the_exact_jacobian_of_the_normalisation():
    """No ReLU: guided backprop is the gradient, through ``‖h‖`` too (not with the norm held constant)."""
    model = Cosine("written_out").eval()
    x = np.random.RandomState(3).normal(size=(4, 6)).astype(np.float32).astype(np.float64)
    guided = signxai.calculate_relevancemap(model, x, "guided_backprop", dtype="float64", target=1)
    xt = torch.tensor(x, requires_grad=True)
    model64 = TORCH.model_for(model, "float64")
    (gradient,) = torch.autograd.grad(model64(xt)[:, 1].sum(), xt)
    np.testing.assert_allclose(guided, gradient.numpy(), rtol=1e-12, atol=1e-14)
    W1, W2 = (m.weight.detach().double().numpy() for m in (model.first, model.second))
    h = x @ W1.T
    held = (W2[1] / np.linalg.norm(h, axis=-1, keepdims=True)) @ W1  # the norm held constant
    assert np.abs(held - guided).max() > 1e-2 * np.abs(guided).max()


# --- slow tier: every family on every Swin ---------------------------------------------------------------------------

SLOW_MODELS = {
    "timm swin": lambda: timm_swin(depths=(2, 2)),
    "timm swinv2": lambda: timm_swin("swinv2_tiny_window8_256", depths=(2, 2)),
    "torchvision swin": lambda: torchvision_swin(depths=(2, 2)),
    "torchvision swin v2": lambda: torchvision_swin(depths=(2, 2), v2=True),
    "hf swin": lambda: hf_swin(v2=False, depths=(2, 2)),
    "hf swinv2": lambda: hf_swin(v2=True, depths=(2, 2)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SLOW_MODELS))
def test_every_family_runs(name):
    assert _ok(zoo.check_families(SLOW_MODELS[name](), _x())) == set()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["timm swin", "hf swinv2", "torchvision swin v2"])
def test_conservation_on_bias_free_two_stage_swins(name):
    """Two stages (patch merging), timm's buffer mask and Swin-V2's cosine attention, logit scale and continuous
    position bias (constants w.r.t. the input)."""
    total, absorbed, logits, _, mapping = _conserved(_bias_free(SLOW_MODELS[name]()))
    np.testing.assert_allclose(total + absorbed + mapping.constant, logits, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_timm_swin_tiny_at_224_every_family():
    """The zoo's full-size timm model (wild_zoo.TIMM_ATTENTION)."""
    model, shape = zoo.timm_model("swin_tiny_patch4_window7_224")
    x = np.random.RandomState(0).randn(1, *shape).astype(np.float32)
    assert _ok(zoo.check_families(model, x)) == set()


@pytest.mark.slow
def test_torchvision_swin_t_every_family():
    import torchvision
    torch.manual_seed(0)
    model = zoo.calibrate(torchvision.models.swin_t(weights=None, num_classes=10), (3, 224, 224))
    x = np.random.RandomState(0).randn(1, 3, 224, 224).astype(np.float32)
    assert _ok(zoo.check_families(model, x)) == set()
