"""PyTorch model helpers."""
from __future__ import annotations

import copy

from torch import nn


def remove_softmax(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.Softmax``/``nn.LogSoftmax`` module replaced by ``nn.Identity``."""
    clone = copy.deepcopy(model)
    for _name, module in list(clone.named_modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (nn.Softmax, nn.LogSoftmax)):
                setattr(module, name, nn.Identity())
    return clone


def remove_sigmoid(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose output is the logit: the ``nn.Sigmoid``/``nn.LogSigmoid`` module that produces the
    model's output is replaced by ``nn.Identity`` (docs/api.md#targets, D22). Sigmoid gates inside the model are
    kept. A sigmoid applied by a function in ``forward`` cannot be removed from outside: ValueError."""
    from signxai.torch_signxai.backend import BACKEND, sigmoid_output_node

    graph = BACKEND._try_graph(model)
    if graph is not None:
        index = sigmoid_output_node(graph)
        if index is None:
            raise ValueError("the model's output is not produced by a sigmoid: nothing to remove")
        path = graph.nodes[index].name
        if graph.nodes[index].layer_type not in ("Sigmoid", "LogSigmoid"):
            raise ValueError(f"the model's output sigmoid {path!r} is applied by a function in forward(), which "
                             f"cannot be removed from outside: make forward() return the logit (e.g. apply the "
                             f"sigmoid only outside the model)")
    else:
        modules = list(model.named_modules())
        path = modules[-1][0]
        if not isinstance(modules[-1][1], (nn.Sigmoid, nn.LogSigmoid)):
            raise ValueError("the model's last module is not a sigmoid: nothing to remove")
    clone = copy.deepcopy(model)
    parent_path, _, name = path.rpartition(".")
    parent = clone.get_submodule(parent_path) if parent_path else clone
    setattr(parent, name, nn.Identity())
    return clone
