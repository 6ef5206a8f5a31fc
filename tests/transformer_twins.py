"""A small transformer encoder built in Keras and in PyTorch with the same weights (docs/transformers.md#twins):
patch projection (Dense/Linear), learned positional embedding, pre-LN blocks with two-head self-attention
(``keras.layers.MultiHeadAttention`` / ``nn.MultiheadAttention``), LayerNorm (ε aligned), exact-erf GELU MLP,
residual sums, a final LayerNorm, mean pooling over the tokens and a linear head.

``transformer_twin(bias=True)`` returns a :class:`twins.Twin` whose ``x`` is a (N, tokens, features) batch in both
frameworks' layout (no channel axis to move: ``torch_input`` on a 3-D batch is a transpose, so the twin's
``torch_model`` takes the Keras layout and transposes itself back; see ``_TokensFirst``)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

import keras

from twins import Twin

TOKENS, FEATURES, WIDTH, HEADS, MLP, CLASSES, EPS = 6, 5, 8, 2, 16, 4, 1e-5


@keras.saving.register_keras_serializable(package="signxai_tests")
class PositionEmbedding(keras.layers.Layer):
    """``x + P`` with a learned (T, E) table P."""

    def build(self, input_shape):
        self.table = self.add_weight(shape=tuple(input_shape[1:]), initializer="zeros", name="table")

    def call(self, x):
        return x + self.table


def keras_blocks(h, blocks: int, causal: bool = False):
    """``blocks`` pre-LN blocks on the token tensor ``h`` (names ``ln1_b``, ``mha_b``, ``res1_b``, ``ln2_b``,
    ``fc1_b``, ``fc2_b``, ``res2_b``): two-head self-attention (causal: a causal mask), an exact-erf GELU MLP and two
    residual sums. Shared with the text twin (tests/text_twins.py)."""
    for b in range(blocks):
        a = keras.layers.LayerNormalization(epsilon=EPS, name=f"ln1_{b}")(h)
        a = keras.layers.MultiHeadAttention(HEADS, WIDTH // HEADS, name=f"mha_{b}")(a, a, use_causal_mask=causal)
        h = keras.layers.Add(name=f"res1_{b}")([h, a])
        m = keras.layers.LayerNormalization(epsilon=EPS, name=f"ln2_{b}")(h)
        m = keras.layers.Dense(MLP, activation="gelu", name=f"fc1_{b}")(m)
        m = keras.layers.Dense(WIDTH, name=f"fc2_{b}")(m)
        h = keras.layers.Add(name=f"res2_{b}")([h, m])
    return h


def keras_encoder(blocks: int):
    inputs = keras.Input((TOKENS, FEATURES))
    h = keras.layers.Dense(WIDTH, name="patch")(inputs)
    h = PositionEmbedding(name="position")(h)
    h = keras.layers.LayerNormalization(epsilon=EPS, name="ln_f")(keras_blocks(h, blocks))
    h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="head")(h))


class SelfAttention(nn.Module):
    """Two-head self-attention written with batch-first projections and ``F.scaled_dot_product_attention`` (traced
    by torch.fx; ``nn.MultiheadAttention`` is captured by torch.export); ``causal``: a causal mask."""

    def __init__(self, causal: bool = False):
        super().__init__()
        self.causal = causal
        self.query, self.key, self.value = (nn.Linear(WIDTH, WIDTH) for _ in range(3))
        self.out = nn.Linear(WIDTH, WIDTH)

    def forward(self, a):
        n, t, _ = a.shape
        q, k, v = (f(a).reshape(n, t, HEADS, WIDTH // HEADS).transpose(1, 2) for f in (self.query, self.key,
                                                                                         self.value))
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.out(o.transpose(1, 2).reshape(n, t, WIDTH))


class Block(nn.Module):
    """A pre-LN block: ``nn.MultiheadAttention`` (``attention="mha"``) or :class:`SelfAttention` (``"sdpa"``,
    optionally causal), a GELU MLP and two residual sums."""

    def __init__(self, attention="mha", causal: bool = False):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(WIDTH, eps=EPS), nn.LayerNorm(WIDTH, eps=EPS)
        self.attention = attention
        if attention == "mha":
            self.mha = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
        else:
            self.sdpa = SelfAttention(causal)
        self.fc1, self.act, self.fc2 = nn.Linear(WIDTH, MLP), nn.GELU(), nn.Linear(MLP, WIDTH)

    def forward(self, h):
        a = self.ln1(h)
        h = h + (self.mha(a, a, a, need_weights=False)[0] if self.attention == "mha" else self.sdpa(a))
        return h + self.fc2(self.act(self.fc1(self.ln2(h))))


class TorchEncoder(nn.Module):
    def __init__(self, blocks: int, attention="mha"):
        super().__init__()
        self.patch = nn.Linear(FEATURES, WIDTH)
        self.position = nn.Parameter(torch.zeros(TOKENS, WIDTH))
        self.blocks = nn.Sequential(*[Block(attention) for _ in range(blocks)])
        self.ln_f = nn.LayerNorm(WIDTH, eps=EPS)
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, x):
        h = self.blocks(self.patch(x) + self.position)
        return self.head(self.ln_f(h).mean(dim=1))


def _copy(param, value):
    with torch.no_grad():
        param.copy_(torch.as_tensor(np.ascontiguousarray(value), dtype=param.dtype))


class TwinWeights:
    """Random weights drawn once (in a fixed order) and given to a Keras model and its PyTorch twin: Dense/Linear,
    LayerNorm, the positional table and the pre-LN blocks (biases, β and the positional table zero for
    ``bias=False``). Shared by the encoder twin here and the text twin (tests/text_twins.py)."""

    def __init__(self, keras_model, seed: int, bias: bool):
        self.keras_model, self.rng, self.bias = keras_model, np.random.RandomState(seed), bias

    def draw(self, *shape, scale=0.5, is_bias=False):
        return (self.rng.normal(0, scale, shape) if (self.bias or not is_bias) else np.zeros(shape)).astype(
            np.float32)

    def dense(self, name, module, n_in, n_out):
        w, b = self.draw(n_in, n_out, scale=1 / np.sqrt(n_in)), self.draw(n_out, scale=0.2, is_bias=True)
        self.keras_model.get_layer(name).set_weights([w, b])
        _copy(module.weight, w.T)
        _copy(module.bias, b)

    def layer_norm(self, name, module):
        gamma, beta = 1 + self.draw(WIDTH, scale=0.2), self.draw(WIDTH, scale=0.2, is_bias=True)
        self.keras_model.get_layer(name).set_weights([gamma, beta])
        _copy(module.weight, gamma)
        _copy(module.bias, beta)

    def position(self, parameter, tokens):
        table = self.draw(tokens, WIDTH, is_bias=True)
        self.keras_model.get_layer("position").set_weights([table])
        _copy(parameter, table)

    def blocks(self, torch_blocks):
        """The pre-LN blocks ``ln1_b``, ``mha_b``, ``ln2_b``, ``fc1_b``, ``fc2_b``: ``nn.MultiheadAttention``
        (``block.attention == "mha"``) or the batch-first SDPA projections (``block.sdpa``)."""
        key_dim = WIDTH // HEADS
        for b, block in enumerate(torch_blocks):
            self.layer_norm(f"ln1_{b}", block.ln1)
            qkv = [(self.draw(WIDTH, HEADS, key_dim, scale=1 / np.sqrt(WIDTH)),
                    self.draw(HEADS, key_dim, scale=0.2, is_bias=True)) for _ in range(3)]
            out_w = self.draw(HEADS, key_dim, WIDTH, scale=1 / np.sqrt(WIDTH))
            out_b = self.draw(WIDTH, scale=0.2, is_bias=True)
            self.keras_model.get_layer(f"mha_{b}").set_weights([qkv[0][0], qkv[0][1], qkv[1][0], qkv[1][1],
                                                                 qkv[2][0], qkv[2][1], out_w, out_b])
            if getattr(block, "attention", "sdpa") == "mha":
                _copy(block.mha.in_proj_weight, np.concatenate([w.reshape(WIDTH, WIDTH).T for w, _ in qkv]))
                _copy(block.mha.in_proj_bias, np.concatenate([b_.reshape(WIDTH) for _, b_ in qkv]))
                _copy(block.mha.out_proj.weight, out_w.reshape(WIDTH, WIDTH).T)
                _copy(block.mha.out_proj.bias, out_b)
            else:
                for linear, (w, b_) in zip((block.sdpa.query, block.sdpa.key, block.sdpa.value), qkv):
                    _copy(linear.weight, w.reshape(WIDTH, WIDTH).T)
                    _copy(linear.bias, b_.reshape(WIDTH))
                _copy(block.sdpa.out.weight, out_w.reshape(WIDTH, WIDTH).T)
                _copy(block.sdpa.out.bias, out_b)
            self.layer_norm(f"ln2_{b}", block.ln2)
            self.dense(f"fc1_{b}", block.fc1, WIDTH, MLP)
            self.dense(f"fc2_{b}", block.fc2, MLP, WIDTH)


def set_weights(keras_model, torch_model, blocks: int, seed: int, bias: bool):
    """Random weights drawn once and given to both models (biases and β zero for ``bias=False``)."""
    weights = TwinWeights(keras_model, seed, bias)
    weights.dense("patch", torch_model.patch, FEATURES, WIDTH)
    weights.position(torch_model.position, TOKENS)
    weights.blocks(torch_model.blocks)
    weights.layer_norm("ln_f", torch_model.ln_f)
    weights.dense("head", torch_model.head, WIDTH, CLASSES)


class _TokensFirst(nn.Module):
    """The encoder taking the batch as the twins' ``torch_input`` gives it ((N, features, tokens): the channels-first
    move of a 3-D batch), so that the shared gate helpers apply unchanged."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        return self.encoder(x.transpose(1, 2))


def transformer_twin(blocks: int = 2, bias: bool = True, seed: int = 0, n: int = 2, attention: str = "mha",
                     position: bool = False) -> Twin:
    """``attention``: the PyTorch side's attention, ``"mha"`` (``nn.MultiheadAttention``, captured by torch.export)
    or ``"sdpa"`` (``F.scaled_dot_product_attention``, captured by torch.fx). ``position``: a random positional
    table even where ``bias=False`` zeroes the biases (a constant source on an otherwise bias-free twin)."""
    keras_model, encoder = keras_encoder(blocks), TorchEncoder(blocks, attention).eval()
    set_weights(keras_model, encoder, blocks, seed, bias)
    if position and not bias:
        table = np.random.RandomState(seed + 200).normal(0, 0.5, (TOKENS, WIDTH)).astype(np.float32)
        keras_model.get_layer("position").set_weights([table])
        _copy(encoder.position, table)
    x = np.random.RandomState(seed + 100).normal(0, 1, size=(n, TOKENS, FEATURES)).astype(np.float32)
    return Twin(f"transformer{blocks}_{attention}{'' if bias else '_nobias'}{'_position' if position else ''}",
                keras_model,
                _TokensFirst(encoder).eval(), x, 0)
