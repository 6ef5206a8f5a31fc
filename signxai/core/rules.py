"""LRP and guided-backprop rules (docs/methods.md#guided-backprop … docs/methods.md#deconvnet, §7.5–7.7), written once
against a small tensor-ops interface.

``ops`` is a backend's :class:`signxai.core.ops.TensorOps`. Tensors support ``+ - * /`` and comparisons natively in
both frameworks; everything else goes through ``ops``. Every kernel rule has the signature
``rule(ops, kernel, a, z, R) -> R_in`` where ``a`` is the layer input, ``z = W a + b`` its recorded output and ``R``
the relevance at the output.

The rule objects of :mod:`signxai.lrp` wrap these functions, and :mod:`signxai.core.composite` maps the nodes of a
captured graph to rule objects (one dispatch path for rule maps and catalog names alike).
"""
from __future__ import annotations

from typing import NamedTuple

from signxai.core import graph as g

STABILIZER = 1e-7


def identity(t):
    return t


def safe_divide(ops, p, q):
    """``SD(p, q) = p / (q + 1e-7·[q == 0])``."""
    return p / (q + STABILIZER * ops.indicator(q, "==", 0))


def sign0(ops, z):
    """+1 where ``z ≥ 0``, else −1."""
    return ops.indicator(z, ">=", 0) * 2 - 1


def stabilized_ratio(ops, p, q, c=None):
    """``SD(p, q + c·sign0(q))``, or ``SD(p, q)`` for ``c`` None: the quotient of every rule (``c`` = ε for Epsilon,
    ε·std(a) for StdxEpsilon, 1e-7 for the BN rule). This is its definition; the rules call
    ``ops.stabilized_ratio``, which a backend may compute fused, bit for bit the same (docs/performance.md)."""
    return safe_divide(ops, p, q if c is None else q + c * sign0(ops, q))


def weighted_backward(ops, kernel, a, s, kernel_map=identity):
    """``(W')ᵀ s``: the vector-Jacobian product of the bias-free layer with kernel ``kernel_map(W)`` at ``a``."""
    kernel_map = identity if kernel_map is None else kernel_map
    if kernel.adjoint is not None:
        return kernel.adjoint(a, s, kernel_map)
    return ops.vjp(lambda t: kernel.apply(t, kernel_map, None), [a], s)[0]


# --- kernel rules ---------------------------------------------------------------------------------------------

def z_rule(ops, kernel, a, z, R):
    return ops.multiply_into(weighted_backward(ops, kernel, a, ops.stabilized_ratio(R, z)), a)


def _epsilon_relevance(ops, kernel, a, z, R, epsilon):
    return ops.multiply_into(weighted_backward(ops, kernel, a, ops.stabilized_ratio(R, z, epsilon)), a)


def epsilon_rule(epsilon):
    def rule(ops, kernel, a, z, R):
        return _epsilon_relevance(ops, kernel, a, z, R, epsilon)
    return rule


def stdx_epsilon_rule(stdfactor):
    def rule(ops, kernel, a, z, R):
        return _epsilon_relevance(ops, kernel, a, z, R, stdfactor * ops.std_per_sample(a, like=z))
    return rule


def sign_rule(mu):
    """SIGN (mu = 0) and SIGNmu: the Z denominator with bias, no epsilon, times ``s_mu(a)``."""
    def rule(ops, kernel, a, z, R):
        signs = 1 - 2 * ops.indicator(a, "<", mu)
        return ops.multiply_into(weighted_backward(ops, kernel, a, ops.stabilized_ratio(R, z)), signs)
    return rule


def _constant_kernel_rule(kernel_map):
    def rule(ops, kernel, a, z, R):
        ones = ops.ones_like(a)
        denominator = kernel.apply(ones, kernel_map, None)
        return weighted_backward(ops, kernel, a, ops.stabilized_ratio(R, denominator), kernel_map)
    return rule


w_square_rule = _constant_kernel_rule(lambda w: w * w)
flat_rule = _constant_kernel_rule(lambda w: w * 0 + 1)


