"""Keras/PyTorch twins of recurrent networks with identical weights (docs/layers.md#recurrent): input (N, T=12, F=3)
→ recurrent(8) (LSTM, GRU or SimpleRNN; uni- or bidirectional; with or without bias; one or two stacked layers) →
Dense/Linear(3). As every twin of tests/twins.py, the PyTorch model takes its input channels-first, (N, F, T)
(``twins.torch_input``), and moves it to (N, T, F) for its ``batch_first=True`` module: the noise of SmoothGrad and
VarGrad, drawn channels-last, is then the same for both.

Gate order: Keras LSTM and PyTorch LSTM both lay out (i, f, g, o); Keras GRU (z, r, h) and PyTorch GRU (r, z, n) are
permuted block by block; Keras GRU ``reset_after=True`` keeps input and recurrent biases apart as PyTorch does. The
biases are dyadic (multiples of 1/256), so PyTorch's ``b_ih + b_hh`` equals Keras's single LSTM/SimpleRNN bias
exactly in both float32 and float64.
"""
from __future__ import annotations

import itertools
import keras
import numpy as np
import torch
from keras import layers as L
from torch import nn

from twins import Twin

T, F, H, K = 12, 3, 8, 3
CELLS = ("lstm", "gru", "rnn")
_KERAS = {"lstm": L.LSTM, "gru": L.GRU, "rnn": L.SimpleRNN}
_TORCH = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


class TorchRecurrentNet(nn.Module):
    """recurrent → Linear; the last step's output (unidirectional: ``out[:, -1]``) or the final states of the last
    layer (bidirectional: ``cat(h_n[-2], h_n[-1])``, which is what Keras's Bidirectional returns without
    return_sequences)."""

    def __init__(self, cell, bidirectional, bias, layers):
        super().__init__()
        self.cell, self.bidirectional = cell, bidirectional
        self.rnn = _TORCH[cell](F, H, num_layers=layers, bias=bias, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(H * (2 if bidirectional else 1), K)

    def forward(self, x):
        x = x.transpose(1, 2)  # (N, F, T) -> (N, T, F)
        if not self.bidirectional:
            out, _ = self.rnn(x)
            return self.fc(out[:, -1])
        if self.cell == "lstm":
            _, (h_n, _) = self.rnn(x)
        else:
            _, h_n = self.rnn(x)
        return self.fc(torch.cat([h_n[-2], h_n[-1]], 1))


def twin_name(cell, bidirectional=False, bias=True, layers=1):
    return f"{cell}{'_bi' if bidirectional else ''}{'' if bias else '_nobias'}{'_stacked' if layers > 1 else ''}"


ALL_TWINS = [twin_name(*c) for c in itertools.product(CELLS, (False, True), (True, False), (1, 2))]


def parse(name):
    return (name.split("_")[0], "_bi" in name, "_nobias" not in name, 2 if "_stacked" in name else 1)


def _dyadic(rng, shape, scale=64):
    return (rng.randint(-scale, scale + 1, size=shape) / 256.0).astype(np.float32)


def recurrent_twin(name, seed=0, n=2) -> Twin:
    """The twin ``name`` (see :func:`twin_name`) with random weights drawn from ``seed``."""
    cell, bidirectional, bias, layers = parse(name)
    rng = np.random.RandomState(seed)
    torch_model = TorchRecurrentNet(cell, bidirectional, bias, layers).eval()
    inputs = keras.Input((T, F))
    h = inputs
    keras_layers = []
    for layer in range(layers):
        kwargs = {"use_bias": bias, "return_sequences": layer < layers - 1}
        if cell == "gru":
            kwargs["reset_after"] = True
        if cell == "rnn":
            kwargs["activation"] = "tanh"
        rnn = _KERAS[cell](H, **kwargs)
        wrapped = L.Bidirectional(rnn) if bidirectional else rnn
        h = wrapped(h)
        keras_layers.append(wrapped)
    dense = L.Dense(K)
    keras_model = keras.Model(inputs, dense(h))
    G = GATES[cell]
    with torch.no_grad():
        for layer, wrapped in enumerate(keras_layers):
            keras_cells = ([wrapped.forward_layer.cell, wrapped.backward_layer.cell] if bidirectional
                           else [wrapped.cell])
            for keras_cell, suffix in zip(keras_cells, ("", "_reverse")):
                fan_in = F if layer == 0 else H * (2 if bidirectional else 1)
                w_ih = rng.normal(0, 0.5, size=(G * H, fan_in)).astype(np.float32)
                w_hh = rng.normal(0, 0.5, size=(G * H, H)).astype(np.float32)
                b_ih, b_hh = _dyadic(rng, G * H), _dyadic(rng, G * H)
                module = torch_model.rnn
                getattr(module, f"weight_ih_l{layer}{suffix}").copy_(torch.from_numpy(w_ih))
                getattr(module, f"weight_hh_l{layer}{suffix}").copy_(torch.from_numpy(w_hh))
                if bias:
                    getattr(module, f"bias_ih_l{layer}{suffix}").copy_(torch.from_numpy(b_ih))
                    getattr(module, f"bias_hh_l{layer}{suffix}").copy_(torch.from_numpy(b_hh))
                order = _keras_order(cell)
                keras_cell.kernel.assign(_blocks(w_ih, order).T)
                keras_cell.recurrent_kernel.assign(_blocks(w_hh, order).T)
                if bias:
                    keras_cell.bias.assign(np.stack([_blocks(b_ih, order), _blocks(b_hh, order)]) if cell == "gru"
                                           else b_ih + b_hh)
        w = rng.normal(0, 0.5, size=(K, H * (2 if bidirectional else 1))).astype(np.float32)
        b = rng.normal(0, 0.1, size=K).astype(np.float32)
        torch_model.fc.weight.copy_(torch.from_numpy(w))
        torch_model.fc.bias.copy_(torch.from_numpy(b))
        dense.kernel.assign(w.T)
        dense.bias.assign(b)
    x = np.random.RandomState(seed + 100).normal(0, 1, size=(n, T, F)).astype(np.float32)
    return Twin(name, keras_model, torch_model, x, 0)


def _keras_order(cell):
    """The PyTorch gate blocks in Keras's order: GRU (r, z, n) → (z, r, h)."""
    return (1, 0, 2) if cell == "gru" else tuple(range(GATES[cell]))


def _blocks(w, order):
    parts = np.split(w, len(order), axis=0)
    return np.concatenate([parts[k] for k in order], axis=0)
