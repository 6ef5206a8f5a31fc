"""The captured layer graph both backends produce: nodes in topological order, node 0 being the model input."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

# Node kinds, i.e. the rows of SPEC §7.3 as the rules see them.
INPUT = "input"
KERNEL = "kernel"            # row 1: Dense/Conv; forward gives z (fused activations become separate nodes)
BATCHNORM = "batchnorm"      # row 2
AVGPOOL = "avgpool"          # row 3: any linear pooling / spatial mean
ADD = "add"                  # row 4
RELU = "relu"                # row 7: ReLU family
ACTIVATION = "activation"    # row 8: other elementwise activations
PASS = "pass"                # rows 9–10: Dropout, Identity, LayerNorm, Rescaling, constant affine ops …
GRADIENT = "gradient"        # rows 5, 6, 11–13: max pooling, reshaping, padding, concatenation
UNSUPPORTED = "unsupported"  # row 16

ELEMENTWISE_ACTIVATIONS = (RELU, ACTIVATION)


@dataclass
class Kernel:
    """A kernel layer ``z = W a + b`` that can be re-applied with a transformed kernel and/or bias.

    ``apply(a, kernel_map, bias_map)`` computes ``W' a + b'`` with ``W' = kernel_map(kernel)`` and
    ``b' = bias_map(bias)``; ``bias_map=None`` drops the bias. ``adjoint`` is an optional faster ``W'ᵀ s``.
    """
    apply: Callable[..., Any]
    is_dense: bool
    spatial_rank: int = 0  # number of spatial axes of a convolution, 0 for Dense
    bias_term: Callable[..., Any] = None  # bias_map -> bias_map(b) shaped to broadcast against z, or None
    adjoint: Optional[Callable[..., Any]] = None  # (a, s, kernel_map) -> W'ᵀ s without a forward pass; else a VJP


@dataclass
class Node:
    name: str                    # layer name or module path, for messages
    kind: str
    parents: tuple
    forward: Callable[..., Any]  # (*parent values) -> value
    layer_type: str = ""         # class or op name, for messages
    kernel: Optional[Kernel] = None
    batchnorm: Optional[Callable[[Any], tuple]] = None  # BN input -> (running mean, beta), broadcastable
    reason: str = ""             # why a node is unsupported

    def describe(self) -> str:
        return f"'{self.name}' ({self.layer_type})" if self.layer_type else f"'{self.name}'"


@dataclass
class Graph:
    nodes: list
    output: int = -1
    names: dict = field(default_factory=dict)  # user-facing layer name -> node index of its (folded) output

    def __post_init__(self):
        if self.output < 0:
            self.output = len(self.nodes) - 1

    def consumers(self, index: int) -> list:
        return [i for i, node in enumerate(self.nodes) if index in node.parents]

    def strip_trailing_activations(self, index: int) -> int:
        """Walk up from ``index`` past elementwise activations (the LRP head, SPEC §7.2)."""
        while self.nodes[index].kind in ELEMENTWISE_ACTIVATIONS:
            index = self.nodes[index].parents[0]
        return index

    def fold_activations(self, index: int) -> int:
        """Follow a chain of elementwise activations that are the only consumers (activation folding, §1.3)."""
        while True:
            consumers = self.consumers(index)
            if len(consumers) != 1 or self.nodes[consumers[0]].kind not in ELEMENTWISE_ACTIVATIONS:
                return index
            index = consumers[0]

    def cam_node(self, name=None) -> int:
        """The node whose output is the Grad-CAM map A: a named layer or the last convolution (SPEC §6.1)."""
        convs = [i for i, n in enumerate(self.nodes) if n.kind == KERNEL and not n.kernel.is_dense]
        if name is None:
            if not convs:
                raise ValueError("Grad-CAM needs a convolution layer, but the model has none")
            return self.fold_activations(convs[-1])
        if name not in self.names:
            raise ValueError(f"Grad-CAM layer {name!r} is not in the model; its convolution layers are: "
                             f"{[self.nodes[i].name for i in convs]}")
        index = self.names[name]
        return self.fold_activations(index) if self.nodes[index].kind == KERNEL else index

    def input_layers(self) -> set:
        """Kernel nodes with no kernel node among their ancestors (SPEC §7.4)."""
        kernel_upstream = [False] * len(self.nodes)
        result = set()
        for i, node in enumerate(self.nodes):
            upstream = any(kernel_upstream[p] or self.nodes[p].kind == KERNEL for p in node.parents)
            kernel_upstream[i] = upstream
            if node.kind == KERNEL and not upstream:
                result.add(i)
        return result

    def check_supported(self, upto: int) -> None:
        for node in self.nodes[: upto + 1]:
            if node.kind == UNSUPPORTED:
                raise ValueError(f"layer {node.describe()} is not supported by the rule-based methods "
                                 f"(guided backprop, DeconvNet, LRP){': ' + node.reason if node.reason else ''}. "
                                 f"See SPEC §7.3 for the supported layers; pure-gradient methods still work.")
