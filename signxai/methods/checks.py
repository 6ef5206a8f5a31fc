"""Parameter checks (docs/methods.md#parameters): each validates one keyword value and states its constraint in the
ValueError it raises."""

from __future__ import annotations

import math
import numbers
import reprlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

short = reprlib.Repr()  # repr for error messages, bounded for huge strings and arrays
short.maxstring = short.maxother = 120


def _real(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError
    result = float(value)
    if not math.isfinite(result):
        raise ValueError
    return result


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError
    return int(value)


def _real_or_array(value: Any) -> Any:
    """A scalar becomes a float; an array is kept as given once it is numeric and finite."""
    if isinstance(value, numbers.Number) or isinstance(value, (str, bytes)):
        return _real(value)
    array = np.asarray(value)
    if array.dtype.kind not in "iuf" or not np.isfinite(array).all():
        raise ValueError
    return value


def _layer(value: Any) -> Any:
    if isinstance(value, (numbers.Number, bytes)) or (isinstance(value, str) and not value):
        raise TypeError
    return value


@dataclass(frozen=True)
class Check:
    """Validates one parameter value, raising ValueError that states the constraint."""

    constraint: str
    convert: Callable[[Any], Any]
    test: Callable[[Any], bool] = lambda value: True

    def __call__(self, method: str, key: str, value: Any) -> Any:
        try:
            result = self.convert(value)
            valid = self.test(result)
        except (TypeError, ValueError, OverflowError, RuntimeError):
            valid = False
        if not valid:
            raise ValueError(f"Method {short.repr(method)}: {key}={short.repr(value)} is invalid; "
                             f"{key} must be {self.constraint}.")
        return result


FINITE = Check("a finite number", _real)
POSITIVE = Check("a finite number > 0", _real, lambda value: value > 0)
NON_NEGATIVE = Check("a finite number >= 0", _real, lambda value: value >= 0)
STEPS = Check("an integer >= 2", _integer, lambda value: value >= 2)
NUM_SAMPLES = Check("an integer >= 1", _integer, lambda value: value >= 1)
SEED = Check("an integer in [0, 2**32)", _integer, lambda value: 0 <= value < 2**32)
REAL_OR_ARRAY = Check("a finite number or an array of finite numbers", _real_or_array)
ATTENTION = Check("'attnlrp' or 'cplrp' (docs/transformers.md#cp-lrp)", lambda v: v if isinstance(v, str) else None,
                  lambda value: value in ("attnlrp", "cplrp"))
LAYER = Check("a layer name (str) or a layer/module object", _layer)
