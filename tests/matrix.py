"""Test matrices split between the default run and ``slow`` (``./test.sh --slow``).

A cross-framework property of a method name is checked once in the default run, on one model where the name applies
(the models taken in turn, so that every model sees a share of the names); every model also runs a representative of
every method family and rule kind. The rest of the full models × names matrix carries the ``slow`` marker: the
default run and ``--slow`` together run every pair exactly once.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pytest

# one or more representatives of every family of the catalog (signxai.methods.method_families()), of every base
# rule (z, ε, std-x ε, α-β, composites A and B), of every input-layer rule (sign, z, zB, w², flat) and of the SIGN
# products (x_sign)
FAMILY_SLICE = ("gradient", "gradient_x_input", "gradient_x_sign", "guided_backprop", "deconvnet",
                "integrated_gradients", "smoothgrad", "vargrad", "grad_cam", "guided_grad_cam", "lrp_z",
                "lrp_epsilon_0_1", "lrpsign_epsilon_0_25_std_x", "lrpz_epsilon_0_1_std_x", "lrp_alpha_1_beta_0",
                "lrp_alpha_2_beta_1", "lrp_sequential_composite_a", "lrp_sequential_composite_b",
                "w2lrp_epsilon_0_1", "flatlrp_z", "zblrp_epsilon_0_1", "lrpsign_z")


def one_host_each(names: Iterable[str], hosts: Sequence[str], applies: Callable[[str, str], bool]) -> set:
    """``(host, name)`` pairs: every name on one host where it applies, the hosts taken in turn (a name that applies
    nowhere gets none)."""
    pairs = set()
    for i, name in enumerate(names):
        where = [host for host in hosts if applies(host, name)]
        if where:
            pairs.add((where[i % len(where)], name))
    return pairs


def split(full: Sequence[tuple], default: set, ids=None) -> list:
    """``full`` as pytest parameters, the ones not in ``default`` marked ``slow`` (order kept)."""
    params = []
    for k, case in enumerate(full):
        marks = () if case in default else (pytest.mark.slow,)
        params.append(pytest.param(*case, marks=marks, id=None if ids is None else ids[k]))
    return params