def zb_rule(low, high):
    """Z^B with bounds given as NumPy-broadcastable values in the layer input's layout
    (docs/lrp.md#kernel-rules, D1)."""
    def rule(ops, kernel, a, z, R):
        lo = ops.ones_like(a) * ops.constant(low, a)
        hi = ops.ones_like(a) * ops.constant(high, a)
        positive, negative = (_once(m) for m in kernel_maps(ops))
        denominator = (kernel.apply(a, identity, None) - kernel.apply(lo, positive, None)
                       - kernel.apply(hi, negative, None))
        s = ops.stabilized_ratio(R, denominator)
        return (a * weighted_backward(ops, kernel, a, s)
                - lo * weighted_backward(ops, kernel, a, s, positive)
                - hi * weighted_backward(ops, kernel, a, s, negative))
    return rule


def kernel_maps(ops):
    """``(w ↦ w⁺, w ↦ w⁻)`` for kernels and biases: the backend's ``positive_kernel``/``negative_kernel``, which may
    write into memory kept across calls (docs/performance.md#kernel-parts), else ``positive``/``negative``."""
    return getattr(ops, "positive_kernel", ops.positive), getattr(ops, "negative_kernel", ops.negative)


def _once(kernel_map):
    """``kernel_map`` evaluated once per kernel tensor within one rule application. Each tensor is kept with its
    image: a kernel computed on the fly (a recurrent layer's summed biases) cannot be freed and its ``id`` reused
    by another tensor within the application."""
    cache = {}

    def mapped(w):
        if id(w) not in cache:
            cache[id(w)] = (w, kernel_map(w))
        return cache[id(w)][1]
    return mapped


class AlphaBetaSplit:
    """The two halves ``z⁺ = W⁺a`` and ``z⁻ = W⁻a`` (bias-free) of a kernel layer with a nonnegative input ``a``,
    computed in the forward pass; the layer's output is ``z = (z⁺ + z⁻) + b`` (docs/lrp.md#alpha-beta-split).

    An α-β rule with β ≠ 0 needs both halves; computing the output from them costs two convolutions in the forward
    instead of three (the layer's own and the two halves), and is as accurate as the layer's own sum (which adds
    the same positive and negative products). ``pos_map``/``neg_map`` keep ``W⁺``/``W⁻`` for the backward."""

    def __init__(self, ops, kernel, a):
        self.pos_map, self.neg_map = (_once(m) for m in kernel_maps(ops))
        self.z_pos = kernel.apply(a, self.pos_map, None)
        self.z_neg = kernel.apply(a, self.neg_map, None)
        self.output = _plus(self.z_pos + self.z_neg, kernel.bias_term(identity), ops)


def _plus(t, bias, ops=None):
    """``t + bias``; with ``ops``, ``t`` is the caller's own temporary and the sum may be written into it."""
    if bias is None:
        return t
    return t + bias if ops is None else ops.add_into(t, bias)


class AlphaBetaStructure(NamedTuple):
    """What of α and β decides the code of the α-β rule: a factor 1 is skipped (``1·t`` is ``t`` exactly), β = 0
    skips the negative half (docs/api.md#compiled-passes: a compiled pass is keyed by it, and takes α, β as tensors)."""
    alpha_one: bool
    beta_zero: bool
    beta_one: bool


def alpha_beta_structure(alpha, beta) -> AlphaBetaStructure:
    return AlphaBetaStructure(bool(alpha == 1), bool(beta == 0), bool(beta == 1))


