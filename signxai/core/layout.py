"""Layouts: the caller's (Keras channels-last, PyTorch channels-first) and the canonical channels-last one."""
from __future__ import annotations

import numpy as np


def to_canonical(x: np.ndarray, channels_first: bool) -> np.ndarray:
    """Batched array in the caller's layout → channels-last (a PyTorch rank-1 sample is already canonical)."""
    return np.moveaxis(x, 1, -1) if channels_first and x.ndim > 2 else x


def from_canonical(x: np.ndarray, channels_first: bool) -> np.ndarray:
    return np.moveaxis(x, -1, 1) if channels_first and x.ndim > 2 else x
