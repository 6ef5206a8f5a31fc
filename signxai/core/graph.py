"""The captured layer graph both backends produce: nodes in topological order, node 0 being the model input."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Optional

import numpy as np


class NodeKind(str, Enum):
    """The kind of a captured node, i.e. the rows of docs/layers.md#node-kinds as the rules see them.

    A ``str``-valued enum: ``NodeKind.KERNEL == "kernel"``, and a kind prints as its value in messages.
    """

    INPUT = "input"
    KERNEL = "kernel"            # row 1: Dense/Conv; forward gives z (fused activations become separate nodes)
    BATCHNORM = "batchnorm"      # row 2
    AVGPOOL = "avgpool"          # row 3: any linear pooling / spatial mean
    ADD = "add"                  # row 4
    RELU = "relu"                # row 7: ReLU family
    ACTIVATION = "activation"    # row 8: other elementwise activations
    PASS = "pass"                # rows 9–10: Dropout, Identity, LayerNorm, Rescaling, constant affine ops …
    REINDEX = "reindex"          # rows 5, 6, 11–13: max pooling, reshape, padding, concat: routed by its gradient
    PRODUCT = "product"          # x ⊙ y of two input-dependent tensors (docs/layers.md#gated-products, #bilinear)
    BILINEAR = "bilinear"        # matmul/einsum of two input-dependent tensors (docs/transformers.md#bilinear)
    SOFTMAX = "softmax"          # a softmax inside the model (docs/transformers.md#softmax)
    NORM = "norm"                # layer normalisation, σ held constant (docs/transformers.md#layer-norm)
    AUX = "aux"                  # non-tensor values (shape arithmetic, tuple containers): they carry no signal
    UNSUPPORTED = "unsupported"  # row 16

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


INPUT = NodeKind.INPUT
KERNEL = NodeKind.KERNEL
BATCHNORM = NodeKind.BATCHNORM
AVGPOOL = NodeKind.AVGPOOL
ADD = NodeKind.ADD
RELU = NodeKind.RELU
ACTIVATION = NodeKind.ACTIVATION
PASS = NodeKind.PASS
REINDEX = NodeKind.REINDEX
PRODUCT = NodeKind.PRODUCT
BILINEAR = NodeKind.BILINEAR
SOFTMAX = NodeKind.SOFTMAX
NORM = NodeKind.NORM
AUX = NodeKind.AUX
UNSUPPORTED = NodeKind.UNSUPPORTED
GRADIENT = REINDEX  # deprecated name of REINDEX (it clashed with the method "gradient"), kept for older imports

#: the kinds a layer table maps framework layers to (docs/extending.md#add-layer); the others are produced by the
#: captures themselves (the input, shape arithmetic, refusals)
TABLE_KINDS = (KERNEL, BATCHNORM, AVGPOOL, ADD, PRODUCT, RELU, ACTIVATION, PASS, REINDEX)
#: the attention kinds (docs/transformers.md): produced by the captures' special cases, not by the layer tables
ATTENTION_KINDS = (BILINEAR, SOFTMAX, NORM)
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
    bias_term: Optional[Callable[..., Any]] = None  # bias_map -> bias_map(b) shaped to broadcast against z, or None
    adjoint: Optional[Callable[..., Any]] = None  # (a, s, kernel_map) -> W'ᵀ s without a forward pass; else a VJP


@dataclass
class Node:
    name: str                    # layer name or module path, for messages
    kind: NodeKind
    parents: tuple
    forward: Callable[..., Any]  # (*parent values) -> value
    layer_type: str = ""         # class or op name, for messages
    kernel: Optional[Kernel] = None
    batchnorm: Optional[Callable[[Any], tuple]] = None  # BN input -> (running mean, beta), broadcastable
    reason: str = ""             # why a node is unsupported
    # static bounds of the node's output, for activations with a bounded range (sigmoid: (0, 1), ReLU6: (0, 6))
    value_range: Optional[tuple] = None
    # (scale, shift) when the node is ``scale·a + shift`` with scalar constants (e.g. ``x * (1/6)``, ``x + 3``)
    affine: Optional[tuple] = None
    # constant coefficients c_k of an ADD node ``Σ c_k a_k`` (e.g. Inception-ResNet's ``a + scale·b``); None: all 1
    coefficients: Optional[tuple] = None
    # what the framework's own layer computes from the node's inputs, where ``forward`` is a re-implementation of it
    # (a kernel without its fused activation, an inference form): used to name the culprit when a capture does not
    # reproduce the model (signxai.core.verify); None where ``forward`` is the layer's own computation
    reference: Optional[Callable[..., Any]] = None
    reference_parents: Optional[tuple] = None  # the nodes whose values ``reference`` takes (default: ``parents``)
    # NORM nodes: ``normalization(a)`` is the node's map with σ computed from ``a`` and then held constant, a linear
    # function ``t ↦ γ ⊙ (t − mean(t)) / σ(a) + β`` (docs/transformers.md#layer-norm); SOFTMAX nodes: ``axis``
    normalization: Optional[Callable[..., Any]] = None
    axis: Optional[int] = None
    # False where the node's (first) input does not hold one sample per index of its leading axis (PyTorch's
    # nn.MultiheadAttention projects a (tokens, batch, E) or (tokens·batch, E) tensor): per-sample statistics of the
    # input (StdxEpsilon's std) are then undefined (docs/transformers.md#limits)
    batch_leading: bool = True

    def describe(self) -> str:
        return f"'{self.name}' ({self.layer_type})" if self.layer_type else f"'{self.name}'"


def _positions(shape) -> int:
    """Whether a per-sample shape has a grid of more than one position, as a count that does not depend on where the
    channel axis is (a converted model may hold channels-last tensors in a channels-first framework): the product
    of every axis but the largest. 1 for a 1×1 grid in any layout."""
    return 1 if shape is None or len(shape) < 2 else int(np.prod(sorted(shape)[:-1]))


@dataclass
class Graph:
    nodes: list
    output: int = -1
    names: dict = field(default_factory=dict)  # user-facing layer name -> node index of its (folded) output

    def __post_init__(self):
        if self.output < 0:
            self.output = len(self.nodes) - 1

    def held_fixed(self) -> set:
        """The nodes computed from held-fixed inputs alone: the parentless input nodes after node 0 of a bound
        multi-input view and every node whose parents are all such nodes (docs/api.md#multi-input); empty for a
        one-input model. They are constants of the explained input and receive no relevance."""
        fixed: set = set()
        for index, node in enumerate(self.nodes[1:], 1):
            if all(p in fixed for p in node.parents):  # (parentless: a held-fixed input itself)
                fixed.add(index)
        return fixed

    def consumers(self, index: int) -> list:
        return [i for i, node in enumerate(self.nodes) if index in node.parents]

    def strip_trailing_activations(self, index: int) -> int:
        """Walk up from ``index`` past elementwise activations (the LRP head, docs/lrp.md#head)."""
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

    def cam_node(self, name=None, shapes=None) -> int:
        """The node whose output is the Grad-CAM map A: a named layer, else the output of the last spatial block
        (:meth:`last_spatial_block`; ``shapes``, the per-sample channels-last output shape of every node, are needed
        for it; without them the last convolution). docs/methods.md#grad-cam-layer."""
        convs = [i for i, n in enumerate(self.nodes) if n.kind == KERNEL and not n.kernel.is_dense]
        if name is None:
            if not convs:
                raise ValueError("Grad-CAM needs a convolution layer, but the model has none")
            block = None if shapes is None else self.last_spatial_block(shapes)
            return self.fold_activations(convs[-1]) if block is None else block
        if name not in self.names:
            raise ValueError(f"Grad-CAM layer {name!r} is not in the model; its convolution layers are: "
                             f"{[self.nodes[i].name for i in convs]}")
        index = self.names[name]
        return self.fold_activations(index) if self.nodes[index].kind == KERNEL else index

    def last_spatial_block(self, shapes: list) -> Optional[int]:
        """The last node (in topological order) that has a convolution among its ancestors and a spatial grid of
        more than one position with the input's spatial axes (not a token sequence), walked back over the
        re-indexing and pooling nodes that only move or subsample that grid (max pooling, padding, cropping): the
        output of the last spatial block before the head pools or flattens it. Where parallel branches merge before
        the head, this is the merge, so the choice does not depend on how a framework orders the branches. None if
        no such node exists."""
        conv_upstream = [False] * len(self.nodes)
        for i, node in enumerate(self.nodes):
            conv_upstream[i] = any(conv_upstream[p] or (self.nodes[p].kind == KERNEL and not self.nodes[p].kernel
                                                        .is_dense) for p in node.parents)
            if node.kind == KERNEL and not node.kernel.is_dense:
                conv_upstream[i] = True
        rank = len(shapes[0]) if shapes[0] is not None else None  # the input's: its spatial axes and channels
        native = self._native_layout(shapes)
        live = {self.output}  # nodes the output depends on (an exported graph may keep unused reshapes)
        for i in range(self.output, 0, -1):
            if i in live:
                live.update(self.nodes[i].parents)
        gridded = [i for i, node in enumerate(self.nodes)
                   if i in live and conv_upstream[i] and native[i] and node.kind != AUX and shapes[i] is not None
                   and len(shapes[i]) == rank and _positions(shapes[i]) > 1]
        if not gridded:
            return None
        index = gridded[-1]
        while self.nodes[index].kind in (REINDEX, AVGPOOL):
            parents = [p for p in self.nodes[index].parents if self.nodes[p].kind != AUX]
            if (len(parents) != 1 or _positions(shapes[parents[0]]) <= 1 or self.nodes[parents[0]].kind == INPUT
                    or shapes[parents[0]][-1:] != shapes[index][-1:]  # a layout move is not walked back over,
                    or len(shapes[parents[0]]) != len(shapes[index])):  # nor a partition into windows (MaxViT)
                break
            index = parents[0]
        return index

    def _native_layout(self, shapes: list) -> list:
        """Per node: whether its tensor is in the input's layout. A re-indexing that only permutes the axes (a
        converted model's channels-last LayerNorm region, an exporter's NCHW→NHWC transpose) toggles it."""
        native = [True] * len(self.nodes)
        for i, node in enumerate(self.nodes):
            parents = [p for p in node.parents if self.nodes[p].kind != AUX]
            if not parents:
                continue
            native[i] = native[parents[0]]
            p = parents[0]
            if (node.kind == REINDEX and len(parents) == 1 and shapes[i] is not None and shapes[p] is not None
                    and shapes[i] != shapes[p] and sorted(shapes[i]) == sorted(shapes[p])):
                native[i] = not native[p]
        return native

    def input_layers(self) -> set:
        """Kernel nodes with no kernel node among their ancestors (docs/lrp.md#input-layers)."""
        kernel_upstream = [False] * len(self.nodes)
        result = set()
        for i, node in enumerate(self.nodes):
            upstream = any(kernel_upstream[p] or self.nodes[p].kind == KERNEL for p in node.parents)
            kernel_upstream[i] = upstream
            if node.kind == KERNEL and not upstream:
                result.add(i)
        return result

    def value_range(self, index: int):
        """Static bounds ``(low, high)`` of a node's output, or None where they are unknown (docs/layers.md).

        Bounded activations (ReLU included: (0, inf)) give their range; scalar affine maps transform it;
        re-indexing nodes with one tensor parent (reshape, broadcast, pooling by selection, zero padding) and
        average pooling (a mean, with zero padding perhaps counted) keep it, widened to include 0.
        """
        node = self.nodes[index]
        if node.value_range is not None:
            return node.value_range
        tensor_parents = [p for p in node.parents if self.nodes[p].kind != AUX]
        if len(tensor_parents) != 1:
            return None
        parent = self.value_range(tensor_parents[0])
        if parent is None:
            return None
        if node.affine is not None:
            scale, shift = node.affine
            low, high = sorted((parent[0] * scale + shift, parent[1] * scale + shift))
            return low, high
        if node.kind in (REINDEX, AVGPOOL):
            return min(parent[0], 0.0), max(parent[1], 0.0)
        return None

    def is_nonnegative(self, index: int) -> bool:
        """Whether a node's output has no negative entry by construction (e.g. after a ReLU, possibly pooled)."""
        bounds = self.value_range(index)
        return bounds is not None and bounds[0] >= 0.0

    def is_gate(self, index: int) -> bool:
        """A gate: a tensor whose values lie in [0, 1] by construction (sigmoid, hard sigmoid, ReLU6(x+3)/6 …)."""
        bounds = self.value_range(index)
        return bounds is not None and bounds[0] >= 0.0 and bounds[1] <= 1.0

    def product_signal(self, index: int) -> Optional[int]:
        """The position (0 or 1) of the signal operand of a PRODUCT or BILINEAR node when exactly one of its two
        operands is a gate (docs/layers.md#gated-products); None otherwise (the product is then bilinear in both
        operands: docs/transformers.md#bilinear)."""
        node = self.nodes[index]
        gates = [self.is_gate(p) for p in node.parents]
        if len(node.parents) != 2 or sum(gates) != 1:
            return None
        return gates.index(False)

    def is_supported(self, upto: int) -> bool:
        """Whether :meth:`check_supported` passes."""
        try:
            self.check_supported(upto)
        except ValueError:
            return False
        return True

    def check_supported(self, upto: int) -> None:
        for node in self.nodes[: upto + 1]:
            if node.kind == UNSUPPORTED:
                raise ValueError(f"layer {node.describe()} is not supported by the rule-based methods "
                                 f"(guided backprop, DeconvNet, LRP){': ' + node.reason if node.reason else ''}. "
                                 f"See docs/layers.md for the supported layers; pure-gradient methods still work.")
            if node.kind in (PRODUCT, BILINEAR) and len(node.parents) != 2:
                raise ValueError(f"layer {node.describe()} is not supported by the rule-based methods (guided "
                                 f"backprop, DeconvNet, LRP): a product of {len(node.parents)} input-dependent "
                                 f"tensors has no rule (two: docs/transformers.md#bilinear)")