def alpha_beta_rule(alpha, beta, structure=None):
    """signxai's AlphaBeta: both denominators carry the full bias, split as b⁺ + b⁻ (docs/lrp.md#kernel-rules).

    Where the input has no negative entries (e.g. after a ReLU) the a⁻ half is skipped: it adds exactly b⁻ to the
    denominator and exactly 0 to the relevance, so the result is bit-identical. ``nonnegative=True`` says so
    statically (the graph knows the input comes from a ReLU): no run-time test, and no conditional in a traced pass.
    ``structure`` (:func:`alpha_beta_structure` of the numbers) where ``alpha`` and ``beta`` are tensors.
    """
    structure = alpha_beta_structure(alpha, beta) if structure is None else structure

    def times(ops, c, one, t):  # 1·t is t exactly: skip the pass; t is the rule's own temporary
        return t if one else ops.multiply_into(t, c)

    def rule(ops, kernel, a, z, R, nonnegative=False, split=None):
        if split is not None:  # the forward computed z⁺ and z⁻ (AlphaBetaSplit; a is nonnegative)
            def share(z_part, part_map, other_map):  # denominator z± + b± + b∓, as the halves below
                # z± is used by this share only: its bias sums are written into it (bit for bit the same)
                denominator = _plus(_plus(z_part, kernel.bias_term(part_map), ops), kernel.bias_term(other_map),
                                    ops)
                return ops.multiply_into(weighted_backward(ops, kernel, a, ops.stabilized_ratio(R, denominator),
                                                          part_map), a)
            activator = times(ops, alpha, structure.alpha_one, share(split.z_pos, split.pos_map, split.neg_map))
            return activator - times(ops, beta, structure.beta_one, share(split.z_neg, split.neg_map, split.pos_map))
        # with a statically nonnegative input a⁺ is a itself and a⁻ is not needed (one pass fewer each)
        a_pos = a if nonnegative else ops.positive(a)
        a_neg = None if nonnegative else ops.negative(a)

        def part(pos_map, neg_map):
            # each branch maps the kernel itself: tensors must not cross between the branches of a TF cond
            def both_halves():
                map_for_pos, map_for_neg = _once(pos_map), _once(neg_map)
                denominator = (kernel.apply(a_pos, map_for_pos, map_for_pos)
                               + kernel.apply(a_neg, map_for_neg, map_for_neg))
                s = ops.stabilized_ratio(R, denominator)
                return (a_pos * weighted_backward(ops, kernel, a, s, map_for_pos)
                        + a_neg * weighted_backward(ops, kernel, a, s, map_for_neg))

            def positive_half():
                map_for_pos, map_for_neg = _once(pos_map), _once(neg_map)
                denominator = kernel.apply(a_pos, map_for_pos, map_for_pos)
                s = ops.stabilized_ratio(R, _plus(denominator, kernel.bias_term(map_for_neg), ops))
                return ops.multiply_into(weighted_backward(ops, kernel, a, s, map_for_pos), a_pos)
            if nonnegative:
                return positive_half()
            return ops.cond(ops.all_nonnegative(a), positive_half, both_halves)

        positive, negative = kernel_maps(ops)
        activator = times(ops, alpha, structure.alpha_one, part(positive, negative))
        if structure.beta_zero:
            return activator
        return activator - times(ops, beta, structure.beta_one, part(negative, positive))
    return rule


# --- non-kernel rules -----------------------------------------------------------------------------------------

def batchnorm_rule(ops, node, a, y, R):
    """iNNvestigate's BN rule: ``SD(a ⊙ (y − β) ⊙ R, d + 1e-7·sign0(d))`` with ``d = (a − μ) ⊙ y``."""
    mean, beta = node.batchnorm(a)
    numerator = ops.multiply_into(ops.multiply_into(y - beta, a), R)  # (a ⊙ (y − β)) ⊙ R
    return ops.stabilized_ratio(numerator, ops.multiply_into(a - mean, y), STABILIZER)


def add_rule(ops, inputs, y, R, coefficients=None):
    """The Z rule of a sum ``y = Σ c_k a_k (+ C)``: ``R_k = c_k a_k ⊙ SD(R, y)`` (all ``c_k = 1`` for a plain Add;
    ``c_k`` None for a parent that carries no signal).
    A constant term ``C`` (a positional table, a bias, a mask: docs/transformers.md#constant-sources) is not an input:
    it absorbs ``C ⊙ SD(R, y)``. An operand broadcast to ``y``'s shape receives its share summed over the broadcast
    axes."""
    s = ops.stabilized_ratio(R, y)
    if coefficients is None:  # the last share is computed into s, which is not needed after it
        shares = [a * s for a in inputs[:-1]] + [ops.multiply_into(s, inputs[-1])]
    else:  # a None coefficient: a parent that is no signal (a tensor computed from shapes alone, itself a constant)
        shares = [None if c is None else (a * c) * s for a, c in zip(inputs, coefficients)]
    return [share if share is None or tuple(a.shape) == tuple(share.shape)
            else ops.vjp(lambda t: t + ops.zeros_like(y), [a], share)[0] for a, share in zip(inputs, shares)]


