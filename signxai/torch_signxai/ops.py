"""PyTorch tensor primitives: the rules' :class:`signxai.core.ops.TensorOps` (and a variant that reuses the
autograd graph of the recorded forward) and the autodiff :class:`signxai.core.ops.Tape` of the shared passes
(docs/extending.md#backend-contract)."""
from __future__ import annotations

import threading
import weakref

import numpy as np
import torch

from signxai.core.rules import STABILIZER


def _is_float_tensor(t):
    return isinstance(t, torch.Tensor) and t.is_floating_point()


def _gradients(out, leaves, cotangent, **kwargs):
    """One gradient per leaf (zeros where unused, None for a non-float input), of ``out`` with ``cotangent``."""
    wanted = [t for t in leaves if _is_float_tensor(t)]
    if not wanted:  # a constant made from sizes only (a class token expanded to the batch): nothing to pass on
        return [None] * len(leaves)
    with torch.enable_grad():
        grads = iter(torch.autograd.grad(out, wanted, grad_outputs=cotangent, allow_unused=True, **kwargs))
    result = []
    for t in leaves:
        if not _is_float_tensor(t):
            result.append(None)
            continue
        grad = next(grads)
        result.append(torch.zeros_like(t) if grad is None else grad)
    return result


def _leaves(inputs):
    """The inputs as detached leaves that require grad (non-float values as they are)."""
    return [t.detach().requires_grad_(True) if _is_float_tensor(t) else t for t in inputs]


_RELATIONS = {"==": torch.eq, ">=": torch.ge, "<": torch.lt}

#: kernels of at least this many bytes get their positive/negative parts written into kept memory
#: (docs/performance.md#kernel-parts); smaller ones are cheap to allocate
KERNEL_PART_BYTES = 1 << 20


class _KernelParts(threading.local):
    """Per thread: ``(id(w), positive) -> (weakref to w, buffer)``. Each thread writes only its own buffers, so
    concurrent calls on one model never share one; an entry goes when its weight tensor is freed."""

    def __init__(self):
        self.buffers = {}


_PARTS = _KernelParts()


def _kernel_part(w, positive):
    """``w⁺`` (``positive``) or ``w⁻`` of a kernel tensor, recomputed on every call (weights may change in place,
    even through ``.data``, which does not count as a new version) but, for a large kernel, written into a buffer
    kept for ``w``: a fresh allocation of that size is page-faulted on first touch, which costs several times the
    clamp itself (docs/performance.md#kernel-parts). Bit for bit ``w.clamp(min=0)``/``w.clamp(max=0)``."""
    bounds = {"min": 0} if positive else {"max": 0}
    if w.numel() * w.element_size() < KERNEL_PART_BYTES or (w.requires_grad and torch.is_grad_enabled()):
        return w.clamp(**bounds)
    buffers, key = _PARTS.buffers, (id(w), positive)
    entry = buffers.get(key)
    if entry is None or entry[0]() is not w or entry[1].shape != w.shape or entry[1].dtype != w.dtype \
            or entry[1].device != w.device or entry[1].stride() != w.stride():
        def drop(ref, key=key, buffers=buffers):
            if buffers.get(key, (None,))[0] is ref:
                del buffers[key]
        entry = buffers[key] = (weakref.ref(w, drop), torch.empty_like(w))
    return torch.clamp(w.detach(), out=entry[1], **bounds)


