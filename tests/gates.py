"""The agreement gates of docs/equivalence.md#agreement-gates applied to a twin (the gates themselves live in
signxai.common.agreement)."""
from __future__ import annotations

import signxai
from signxai.common.agreement import check_agreement
from twins import to_channels_last, torch_input


def explain_both(twin, method, dtype, **kwargs):
    """Keras and PyTorch maps of one twin, both channels-last."""
    keras_map = signxai.calculate_relevancemap(twin.keras_model, twin.x, method, dtype=dtype, **kwargs)
    torch_map = signxai.calculate_relevancemap(twin.torch_model, torch_input(twin.x), method, dtype=dtype,
                                               **kwargs)
    return keras_map, to_channels_last(torch_map)


def assert_gates(twin, method, **kwargs):
    """Gate 1 (float64 semantics, identical zero patterns) and gate 2 (float32 agreement) of
    docs/equivalence.md#agreement-gates."""
    tf64, pt64 = explain_both(twin, method, "float64", **kwargs)
    tf32, pt32 = explain_both(twin, method, "float32", **kwargs)
    assert tf32.shape == twin.x.shape
    agreement = check_agreement(tf32, pt32, tf64, pt64)
    assert agreement.passed, f"{method} on {twin.name}: {agreement.violations}"
    return agreement