def avgpool_rule(ops, node, a, y, R):
    return ops.multiply_into(ops.vjp(node.forward, [a], ops.stabilized_ratio(R, y))[0], a)


def product_rule(ops, signal, inputs, y, R):
    """Signal-take-all at a gated product ``y = x ⊙ g`` (Arras et al. 2017): the signal operand ``x`` receives all
    of ``R`` (summed over the axes it was broadcast along), the gate ``g`` none (docs/layers.md, gated products)."""
    x = inputs[signal]
    share = R if tuple(x.shape) == tuple(y.shape) else ops.vjp(lambda t: t * ops.ones_like(y), [x], R)[0]
    return [share if i == signal else None for i in range(len(inputs))]


class GuidedBackprop:
    """Exact VJPs everywhere except ReLU-family activations: GBP ``φ'(z)⊙g⁺``, DeconvNet ``g⁺``
    (docs/methods.md#guided-backprop … docs/methods.md#deconvnet)."""

    def __init__(self, deconvnet: bool):
        self.deconvnet = deconvnet

    def __call__(self, ops, index, node, inputs, output, R):
        if node.kind == g.RELU:
            positive = ops.positive(R)
            return [positive] if self.deconvnet else ops.vjp(node.forward, inputs, positive)
        return ops.vjp(node.forward, inputs, R)


# --- attention rules (docs/transformers.md) -------------------------------------------------------------------

def uniform_rule(ops, node, inputs, z, R, epsilon=None):
    """AttnLRP's uniform rule at a product ``z = f(x, y)`` bilinear in two input-dependent operands (matmul, einsum,
    elementwise product; Achtibat et al. 2024, Prop. 3.2/3.3, Eq. 7): with ``s = SD(R, z + ε·sign0(z))`` (``SD(R, z)``
    for ε None), operand ``k`` receives ``½ · x_k ⊙ (∂z/∂x_k)ᵀ s`` (docs/transformers.md#bilinear). Since
    ``Σ_k x_k·∂z/∂x_k = 2z`` the shares sum to ``R`` where ``z ≠ 0`` and ε is None."""
    s = ops.stabilized_ratio(R, z, epsilon) * 0.5
    grads = ops.vjp(node.forward, inputs, s)
    return [ops.multiply_into(grad, x) for grad, x in zip(grads, inputs)]


def values_only_rule(ops, node, signal, inputs, z, R, epsilon=None):
    """CP-LRP at a product with one gate operand (attention weights, Ali et al. 2022): the gate is held constant, so
    ``z`` is linear in the signal operand ``x`` and the ε rule of that linear map gives ``x ⊙ (∂z/∂x)ᵀ SD(R, z)``; the
    gate receives nothing (docs/transformers.md#cp-lrp). At an elementwise product it is signal-take-all."""
    s = ops.stabilized_ratio(R, z, epsilon)
    grads = ops.vjp(node.forward, inputs, s)
    return [ops.multiply_into(grads[i], inputs[i]) if i == signal else None for i in range(len(inputs))]


def softmax_rule(ops, node, x, s, R):
    """AttnLRP's softmax rule (Deep Taylor decomposition at ``x`` with bias, Prop. 3.1): ``R_in = x ⊙ (R − s·ΣR)``,
    the sum over the softmax axis. Positions whose probability is exactly 0 (masked logits: −inf, or a large negative
    constant, or an underflow) take no part in the output and receive exactly 0 (docs/transformers.md#softmax)."""
    total = ops.sum_axis(R, node.axis)
    return ops.multiply_into(R - s * total, ops.where_zero(s, 0, x))


def layer_norm_rule(ops, node, a, y, R, epsilon=None):
    """The ε rule through a layer normalisation with σ held constant (AttnLRP Prop. 3.4, as LXT's ``layer_norm``):
    ``y = γ ⊙ (a − mean(a))/σ + β`` is then linear in ``a``, and ``R_in = a ⊙ Jᵀ SD(R, y + ε·sign0(y))`` with ``J``
    its (constant) Jacobian (docs/transformers.md#layer-norm). Conservative for β = 0 and ε None."""
    linear = node.normalization(a)
    return ops.multiply_into(ops.vjp(linear, [a], ops.stabilized_ratio(R, y, epsilon))[0], a)
