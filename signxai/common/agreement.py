"""The cross-framework agreement gates 1–2 of docs/equivalence.md#agreement-gates for one method, model pair and input,
and the two helpers a sweep over the catalog needs (``signxai compare``, the converter tests).

The four maps of :func:`check_agreement` are channels-last (move a PyTorch map's channel axis last first):
``tf32``/``pt32`` computed with ``dtype="float32"``, ``tf64``/``pt64`` with ``dtype="float64"``. The peak is
``max|tf64|``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from signxai.methods import parse_method


@dataclass(frozen=True)
class Agreement:
    """The docs/equivalence.md#agreement-gates measurements; ``violations`` lists the broken gates (empty: within
    docs/equivalence.md#agreement-gates)."""

    peak: float  # max|R64_tf|
    error64: float  # max|R64_tf − R64_pt|
    zeros_match: bool  # identical exact-zero patterns in float64
    error32: float  # max|R32_tf − R32_pt|
    bound32: float  # max(1e-5·peak, 4·(e_tf + e_pt)), e_fw = max|R32_fw − R64_fw|
    mae32: float  # mean|R32_tf − R32_pt|
    # max(1e-4, 4·(ē_tf + ē_pt)), ē_fw = mean|R32_fw − R64_fw| (D20: the MAE term's rounding allowance)
    mae_bound32: float = 1e-4
    dtype_problem: str = ""  # a map that does not have the requested dtype

    @property
    def violations(self) -> list[str]:
        found = [self.dtype_problem] if self.dtype_problem else []
        if not self.error64 <= 1e-9 * self.peak:
            found.append(f"gate 1: float64 error {self.error64:.3g} > 1e-9 x peak {self.peak:.3g}")
        if not self.zeros_match:
            found.append("gate 1: exact-zero patterns differ in float64")
        if not self.error32 <= self.bound32:
            found.append(f"gate 2: float32 error {self.error32:.3g} > {self.bound32:.3g} (peak {self.peak:.3g})")
        if not self.mae32 < self.mae_bound32:
            found.append(f"gate 2: float32 MAE {self.mae32:.3g} >= {self.mae_bound32:.3g}")
        return found

    @property
    def passed(self) -> bool:
        return not self.violations


def check_agreement(tf32, pt32, tf64, pt64) -> Agreement:
    """Measure gates 1 (float64 semantics) and 2 (float32 agreement) of docs/equivalence.md#agreement-gates; see
    :class:`Agreement`."""
    maps = [np.asarray(m) for m in (tf32, pt32, tf64, pt64)]
    if len({m.shape for m in maps}) != 1:
        raise ValueError(f"the maps differ in shape: {[m.shape for m in maps]}")
    wrong = [f"{name} is {m.dtype}" for name, m, dtype in zip(("tf32", "pt32", "tf64", "pt64"), maps,
                                                                  ("float32", "float32", "float64", "float64"))
             if m.dtype != dtype]
    tf32, pt32, tf64, pt64 = (m.astype(np.float64) for m in maps)
    own_tf, own_pt = np.abs(tf32 - tf64).max(), np.abs(pt32 - pt64).max()
    peak = float(np.abs(tf64).max())
    difference32 = np.abs(tf32 - pt32)
    return Agreement(peak=peak, error64=float(np.abs(tf64 - pt64).max()),
                     zeros_match=bool(np.array_equal(tf64 == 0, pt64 == 0)), error32=float(difference32.max()),
                     bound32=float(max(1e-5 * peak, 4 * (own_tf + own_pt))), mae32=float(difference32.mean()),
                     mae_bound32=float(max(1e-4, 4 * (np.abs(tf32 - tf64).mean() + np.abs(pt32 - pt64).mean()))),
                     dtype_problem=("wrong dtype: " + ", ".join(wrong)) if wrong else "")


def sweep_kwargs(method: str, x) -> dict:
    """The keyword arguments a name requires (docs/methods.md#parameters), chosen for a sweep: ``mu=0.5`` for a name
    ending in ``_mu``; the input's own minimum and maximum as ``low``/``high`` for an unsuffixed ``zblrp_*``."""
    parsed = parse_method(method)
    kwargs = {}
    if "sign" in (parsed.product, parsed.input_rule) and "mu" not in parsed.params:
        kwargs["mu"] = 0.5
    if parsed.input_rule == "zb" and "low" not in parsed.params:
        kwargs.update(low=float(np.min(x)), high=float(np.max(x)))
    return kwargs


def not_applicable(method: str, keras_model) -> str | None:
    """Why ``method`` does not apply to ``keras_model``, else None: a Grad-CAM name on a model without a convolution
    or without the preset's layer, or ``grad_cam_timeseries`` where the last convolution is not 1-D."""
    parsed = parse_method(method)
    if parsed.base not in ("grad_cam", "guided_grad_cam"):
        return None
    layers = list(_layers(keras_model))
    convs = [layer for layer in layers if len(getattr(getattr(layer, "kernel", None), "shape", ())) >= 3]
    layer = parsed.params.get("layer")
    if layer is not None and layer not in {other.name for other in layers}:
        return f"the model has no layer {layer!r} (Grad-CAM preset)"
    if not convs:
        return "Grad-CAM needs a convolution; the model has none"
    if parsed.timeseries and len(convs[-1].kernel.shape) != 3:
        return f"grad_cam_timeseries needs a 1-D last convolution; {convs[-1].name!r} is not"
    return None


def _layers(model):
    for layer in model.layers:
        yield from _layers(layer) if hasattr(layer, "layers") else (layer,)