class TensorOps:
    """The tensor operations the framework-neutral rules need, for PyTorch."""

    @staticmethod
    def vjp(fn, inputs, cotangent):
        leaves = _leaves(inputs)
        with torch.enable_grad():
            out = fn(*leaves)
        return _gradients(out, leaves, cotangent)

    @staticmethod
    def as_float(condition, like):
        return condition.to(like.dtype)

    @staticmethod
    def indicator(t, relation, value):
        # a float mask written directly: boolean tensors (and their casts) are several times slower on CPU
        return _RELATIONS[relation](t, value, out=torch.empty_like(t))

    @staticmethod
    def multiply_into(t, other):
        if t.requires_grad or (0 in t.stride() and t.numel() > 1):  # (a broadcast view: elements share memory)
            return t * other
        if isinstance(other, (int, float)) or (isinstance(other, torch.Tensor) and other.dtype == t.dtype
                                               and torch.broadcast_shapes(t.shape, other.shape) == t.shape):
            return t.mul_(other)
        return t * other

    @staticmethod
    def add_into(t, other):
        if t.requires_grad or (0 in t.stride() and t.numel() > 1):  # (a broadcast view: elements share memory)
            return t + other
        if isinstance(other, (int, float)) or (isinstance(other, torch.Tensor) and other.dtype == t.dtype
                                               and torch.broadcast_shapes(t.shape, other.shape) == t.shape):
            return t.add_(other)
        return t + other

    @staticmethod
    def stabilized_ratio(p, q, c=None):
        """``rules.stabilized_ratio`` in one buffer, bit for bit: ``(2c·[q ≥ 0] − c) + q`` is ``q + c·sign0(q)``
        (both products exact), and for ``c > 0`` that denominator is never zero (``q ≥ 0`` gives ``q + c ≥ c``,
        ``q < 0`` gives ``q − c < −c``), so the SD stabiliser adds exactly 0 there and is skipped. Each fresh
        activation-sized temporary costs page faults on CPU, more than the arithmetic (docs/performance.md)."""
        mask = TensorOps.indicator
        if c is None:
            den = mask(q, "==", 0).mul_(STABILIZER).add_(q)
        else:
            den = mask(q, ">=", 0).mul_(2 * c).sub_(c).add_(q)
            positive = c > 0 if not isinstance(c, torch.Tensor) else bool((c > 0).all())
            if not positive:
                den.add_(mask(den, "==", 0).mul_(STABILIZER))
        if p.shape == den.shape and p.dtype == den.dtype:
            return torch.div(p, den, out=den)
        return p / den

    ones_like = staticmethod(torch.ones_like)
    zeros_like = staticmethod(torch.zeros_like)

    @staticmethod
    def positive(t):
        return t.clamp(min=0)

    @staticmethod
    def negative(t):
        return t.clamp(max=0)

    @staticmethod
    def positive_kernel(w):
        return _kernel_part(w, True)

    @staticmethod
    def negative_kernel(w):
        return _kernel_part(w, False)

    @staticmethod
    def all_nonnegative(t):
        return bool((t >= 0).all())

    @staticmethod
    def all_zero(t):
        return bool((t == 0).all())

    @staticmethod
    def cond(predicate, if_true, if_false):
        return if_true() if predicate else if_false()

    @staticmethod
    def constant(value, like):
        return torch.as_tensor(np.asarray(value), dtype=like.dtype, device=like.device)

    @staticmethod
    def sum_axis(t, axis):
        return t.sum(dim=axis, keepdim=True)

    @staticmethod
    def where_zero(t, value, other):
        return torch.where(t == 0, torch.zeros((), dtype=other.dtype, device=other.device) + value, other)

    @staticmethod
    def std_per_sample(a, like):
        std = a.to(torch.float64).flatten(1).std(dim=1, unbiased=False)
        return std.to(like.dtype).reshape([-1] + [1] * (like.dim() - 1))


OPS = TensorOps()


class RecordedOps(TensorOps):
    """TensorOps for one backward pass whose ``vjp`` of a captured node's own forward, at that node's recorded
    inputs, reuses the autograd graph recorded in the forward pass instead of running the forward again. The
    result is bit-identical (the same forward, the same backward); any other VJP is computed as usual."""

    def __init__(self):
        self.recorded = {}

    def record(self, graph, x, kinds, forward=None):
        """``engine.record``, with the nodes of ``kinds`` (None: all) recorded with autograd at detached inputs;
        ``forward(ops, index, node, inputs)`` computes the other nodes' values if given."""
        values = [x]
        for index, node in enumerate(graph.nodes[1:], 1):
            inputs = [values[p] for p in node.parents]
            if kinds is not None and node.kind not in kinds:
                values.append(node.forward(*inputs) if forward is None else forward(self, index, node, inputs))
                continue
            leaves = _leaves(inputs)
            with torch.enable_grad():
                out = node.forward(*leaves)
            if isinstance(out, torch.Tensor) and out.requires_grad:
                self.recorded[(id(node.forward),) + tuple(map(id, inputs))] = (leaves, out)
                out = out.detach()
            values.append(out)
        return values

    def vjp(self, fn, inputs, cotangent):
        entry = self.recorded.get((id(fn),) + tuple(map(id, inputs)))
        if entry is None:
            return TensorOps.vjp(fn, inputs, cotangent)
        leaves, out = entry
        return _gradients(out, leaves, cotangent, retain_graph=True)


class Tape:
    """Autograd as a :class:`signxai.core.ops.Tape`: gradients are recorded inside the block (even under
    ``torch.no_grad()``), ``watch`` makes a tensor require grad."""

    def __enter__(self):
        self._grad = torch.enable_grad()
        self._grad.__enter__()
        return self

    def __exit__(self, *exc):
        return self._grad.__exit__(*exc)

    @staticmethod
    def watch(t):
        return t if t.requires_grad else t.requires_grad_(True)

    @staticmethod
    def gradient(target, source):
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(target, source)
        return grad
