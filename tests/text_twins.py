"""A small text transformer built in Keras and in PyTorch with the same weights (docs/transformers.md#text-twins):
token embedding (``keras.layers.Embedding`` / ``nn.Embedding``), a learned positional table (a constant shift),
pre-LN blocks with two-head self-attention (Keras ``MultiHeadAttention``; PyTorch batch-first projections with
``F.scaled_dot_product_attention``), LayerNorm (ε aligned), exact-erf GELU MLP and residual sums, a final LayerNorm
and either a classification head on the mean over tokens (``causal=False``: logits (N, CLASSES)) or, with a causal
mask, a language-model head at every position (``causal=True``: logits (N, T, VOCAB)).

``text_twin()`` returns ``(keras_model, torch_model, ids)``: ``ids`` (N, T) int64 token ids, the same for both."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

import keras

from transformer_twins import EPS, HEADS, MLP, WIDTH, PositionEmbedding

TOKENS, VOCAB, CLASSES = 7, 11, 3


def keras_text(blocks: int, causal: bool):
    inputs = keras.Input((TOKENS,), dtype="int32")
    h = keras.layers.Embedding(VOCAB, WIDTH, name="tok")(inputs)
    h = PositionEmbedding(name="position")(h)
    for b in range(blocks):
        a = keras.layers.LayerNormalization(epsilon=EPS, name=f"ln1_{b}")(h)
        a = keras.layers.MultiHeadAttention(HEADS, WIDTH // HEADS, name=f"mha_{b}")(a, a, use_causal_mask=causal)
        h = keras.layers.Add(name=f"res1_{b}")([h, a])
        m = keras.layers.LayerNormalization(epsilon=EPS, name=f"ln2_{b}")(h)
        m = keras.layers.Dense(MLP, activation="gelu", name=f"fc1_{b}")(m)
        m = keras.layers.Dense(WIDTH, name=f"fc2_{b}")(m)
        h = keras.layers.Add(name=f"res2_{b}")([h, m])
    h = keras.layers.LayerNormalization(epsilon=EPS, name="ln_f")(h)
    if causal:
        return keras.Model(inputs, keras.layers.Dense(VOCAB, name="head")(h))
    h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="head")(h))


class Attention(nn.Module):
    def __init__(self, causal: bool):
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
    def __init__(self, causal: bool):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(WIDTH, eps=EPS), nn.LayerNorm(WIDTH, eps=EPS)
        self.sdpa = Attention(causal)
        self.fc1, self.act, self.fc2 = nn.Linear(WIDTH, MLP), nn.GELU(), nn.Linear(MLP, WIDTH)

    def forward(self, h):
        h = h + self.sdpa(self.ln1(h))
        return h + self.fc2(self.act(self.fc1(self.ln2(h))))


class TorchText(nn.Module):
    def __init__(self, blocks: int, causal: bool):
        super().__init__()
        self.causal = causal
        self.tok = nn.Embedding(VOCAB, WIDTH)
        self.position = nn.Parameter(torch.zeros(TOKENS, WIDTH))
        self.blocks = nn.Sequential(*[Block(causal) for _ in range(blocks)])
        self.ln_f = nn.LayerNorm(WIDTH, eps=EPS)
        self.head = nn.Linear(WIDTH, VOCAB if causal else CLASSES)

    def forward(self, ids):
        h = self.ln_f(self.blocks(self.tok(ids) + self.position))
        return self.head(h if self.causal else h.mean(dim=1))


def _copy(param, value):
    with torch.no_grad():
        param.copy_(torch.as_tensor(np.ascontiguousarray(value), dtype=param.dtype))


def set_weights(keras_model, torch_model, seed: int, bias: bool):
    """Random weights drawn once and given to both models (biases, β and the positional table zero for
    ``bias=False``)."""
    rng = np.random.RandomState(seed)

    def draw(*shape, scale=0.5, is_bias=False):
        return (rng.normal(0, scale, shape) if (bias or not is_bias) else np.zeros(shape)).astype(np.float32)

    def dense(name, module, n_in, n_out):
        w, b = draw(n_in, n_out, scale=1 / np.sqrt(n_in)), draw(n_out, scale=0.2, is_bias=True)
        keras_model.get_layer(name).set_weights([w, b])
        _copy(module.weight, w.T)
        _copy(module.bias, b)

    def layer_norm(name, module):
        gamma, beta = 1 + draw(WIDTH, scale=0.2), draw(WIDTH, scale=0.2, is_bias=True)
        keras_model.get_layer(name).set_weights([gamma, beta])
        _copy(module.weight, gamma)
        _copy(module.bias, beta)

    table = draw(VOCAB, WIDTH, scale=1.0)
    keras_model.get_layer("tok").set_weights([table])
    _copy(torch_model.tok.weight, table)
    position = draw(TOKENS, WIDTH, is_bias=True)
    keras_model.get_layer("position").set_weights([position])
    _copy(torch_model.position, position)
    key_dim = WIDTH // HEADS
    for b, block in enumerate(torch_model.blocks):
        layer_norm(f"ln1_{b}", block.ln1)
        qkv = [(draw(WIDTH, HEADS, key_dim, scale=1 / np.sqrt(WIDTH)), draw(HEADS, key_dim, scale=0.2, is_bias=True))
               for _ in range(3)]
        out_w, out_b = draw(HEADS, key_dim, WIDTH, scale=1 / np.sqrt(WIDTH)), draw(WIDTH, scale=0.2, is_bias=True)
        keras_model.get_layer(f"mha_{b}").set_weights([qkv[0][0], qkv[0][1], qkv[1][0], qkv[1][1], qkv[2][0],
                                                        qkv[2][1], out_w, out_b])
        for linear, (w, b_) in zip((block.sdpa.query, block.sdpa.key, block.sdpa.value), qkv):
            _copy(linear.weight, w.reshape(WIDTH, WIDTH).T)
            _copy(linear.bias, b_.reshape(WIDTH))
        _copy(block.sdpa.out.weight, out_w.reshape(WIDTH, WIDTH).T)
        _copy(block.sdpa.out.bias, out_b)
        layer_norm(f"ln2_{b}", block.ln2)
        dense(f"fc1_{b}", block.fc1, WIDTH, MLP)
        dense(f"fc2_{b}", block.fc2, MLP, WIDTH)
    layer_norm("ln_f", torch_model.ln_f)
    outputs = VOCAB if torch_model.causal else CLASSES
    dense("head", torch_model.head, WIDTH, outputs)


def text_twin(blocks: int = 2, causal: bool = False, bias: bool = True, seed: int = 0, n: int = 2):
    keras_model, torch_model = keras_text(blocks, causal), TorchText(blocks, causal).eval()
    set_weights(keras_model, torch_model, seed, bias)
    ids = np.random.RandomState(seed + 100).randint(0, VOCAB, size=(n, TOKENS)).astype(np.int64)
    return keras_model, torch_model, ids
