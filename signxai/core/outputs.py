"""Which of a model's outputs is explained (docs/api.md#model-outputs).

Models return a tensor, or a container: HuggingFace ``ModelOutput`` objects (a mapping whose ``logits`` field is the
classifier's output), tuples and dicts. The explained output is the tensor itself, else the ``logits`` entry, else the
only tensor in the container; anything else is refused with the choices named.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable


def select_output(out: Any, is_tensor: Callable[[Any], bool]) -> Any:
    """The logits among a model's outputs ``out`` (see the module docstring)."""
    if is_tensor(out):
        return out
    if isinstance(out, Mapping):
        items = list(out.items())
    elif isinstance(out, (tuple, list)):
        items = list(enumerate(out))
    else:
        raise TypeError(f"the model returned a {type(out).__name__}; signxai explains a model that returns a tensor "
                        f"of logits (or a ModelOutput, tuple or dict holding one)")
    entries = dict(items)
    if "logits" in entries and is_tensor(entries["logits"]):
        return entries["logits"]
    tensors = [key for key, value in items if is_tensor(value)]
    if len(tensors) == 1:
        return entries[tensors[0]]
    raise ValueError(f"the model's output is a {type(out).__name__} with {len(tensors)} tensors ({tensors}) and no "
                     f"'logits' entry: signxai cannot tell which one to explain. Wrap the model so that its forward "
                     f"returns the one tensor of logits to explain")
