"""Gate 3 of docs/equivalence.md#agreement-gates: every name in the signxai 1.1.9.2 reference data, on both backends
(float32).

The data and its provenance note are in ``tests/data/reference`` (copied from the project's shared folder).
Every entry must lie within 1e-4 of the reference peak; the bound of docs/equivalence.md#agreement-gates also allows 8x
a backend's own float32 rounding error, which these three networks do not need.

The default run checks every name on one network that has it (the networks in turn), on both backends; the whole
networks × names matrix runs under ``slow``.
"""
import numpy as np
import pytest

import signxai
from matrix import one_host_each, split
from twins import REFERENCE, load_spec_npz, reference_twin, to_channels_last, torch_input

NETWORKS = ("mlp", "cnn2d", "ecg1d")
_twins = {}


def _case(network):
    if network not in _twins:
        spec, weights, rest = load_spec_npz(REFERENCE / f"{network}_x0.npz")
        _twins[network] = (reference_twin(network), rest)
    return _twins[network]


def _names(network):
    with np.load(REFERENCE / f"{network}_x0.npz") as data:
        return [key[2:] for key in data.files if key.startswith("R:")]


def _all_names():
    return list(dict.fromkeys(name for network in NETWORKS for name in _names(network)))


def _cases():
    return [(n, m) for n in NETWORKS for m in _names(n)]


def _default_cases():
    names = {network: set(_names(network)) for network in NETWORKS}
    return one_host_each(_all_names(), NETWORKS, lambda network, name: name in names[network])


@pytest.mark.parametrize("network,method", split(_cases(), _default_cases()))
@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_matches_signxai_1x(network, method, framework):
    twin, rest = _case(network)
    x, target, expected = twin.x[:1], int(rest["target"]), rest[f"R:{method}"]
    if framework == "keras":
        result = signxai.calculate_relevancemap(twin.keras_model, x[0], method, target=target)
    else:
        result = to_channels_last(signxai.calculate_relevancemap(twin.torch_model, torch_input(x), method,
                                                                 target=target))[0]
    assert result.shape == expected.shape and result.dtype == np.float32
    peak = np.abs(expected).max()
    error = np.abs(result - expected).max()
    assert error <= 1e-4 * peak, f"{method} on {network} ({framework}): {error / peak:.3g} of the peak"


def test_reference_data_is_complete():
    counts = {network: len(_names(network)) for network in NETWORKS}
    assert counts == {"mlp": 122, "cnn2d": 122, "ecg1d": 112}
