"""Token-id inputs (docs/transformers.md#text): a Keras/PyTorch text-transformer twin (classifier and causal LM)
explained from token ids, one value per token; every family passes gates 1–2 of
docs/equivalence.md#agreement-gates on the token maps; the gradient family is each framework's autograd at the
embedding output; LRP-z with CP-LRP conserves the logit over the tokens on the bias-free twin; the causal mask gives
exactly zero relevance to tokens after the target position."""
# torch must be imported before TensorFlow (see NOTES.md: triton/LLVM segfault trap).
import torch  # noqa: F401  (import order)

import copy
import functools

import numpy as np
import pytest

import keras
import signxai
from signxai.common.agreement import check_agreement, sweep_kwargs
from matrix import FAMILY_SLICE
from text_twins import CLASSES, TOKENS, VOCAB, text_twin

NOT_CONVOLUTIONAL = ("grad_cam", "guided_grad_cam")
METHODS = tuple(m for m in FAMILY_SLICE if m not in NOT_CONVOLUTIONAL)
DEFAULT = ("gradient", "gradient_x_input", "integrated_gradients", "guided_backprop", "lrp_z", "lrp_epsilon_0_1",
           "lrp_alpha_2_beta_1", "lrpsign_epsilon_0_25_std_x")
LM_TARGET = (-1, 4)  # the vocabulary index 4 at the last position


@functools.lru_cache(maxsize=None)
def twin(causal=False, bias=True):
    return text_twin(causal=causal, bias=bias)


def vectors(model, ids):
    """The embedding vectors of ``ids`` by the PyTorch model's own table (float64)."""
    return model.tok.weight.detach().double().numpy()[ids]


def explain_both(t, method, dtype, **kwargs):
    keras_model, torch_model, ids = t
    return (signxai.calculate_relevancemap(keras_model, ids, method, dtype=dtype, **kwargs),
            signxai.calculate_relevancemap(torch_model, torch.as_tensor(ids), method, dtype=dtype, **kwargs))


def assert_token_gates(t, method, **kwargs):
    kwargs = dict(sweep_kwargs(method, vectors(t[1], t[2])), **kwargs)  # zB bounds: the embedding vectors' range
    tf64, pt64 = explain_both(t, method, "float64", **kwargs)
    tf32, pt32 = explain_both(t, method, "float32", **kwargs)
    assert tf32.shape == t[2].shape and pt64.shape == t[2].shape
    agreement = check_agreement(tf32, pt32, tf64, pt64)
    assert agreement.passed, f"{method}: {agreement.violations}"
    assert agreement.peak > 0
    return agreement


def _param(method):
    return method if method in DEFAULT else pytest.param(method, marks=pytest.mark.slow)


@pytest.mark.parametrize("method", [_param(m) for m in METHODS])
def test_gates_classifier(method):
    assert_token_gates(twin(), method)


@pytest.mark.parametrize("method", [_param(m) for m in METHODS])
def test_gates_causal_lm(method):
    assert_token_gates(twin(causal=True), method, target=LM_TARGET)


@pytest.mark.parametrize("method", ["lrp_epsilon_0_1", "lrp_z"])
def test_gates_cp_lrp(method):
    assert_token_gates(twin(causal=True), method, target=LM_TARGET, attention="cplrp")


def _embedding_grad(model, ids, select):
    """∂q/∂e at the embedding output of the PyTorch model by autograd on the model itself (a forward hook on its
    nn.Embedding returning a watched tensor; float64 copy), and e."""
    model = copy.deepcopy(model).double().eval()
    watched = {}

    def hook(module, args, output):
        watched["e"] = output.detach().requires_grad_(True)
        return watched["e"]
    model.tok.register_forward_hook(hook)
    out = model(torch.as_tensor(ids))
    (grad,) = torch.autograd.grad(select(out).sum(), watched["e"])
    return grad.numpy(), watched["e"].detach().numpy()


@pytest.mark.parametrize("causal", [False, True])
def test_gradient_family_is_autograd_at_the_embedding(causal):
    """Gate 4 on token maps: gradient × input summed over the hidden axis and the gradient's Euclidean norm there
    (docs/transformers.md#token-maps) from the framework's autograd on the model, both frameworks, float64."""
    keras_model, torch_model, ids = twin(causal=causal)
    target = LM_TARGET if causal else 1
    grad, e = _embedding_grad(torch_model, ids, (lambda y: y[:, -1, 4]) if causal else (lambda y: y[:, 1]))
    for model, x in ((keras_model, ids), (torch_model, torch.as_tensor(ids))):
        gxi = signxai.calculate_relevancemap(model, x, "gradient_x_input", target=target, dtype="float64")
        norm = signxai.calculate_relevancemap(model, x, "gradient", target=target, dtype="float64")
        reference = (grad * e).sum(-1)
        assert np.abs(gxi - reference).max() <= 1e-10 * np.abs(reference).max()
        reference = np.linalg.norm(grad, axis=-1)
        assert np.abs(norm - reference).max() <= 1e-10 * reference.max()


