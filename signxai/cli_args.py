"""Argument conversions shared by the sub-commands of the command line (``signxai.cli``,
``signxai.explain_dataset_cli``): method selections and ``--param KEY=VALUE``. Errors are
:class:`signxai.loading.InputError` (printed as ``signxai: error: ...``, exit status 2)."""
from __future__ import annotations

import fnmatch

from signxai.loading import InputError
from signxai.methods import CATALOG, parse_method


def select_methods(pattern) -> list[str]:
    """Catalog names from globs such as ``'lrp_epsilon*'`` and/or a comma-separated list (None: the whole
    catalog), in the order given, without repeats."""
    if pattern is None:
        return list(CATALOG)
    selected = []
    for part in filter(None, (p.strip() for p in pattern.split(","))):
        if any(c in part for c in "*?["):
            matches = fnmatch.filter(CATALOG, part)
            if not matches:
                raise InputError(f"no catalog method matches {part!r}")
        else:
            parse_method(part)  # ValueError with suggestions for an unknown name
            matches = [part]
        selected += [m for m in matches if m not in selected]
    if not selected:
        raise InputError("--methods selects no method")
    return selected


def parse_param(text) -> tuple[str, object]:
    """``KEY=VALUE`` → ``(key, value)``, the value an int, else a float, else the string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InputError(f"--param needs KEY=VALUE, got {text!r}")
    for convert in (int, float):
        try:
            return key, convert(value)
        except ValueError:
            pass
    return key, value


def parse_target(text):
    """``--target``: a class index (``3``), ``negative`` (the negative class of a single-logit head) or
    ``max_activation``, or a position such as ``4,2`` (per-timestep outputs; docs/api.md#targets)."""
    text = text.strip()
    if text in ("negative", "max_activation"):
        return text
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise InputError(f"--target must be a class index, 'negative', 'max_activation' or a position such as 4,2; "
                         f"got {text!r}") from None
    return parts[0] if len(parts) == 1 else parts
