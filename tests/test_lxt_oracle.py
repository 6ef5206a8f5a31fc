"""Equality with LXT (rachtibat/LRP-eXplains-Transformers 2.1), a test-only oracle, in float64
(docs/transformers.md#lxt): LXT's efficient AttnLRP and CP-LRP (Input×Gradient through its patched modules) equal
signxai's ``lrp_z`` with ``attention="attnlrp"`` / ``"cplrp"`` on torchvision's VisionTransformer, HuggingFace BERT
and HuggingFace GPT-2, with random biases, class token and positional tables (the constant sources absorb relevance
in both: docs/transformers.md#constant-sources).

LXT is not a dependency: the tests are skipped where it is not installed (``pip install --no-deps lxt==2.1``). Its
package ``__init__`` and its BERT patch import HuggingFace model code that transformers 5 no longer has, and its
``patch_attention`` replaces transformers 5's ``AttentionInterface`` by a plain dict (which has no
``get_interface``), so the oracle is assembled from LXT's own pieces, exactly where LXT's presets put them: its
``non_linear_forward`` (identity rule) on the activations, ``layer_norm_forward`` (σ detached) on ``nn.LayerNorm``,
``wrap_attention_forward`` (AttnLRP: gradient ÷4 at q and k, ÷2 at v) or ``cp_wrap_attention_forward`` /
``cp_multi_head_attention_forward`` (CP-LRP: q and k detached) on the attention, GPT-2's ``mlp_forward``. LXT patches
classes and modules process-wide: every patch is undone after each use (asserted)."""
import torch

import contextlib
import copy
import importlib.util
import sys
import types

import numpy as np
import pytest
from torch import nn

import signxai

pytestmark = pytest.mark.slow

#: measured: ≤ 3.4e-8 of the peak (ViT: LXT's identity rule divides by x + 1e-10 at GELU), ≤ 6e-9 (BERT, GPT-2)
TOLERANCE = 1e-6


def _lxt_root():
    spec = importlib.util.find_spec("lxt")
    if spec is None:
        pytest.skip("LXT is not installed (test-only oracle)")
    return spec.submodule_search_locations[0]


def _lxt():
    """LXT's ``efficient.patches`` without ``lxt/efficient/__init__.py`` (HuggingFace model imports)."""
    root = _lxt_root()
    if "lxt.efficient" not in sys.modules:
        package = types.ModuleType("lxt.efficient")
        package.__path__ = [f"{root}/efficient"]
        sys.modules["lxt.efficient"] = package
    import lxt.efficient.patches as patches
    return patches


def _lxt_model_file(name):
    """One of LXT's ``efficient/models/*.py`` loaded on its own (its package imports every model family)."""
    _lxt()
    spec = importlib.util.spec_from_file_location(f"_lxt_{name}", f"{_lxt_root()}/efficient/models/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _patched(items):
    """Set ``owner.attribute = value`` for each item, and restore every attribute (or its absence) afterwards."""
    saved = [(owner, name, owner.__dict__.get(name), name in owner.__dict__) for owner, name, _ in items]
    try:
        for owner, name, value in items:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value, present in reversed(saved):
            if present:
                setattr(owner, name, value)
            else:
                delattr(owner, name)
    for owner, name, value, present in saved:
        assert owner.__dict__.get(name) is value and (name in owner.__dict__) == present, (owner, name)


def _identity_rule(patches, cls):
    """LXT's ``non_linear_forward`` (the identity rule) on an activation class, keeping its original forward."""
    return [(cls, "original_forward", cls.forward), (cls, "forward", patches.non_linear_forward)]


def _assert_equal(mine, theirs, other):
    """``mine`` equals LXT's map ``theirs`` to TOLERANCE of the peak; ``other`` (LXT's other variant) does not, so the
    comparison tells the two variants apart."""
    peak = np.abs(theirs).max()
    assert peak > 0
    np.testing.assert_allclose(mine, theirs, rtol=0, atol=TOLERANCE * peak)
    assert np.abs(mine - other).max() > 100 * TOLERANCE * peak


def _randomise(model, std=0.1):
    """Non-zero biases and LayerNorm parameters (HF and torchvision initialise them to 0 and 1)."""
    with torch.no_grad():
        for module in model.modules():
            for name, parameter in module.named_parameters(recurse=False):
                if "bias" in name or isinstance(module, nn.LayerNorm):
                    parameter.add_(torch.randn_like(parameter) * std)


def test_torchvision_vit_equals_lxt():
    """torchvision's VisionTransformer (the class of ``vit_b_16``; 2 layers of width 16 to stay fast): LXT's CP-LRP
    preset for it (``lxt.efficient.models.vit_torch.cp_LRP``) and its AttnLRP (the preset with
    ``wrap_attention_forward`` at ``nn.MultiheadAttention`` instead of the detached query and key)."""
    from torchvision.models.vision_transformer import VisionTransformer
    patches = _lxt()
    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                              num_classes=10).eval()
    with torch.no_grad():
        nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision zero-initialises the head
        nn.init.normal_(model.encoder.pos_embedding, std=0.5)
        nn.init.normal_(model.class_token, std=0.5)
    _randomise(model)
    x = np.random.RandomState(0).randn(2, 3, 32, 32)
    target = 3
    mha = nn.MultiheadAttention
    theirs = {}
    for attention, forward in (("attnlrp", patches.wrap_attention_forward(mha.forward)),
                               ("cplrp", patches.cp_multi_head_attention_forward)):
        items = _identity_rule(patches, nn.GELU) + [(nn.LayerNorm, "forward", patches.layer_norm_forward),
                                                    (mha, "original_forward", mha.forward), (mha, "forward", forward)]
        with _patched(items):
            oracle = copy.deepcopy(model).double()
            xt = torch.tensor(x, requires_grad=True)
            oracle(xt)[:, target].sum().backward()
            theirs[attention] = (xt * xt.grad).detach().numpy()
    for attention, other in (("attnlrp", "cplrp"), ("cplrp", "attnlrp")):
        mine = signxai.calculate_relevancemap(model, x.astype(np.float32), "lrp_z", dtype="float64", target=target,
                                              attention=attention).astype(np.float64)
        _assert_equal(mine, theirs[attention], theirs[other])


