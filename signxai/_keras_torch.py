"""Keras ↔ PyTorch conventions shared by the converters, the spec models and the backends' graph capture (private).

One place for what the two frameworks disagree on and signxai translates between (docs/converters.md#shared-helpers):

* **'same' padding**: TensorFlow's ``'same'`` padding per axis, PyTorch's ``F.pad`` order, and the split into a
  symmetric ``padding=`` argument or an explicit zero pad (docs/equivalence.md#model-equivalence);
* **layouts**: Keras tensors are channels-last, their PyTorch twins channels-first — arrays, shapes, ``permute``
  dimensions and axis numbers;
* **flatten order**: Keras flattens ``(d..., C)``, PyTorch ``(C, d...)``; the index permutations both ways, and the
  rows of a Dense kernel (or per-feature parameters) permuted with them;
* **weight axes**: Dense, Conv/ConvTranspose and depthwise kernels between Keras and PyTorch layouts;
* **activations and arithmetic**: Keras activation names ↔ PyTorch modules, functions and tensor methods, the output
  bounds of the bounded ones; Keras op layers and PyTorch operators of ``+ - * /``;
* **unique names** for the modules and layers a converter creates;
* **the Keras graph walk**: Functional, Sequential and nested models replayed node by node in Keras's order.

Importing this module imports neither framework: functions that need one import it when called (torch before
TensorFlow where both are needed; README, known traps).
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Container, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = [
    "same_padding", "is_keras_same", "torch_pad", "pairs_of_torch_pad", "torch_conv_padding", "as_tuple",
    "channels_first", "channels_last", "channels_first_shape", "channels_last_shape", "channels_first_dims",
    "channels_last_dims", "torch_axis", "keras_axis",
    "keras_to_torch_flat_index", "torch_to_keras_flat_index", "flat_rows_to_torch", "flat_rows_to_keras",
    "dense_kernel_to_torch", "dense_kernel_to_keras", "conv_kernel_to_torch", "conv_kernel_to_keras",
    "depthwise_kernel_to_torch", "depthwise_kernel_to_keras",
    "ACTIVATION_RANGES", "SOFTMAX_ACTIVATIONS", "TORCH_METHOD_ACTIVATIONS", "activation_range",
    "keras_activation_name", "torch_activations", "torch_function_activations", "torch_module_activation",
    "torch_softmax_functions", "torch_softmax_modules", "KERAS_OP_ARITHMETIC", "torch_arithmetic",
    "unique_name",
    "keras_functional", "replay_keras_graph", "keras_operation_nodes",
]


# ------------------------------------------------------------------------------------------------- 'same' padding
def same_padding(size: int | None, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's ``'same'`` padding ``(before, after)`` along one axis of length ``size``.

    The total is ``max((⌈size / stride⌉ − 1)·stride + k − size, 0)`` with the dilated kernel extent
    ``k = (kernel − 1)·dilation + 1``; the odd element goes *after* (PyTorch's symmetric ``padding=`` cannot express
    that, docs/equivalence.md#model-equivalence). An unknown ``size`` (None) is allowed only for stride 1, where the
    padding does not depend on it; otherwise ValueError.
    """
    k = (kernel - 1) * dilation + 1
    if size is None:
        if stride != 1:
            raise ValueError("'same' padding with stride > 1 needs a static input size")
        total = k - 1
    else:
        total = max((-(-size // stride) - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def is_keras_same(padding: Sequence[int], size: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                  dilation: Sequence[int]) -> bool:
    """Whether PyTorch's symmetric ``padding`` (one value per spatial axis) is exactly TensorFlow's ``'same'`` for
    an input of spatial shape ``size`` on every axis."""
    return all(same_padding(n, k, s, d) == (p, p) for p, n, k, s, d in zip(padding, size, kernel, stride, dilation))


def torch_pad(pairs: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """``F.pad``/``nn.ZeroPad*d`` order (last axis first) of per-spatial-axis ``(before, after)`` pairs (first axis
    first, as Keras's ``ZeroPadding*D`` takes them)."""
    return tuple(v for pair in reversed(pairs) for v in pair)


def pairs_of_torch_pad(pad: Sequence[int]) -> list[tuple[int, int]]:
    """The inverse of :func:`torch_pad`: ``(before, after)`` pairs, first spatial axis first, of an ``F.pad`` tuple."""
    return [(pad[2 * i], pad[2 * i + 1]) for i in reversed(range(len(pad) // 2))]


def torch_conv_padding(pairs: Sequence[tuple[int, int]]) -> tuple[tuple[int, ...] | None, tuple[int, ...] | int]:
    """PyTorch form of per-axis ``(before, after)`` conv padding: ``(None, padding)`` with the symmetric
    ``padding=`` argument where every axis pads equally on both sides, else ``(pad, 0)``: an explicit zero pad
    (``F.pad`` order) in front of a ``padding=0`` conv (docs/equivalence.md#model-equivalence)."""
    if all(a == b for a, b in pairs):
        return None, tuple(a for a, _ in pairs)
    return torch_pad(pairs), 0


def as_tuple(value: Any, n: int) -> tuple:
    """``value`` as an ``n``-tuple: a list or tuple as it is, a scalar repeated (kernel sizes, strides, ...)."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


# -------------------------------------------------------------------------------------------------------- layouts
def channels_first(x: np.ndarray, batch: bool = True) -> np.ndarray:
    """An array in the PyTorch layout: the last (channel) axis moved to position 1 (0 with ``batch=False``), as a
    C-contiguous copy. An array without spatial axes (``(N, F)``; ``(F,)`` without batch) is unchanged."""
    return np.ascontiguousarray(np.moveaxis(x, -1, 1 if batch else 0))


def channels_last(x: np.ndarray, batch: bool = True) -> np.ndarray:
    """An array in the Keras layout: axis 1 (0 with ``batch=False``) moved last (a view: the inverse of
    :func:`channels_first`)."""
    return np.moveaxis(x, 1 if batch else 0, -1)


def channels_first_shape(shape: Sequence) -> tuple:
    """The PyTorch per-sample shape of a Keras per-sample ``shape`` (channel first); rank ≤ 1 is unchanged."""
    return (shape[-1], *shape[:-1]) if len(shape) > 1 else tuple(shape)


def channels_last_shape(shape: Sequence) -> tuple:
    """The Keras per-sample shape of a PyTorch per-sample ``shape`` (channel last); rank ≤ 1 is unchanged."""
    return (*shape[1:], shape[0]) if len(shape) > 1 else tuple(shape)


def channels_first_dims(rank: int) -> tuple[int, ...]:
    """``permute`` dimensions (batch axis 0 included) taking a channels-last tensor of per-sample rank ``rank`` to
    channels-first. Keras's ``Permute`` takes ``[1:]`` (it numbers the axes from 1, without the batch axis)."""
    return (0, rank, *range(1, rank))


def channels_last_dims(rank: int) -> tuple[int, ...]:
    """``permute`` dimensions (batch axis 0 included) taking a channels-first tensor of per-sample rank ``rank`` to
    channels-last; the inverse of :func:`channels_first_dims`."""
    return (0, *range(2, rank + 1), 1)


def torch_axis(keras_axis: int, rank: int) -> int:
    """Per-sample PyTorch axis of per-sample Keras axis ``keras_axis`` (≥ 0) of a tensor of per-sample rank
    ``rank``."""
    if rank < 2:
        return keras_axis
    return 0 if keras_axis == rank - 1 else keras_axis + 1


def keras_axis(torch_axis: int, rank: int) -> int:
    """Per-sample Keras axis of per-sample PyTorch axis ``torch_axis`` (≥ 0); the inverse of :func:`torch_axis`."""
    if rank < 2:
        return torch_axis
    return rank - 1 if torch_axis == 0 else torch_axis - 1


# --------------------------------------------------------------------------------------------------- flatten order
def keras_to_torch_flat_index(channels_last_shape: Sequence[int]) -> np.ndarray:
    """``index`` with ``torch_flat = keras_flat[index]`` for a tensor of Keras per-sample shape
    ``channels_last_shape``: PyTorch's flatten position ``j`` holds Keras's flatten position ``index[j]``."""
    index = np.arange(int(np.prod(channels_last_shape))).reshape(channels_last_shape)
    return np.moveaxis(index, -1, 0).reshape(-1)


def torch_to_keras_flat_index(channels_first_shape: Sequence[int]) -> np.ndarray:
    """``index`` with ``keras_flat = torch_flat[index]`` for a tensor of PyTorch per-sample shape
    ``channels_first_shape``; the inverse permutation of :func:`keras_to_torch_flat_index`."""
    index = np.arange(int(np.prod(channels_first_shape))).reshape(channels_first_shape)
    return np.moveaxis(index, 0, -1).reshape(-1)


def flat_rows_to_torch(rows: np.ndarray, channels_last_shape: Sequence[int]) -> np.ndarray:
    """Rows indexed in Keras's flatten order of ``channels_last_shape`` (a Dense kernel's input rows, per-feature
    BatchNorm/PReLU/LayerNorm parameters) reordered into PyTorch's flatten order."""
    return rows[keras_to_torch_flat_index(channels_last_shape)]


def flat_rows_to_keras(rows: np.ndarray, channels_first_shape: Sequence[int]) -> np.ndarray:
    """Rows indexed in PyTorch's flatten order of ``channels_first_shape`` reordered into Keras's flatten order."""
    return rows[torch_to_keras_flat_index(channels_first_shape)]


# ------------------------------------------------------------------------------------------------------ weight axes
def dense_kernel_to_torch(kernel):
    """Keras Dense kernel ``(in, out)`` → ``nn.Linear.weight`` ``(out, in)`` (a transposed view; NumPy or torch)."""
    return kernel.T


def dense_kernel_to_keras(weight):
    """``nn.Linear.weight`` ``(out, in)`` → Keras Dense kernel ``(in, out)`` (a transposed view; NumPy or torch)."""
    return weight.T


def conv_kernel_to_torch(kernel: np.ndarray) -> np.ndarray:
    """Keras conv kernel ``(k..., in, out)`` → PyTorch ``(out, in, k...)``; equally a transposed-conv kernel
    ``(k..., out, in)`` → ``(in, out, k...)``."""
    return np.moveaxis(kernel, (-1, -2), (0, 1))


def conv_kernel_to_keras(weight: np.ndarray) -> np.ndarray:
    """PyTorch conv weight ``(out, in, k...)`` → Keras ``(k..., in, out)`` (transposed convs alike); the inverse of
    :func:`conv_kernel_to_torch`."""
    return np.moveaxis(weight, (0, 1), (-1, -2))


def depthwise_kernel_to_torch(kernel: np.ndarray) -> np.ndarray:
    """Keras depthwise kernel ``(k..., C, M)`` (``M`` the depth multiplier) → the weight ``(C·M, 1, k...)`` of a
    PyTorch conv with ``groups=C``."""
    return conv_kernel_to_torch(kernel.reshape(*kernel.shape[:-2], 1, -1))


def depthwise_kernel_to_keras(weight: np.ndarray, in_channels: int) -> np.ndarray:
    """The weight ``(C·M, 1, k...)`` of a PyTorch conv with ``groups=C`` (``C = in_channels``) → Keras depthwise
    kernel ``(k..., C, M)``; the inverse of :func:`depthwise_kernel_to_torch`."""
    multiplier = weight.shape[0] // in_channels
    return np.moveaxis(weight.reshape(in_channels, multiplier, *weight.shape[2:]), (0, 1), (-2, -1))


# ------------------------------------------------------------------------------------------------------ activations
ACTIVATION_RANGES: dict[str, tuple[float, float]] = {
    "sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "relu6": (0.0, 6.0), "tanh": (-1.0, 1.0),
    "relu": (0.0, float("inf")),
}
"""Output bounds of the bounded activations, by Keras name (gate detection at products, docs/layers.md; ReLU's
``(0, inf)`` lets rules skip work on nonnegative inputs, docs/lrp.md#kernel-rules)."""

SOFTMAX_ACTIVATIONS = ("softmax", "log_softmax")
"""Keras activation names (and PyTorch tensor methods) that apply a softmax (docs/api.md#model-requirements)."""

TORCH_METHOD_ACTIVATIONS: dict[str, str] = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid",
                                            "sigmoid_": "sigmoid", "tanh": "tanh", "tanh_": "tanh"}
"""PyTorch tensor methods (``x.relu()``, in-place ``x.relu_()``) → the Keras activation they compute."""


def activation_range(name: str | None) -> tuple[float, float] | None:
    """The output bounds of the Keras activation ``name`` (see ACTIVATION_RANGES), None if unbounded or unknown."""
    return None if name is None else ACTIVATION_RANGES.get(name)


def keras_activation_name(activation) -> str | None:
    """The name of a built-in Keras activation function (``keras.activations.<name>`` is ``activation``), else
    None (a custom function, even one named like a built-in). Imports Keras."""
    import keras

    name = getattr(activation, "__name__", None)
    if name is None or getattr(keras.activations, name, None) is not activation:
        return None
    return name


@functools.cache
def torch_activations() -> dict[str, Callable[[], nn.Module]]:
    """Keras activation name → factory of the PyTorch module computing the same function with Keras's default
    parameters (``leaky_relu``: slope 0.2). Imports torch."""
    from torch import nn

    return {
        "relu": nn.ReLU, "relu6": nn.ReLU6, "leaky_relu": lambda: nn.LeakyReLU(0.2), "elu": nn.ELU,
        "selu": nn.SELU, "celu": nn.CELU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
        "hard_sigmoid": nn.Hardsigmoid, "hard_tanh": nn.Hardtanh, "silu": nn.SiLU, "hard_silu": nn.Hardswish,
        "softplus": nn.Softplus, "softsign": nn.Softsign, "mish": nn.Mish,
    }


@functools.cache
def _torch_module_activations() -> dict[type, str]:
    return {type(factory()): key for key, factory in torch_activations().items() if key != "leaky_relu"}


_KERAS_DEFAULTS: dict[str, Callable[[Any], bool]] = {
    "elu": lambda m: m.alpha == 1.0, "celu": lambda m: m.alpha == 1.0, "gelu": lambda m: m.approximate == "none",
    "hard_tanh": lambda m: (m.min_val, m.max_val) == (-1.0, 1.0),
    "softplus": lambda m: (m.beta, m.threshold) == (1.0, 20.0)}
"""Parameter checks: when a PyTorch activation module equals ``keras.layers.Activation(key)``."""


def torch_module_activation(module: nn.Module) -> str | None:
    """The Keras activation name of a PyTorch activation module (exact type) that computes it with Keras's default
    parameters, else None (``nn.LeakyReLU``: None, Keras's default slope differs). Imports torch."""
    key = _torch_module_activations().get(type(module))
    if key is None or not _KERAS_DEFAULTS.get(key, lambda m: True)(module):
        return None
    return key


@functools.cache
def torch_function_activations() -> dict[Callable, str]:
    """PyTorch functions (``F.relu``, ``torch.sigmoid``, in-place ``F.relu_`` …) → the Keras activation they compute
    with their default arguments. Imports torch."""
    import torch
    import torch.nn.functional as F

    return {F.relu: "relu", torch.relu: "relu", F.relu_: "relu", torch.relu_: "relu", F.relu6: "relu6",
            F.silu: "silu", F.hardswish: "hard_silu", F.hardsigmoid: "hard_sigmoid", torch.sigmoid: "sigmoid",
            F.sigmoid: "sigmoid", torch.tanh: "tanh", F.tanh: "tanh", F.elu: "elu", F.selu: "selu",
            F.softplus: "softplus", F.mish: "mish", F.gelu: "gelu"}


@functools.cache
def torch_softmax_functions() -> tuple[Callable, ...]:
    """PyTorch functions that apply a softmax (docs/api.md#model-requirements). Imports torch."""
    import torch
    import torch.nn.functional as F

    return (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax)


def torch_softmax_modules() -> tuple[type, ...]:
    """PyTorch modules that apply a softmax (docs/api.md#model-requirements). Imports torch."""
    from torch import nn

    return (nn.Softmax, nn.LogSoftmax)


KERAS_OP_ARITHMETIC: dict[str, str] = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply",
                                       "Divide": "divide", "TrueDivide": "divide"}
"""Keras operation layers created by arithmetic on KerasTensors (``x + 3.0``, ``x * y``, ``keras.ops.multiply``; class
names, defined in ``keras.src.ops``) → the operation: ``add``, ``subtract``, ``multiply`` or ``divide``."""


@functools.cache
def torch_arithmetic() -> dict[Callable | str, str]:
    """PyTorch arithmetic — functions (``operator.add``, in-place ``operator.iadd``, ``torch.add`` …) and tensor
    method names (``"add"``, ``"add_"`` …) → the operation, named as in KERAS_OP_ARITHMETIC. Imports torch."""
    import operator

    import torch

    return {operator.add: "add", operator.iadd: "add", torch.add: "add", "add": "add", "add_": "add",
            operator.sub: "subtract", operator.isub: "subtract", torch.sub: "subtract", "sub": "subtract",
            "sub_": "subtract",
            operator.mul: "multiply", operator.imul: "multiply", torch.mul: "multiply", "mul": "multiply",
            "mul_": "multiply",
            operator.truediv: "divide", operator.itruediv: "divide", torch.div: "divide", "div": "divide",
            "div_": "divide"}


# ---------------------------------------------------------------------------------------------------------- names
def unique_name(base: str, taken: Container[str] | Callable[[str], bool], invalid: str = r"\W") -> str:
    """``base`` with every match of the regular expression ``invalid`` replaced by ``_``, then suffixed ``_1``,
    ``_2`` … until it is not ``taken`` (a container of used names, or a predicate). The caller records it."""
    is_taken = taken if callable(taken) else taken.__contains__
    base = re.sub(invalid, "_", base)
    name, i = base, 0
    while is_taken(name):
        i += 1
        name = f"{base}_{i}"
    return name


# ------------------------------------------------------------------------------------------------ Keras graph walk
def keras_functional(model):
    """The Functional graph of a Keras model: a Sequential's inner Functional (ValueError if it is not built), any
    other model itself. Imports Keras."""
    import keras

    if isinstance(model, keras.Sequential):
        if getattr(model, "_functional", None) is None:
            raise ValueError(f"Sequential model {model.name!r} is not built; build it with an input shape first")
        return model._functional
    return model


def replay_keras_graph(model, inputs: Sequence, visit: Callable[[Any, list], Sequence]) -> list:
    """Replay a Keras model's graph in Keras's own order (``_nodes_by_depth``, deepest first), nested models inlined.

    ``inputs`` are the values standing for the model's input tensors. For every operation node ``visit(node,
    parents)`` is called with the values of ``node.input_tensors`` and returns one value per ``node.outputs``; a
    node whose operation is a ``keras.Model`` is not visited but replayed recursively, its inputs standing for its
    input tensors. Returns the values of the model's outputs. Values are anything (fx nodes, graph indices, ...);
    constants an op layer was called with are in ``node.arguments``. Imports Keras.
    """
    import keras

    functional = keras_functional(model)
    values = {id(t): v for t, v in zip(functional.inputs, inputs)}
    for depth in sorted(functional._nodes_by_depth, reverse=True):
        for node in functional._nodes_by_depth[depth]:
            if node.is_input or not node.operation:
                continue
            parents = [values[id(t)] for t in node.input_tensors]
            if isinstance(node.operation, keras.Model):
                outputs: Sequence = replay_keras_graph(node.operation, parents, visit)
            else:
                outputs = visit(node, parents)
            for t, value in zip(node.outputs, outputs):
                values[id(t)] = value
    return [values[id(t)] for t in functional.outputs]


def keras_operation_nodes(model) -> list:
    """Every operation node of a Keras model in replay order, those of nested models in their place (the nested
    model's own node is not included); see :func:`replay_keras_graph`."""
    nodes = []

    def visit(node, parents):
        nodes.append(node)
        return [None] * len(node.outputs)
    replay_keras_graph(model, [None] * len(keras_functional(model).inputs), visit)
    return nodes
