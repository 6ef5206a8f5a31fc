"""keras_hub transformer backbones on the Keras backend (docs/transformers.md#keras-hub): ViTBackbone with a Dense head
(its class token tiled to the batch), BertBackbone and GPT2Backbone with a head from token ids plus a padding mask
(several integer inputs; the mask and segment ids held fixed), and GPT-2's tanh-GELU written with ``pow``
(docs/transformers.md#power). Every family runs; the gradient family equals TensorFlow's autograd on the model
(at the embedding output for token ids); LRP-z with CP-LRP conserves the logit on bias-free variants in float64."""
# torch must be imported before TensorFlow (see NOTES.md: triton/LLVM segfault trap).
import torch  # noqa: F401  (import order)

import copy
import functools
import time

import numpy as np
import pytest
import tensorflow as tf

import signxai
from wild_zoo import FAMILIES, GRADIENT_FAMILY, check_families, keras_hub_model

keras = pytest.importorskip("keras")
keras_hub = pytest.importorskip("keras_hub")

VOCAB, TOKENS, CLASSES, LM_TARGET = 50, 6, 3, (-1, 7)
TEXT_FAMILIES = [f for f in FAMILIES if f != "Grad-CAM"]  # no convolution in a text transformer


# --- models (random weights, no download) -------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def vit():
    return keras_hub_model("vit")


def redraw(model, seed, bias=True):
    """Weights drawn once (kernels and tables N(0, 0.3²), biases and β N(0, 0.1²), γ 1 + N(0, 0.1²)); with
    ``bias=False`` every bias, β, position table and class token is zero."""
    rs = np.random.RandomState(seed)
    values = []
    for w in model.weights:
        path = w.path
        constant = any(k in path for k in ("bias", "beta", "position", "class_token"))
        if constant and not bias:
            values.append(np.zeros(w.shape))
        elif "gamma" in path:
            values.append(1 + 0.1 * rs.randn(*w.shape))
        elif "bias" in path or "beta" in path:
            values.append(0.1 * rs.randn(*w.shape))
        else:
            values.append(0.3 * rs.randn(*w.shape))
    model.set_weights([v.astype(np.float32) for v in values])
    return model


@functools.lru_cache(maxsize=None)
def text_model(kind, bias=True):
    """A keras_hub backbone with a head, its inputs (a dict: token ids, padding mask, segment ids for BERT) and
    target: BERT with a Dense classifier on its pooled output (outputs: pooled and sequence), GPT-2 with a Dense
    language-model head at every position."""
    small = dict(vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
                 max_sequence_length=16, dropout=0.0)
    rs = np.random.RandomState(3)
    ids = np.stack([rs.permutation(VOCAB)[:TOKENS] for _ in range(3)])  # distinct ids within each sequence
    mask = np.ones((3, TOKENS), "int32")
    mask[1, 4:] = 0  # the second sequence is padded after 4 tokens
    if kind == "bert":
        backbone = keras_hub.models.BertBackbone(**small)
        head = keras.layers.Dense(CLASSES, use_bias=bias)(backbone.output["pooled_output"])
        segments = np.zeros((3, TOKENS), "int32")
        segments[:, 3:] = 1
        x, target = {"token_ids": ids, "padding_mask": mask, "segment_ids": segments}, 1
    else:
        backbone = keras_hub.models.GPT2Backbone(**small)
        head = keras.layers.Dense(VOCAB, use_bias=bias)(backbone.output)
        x, target = {"token_ids": ids, "padding_mask": mask}, LM_TARGET
    model = redraw(keras.Model(backbone.input, head), seed=5, bias=bias)
    return model, x, target


def explain_tokens(model, x, method, target, **kwargs):
    return signxai.calculate_relevancemap(model, x, method, target=target, inputs="token_ids", **kwargs)


def float64(model):
    """The model's float64 copy (signxai's private one: every layer and input float64, the same weights)."""
    from signxai.api import _backend_for
    return _backend_for(model).model_for(model, "float64")


