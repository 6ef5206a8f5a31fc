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

from transformer_twins import EPS, WIDTH, Block, PositionEmbedding, TwinWeights, keras_blocks

TOKENS, VOCAB, CLASSES = 7, 11, 3


def keras_text(blocks: int, causal: bool):
    inputs = keras.Input((TOKENS,), dtype="int32")
    h = keras.layers.Embedding(VOCAB, WIDTH, name="tok")(inputs)
    h = PositionEmbedding(name="position")(h)
    h = keras.layers.LayerNormalization(epsilon=EPS, name="ln_f")(keras_blocks(h, blocks, causal))
    if causal:
        return keras.Model(inputs, keras.layers.Dense(VOCAB, name="head")(h))
    h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="head")(h))


class TorchText(nn.Module):
    def __init__(self, blocks: int, causal: bool):
        super().__init__()
        self.causal = causal
        self.tok = nn.Embedding(VOCAB, WIDTH)
        self.position = nn.Parameter(torch.zeros(TOKENS, WIDTH))
        self.blocks = nn.Sequential(*[Block("sdpa", causal) for _ in range(blocks)])
        self.ln_f = nn.LayerNorm(WIDTH, eps=EPS)
        self.head = nn.Linear(WIDTH, VOCAB if causal else CLASSES)

    def forward(self, ids):
        h = self.ln_f(self.blocks(self.tok(ids) + self.position))
        return self.head(h if self.causal else h.mean(dim=1))


def set_weights(keras_model, torch_model, seed: int, bias: bool):
    """Random weights drawn once and given to both models (biases, β and the positional table zero for
    ``bias=False``)."""
    weights = TwinWeights(keras_model, seed, bias)
    table = weights.draw(VOCAB, WIDTH, scale=1.0)
    keras_model.get_layer("tok").set_weights([table])
    with torch.no_grad():
        torch_model.tok.weight.copy_(torch.as_tensor(table))
    weights.position(torch_model.position, TOKENS)
    weights.blocks(torch_model.blocks)
    weights.layer_norm("ln_f", torch_model.ln_f)
    weights.dense("head", torch_model.head, WIDTH, VOCAB if torch_model.causal else CLASSES)


def text_twin(blocks: int = 2, causal: bool = False, bias: bool = True, seed: int = 0, n: int = 2):
    keras_model, torch_model = keras_text(blocks, causal), TorchText(blocks, causal).eval()
    set_weights(keras_model, torch_model, seed, bias)
    ids = np.random.RandomState(seed + 100).randint(0, VOCAB, size=(n, TOKENS)).astype(np.int64)
    return keras_model, torch_model, ids