def test_cp_lrp_conserves_the_logit_over_tokens():
    """Bias-free twin (biases, β and positions zero): LRP-z with CP-LRP is conservative, so the token relevances sum
    to the explained logit (class or a vocabulary entry at the last position)."""
    for causal, target in ((False, 2), (True, LM_TARGET)):
        keras_model, torch_model, ids = twin(causal=causal, bias=False)
        model64 = copy.deepcopy(torch_model).double()
        logits = model64(torch.as_tensor(ids)).detach().numpy()
        expected = logits[:, -1, 4] if causal else logits[:, 2]
        for model, x in ((keras_model, ids), (torch_model, torch.as_tensor(ids))):
            r = signxai.calculate_relevancemap(model, x, "lrp_z", target=target, dtype="float64", attention="cplrp")
            assert np.abs(r.sum(-1) - expected).max() <= 1e-9 * np.abs(expected).max(), (causal, type(model))


@pytest.mark.parametrize("method", ["lrp_epsilon_0_1", "gradient_x_input", "gradient"])
def test_causal_mask_keeps_later_tokens_at_zero(method):
    keras_model, torch_model, ids = twin(causal=True)
    for model, x in ((keras_model, ids), (torch_model, torch.as_tensor(ids))):
        r = signxai.calculate_relevancemap(model, x, method, target=(2, 4), dtype="float64")
        assert not r[:, 3:].any() and np.abs(r[:, :3]).min() > 0


def test_last_position_target_is_minus_one():
    keras_model, torch_model, ids = twin(causal=True)
    for model, x in ((keras_model, ids), (torch_model, torch.as_tensor(ids))):
        a = signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_1", target=(-1, 4), dtype="float64")
        b = signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_1", target=(TOKENS - 1, 4), dtype="float64")
        np.testing.assert_array_equal(a, b)
        with pytest.raises(ValueError, match="out of range"):
            signxai.calculate_relevancemap(model, x, "gradient", target=(-TOKENS - 1, 4))


def test_shapes_unbatched_and_caller_untouched():
    keras_model, torch_model, ids = twin()
    state = {k: v.clone() for k, v in torch_model.state_dict().items()}
    before = ids.copy()
    for model, x in ((keras_model, ids), (torch_model, ids)):
        batch = signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_1", target=1, dtype="float64")
        single = signxai.calculate_relevancemap(model, x[0], "lrp_epsilon_0_1", target=1, dtype="float64")
        assert batch.shape == (2, TOKENS) and single.shape == (TOKENS,)
        np.testing.assert_allclose(single, batch[0], rtol=1e-12, atol=1e-14)
        with pytest.raises(ValueError, match="contradicts token ids"):
            signxai.calculate_relevancemap(model, x[0], "gradient", batched=True)
        with pytest.raises(ValueError, match="must be >= 0"):
            signxai.calculate_relevancemap(model, -x, "gradient")
        with pytest.raises(ValueError, match="reference array has no meaning for token ids"):
            signxai.calculate_relevancemap(model, x, "integrated_gradients", reference=np.zeros((2, TOKENS)))
    assert isinstance(torch_model.tok, torch.nn.Embedding)
    assert all(torch.equal(v, state[k]) for k, v in torch_model.state_dict().items())
    np.testing.assert_array_equal(ids, before)


def test_integers_without_an_embedding_are_values():
    """An integer input of a model without an embedding lookup (an 8-bit image) is explained as before: as floats."""
    x = np.random.RandomState(0).randint(0, 255, size=(2, 5)).astype(np.uint8)
    torch_model = torch.nn.Sequential(torch.nn.Linear(5, 3)).eval()
    keras_model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    for model in (torch_model, keras_model):
        a = signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_1", target=1)
        b = signxai.calculate_relevancemap(model, x.astype(np.float32), "lrp_epsilon_0_1", target=1)
        assert a.shape == x.shape
        np.testing.assert_array_equal(a, b)


def test_refusals_name_the_cause():
    inputs = keras.Input((TOKENS,), dtype="int32")
    h = keras.layers.Embedding(VOCAB, 4, mask_zero=True)(inputs)
    masked = keras.Model(inputs, keras.layers.Dense(CLASSES)(keras.layers.GlobalAveragePooling1D()(h)))
    with pytest.raises(ValueError, match="mask_zero=True"):
        signxai.calculate_relevancemap(masked, twin()[2], "gradient")

    class Functional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.table = torch.nn.Parameter(torch.randn(VOCAB, 4))
            self.unused = torch.nn.Embedding(2, 4)
            self.head = torch.nn.Linear(4, CLASSES)

        def forward(self, ids):
            return self.head(torch.nn.functional.embedding(ids, self.table).mean(1))
    with pytest.raises(ValueError, match="not an nn.Embedding"):
        signxai.calculate_relevancemap(Functional().eval(), torch.as_tensor(twin()[2]), "gradient")


