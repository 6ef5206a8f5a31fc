"""The capture is the model (docs/api.md#verified-capture, SPEC §9 gate 4, decision D21).

A rule-based method (LRP, guided backprop, DeconvNet, Grad-CAM) computes on a captured graph. Before any of its maps
is returned, the graph's logits on the explained input are compared with the model's own logits on every sample:

    max|z_capture − z_model| ≤ 1e-4 · max|z_model| + 1e-6      (float32)
    max|z_capture − z_model| ≤ 1e-10 · max|z_model| + 1e-12    (float64)

On a mismatch no map is returned: :class:`CaptureMismatch` names the first captured node whose replay differs from
what the framework's own layer computes from the same inputs (``Node.reference``), and says what to do.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

#: (relative, absolute) tolerance of gate 4 per dtype
TOLERANCES = {"float32": (1e-4, 1e-6), "float64": (1e-10, 1e-12)}


class CaptureMismatch(ValueError):
    """The captured graph does not compute what the model computes: no map is returned."""


def _tolerance(dtype) -> tuple:
    return TOLERANCES.get(np.dtype(dtype).name, TOLERANCES["float32"])


def differs(captured: np.ndarray, real: np.ndarray, dtype) -> np.ndarray:
    """Per sample (axis 0): whether ``captured`` is not ``real`` within gate 4 (NaN and ±inf must sit at the same
    places with the same values)."""
    captured = np.asarray(captured, dtype=np.float64).reshape(len(real), -1)
    real = np.asarray(real, dtype=np.float64).reshape(len(real), -1)
    if captured.shape != real.shape:
        return np.ones(len(real), dtype=bool)
    relative, absolute = _tolerance(dtype)
    finite = np.isfinite(real)
    same_special = np.where(finite, True, (captured == real) | (np.isnan(captured) & np.isnan(real)))
    peak = np.max(np.where(finite, np.abs(real), 0.0), axis=1, initial=0.0)
    with np.errstate(invalid="ignore"):
        gap = np.where(finite, np.abs(captured - real), 0.0)
    gap = np.where(np.isnan(gap), np.inf, gap)
    return ~(same_special.all(axis=1) & (gap.max(axis=1, initial=0.0) <= relative * peak + absolute))


def first_differing_node(graph, values: list, to_numpy: Callable[[Any], np.ndarray], dtype) -> Optional[Any]:
    """The first node (in graph order) whose recorded value differs from its ``reference`` (what the framework's
    own layer computes from the node's recorded inputs), or None where every checkable node agrees."""
    for index, node in enumerate(graph.nodes):
        reference = getattr(node, "reference", None)
        if reference is None or index >= len(values):
            continue
        real = reference(*[values[p] for p in (node.reference_parents or node.parents)])
        try:
            mine, real = to_numpy(values[index]), to_numpy(real)
        except (AttributeError, TypeError):  # a non-tensor value
            continue
        if np.shape(mine) != np.shape(real) or differs(mine.reshape(1, -1), real.reshape(1, -1), dtype).any():
            return node
    return None


def mismatch_error(model_name: str, samples: list, node, captured: np.ndarray, real: np.ndarray) -> CaptureMismatch:
    where = (f"the first layer whose captured form differs from the layer itself is {node.describe()}"
             if node is not None else
             "every captured layer computes what the framework's layer computes from the same inputs, so the "
             "difference lies in how the layers are connected (an operation the capture did not see)")
    return CaptureMismatch(
        f"the captured graph of {model_name} does not reproduce the model's own logits on sample(s) {samples} "
        f"(captured {np.array2string(np.asarray(captured)[:5], precision=5)} vs the model's "
        f"{np.array2string(np.asarray(real)[:5], precision=5)}, first sample, first logits): {where}. No map is "
        f"returned from a graph that is not the model. Declare the layer's semantics with signxai.register_layer "
        f"(docs/layers.md#custom-layers), or report the model; the gradient family (gradient, input×gradient, "
        f"SIGN, integrated gradients, SmoothGrad, VarGrad) differentiates the model itself and still works.")
