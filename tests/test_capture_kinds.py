"""Both backends capture twin models into the same sequence of node kinds (docs/layers.md), and every node kind has
an entry in both backends' layer tables."""
from __future__ import annotations

import numpy as np
import pytest

from signxai.core import graph as g
from signxai.tf_signxai.backend import BACKEND as KERAS
from signxai.torch_signxai.backend import BACKEND as TORCH
from signxai.core.engine import record
from twins import fast_twins, torch_input


def _kinds(backend, model, x):
    """Node kinds in capture order, without non-tensor nodes and without pure reshapes (a ``(N, C, 1, 1)`` map
    flattened to ``(N, C)`` in PyTorch is one node in Keras' ``GlobalAveragePooling2D``)."""
    graph = backend.graph(model)
    values = _record(backend, graph, x)
    kinds = []
    for index, node in enumerate(graph.nodes):
        if node.kind == g.AUX:
            continue
        tensor_parents = [p for p in node.parents if graph.nodes[p].kind != g.AUX]
        if node.kind == g.GRADIENT and len(tensor_parents) == 1:
            before, after = values[tensor_parents[0]], values[index]
            if int(np.prod(before.shape)) == int(np.prod(after.shape)) and _is_reshape(before, after):
                continue
        kinds.append(node.kind)
    return kinds


def _is_reshape(before, after):
    """Same elements in the same (row-major) order: a view, not a permutation."""
    return np.array_equal(before.reshape(-1), after.reshape(-1))


def _record(backend, graph, x):
    """The forward values of every node as NumPy arrays (non-tensor values as they are)."""
    if backend is TORCH:
        import torch
        with torch.no_grad():
            values = record(graph, torch.as_tensor(x))
        return [v.numpy() if isinstance(v, torch.Tensor) else v for v in values]
    import tensorflow as tf
    return [v.numpy() if isinstance(v, tf.Tensor) else v for v in record(graph, tf.constant(x))]


def _twins():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent / "core"))
    import test_layer_kinds as kinds
    result = {name: build for name, build in fast_twins().items()}
    result["gated"] = kinds.gated_twin
    result["custom_activation_gelu"] = lambda: kinds.activation_twin("gelu", True)
    return result


TWINS = _twins()


@pytest.mark.parametrize("name", list(TWINS))
def test_twins_capture_the_same_kind_sequence(name):
    t = TWINS[name]()
    keras_kinds = _kinds(KERAS, t.keras_model, t.x)
    torch_kinds = _kinds(TORCH, t.torch_model, torch_input(t.x))
    assert keras_kinds == torch_kinds
    assert g.KERNEL in keras_kinds


def test_every_node_kind_is_produced_by_both_backends():
    """Each kind a rule acts on occurs in some captured twin of both backends (the tables have an entry for it)."""
    seen = {"keras": set(), "torch": set()}
    for build in TWINS.values():
        t = build()
        seen["keras"] |= {n.kind for n in KERAS.graph(t.keras_model).nodes}
        seen["torch"] |= {n.kind for n in TORCH.graph(t.torch_model).nodes}
    expected = {g.INPUT, g.KERNEL, g.BATCHNORM, g.AVGPOOL, g.ADD, g.RELU, g.ACTIVATION, g.PASS, g.GRADIENT,
                g.PRODUCT}
    assert expected <= seen["keras"], expected - seen["keras"]
    assert expected <= seen["torch"], expected - seen["torch"]