def _text_oracle(model, ids, output, attention_module, extra_items, wrap, oracle=None):
    """LXT's token relevance: Input×Gradient at the embedding output, summed over the hidden axis, through the
    patched model (``output(logits)`` the explained logits)."""
    patches = _lxt()
    eager = attention_module.eager_attention_forward
    items = extra_items + [(nn.LayerNorm, "forward", patches.layer_norm_forward),
                           (attention_module, "eager_attention_forward", wrap(eager))]
    with _patched(items):
        oracle = copy.deepcopy(model if oracle is None else oracle).double()
        embedding = oracle.get_input_embeddings()
        e = embedding(torch.tensor(ids)).detach().requires_grad_(True)
        output(oracle(inputs_embeds=e).logits).sum().backward()
        return (e * e.grad).sum(-1).detach().numpy()


def test_hf_bert_equals_lxt():
    """HF ``BertForSequenceClassification`` (eager attention): LXT's BERT AttnLRP (its ``bert.py``: the identity rule
    at the intermediate GELU and the pooler's tanh, LayerNorm with σ detached, the attention's gradient halved at the
    scores and the context) and CP-LRP (query and key detached), built from LXT's pieces for transformers 5."""
    transformers = pytest.importorskip("transformers")
    import transformers.models.bert.modeling_bert as modeling_bert
    from transformers.activations import GELUActivation
    patches = _lxt()
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=3,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                     attn_implementation="eager")
    model = transformers.BertForSequenceClassification(config).eval()
    _randomise(model)
    ids = np.random.RandomState(0).randint(0, 50, size=(2, 7))
    target = 1
    activations = _identity_rule(patches, GELUActivation) + _identity_rule(patches, nn.Tanh)
    theirs = {attention: _text_oracle(model, ids, lambda logits: logits[:, target], modeling_bert, activations, wrap)
              for attention, wrap in (("attnlrp", patches.wrap_attention_forward),
                                      ("cplrp", patches.cp_wrap_attention_forward))}
    for attention, other in (("attnlrp", "cplrp"), ("cplrp", "attnlrp")):
        mine = signxai.calculate_relevancemap(model, ids, "lrp_z", dtype="float64", target=target,
                                              attention=attention).astype(np.float64)
        _assert_equal(mine, theirs[attention], theirs[other])


def test_hf_gpt2_equals_lxt():
    """HF ``GPT2LMHeadModel`` (exact-erf GELU; ``gelu_new`` has no rule), the next-token logit at the last position:
    LXT's GPT-2 presets (``gpt2.attnLRP`` / ``gpt2.cp_LRP``: its ``mlp_forward``, LayerNorm, the wrapped attention).
    signxai explains the default SDPA model; LXT's wrappers act on the eager attention function, so the oracle is the
    same weights with ``attn_implementation="eager"`` (the same function)."""
    transformers = pytest.importorskip("transformers")
    import transformers.models.gpt2.modeling_gpt2 as modeling_gpt2
    patches = _lxt()
    gpt2 = _lxt_model_file("gpt2")
    torch.manual_seed(0)
    settings = dict(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=16, activation_function="gelu",
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**settings)).eval()
    _randomise(model)
    eager = transformers.GPT2LMHeadModel(transformers.GPT2Config(**settings, attn_implementation="eager")).eval()
    eager.load_state_dict(model.state_dict())
    ids = np.random.RandomState(0).randint(0, 50, size=(2, 7))
    token = 4
    mlp = [(modeling_gpt2.GPT2MLP, "forward", gpt2.mlp_forward)]
    theirs = {attention: _text_oracle(model, ids, lambda logits: logits[:, -1, token], modeling_gpt2, mlp, wrap,
                                      oracle=eager)
              for attention, wrap in (("attnlrp", patches.wrap_attention_forward),
                                      ("cplrp", patches.cp_wrap_attention_forward))}
    for attention, other in (("attnlrp", "cplrp"), ("cplrp", "attnlrp")):
        mine = signxai.calculate_relevancemap(model, ids, "lrp_z", dtype="float64", target=(-1, token),
                                              attention=attention).astype(np.float64)
        _assert_equal(mine, theirs[attention], theirs[other])
