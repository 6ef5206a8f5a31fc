"""The fused tensor primitives of the backends equal the shared definitions of signxai/core/rules.py bit for bit
(docs/performance.md), on inputs with exact zeros, negative zeros, NaN and infinities."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import tensorflow as tf  # noqa: E402  (after torch)

from signxai.core import rules
from signxai.tf_signxai.ops import OPS as TF_OPS
from signxai.torch_signxai.ops import OPS as TORCH_OPS


class _ReferenceTorchOps(type(TORCH_OPS)):
    """The PyTorch ops with the shared (unfused) definition of stabilized_ratio, built on ``as_float``."""

    @staticmethod
    def indicator(t, relation, value):
        return {"==": t == value, ">=": t >= value, "<": t < value}[relation].to(t.dtype)

    def stabilized_ratio(self, p, q, c=None):
        return rules.stabilized_ratio(self, p, q, c)


def _values(dtype, seed=0):
    rng = np.random.RandomState(seed)
    q = rng.normal(size=(3, 4, 5, 6)).astype(dtype)
    q.flat[:40] = 0.0
    q.flat[40:70] = -0.0
    q.flat[70:75] = [np.nan, np.inf, -np.inf, 1e-7, -1e-7]
    q.flat[75:80] = [0.1, -0.1, 0.25, -0.25, 1e-30]
    p = rng.normal(size=q.shape).astype(dtype)
    return p, q


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


CONSTANTS = [None, 0.0, 0.1, 0.25, 1e-7, 1e-30, "per-sample", "per-sample with zeros"]


def _constant(c, dtype, framework):
    if not isinstance(c, str):
        return c
    values = np.array([0.3, 0.0 if "zeros" in c else 0.7, 1e-3], dtype).reshape(3, 1, 1, 1)
    return torch.from_numpy(values) if framework == "torch" else tf.constant(values)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("c", CONSTANTS)
def test_torch_fused_stabilized_ratio_is_the_definition(dtype, c):
    p, q = _values(dtype)
    tp, tq = torch.from_numpy(p), torch.from_numpy(q)
    before = (p.copy(), q.copy())
    constant = _constant(c, dtype, "torch")
    fused = TORCH_OPS.stabilized_ratio(tp, tq, constant)
    reference = _ReferenceTorchOps().stabilized_ratio(tp, tq, constant)
    assert _same_bits(fused.numpy(), reference.numpy())
    assert _same_bits(p, before[0]) and _same_bits(q, before[1]), "inputs modified"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("c", CONSTANTS)
def test_backends_agree_on_stabilized_ratio(dtype, c):
    p, q = _values(dtype, seed=1)
    torch_result = TORCH_OPS.stabilized_ratio(torch.from_numpy(p), torch.from_numpy(q), _constant(c, dtype, "torch"))
    tf_result = TF_OPS.stabilized_ratio(tf.constant(p), tf.constant(q), _constant(c, dtype, "tf"))
    assert _same_bits(torch_result.numpy(), tf_result.numpy())


@pytest.mark.parametrize("relation", ["==", ">=", "<"])
@pytest.mark.parametrize("value", [0, -0.5, 0.25])
def test_indicator_is_the_comparison_as_a_float_mask(relation, value):
    _, q = _values("float32")
    expected = {"==": q == value, ">=": q >= value, "<": q < value}[relation].astype(np.float32)
    assert _same_bits(TORCH_OPS.indicator(torch.from_numpy(q), relation, value).numpy(), expected)
    assert _same_bits(TF_OPS.indicator(tf.constant(q), relation, value).numpy(), expected)
