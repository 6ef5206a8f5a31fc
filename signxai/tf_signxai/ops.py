"""TensorFlow tensor primitives: the rules' :class:`signxai.core.ops.TensorOps` and the autodiff
:class:`signxai.core.ops.Tape` of the shared passes (docs/extending.md#backend-contract)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from signxai.core import rules


_RELATIONS = {"==": tf.equal, ">=": tf.greater_equal, "<": tf.less}


class TensorOps:
    """The tensor operations the framework-neutral rules need, for TensorFlow."""

    @staticmethod
    def vjp(fn, inputs, cotangent):
        with tf.GradientTape() as tape:
            for t in inputs:
                tape.watch(t)
            out = fn(*inputs)
        grads = tape.gradient(out, list(inputs), output_gradients=cotangent)
        return [tf.zeros_like(t) if grad is None else grad for t, grad in zip(inputs, grads)]

    @staticmethod
    def as_float(condition, like):
        return tf.cast(condition, like.dtype)

    @staticmethod
    def indicator(t, relation, value):
        # a number converted to t's dtype directly (tf.cast of a Python float would round it to float32 first)
        value = tf.cast(value, t.dtype) if tf.is_tensor(value) else tf.constant(value, t.dtype)
        return tf.cast(_RELATIONS[relation](t, value), t.dtype)

    @staticmethod
    def multiply_into(t, other):
        return t * other

    @staticmethod
    def add_into(t, other):
        return t + other

    def stabilized_ratio(self, p, q, c=None):
        return rules.stabilized_ratio(self, p, q, c)  # compiled passes: grappler fuses the elementwise chain

    ones_like = staticmethod(tf.ones_like)
    zeros_like = staticmethod(tf.zeros_like)

    @staticmethod
    def positive(t):
        return tf.maximum(t, tf.zeros((), t.dtype))

    @staticmethod
    def negative(t):
        return tf.minimum(t, tf.zeros((), t.dtype))

    # compiled passes: TensorFlow's executor allocates from its own pools (docs/performance.md#kernel-parts)
    positive_kernel = positive
    negative_kernel = negative

    @staticmethod
    def all_nonnegative(t):
        return tf.reduce_all(t >= 0)

    @staticmethod
    def all_zero(t):
        return bool(tf.reduce_all(tf.equal(t, 0)))

    cond = staticmethod(tf.cond)

    @staticmethod
    def constant(value, like):
        if tf.is_tensor(value):  # a rule parameter of a compiled pass (docs/api.md#compiled-passes)
            return tf.cast(value, like.dtype)
        return tf.constant(np.asarray(value), dtype=like.dtype)

    @staticmethod
    def sum_axis(t, axis):
        return tf.reduce_sum(t, axis=axis, keepdims=True)

    @staticmethod
    def where_zero(t, value, other):
        return tf.where(tf.equal(t, 0), tf.cast(value, other.dtype), other)

    @staticmethod
    def std_per_sample(a, like):
        axes = list(range(1, len(a.shape)))
        std = tf.math.reduce_std(tf.cast(a, tf.float64), axis=axes, keepdims=True)
        return tf.reshape(tf.cast(std, like.dtype), [-1] + [1] * (len(like.shape) - 1))


OPS = TensorOps()


class Tape:
    """A ``tf.GradientTape`` as a :class:`signxai.core.ops.Tape`."""

    def __init__(self):
        self._tape = tf.GradientTape()

    def __enter__(self):
        self._tape.__enter__()
        return self

    def __exit__(self, *exc):
        return self._tape.__exit__(*exc)

    def watch(self, t):
        self._tape.watch(t)
        return t

    def gradient(self, target, source):
        return self._tape.gradient(target, source)