def logit(model, x, target):
    out = model(x, training=False).numpy()
    return out[:, target] if isinstance(target, int) else out[:, target[0], target[1]]


def autograd_at_embedding(model, x, target):
    """∂q/∂e and e at the token embedding's output by TensorFlow's autograd on ``model`` itself: the derivative
    with respect to the embedding table's row of each id (the ids of one sequence are distinct, so each row is
    looked up once), one sequence at a time."""
    table = next(w for w in model.weights if "token_embedding" in w.path)
    grads, vectors = [], []
    for n in range(len(x["token_ids"])):
        sample = {k: v[n:n + 1] for k, v in x.items()}
        with tf.GradientTape() as tape:
            out = model(sample, training=False)
            q = out[0, target] if isinstance(target, int) else out[0, target[0], target[1]]
        grad = tf.convert_to_tensor(tape.gradient(q, table))
        grads.append(tf.gather(grad, sample["token_ids"][0]).numpy())
        vectors.append(tf.gather(table, sample["token_ids"][0]).numpy())
    return np.stack(grads), np.stack(vectors)


# --- ViTBackbone ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 3])
def test_vit_rule_based_and_gradient(n):
    """The patching layer reads the batch size (its class token is tiled to it): recorded on two concrete batches,
    its batch-sized arguments follow x; the verified capture holds at batch sizes other than the recordings'."""
    model, shape = vit()
    x = np.random.RandomState(n).randn(n, *shape).astype(np.float32)
    results = check_families(model, x, ("gradient", "LRP-ε", "guided backprop"))
    assert all(outcome == "ok" for outcome, _ in results.values()), results


@pytest.mark.slow
def test_vit_every_family():
    model, shape = vit()
    x = np.random.RandomState(0).randn(2, *shape).astype(np.float32)
    results = check_families(model, x)
    assert all(outcome == "ok" for outcome, _ in results.values()), results


def test_vit_bias_free_conservation():
    """Bias-free ViT (biases, β, class token and position table zero): LRP-z with CP-LRP conserves the logit in
    float64 (the zero class token absorbs nothing)."""
    model, shape = vit()
    model = redraw(keras.models.clone_model(model), seed=2, bias=False)
    x = np.random.RandomState(1).randn(2, *shape).astype(np.float32)
    r = signxai.calculate_relevancemap(model, x, "lrp_z", target=4, dtype="float64", attention="cplrp")
    expected = logit(float64(model), x.astype(np.float64), 4)
    total = r.reshape(2, -1).sum(1)
    assert np.abs(total - expected).max() <= 1e-9 * np.abs(expected).max(), (total, expected)