# --- HuggingFace BERT and GPT-2 from small random configs (no downloads) ---------------------------------------------

@functools.lru_cache(maxsize=None)
def hf_models():
    transformers = pytest.importorskip("transformers")
    generator = torch.Generator().manual_seed(0)
    bert = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, num_labels=3, initializer_range=0.5)).eval()
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=16, activation_function="gelu",
        initializer_range=0.5, bos_token_id=0, eos_token_id=0)).eval()
    ids = torch.randint(0, 50, (2, 6), generator=generator)
    return {"bert": (bert, 1, lambda y: y[:, 1]), "gpt2": (gpt2, (-1, 7), lambda y: y[:, -1, 7])}, ids


def _hf_embedding_grad(model, ids, select):
    model = copy.deepcopy(model).double().eval()
    watched = {}

    def hook(module, args, output):
        watched["e"] = output.detach().requires_grad_(True)
        return watched["e"]
    model.get_input_embeddings().register_forward_hook(hook)
    (grad,) = torch.autograd.grad(select(model(ids).logits).sum(), watched["e"])
    return grad.numpy(), watched["e"].detach().numpy()


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_hf_text_models(name):
    """Gradient × input is autograd at the word embedding (the model's own position/type embeddings and masks
    untouched); LRP runs on the verified capture (torch.export of the token view) and, on GPT-2, keeps tokens after
    the explained position at exactly 0."""
    models, ids = hf_models()
    model, target, select = models[name]
    grad, e = _hf_embedding_grad(model, ids, select)
    reference = (grad * e).sum(-1)
    mine = signxai.calculate_relevancemap(model, ids, "gradient_x_input", target=target, dtype="float64")
    assert np.abs(mine - reference).max() <= 1e-10 * np.abs(reference).max()
    r = signxai.calculate_relevancemap(model, ids, "lrp_epsilon_0_1", target=target, dtype="float64")
    assert r.shape == (2, 6) and np.isfinite(r).all() and np.abs(r).max() > 0
    if name == "gpt2":
        r = signxai.calculate_relevancemap(model, ids, "lrp_epsilon_0_1", target=(2, 7), dtype="float64")
        assert not r[:, 3:].any() and np.abs(r[:, :3]).min() > 0
    else:  # BERT's token-type table (from held-fixed ids) is a constant source; the capture keeps the batch axis
        # symbolic while classifying it, so per-sample std-x rules still find one sample per leading index
        r = signxai.calculate_relevancemap(model, ids, "lrp_epsilon_0_25_std_x", target=target, dtype="float64")
        assert r.shape == (2, 6) and np.isfinite(r).all() and np.abs(r).max() > 0


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_hf_every_family(name, method):
    models, ids = hf_models()
    model, target, _ = models[name]
    kwargs = sweep_kwargs(method, model.get_input_embeddings().weight.detach().numpy())
    if name == "gpt2" and "std_x" in method:  # GPT-2's Conv1D projects (N·T, E) rows: no per-sample std
        with pytest.raises(ValueError, match=r"transformer\.h\..*\(dense, addmm\).*one sample per index"):
            signxai.calculate_relevancemap(model, ids, method, target=target, **kwargs)
        return
    r32 = signxai.calculate_relevancemap(model, ids, method, target=target, **kwargs)
    r64 = signxai.calculate_relevancemap(model, ids, method, target=target, dtype="float64", **kwargs)
    assert r32.shape == (2, 6) and np.isfinite(r64).all() and np.abs(r64).max() > 0
    assert np.abs(r32 - r64).max() <= 1e-3 * np.abs(r64).max()


def test_hf_gpt2_eager_attention_is_the_sdpa_model():
    """HF's eager attention (matmul, softmax, matmul, with ``aten._assert_tensor_metadata`` checks in the exported
    graph: no signal) gives the maps of the same weights under SDPA (float64), and its input×gradient is autograd."""
    models, ids = hf_models()
    sdpa, target, select = models["gpt2"]
    eager = copy.deepcopy(sdpa)
    eager.set_attn_implementation("eager")
    assert eager.config._attn_implementation == "eager" and sdpa.config._attn_implementation != "eager"
    for method in ("lrp_epsilon_0_1", "lrp_alpha_1_beta_0", "guided_backprop"):
        a = signxai.calculate_relevancemap(eager, ids, method, target=target, dtype="float64")
        b = signxai.calculate_relevancemap(sdpa, ids, method, target=target, dtype="float64")
        assert np.abs(b).max() > 0 and np.abs(a - b).max() <= 1e-12 * np.abs(b).max(), method
    grad, e = _hf_embedding_grad(eager, ids, select)
    mine = signxai.calculate_relevancemap(eager, ids, "gradient_x_input", target=target, dtype="float64")
    assert np.abs(mine - (grad * e).sum(-1)).max() <= 1e-10 * np.abs(grad * e).sum(-1).max()
