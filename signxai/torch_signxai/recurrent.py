"""PyTorch's ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` for the capture: weights and configuration read into
:class:`signxai.core.recurrent.Direction` objects, unrolled by :mod:`signxai.core.recurrent`
(docs/layers.md#recurrent)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from signxai.core import graph as g
from signxai.core import recurrent as rec
from signxai.core.rules import identity

#: the modules unrolled (exact classes: a subclass may compute otherwise and is traced into)
RECURRENT_MODULES = (nn.LSTM, nn.GRU, nn.RNN)
_CELLS = {nn.LSTM: ("lstm", rec.LSTM_GATES), nn.GRU: ("gru", rec.GRU_GATES_TORCH), nn.RNN: ("rnn", rec.RNN_GATES)}
_ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "hard_sigmoid": F.hardsigmoid}


class Primitives:
    """The tensor primitives of :class:`signxai.core.recurrent.Primitives` in PyTorch."""

    @staticmethod
    def dense(weight, bias):
        def apply(a, kernel_map=identity, bias_map=identity):
            out = a @ kernel_map(weight())
            return out if bias is None or bias_map is None else out + bias_map(bias())

        def adjoint(a, s, kernel_map=identity):
            return s @ kernel_map(weight()).transpose(0, 1)

        def bias_term(bias_map):
            return None if bias is None else bias_map(bias())
        return g.Kernel(apply, True, 0, bias_term, adjoint)

    @staticmethod
    def activation(name):
        return _ACTIVATIONS[name]

    @staticmethod
    def stack(axis):
        return lambda *ts: torch.stack(ts, axis)

    @staticmethod
    def concat(axis):
        return lambda *ts: torch.cat(ts, axis)

    @staticmethod
    def zeros(units):
        return lambda a: F.pad(a[:, 0, :0], (0, units))


PRIMITIVES = Primitives()


def refusal(module) -> str:
    """Why a recurrent module cannot be unrolled, or ''."""
    if getattr(module, "proj_size", 0):
        return "an LSTM with proj_size > 0 (projected hidden states) is not supported by the rule-based methods"
    if isinstance(module, nn.RNN) and module.nonlinearity not in ("tanh", "relu"):
        return f"nonlinearity {module.nonlinearity!r} is not supported"
    return ""


def directions(module, layer: int) -> list:
    """The :class:`Direction` objects of one layer of ``module`` (forward, then reverse where bidirectional)."""
    cell, gates = _CELLS[type(module)]
    H = module.hidden_size
    result = []
    for reverse in ((False, True) if module.bidirectional else (False,)):
        suffix = f"_l{layer}" + ("_reverse" if reverse else "")
        weight = _param(module, f"weight_ih{suffix}", transpose=True)
        recurrent = _param(module, f"weight_hh{suffix}", transpose=True)
        bias = recurrent_bias = None
        if module.bias:
            b_ih, b_hh = _param(module, f"bias_ih{suffix}"), _param(module, f"bias_hh{suffix}")
            if cell == "gru":  # b_hn is multiplied by the reset gate: it stays with the recurrent kernel
                def bias(b_ih=b_ih, b_hh=b_hh):
                    b = b_hh()
                    return b_ih() + torch.cat([b[:2 * H], torch.zeros_like(b[2 * H:])])

                def recurrent_bias(b_hh=b_hh):
                    b = b_hh()
                    return torch.cat([torch.zeros_like(b[:2 * H]), b[2 * H:]])
            else:
                def bias(b_ih=b_ih, b_hh=b_hh):
                    return b_ih() + b_hh()
        activation = module.nonlinearity if cell == "rnn" else "tanh"
        result.append(rec.Direction(cell, H, gates, weight, recurrent, bias, recurrent_bias, activation=activation,
                                    reverse=reverse, suffix=suffix))
    return result


def _param(module, name, transpose=False):
    if transpose:
        return lambda: getattr(module, name).T
    return lambda: getattr(module, name)


def unroll_module(nodes: list, name: str, module, x: int, steps: int):
    """Appends the unrolled nodes of ``module`` reading node ``x`` (the module's input, in its own layout) with
    ``steps`` time steps; returns the structure of the module's output ``(output, h_n)`` or ``(output, (h_n,
    c_n))`` as node indices."""
    layer_type = type(module).__name__
    if not module.batch_first:  # (T, N, F): unrolled batch-first
        nodes.append(g.Node(f"{name}/batch_first", g.REINDEX, (x,), _swap01, layer_type))
        x = len(nodes) - 1
    finals_h, finals_c = [], []
    for layer in range(module.num_layers):
        runs = [rec.unroll(nodes, name, layer_type, x, steps, d, PRIMITIVES) for d in directions(module, layer)]
        sequences = [rec.sequence(nodes, f"{name}/l{layer}" + ("_reverse" if k else ""), layer_type, run.outputs,
                                  PRIMITIVES) for k, run in enumerate(runs)]
        x = sequences[0] if len(sequences) == 1 else rec.merge(nodes, f"{name}/l{layer}", layer_type, *sequences,
                                                               "concat", PRIMITIVES)
        finals_h += [run.last_h for run in runs]
        finals_c += [run.last_c for run in runs]
    output = x
    if not module.batch_first:
        nodes.append(g.Node(f"{name}/output", g.REINDEX, (x,), _swap01, layer_type))
        output = len(nodes) - 1
    nodes.append(g.Node(f"{name}/h_n", g.REINDEX, tuple(finals_h), PRIMITIVES.stack(0), layer_type))
    h_n = len(nodes) - 1
    if isinstance(module, nn.LSTM):
        nodes.append(g.Node(f"{name}/c_n", g.REINDEX, tuple(finals_c), PRIMITIVES.stack(0), layer_type))
        return output, (h_n, len(nodes) - 1)
    return output, h_n


def _swap01(t):
    return t.transpose(0, 1)