# --- BertBackbone and GPT2Backbone from token ids -------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_text_gradient_family_is_autograd_at_the_embedding(kind):
    """Gradient × input summed over the hidden axis and the gradient's norm there equal TensorFlow's autograd on the
    model (docs/transformers.md#token-maps); the padding mask and segment ids are held at the caller's values."""
    model, x, target = text_model(kind)
    grad, e = autograd_at_embedding(float64(model), x, target)
    gxi = explain_tokens(model, x, "gradient_x_input", target, dtype="float64")
    norm = explain_tokens(model, x, "gradient", target, dtype="float64")
    reference = (grad * e).sum(-1)
    assert gxi.shape == x["token_ids"].shape
    assert np.abs(gxi - reference).max() <= 1e-10 * np.abs(reference).max()
    reference = np.linalg.norm(grad, axis=-1)
    assert np.abs(norm - reference).max() <= 1e-10 * reference.max()
    grad, e = autograd_at_embedding(model, x, target)  # float32: the model itself
    gxi32 = explain_tokens(model, x, "gradient_x_input", target)
    reference = (grad * e).sum(-1)
    assert np.abs(gxi32 - reference).max() <= 1e-5 * np.abs(reference).max()


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_text_lrp_padding_and_causal_zeros(kind):
    """AttnLRP on the verified capture: finite, non-zero; padded tokens (mask 0) take no part in the classifier's
    output and get exactly 0; on GPT-2, tokens after the explained position get exactly 0."""
    model, x, target = text_model(kind)
    r = explain_tokens(model, x, "lrp_epsilon_0_1", target, dtype="float64")
    assert r.shape == (3, TOKENS) and np.isfinite(r).all() and np.abs(r).max() > 0
    if kind == "bert":
        assert not r[1, 4:].any() and np.abs(r[1, :4]).min() > 0
    else:
        r = explain_tokens(model, x, "lrp_epsilon_0_1", (2, 7), dtype="float64")
        assert not r[:, 3:].any() and np.abs(r[:, :3]).min() > 0
    one = explain_tokens(model, {k: v[1] for k, v in x.items()}, "lrp_epsilon_0_1", target, dtype="float64")
    np.testing.assert_allclose(one, explain_tokens(model, x, "lrp_epsilon_0_1", target, dtype="float64")[1],
                               rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_text_bias_free_conservation(kind):
    """Bias-free variants (biases, β and position tables zero): LRP-z with CP-LRP conserves the explained logit over
    the tokens in float64. BERT's segment table stays: a constant added to the tokens, passed to them (a pass node)
    — it is zeroed as well so that nothing but the tokens carries the logit."""
    model, x, target = text_model(kind, bias=False)
    model = keras.models.clone_model(model)
    model.set_weights([np.zeros_like(w) if "segment" in v.path else w
                       for v, w in zip(model.weights, text_model(kind, bias=False)[0].get_weights())])
    r = explain_tokens(model, x, "lrp_z", target, dtype="float64", attention="cplrp")
    expected = logit(float64(model), x, target)
    assert np.abs(r.sum(-1) - expected).max() <= 1e-9 * np.abs(expected).max(), (r.sum(-1), expected)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_text_every_family(kind):
    """Every family of the wild tier (Grad-CAM aside: no convolution) on the token ids: finite, non-zero maps, one
    value per token, float32 within 1e-3 of float64 (the capture verified in both)."""
    model, x, target = text_model(kind)
    for family in TEXT_FAMILIES:
        method, params = FAMILIES[family]
        start = time.perf_counter()
        r32 = explain_tokens(model, x, method, target, **params)
        r64 = explain_tokens(model, x, method, target, dtype="float64", **params)
        assert r32.shape == x["token_ids"].shape and np.isfinite(r64).all() and np.abs(r64).max() > 0, family
        if family not in ("SmoothGrad", "VarGrad"):  # noise drawn per call: compared in their own tests
            assert np.abs(r32 - r64).max() <= 1e-3 * np.abs(r64).max(), family
        assert time.perf_counter() - start < 120, family
    assert set(GRADIENT_FAMILY) <= set(TEXT_FAMILIES)


def test_text_refusals_name_the_cause():
    model, x, target = text_model("bert")
    with pytest.raises(ValueError, match="must be >= 0"):
        explain_tokens(model, dict(x, token_ids=-x["token_ids"]), "gradient", target)


# --- GPT-2's gelu_new: pow of a signal by a constant ----------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def hf_gpt2(activation):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=2, n_positions=16, activation_function=activation,
        initializer_range=0.5, bos_token_id=0, eos_token_id=0)).eval()


@pytest.mark.parametrize("method", ["lrp_z", "guided_backprop", pytest.param("lrp_epsilon_0_1", marks=pytest.mark.slow),
                                    pytest.param("lrp_alpha_1_beta_0", marks=pytest.mark.slow)])
def test_gelu_new_is_the_identity_rule(method):
    """HF GPT-2's default ``gelu_new`` (``0.5·x·(1 + tanh(√(2/π)(x + 0.044715·x³)))``, ``pow`` an element-wise
    activation) gives the map of the same model with ``gelu_pytorch_tanh`` (one GELU node, identity rule) to float64
    rounding: the uniform product rule and the sum rule hand every share back to x (docs/transformers.md#power)."""
    written, fused = hf_gpt2("gelu_new"), copy.deepcopy(hf_gpt2("gelu_pytorch_tanh"))
    fused.load_state_dict(written.state_dict())
    ids = torch.randint(0, VOCAB, (2, TOKENS), generator=torch.Generator().manual_seed(0))
    a = signxai.calculate_relevancemap(written, ids, method, target=LM_TARGET, dtype="float64")
    b = signxai.calculate_relevancemap(fused, ids, method, target=LM_TARGET, dtype="float64")
    assert np.abs(b).max() > 0
    assert np.abs(a - b).max() <= 1e-12 * np.abs(b).max()


