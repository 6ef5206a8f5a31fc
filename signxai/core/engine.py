"""The backward pass over a captured graph (docs/lrp.md#engine), shared by LRP, guided backprop and DeconvNet."""
from __future__ import annotations

from typing import Any, Callable, Optional

from signxai.core.graph import Graph
from signxai.core.ops import Tensor, TensorOps


def record(graph: Graph, x: Tensor, upto: Optional[int] = None,
           on_value: Optional[Callable[[int, Any], Any]] = None,
           forward: Optional[Callable[[int, Any, list], Any]] = None) -> list:
    """Forward pass: the value of every node up to ``upto`` (default: all), node 0 being ``x``.

    ``on_value(index, value)`` may replace each value as it is produced (e.g. to watch it for autodiff).
    ``forward(index, node, inputs)``, if given, computes each value instead of ``node.forward`` (an LRP mapping
    whose rules compute a layer's output themselves, :meth:`signxai.core.composite.Rule.forward`).
    """
    values = [x]
    for index, node in enumerate(graph.nodes[1:(upto if upto is not None else len(graph.nodes) - 1) + 1], 1):
        inputs = [values[p] for p in node.parents]
        value = forward(index, node, inputs) if forward is not None else node.forward(*inputs)
        values.append(on_value(index, value) if on_value else value)
    return values


def propagate(ops: TensorOps, graph: Graph, values: list, start: int, signal: Tensor,
              mapping: Callable[..., Any]) -> Tensor:
    """Send ``signal`` from node ``start`` to the input, summing over consumers; returns the input's share.

    ``mapping(ops, index, node, inputs, output, R)`` returns one tensor per parent of the node.
    """
    pending = {start: signal}
    held_fixed = graph.held_fixed()
    for index in range(start, 0, -1):
        if index not in pending:
            continue
        node = graph.nodes[index]
        if index in held_fixed:  # computed from held-fixed inputs alone: absorbs its share (docs/api.md#multi-input)
            del pending[index]
            continue
        inputs = [values[p] for p in node.parents]
        shares = mapping(ops, index, node, inputs, values[index], pending.pop(index))
        for parent, share in zip(node.parents, shares):
            if share is None:  # a non-tensor parent, e.g. a shape computation
                continue
            pending[parent] = pending[parent] + share if parent in pending else share
    if 0 not in pending:
        return ops.zeros_like(values[0])
    return pending[0]
