"""Keys of compiled passes that separate a pass's structure from its numeric parameters
(docs/api.md#compiled-passes)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable


@dataclass(frozen=True, eq=False)
class Parameterised:
    """A pass key in two parts: ``structure`` identifies the code of the pass by value (what a compiling backend
    traces and caches by); ``values`` are the numeric parameters (float64 NumPy arrays) the pass takes as tensor
    inputs, so that every value of them runs the same trace."""

    structure: Hashable
    values: tuple