# --- cross-framework ViT twin from the real zoos --------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def twin():
    from vit_twin import vit_twin
    return vit_twin()


def twin_maps(method, dtype, **kwargs):
    keras_model, torch_model, xk, xt = twin()
    a = signxai.calculate_relevancemap(keras_model, xk, method, target=3, dtype=dtype, **kwargs)
    b = signxai.calculate_relevancemap(torch_model, torch.as_tensor(xt), method, target=3, dtype=dtype, **kwargs)
    return a, b.transpose(0, 2, 3, 1)  # PyTorch's map channels-last, as Keras's


def twin_agreement(method, **kwargs):
    from signxai.common.agreement import check_agreement
    tf32, pt32 = twin_maps(method, "float32", **kwargs)
    tf64, pt64 = twin_maps(method, "float64", **kwargs)
    return check_agreement(tf32, pt32, tf64, pt64)


TWIN_DEFAULT = ("lrp_epsilon_0_1", "gradient")
TWIN_METHODS = [m for m in ("gradient", "gradient_x_input", "gradient_x_sign", "integrated_gradients",
                            "guided_backprop", "deconvnet", "lrp_z", "lrp_epsilon_0_1", "lrp_alpha_1_beta_0",
                            "lrpsign_epsilon_0_1", "lrp_sequential_composite_a")]


def test_vit_twin_logits():
    keras_model, torch_model, xk, xt = twin()
    with torch.no_grad():
        expected = torch_model(torch.as_tensor(xt)).logits.numpy()
    assert np.abs(keras_model(xk).numpy() - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize("method", [m if m in TWIN_DEFAULT else pytest.param(m, marks=pytest.mark.slow)
                                    for m in TWIN_METHODS])
def test_vit_twin_gates(method):
    """keras_hub ViTBackbone + Dense vs HF ViTForImageClassification, weights ported by keras_hub's recipe: gates 1
    (float64) and 2 (float32) of docs/equivalence.md#agreement-gates (PyTorch's map taken channels-last)."""
    from signxai.common.agreement import sweep_kwargs
    agreement = twin_agreement(method, **sweep_kwargs(method, twin()[2]))
    assert agreement.passed and agreement.peak > 0, f"{method}: {agreement.violations}"


# --- refusals --------------------------------------------------------------------------------------------------------

class _DoubledRows(keras.layers.Layer):
    """Reads the batch size and uses twice it: the two recordings differ by 4 vs 6, not by the batch size."""

    def call(self, x):
        rows = keras.ops.reshape(x, (keras.ops.shape(x)[0] * 2, -1))
        return keras.ops.reshape(rows, (keras.ops.shape(x)[0], 4))


def test_batch_reading_layer_that_is_not_batch_sized_is_refused():
    """Recordings on batches 2 and 3 that differ otherwise than by the batch size leave the layer unsupported, the
    symbolic failure named; the gradient family still runs."""
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(_DoubledRows()(keras.layers.Dense(4)(inputs))))
    x = np.random.RandomState(0).randn(2, 4).astype(np.float32)
    with pytest.raises(ValueError, match=r"doubled_rows.*could not be recorded on symbolic inputs"):
        signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_1")
    assert np.abs(signxai.calculate_relevancemap(model, x, "gradient")).max() > 0


def test_power_with_a_tensor_exponent_is_refused():
    class Power(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, x):
            h = self.linear(x)
            return h ** torch.sigmoid(h)
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="a power with an input-dependent or tensor exponent has no rule"):
        signxai.calculate_relevancemap(Power().eval(), x, "lrp_epsilon_0_1")
