"""Recurrent layers (LSTM, GRU, simple RNN) unrolled into a per-timestep graph of the existing node kinds
(docs/layers.md#recurrent), written once for both backends.

A backend's capture only reads a layer's weights and configuration into :class:`Direction` objects (one per
direction of one layer, weights as zero-argument getters in the layout ``x @ W``) and supplies a few tensor
primitives (:class:`Primitives`); :func:`unroll_layer` appends the nodes. The input projection ``W x_t + b`` of all
time steps is one kernel node over the whole sequence (an input layer where the recurrent layer reads the model input,
docs/lrp.md#input-layers); every time step then adds the recurrent kernel ``U h_{t-1}``, slices the gates, applies
the activations (sigmoid outputs are gates: ``value_range`` (0, 1)) and forms the cell and state updates from
gated products and sums. The initial states are zeros.

The LRP rules of these nodes are the existing ones: a kernel rule on each kernel node, the Z rule at each sum (the
weighted-sum split of Arras et al. 2017), signal-take-all at each gated product (the gates receive nothing), and the
gradient at slices and stacks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from signxai.core import graph as g

#: the gate names of each cell in the order the framework lays out its weight blocks (docs/layers.md#recurrent)
LSTM_GATES = ("i", "f", "g", "o")
GRU_GATES_TORCH = ("r", "z", "n")
GRU_GATES_KERAS = ("z", "r", "n")
RNN_GATES = ("h",)
#: gate activations (outputs in [0, 1]) and signal activations each cell may use
GATE_ACTIVATIONS = ("sigmoid", "hard_sigmoid")
SIGNAL_ACTIVATIONS = ("tanh", "relu", "linear")


class Primitives(Protocol):
    """What a backend supplies to :func:`unroll_layer`."""

    def dense(self, weight: Callable[[], Any], bias: Optional[Callable[[], Any]]) -> g.Kernel:
        """The kernel ``a @ W + b`` over the last axis of ``a`` (``weight()`` shaped (in, out), ``bias()`` (out,))."""
        ...

    def activation(self, name: str) -> Callable[[Any], Any]:
        """The elementwise function ``name`` (one of GATE_ACTIVATIONS and SIGNAL_ACTIVATIONS)."""
        ...

    def stack(self, axis: int) -> Callable[..., Any]:
        """``(*tensors) -> stack(tensors, axis)``."""
        ...

    def concat(self, axis: int) -> Callable[..., Any]:
        """``(*tensors) -> concatenate(tensors, axis)``."""
        ...

    def zeros(self, units: int) -> Callable[[Any], Any]:
        """``a -> zeros (N, units)`` in the dtype of ``a`` (N its first axis), computed from ``a`` as a zero padding
        of an empty slice so that it is a re-indexing node whose gradient is zero."""
        ...


@dataclass
class Direction:
    """One direction of one recurrent layer, as the backend read it from the framework's layer.

    ``weight``/``recurrent``: getters of the input kernel (F, G·H) and the recurrent kernel (H, G·H), the gate blocks
    in the order ``gates``. ``bias``: the input-side bias (G·H,) — for PyTorch ``b_ih + b_hh``, except GRU's
    candidate block, whose recurrent bias is multiplied by the reset gate and stays in ``recurrent_bias``.
    """
    cell: str  # "lstm", "gru" or "rnn"
    units: int
    gates: tuple
    weight: Callable[[], Any]
    recurrent: Callable[[], Any]
    bias: Optional[Callable[[], Any]] = None
    recurrent_bias: Optional[Callable[[], Any]] = None  # (G·H,), zero outside GRU's candidate block
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    reset_after: bool = True  # GRU: r ⊙ (U_n h + b_hn) (True) or U_n (r ⊙ h) (False)
    reverse: bool = False  # processes the sequence from its last step to its first
    suffix: str = ""  # appended to node names ("_reverse")
    meta: dict = field(default_factory=dict)


@dataclass
class Unrolled:
    """Node indices of one unrolled direction: the state after each processed step in time order, and the final
    hidden (and LSTM cell) state."""
    outputs: list  # h_t for t = 0 … T-1 (input time order)
    last_h: int
    last_c: Optional[int] = None


class _Builder:
    def __init__(self, nodes: list, name: str, layer_type: str, primitives: Primitives):
        self.nodes, self.name, self.layer_type, self.p = nodes, name, layer_type, primitives

    def add(self, suffix: str, kind, parents, forward, **extra) -> int:
        self.nodes.append(g.Node(f"{self.name}/{suffix}", kind, tuple(parents), forward, self.layer_type, **extra))
        return len(self.nodes) - 1

    def kernel(self, suffix, parent, kernel: g.Kernel) -> int:
        return self.add(suffix, g.KERNEL, [parent], kernel.apply, kernel=kernel)

    def slice_time(self, suffix, parent, t: int) -> int:
        return self.add(suffix, g.REINDEX, [parent], lambda a: a[:, t])

    def slice_features(self, suffix, parent, lo: int, hi: int) -> int:
        return self.add(suffix, g.REINDEX, [parent], lambda a: a[..., lo:hi])

    def activate(self, suffix, parent, name: str) -> int:
        if name == "linear":
            return parent
        kind = g.RELU if name == "relu" else g.ACTIVATION
        bounds = (0.0, 1.0) if name in GATE_ACTIVATIONS else (0.0, float("inf")) if name == "relu" else None
        return self.add(suffix, kind, [parent], self.p.activation(name), value_range=bounds)

    def product(self, suffix, gate, signal) -> int:
        return self.add(suffix, g.PRODUCT, [gate, signal], _multiply)

    def sum(self, suffix, a, b) -> int:
        return self.add(suffix, g.ADD, [a, b], _add)


def _multiply(a, b):
    return a * b


def _add(a, b):
    return a + b


def _one_minus(z):
    return 1 - z


def check_activations(direction: Direction, where: str) -> None:
    """ValueError naming the layer where a cell uses an activation that has no unrolled form here."""
    if direction.cell != "rnn" and direction.recurrent_activation not in GATE_ACTIVATIONS:
        raise ValueError(f"recurrent layer {where}: recurrent_activation {direction.recurrent_activation!r} is not "
                         f"supported by the rule-based methods (the gates must lie in [0, 1]: "
                         f"{', '.join(GATE_ACTIVATIONS)})")
    if direction.activation not in SIGNAL_ACTIVATIONS:
        raise ValueError(f"recurrent layer {where}: activation {direction.activation!r} is not supported by the "
                         f"rule-based methods (supported: {', '.join(SIGNAL_ACTIVATIONS)})")


def unroll(nodes: list, name: str, layer_type: str, x: int, steps: int, d: Direction,
           primitives: Primitives) -> Unrolled:
    """Appends the unrolled nodes of one direction reading the sequence node ``x`` (N, T, F), ``steps`` = T."""
    b = _Builder(nodes, name, layer_type, primitives)
    s, H = d.suffix, d.units
    block = {gate: (k * H, (k + 1) * H) for k, gate in enumerate(d.gates)}
    xp = b.kernel(f"input_kernel{s}", x, primitives.dense(d.weight, d.bias))
    h = b.add(f"h0{s}", g.REINDEX, [xp], primitives.zeros(H))
    c = b.add(f"c0{s}", g.REINDEX, [xp], primitives.zeros(H)) if d.cell == "lstm" else None
    if d.cell == "gru" and not d.reset_after:  # U_z h, U_r h and U_n (r ⊙ h): three kernels of the column blocks
        recurrent = {gate: primitives.dense(_columns(d.recurrent, *block[gate]), None) for gate in d.gates}
    else:
        recurrent_kernel = primitives.dense(d.recurrent, d.recurrent_bias)
    outputs: dict = {}
    order = range(steps - 1, -1, -1) if d.reverse else range(steps)
    # the steps are sliced from blocks of about √T steps: the gradient of a slice is as large as what it is sliced
    # from, so slicing every step from the whole sequence would cost O(T²) in the backward pass
    # (docs/layers.md#recurrent)
    width = max(1, math.isqrt(steps - 1) + 1) if steps > 16 else steps
    blocks = {}
    for t in order:
        tag = f"{s}/t{t}"
        start = t - t % width
        if width == steps:
            xt = b.slice_time(f"x{tag}", xp, t)
        else:
            if start not in blocks:
                blocks[start] = b.add(f"x{s}/t{start}:{min(start + width, steps)}", g.REINDEX, [xp],
                                      _time_block(start, min(start + width, steps)))
            xt = b.slice_time(f"x{tag}", blocks[start], t - start)

        def gate_of(source, gate, activation, tag=tag):
            return b.activate(f"{gate}{tag}", b.slice_features(f"{gate}_pre{tag}", source, *block[gate]), activation)

        if d.cell == "gru" and not d.reset_after:
            gate_pre = {}
            for gate in ("z", "r"):
                xg = b.slice_features(f"x_{gate}{tag}", xt, *block[gate])
                gate_pre[gate] = b.sum(f"{gate}_pre{tag}", xg, b.kernel(f"recurrent_{gate}{tag}", h, recurrent[gate]))
            z = b.activate(f"z{tag}", gate_pre["z"], d.recurrent_activation)
            r = b.activate(f"r{tag}", gate_pre["r"], d.recurrent_activation)
            rh = b.product(f"r_h{tag}", r, h)
            xn = b.slice_features(f"x_n{tag}", xt, *block["n"])
            n_pre = b.sum(f"n_pre{tag}", xn, b.kernel(f"recurrent_n{tag}", rh, recurrent["n"]))
            h = _gru_update(b, tag, z, b.activate(f"n{tag}", n_pre, d.activation), h)
        else:
            uh = b.kernel(f"recurrent_kernel{tag}", h, recurrent_kernel)
            if d.cell == "lstm":
                pre = b.sum(f"pre{tag}", xt, uh)
                i, f, o = (gate_of(pre, gate, d.recurrent_activation) for gate in ("i", "f", "o"))
                cell_input = gate_of(pre, "g", d.activation)
                c = b.sum(f"c{tag}", b.product(f"f_c{tag}", f, c), b.product(f"i_g{tag}", i, cell_input))
                h = b.product(f"h{tag}", o, b.activate(f"c_act{tag}", c, d.activation))
            elif d.cell == "gru":  # r ⊙ (U_n h + b_hn)
                pre = b.sum(f"pre{tag}", xt, uh)  # the z and r blocks are used from it
                z, r = (gate_of(pre, gate, d.recurrent_activation) for gate in ("z", "r"))
                rh = b.product(f"r_h{tag}", r, b.slice_features(f"recurrent_n{tag}", uh, *block["n"]))
                n_pre = b.sum(f"n_pre{tag}", b.slice_features(f"x_n{tag}", xt, *block["n"]), rh)
                h = _gru_update(b, tag, z, b.activate(f"n{tag}", n_pre, d.activation), h)
            else:
                h = b.activate(f"h{tag}", b.sum(f"pre{tag}", xt, uh), d.activation)
        outputs[t] = h
    return Unrolled([outputs[t] for t in range(steps)], h, c)


def _time_block(start: int, stop: int) -> Callable[[Any], Any]:
    return lambda a: a[:, start:stop]


def _gru_update(b: _Builder, tag: str, z: int, n: int, h: int) -> int:
    """``h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}``; ``1 − z`` is a gate (its value range follows from z's)."""
    one_minus_z = b.add(f"1-z{tag}", g.PASS, [z], _one_minus, affine=(-1.0, 1.0))
    return b.sum(f"h{tag}", b.product(f"update_n{tag}", one_minus_z, n), b.product(f"update_h{tag}", z, h))


def _columns(weight: Callable[[], Any], lo: int, hi: int) -> Callable[[], Any]:
    return lambda: weight()[:, lo:hi]


def sequence(nodes: list, name: str, layer_type: str, outputs: list, primitives: Primitives,
             reverse: bool = False) -> int:
    """A stack node (N, T, H) of per-step states; ``reverse``: in processing order of a backward pass (Keras's
    ``go_backwards`` without Bidirectional)."""
    parents = list(reversed(outputs)) if reverse else list(outputs)
    nodes.append(g.Node(f"{name}/sequence", g.REINDEX, tuple(parents), primitives.stack(1), layer_type))
    return len(nodes) - 1


def merge(nodes: list, name: str, layer_type: str, a: int, b: int, mode: str, primitives: Primitives,
          axis: int = -1) -> int:
    """The merge of a bidirectional layer's two outputs: concat (a re-indexing), sum or ave (sums)."""
    if mode == "concat":
        node = g.Node(f"{name}/concat", g.REINDEX, (a, b), primitives.concat(axis), layer_type)
    elif mode == "sum":
        node = g.Node(f"{name}/sum", g.ADD, (a, b), _add, layer_type)
    elif mode == "ave":
        node = g.Node(f"{name}/ave", g.ADD, (a, b), _average, layer_type, coefficients=(0.5, 0.5))
    else:
        raise ValueError(f"bidirectional layer '{name}': merge_mode {mode!r} is not supported by the rule-based "
                         f"methods (supported: 'concat', 'sum', 'ave'; 'mul' multiplies two signals, which has no "
                         f"LRP rule, and None returns two tensors)")
    nodes.append(node)
    return len(nodes) - 1


def _average(a, b):
    return (a + b) / 2
