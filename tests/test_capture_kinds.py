"""Both backends capture twin models into the same sequence of node kinds (docs/layers.md), and every node kind has
an entry in both backends' layer tables (docs/extending.md#layer-tables), which have the same shape."""
from __future__ import annotations

import numpy as np
import pytest

from signxai.core import graph as g
from signxai.core.layers import KindEntry, LayerTable, arithmetic_kind
from signxai.tf_signxai import layer_table as keras_table
from signxai.tf_signxai.backend import BACKEND as KERAS
from signxai.torch_signxai import layer_table as torch_table
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
        if node.kind == g.REINDEX and len(tensor_parents) == 1:
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
    expected = {g.INPUT, *g.TABLE_KINDS}
    assert expected <= seen["keras"], expected - seen["keras"]
    assert expected <= seen["torch"], expected - seen["torch"]
    assert all(isinstance(kind, g.NodeKind) for kind in seen["keras"] | seen["torch"])


# --- the layer tables ---------------------------------------------------------------------------------------------

TABLES = {"keras": keras_table.LAYER_TABLE, "torch": torch_table.LAYER_TABLE}


@pytest.mark.parametrize("side", list(TABLES))
def test_every_node_kind_has_an_entry_in_both_layer_tables(side):
    table = TABLES[side]
    assert isinstance(table, LayerTable)
    assert set(table) == set(g.TABLE_KINDS)
    for kind in g.TABLE_KINDS:
        assert isinstance(table[kind], KindEntry) and table[kind], f"{side}: no entry for {kind}"
    # made by the captures (the attention kinds by their special cases, docs/transformers.md#capture)
    assert set(g.NodeKind) - set(g.TABLE_KINDS) == {g.INPUT, g.AUX, g.UNSUPPORTED, *g.ATTENTION_KINDS}


def test_both_packages_have_the_same_layout():
    """ops.py, layer_table.py, capture.py, backend.py on both sides, and the same names in the two tables."""
    import signxai.tf_signxai.capture  # noqa: F401
    import signxai.tf_signxai.ops  # noqa: F401
    import signxai.torch_signxai.capture  # noqa: F401
    import signxai.torch_signxai.ops  # noqa: F401
    shared = ("LAYER_TABLE", "ARITHMETIC", "SOFTMAX_LAYERS", "SOFTMAX_FUNCTIONS", "VALUE_RANGES")
    for module in (keras_table, torch_table):
        assert all(hasattr(module, name) for name in shared), module.__name__


@pytest.mark.parametrize("side", list(TABLES))
def test_arithmetic_maps_to_the_neutral_operations(side):
    from signxai.core.layers import ARITHMETIC_OPERATIONS
    arithmetic = {"keras": keras_table.ARITHMETIC, "torch": torch_table.ARITHMETIC}[side]
    assert set(arithmetic.values()) == set(ARITHMETIC_OPERATIONS)


def test_torch_arithmetic_is_listed_under_its_kind():
    """An arithmetic function or tensor method stands in the table under the kind of its two-tensor form, or PASS
    (its form with a constant) where two tensors have no rule."""
    table = torch_table.LAYER_TABLE
    for op, operation in torch_table.ARITHMETIC.items():
        expected = arithmetic_kind(operation, 2)
        expected = g.PASS if expected == g.UNSUPPORTED else expected
        found = table.method_kind(op) if isinstance(op, str) else table.function_kind(op)
        assert found == expected, op


def test_a_layer_table_refuses_gaps_and_conflicts():
    entries = {kind: KindEntry(methods=(str(kind),)) for kind in g.TABLE_KINDS}
    assert len(LayerTable(entries)) == len(g.TABLE_KINDS)
    with pytest.raises(ValueError, match="no entry for the node kind"):
        LayerTable({k: v for k, v in entries.items() if k != g.REINDEX})
    with pytest.raises(ValueError, match="listed as"):
        LayerTable({**entries, g.PASS: KindEntry(methods=("relu",))})


def test_the_most_specific_class_wins():
    """``nn.ReLU6`` subclasses ``nn.Hardtanh`` (an activation): the table gives the ReLU family."""
    from torch import nn
    assert issubclass(nn.ReLU6, nn.Hardtanh)
    assert torch_table.LAYER_TABLE.layer_kind(nn.ReLU6()) == g.RELU
    assert torch_table.LAYER_TABLE.layer_kind(nn.Hardtanh()) == g.ACTIVATION
    assert torch_table.LAYER_TABLE.layer_kind(nn.Softmax()) is None


def test_node_kinds_are_strings():
    assert g.REINDEX == "reindex" and f"{g.KERNEL}" == "kernel" and str(g.PASS) == "pass"
    assert g.GRADIENT is g.REINDEX  # the deprecated name
