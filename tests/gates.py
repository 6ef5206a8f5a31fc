"""The agreement gates of SPEC §9, shared by the cross-framework tests."""
from __future__ import annotations

import numpy as np

import signxai
from twins import to_channels_last, torch_input


def explain_both(twin, method, dtype, **kwargs):
    """Keras and PyTorch maps of one twin, both channels-last."""
    keras_map = signxai.calculate_relevancemap(twin.keras_model, twin.x, method, dtype=dtype, **kwargs)
    torch_map = signxai.calculate_relevancemap(twin.torch_model, torch_input(twin.x), method, dtype=dtype,
                                               **kwargs)
    return keras_map, to_channels_last(torch_map)


def assert_gates(twin, method, **kwargs):
    """Gate 1 (float64 semantics, identical zero patterns) and gate 2 (float32 agreement) of SPEC §9."""
    tf64, pt64 = explain_both(twin, method, "float64", **kwargs)
    assert tf64.dtype == np.float64 and pt64.dtype == np.float64
    peak = np.abs(tf64).max()
    error64 = np.abs(tf64 - pt64).max()
    assert error64 <= 1e-9 * peak, f"{method}: float64 error {error64:.3g} > 1e-9 x peak {peak:.3g}"
    assert np.array_equal(tf64 == 0, pt64 == 0), f"{method}: zero patterns differ in float64"

    tf32, pt32 = explain_both(twin, method, "float32", **kwargs)
    assert tf32.dtype == np.float32 and pt32.dtype == np.float32 and tf32.shape == twin.x.shape
    own_tf, own_pt = np.abs(tf32 - tf64).max(), np.abs(pt32 - pt64).max()
    error32 = np.abs(tf32.astype(np.float64) - pt32).max()
    bound = max(1e-5 * peak, 4 * (own_tf + own_pt))
    assert error32 <= bound, f"{method}: float32 error {error32:.3g} > {bound:.3g} (peak {peak:.3g})"
    assert np.abs(tf32.astype(np.float64) - pt32).mean() < 1e-4
    return error64 / peak if peak else 0.0, error32 / peak if peak else 0.0
