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
