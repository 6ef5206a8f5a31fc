"""The rule objects of ``signxai.lrp`` against independent float64 NumPy replicas in matrix form
(docs/lrp.md#kernel-rules, §7.7).

Independent of the method-name grammar: every map here is computed from a ``Composite`` of rule objects. Each kernel
layer is an explicit matrix ``W`` acting on one sample flattened in channels-last order (Dense: the kernel
transposed; Conv1D 'valid': built column by column from a NumPy convolution), and every rule is applied literally:

* ``SD(p, q) = p / (q + 1e-7·[q == 0])``, ``sign0(z) = +1 if z ≥ 0 else −1``, ``s_μ(a) = −1 if a < μ else +1``;
* the head at the output layer is ``R = z_c·e_c``; ReLUs pass relevance through, Flatten re-indexes (the identity in
  channels-last order).

A user-defined rule (LRP-γ, written only against the neutral tensor-ops contract, as in docs/lrp_rules.md) is checked
the same way on both backends. Tolerances (docs/equivalence.md#agreement-gates): float64 ≤ 1e-9·peak with identical
exact-zero patterns, float32 ≤ 1e-5·peak.
"""
import torch  # noqa: F401  (torch before TensorFlow)

import numpy as np
import pytest

import signxai
from signxai import lrp
from signxai.converters.spec_models import build_keras_model, build_torch_model, random_weights

TOL = {"float64": 1e-9, "float32": 1e-5}


class Gamma(lrp.KernelRule):
    """LRP-γ (Montavon et al. 2019): positive weights and biases boosted by γ. The example of docs/lrp_rules.md."""

    def __init__(self, gamma=0.25):
        super().__init__(gamma=float(gamma))

    def kernel_relevance(self, ops, kernel, a, z, R):
        def boost(w):
            return w + self.gamma * ops.positive(w)
        s = lrp.safe_divide(ops, R, kernel.apply(a, boost, boost))
        return a * lrp.transpose_apply(ops, kernel, a, s, boost)


# ----------------------------------------------------------------------------------------------------------------
# NumPy replicas
# ----------------------------------------------------------------------------------------------------------------

def SD(p, q):
    return p / (q + 1e-7 * (q == 0))


def sign0(z):
    return np.where(z >= 0, 1.0, -1.0)


def conv1d_valid(a, kernel):
    """Channels-last 'valid' cross-correlation of one sample ``a`` (T, C) with ``kernel`` (k, C, F), no bias."""
    k = kernel.shape[0]
    return np.stack([np.tensordot(a[t:t + k], kernel, axes=2) for t in range(a.shape[0] - k + 1)])


def matrix(apply, in_shape):
    n = int(np.prod(in_shape))
    return np.stack([np.asarray(apply(np.eye(n)[j].reshape(in_shape)), np.float64).reshape(-1) for j in range(n)],
                    axis=1)


class Dense:
    def __init__(self, kernel, bias):
        self.W, self.b = np.asarray(kernel, np.float64).T, np.asarray(bias, np.float64)
        self.ONE = np.ones_like(self.W)


class Conv1D:
    def __init__(self, kernel, bias, in_shape):
        kernel = np.asarray(kernel, np.float64)
        self.W = matrix(lambda e: conv1d_valid(e, kernel), in_shape)
        self.ONE = matrix(lambda e: conv1d_valid(e, np.ones_like(kernel)), in_shape)
        spatial = in_shape[0] - kernel.shape[0] + 1
        self.b = np.tile(np.asarray(bias, np.float64), spatial)


def kernel_reference(rule, layer, a, R):
    """``rule`` (a signxai.lrp rule object, read only for its type and parameters) in matrix form."""
    W, b = layer.W, layer.b
    Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
    z = W @ a + b
    kind, p = type(rule).__name__, rule.params
    if kind == "Z":
        return a * (W.T @ SD(R, z))
    if kind == "Epsilon":
        return a * (W.T @ SD(R, z + p["epsilon"] * sign0(z)))
    if kind == "StdxEpsilon":
        return a * (W.T @ SD(R, z + p["stdfactor"] * np.std(a) * sign0(z)))
    if kind == "Sign":
        return np.where(a < p["mu"], -1.0, 1.0) * (W.T @ SD(R, z))
    if kind == "WSquare":
        return (W * W).T @ SD(R, (W * W) @ np.ones(len(a)))
    if kind == "Flat":
        return layer.ONE.T @ SD(R, layer.ONE @ np.ones(len(a)))
    if kind == "ZBox":
        lo, hi = np.full(len(a), p["low"]), np.full(len(a), p["high"])
        s = SD(R, W @ a - Wp @ lo - Wn @ hi)
        return a * (W.T @ s) - lo * (Wp.T @ s) - hi * (Wn.T @ s)
    if kind == "AlphaBeta":
        ap, an, bp, bn = np.maximum(a, 0), np.minimum(a, 0), np.maximum(b, 0), np.minimum(b, 0)
        z_act = (Wp @ ap + bp) + (Wn @ an + bn)
        z_inh = (Wn @ ap + bn) + (Wp @ an + bp)
        R_act = ap * (Wp.T @ SD(R, z_act)) + an * (Wn.T @ SD(R, z_act))
        R_inh = ap * (Wn.T @ SD(R, z_inh)) + an * (Wp.T @ SD(R, z_inh))
        return p["alpha"] * R_act - p["beta"] * R_inh
    if kind == "Gamma":
        Wg, bg = W + p["gamma"] * Wp, b + p["gamma"] * np.maximum(b, 0)
        return a * (Wg.T @ SD(R, Wg @ a + bg))
    raise ValueError(kind)


def head(layer, a, c):
    R = np.zeros(len(layer.b))
    R[c] = (layer.W @ a + layer.b)[c]
    return R


# ----------------------------------------------------------------------------------------------------------------
# Models: a kernel layer with a ReLU feeding a Dense output layer (and variants with BatchNorm / average pooling)
# ----------------------------------------------------------------------------------------------------------------

SPECS = {
    "dense": {"input_shape": [5], "layers": [{"kind": "dense", "units": 6, "activation": "relu"},
                                             {"kind": "dense", "units": 3}]},
    "conv1d": {"input_shape": [7, 2], "layers": [{"kind": "conv1d", "filters": 3, "kernel": 3, "padding": "valid",
                                                  "activation": "relu"},
                                                 {"kind": "flatten"},
                                                 {"kind": "dense", "units": 4}]},
    "dense_bn": {"input_shape": [5], "layers": [{"kind": "dense", "units": 6, "activation": "relu"},
                                                {"kind": "batchnorm"},
                                                {"kind": "dense", "units": 3}]},
    "conv1d_avgpool": {"input_shape": [8, 2], "layers": [{"kind": "conv1d", "filters": 3, "kernel": 3,
                                                          "padding": "valid", "activation": "relu"},
                                                         {"kind": "avgpool1d", "pool": 2},
                                                         {"kind": "flatten"},
                                                         {"kind": "dense", "units": 3}]},
}
TARGETS = {"dense": [2, 2, 1, 2], "conv1d": [3, 0, 2, 1], "dense_bn": [1, 0, 2, 2], "conv1d_avgpool": [2, 1, 0, 1]}


def make_input(shape, n, seed):
    """Mixed-sign inputs that also contain exact 0, 0.5 and −1.5 (the sign thresholds of the tested μ)."""
    rs = np.random.RandomState(seed)
    x = rs.uniform(-2.0, 2.0, size=(n,) + tuple(shape)).astype(np.float32)
    flat = x.reshape(n, -1)
    for i in range(n):
        flat[i, rs.choice(flat.shape[1], size=3, replace=False)] = [0.0, 0.5, -1.5]
    return flat.reshape(x.shape)


@pytest.fixture(scope="module")
def models():
    out = {}
    for i, (key, spec) in enumerate(SPECS.items()):
        weights = random_weights(spec, seed=40 + i, bias_scale=0.5)
        first = spec["layers"][0]
        name0, last = f"{first['kind']}_0", f"dense_{len(spec['layers']) - 1}"
        if first["kind"] == "dense":
            l1 = Dense(weights[f"{name0}/kernel"], weights[f"{name0}/bias"])
        else:
            l1 = Conv1D(weights[f"{name0}/kernel"], weights[f"{name0}/bias"], tuple(spec["input_shape"]))
        out[key] = {"weights": weights, "l1": l1, "l2": Dense(weights[f"{last}/kernel"], weights[f"{last}/bias"]),
                    "keras": build_keras_model(spec, weights), "torch": build_torch_model(spec, weights),
                    "x": make_input(spec["input_shape"], len(TARGETS[key]), seed=300 + i)}
    return out


def torch_layout(x):
    return np.moveaxis(x, -1, 1) if x.ndim > 2 else x


def explain(case, composite, backend, dtype, key):
    targets = np.array(TARGETS[key])
    if backend == "keras":
        return signxai.calculate_relevancemap(case["keras"], case["x"], composite, target=targets, dtype=dtype)
    result = signxai.calculate_relevancemap(case["torch"], torch_layout(case["x"]), composite, target=targets,
                                            dtype=dtype)
    return np.moveaxis(result, 1, -1) if result.ndim > 2 else result


def check(result, reference, dtype, what):
    assert result.dtype == np.dtype(dtype) and result.shape == reference.shape
    peak = np.abs(reference).max()
    assert peak > 0 and np.isfinite(peak)
    err = np.abs(result.astype(np.float64) - reference).max() / peak
    assert err <= TOL[dtype], f"{what}: max|R − R_ref|/peak = {err:.3e}"
    if dtype == "float64":
        np.testing.assert_array_equal(result == 0, reference == 0)


def chain_reference(case, x, targets, first_rule, last_rule, middle=None):
    """Kernel layer (+ReLU) → [middle] → Dense output. ``middle(hidden, R) -> R_hidden`` maps the layer between."""
    l1, l2 = case["l1"], case["l2"]
    out = []
    for a, c in zip(x.reshape(len(x), -1).astype(np.float64), targets):
        hidden = np.maximum(l1.W @ a + l1.b, 0.0)
        h2 = hidden if middle is None else middle.forward(hidden)
        R = kernel_reference(last_rule, l2, h2, head(l2, h2, c))
        if middle is not None:
            R = middle.relevance(hidden, h2, R)
        out.append(kernel_reference(first_rule, l1, a, R))
    return np.stack(out).reshape(x.shape)


KERNEL_RULES = {
    "Z": lrp.Z(), "Epsilon": lrp.Epsilon(0.1), "StdxEpsilon": lrp.StdxEpsilon(0.5),
    "AlphaBeta_1_0": lrp.AlphaBeta(1, 0), "AlphaBeta_2_1": lrp.AlphaBeta(2, 1), "WSquare": lrp.WSquare(),
    "Flat": lrp.Flat(), "ZBox": lrp.ZBox(-1.0, 2.0), "Sign": lrp.Sign(), "Sign_mu_0_5": lrp.Sign(0.5),
    "Sign_mu_neg_1_5": lrp.Sign(-1.5), "Gamma_user_rule": Gamma(0.25),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["keras", "torch"])
@pytest.mark.parametrize("rule", list(KERNEL_RULES))
@pytest.mark.parametrize("key", ["dense", "conv1d"])
def test_kernel_rule_at_input_layer(models, key, rule, backend, dtype):
    """The rule on the input layers ('input' selector), Epsilon(0.25) as the default for the output layer."""
    case, rule = models[key], KERNEL_RULES[rule]
    composite = lrp.Composite([("input", rule)], default=lrp.Epsilon(0.25))
    reference = chain_reference(case, case["x"], TARGETS[key], rule, lrp.Epsilon(0.25))
    check(explain(case, composite, backend, dtype, key), reference, dtype, f"{key} {rule!r} {backend} {dtype}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["keras", "torch"])
@pytest.mark.parametrize("rule", list(KERNEL_RULES))
@pytest.mark.parametrize("key", ["dense", "conv1d"])
def test_kernel_rule_as_default(models, key, rule, backend, dtype):
    """The rule as the default of every kernel layer, so also at the output layer together with the head."""
    case, rule = models[key], KERNEL_RULES[rule]
    reference = chain_reference(case, case["x"], TARGETS[key], rule, rule)
    check(explain(case, lrp.Composite([], default=rule), backend, dtype, key), reference, dtype,
          f"{key} {rule!r} {backend} {dtype}")


def test_the_rules_differ_on_these_models(models):
    """Guard: on these inputs the rules give different maps, so the comparisons above discriminate."""
    case = models["conv1d"]
    maps = {name: chain_reference(case, case["x"], TARGETS["conv1d"], rule, lrp.Epsilon(0.25))
            for name, rule in KERNEL_RULES.items()}
    names = list(maps)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            peak = np.abs(maps[first]).max()
            assert np.abs(maps[first] - maps[second]).max() > 1e-3 * peak, (first, second)


def test_user_gamma_zero_is_the_z_rule(models):
    case = models["conv1d"]
    for backend in ("keras", "torch"):
        gamma0 = explain(case, lrp.Composite([], default=Gamma(0.0)), backend, "float64", "conv1d")
        z = explain(case, lrp.Composite([], default=lrp.Z()), backend, "float64", "conv1d")
        assert np.abs(gamma0 - z).max() <= 1e-12 * np.abs(z).max()


# --- non-kernel rules -------------------------------------------------------------------------------------------

class BatchNorm:
    def __init__(self, weights, name, eps=1e-3):
        self.gamma, self.beta = (np.asarray(weights[f"{name}/{p}"], np.float64) for p in ("gamma", "beta"))
        self.mean, self.var = (np.asarray(weights[f"{name}/{p}"], np.float64) for p in ("moving_mean",
                                                                                        "moving_variance"))
        self.scale = self.gamma / np.sqrt(self.var + eps)
        self.rule = None

    def forward(self, a):
        return self.scale * (a - self.mean) + self.beta

    def relevance(self, a, y, R):
        if self.rule == "BatchNormRule":
            d = (a - self.mean) * y
            return SD(a * (y - self.beta) * R, d + 1e-7 * sign0(d))
        if self.rule == "Pass":
            return R
        if self.rule == "Gradient":
            return self.scale * R
        raise ValueError(self.rule)


class AvgPool:
    def __init__(self, spatial, channels, pool=2):
        def pooled(e):
            return e[:spatial // pool * pool].reshape(spatial // pool, pool, channels).mean(axis=1)
        self.P = matrix(pooled, (spatial, channels))
        self.rule = None

    def forward(self, a):
        return self.P @ a

    def relevance(self, a, y, R):
        if self.rule == "Z":
            return a * (self.P.T @ SD(R, y))
        if self.rule == "Gradient":
            return self.P.T @ R
        raise ValueError(self.rule)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["keras", "torch"])
@pytest.mark.parametrize("rule", [None, lrp.BatchNormRule(), lrp.Pass(), lrp.Gradient()])
def test_batchnorm_rules(models, rule, backend, dtype):
    """BatchNorm between the layers: its default (the BN rule), or a rule chosen by the 'batchnorm' selector."""
    case = models["dense_bn"]
    middle = BatchNorm(case["weights"], "batchnorm_1")
    middle.rule = "BatchNormRule" if rule is None else type(rule).__name__
    composite = lrp.Composite([] if rule is None else [("batchnorm", rule)], default=lrp.Epsilon(0.1))
    reference = chain_reference(case, case["x"], TARGETS["dense_bn"], lrp.Epsilon(0.1), lrp.Epsilon(0.1), middle)
    check(explain(case, composite, backend, dtype, "dense_bn"), reference, dtype, f"{rule!r} {backend} {dtype}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["keras", "torch"])
@pytest.mark.parametrize("rule", [None, lrp.Z(), lrp.Gradient()])
def test_avgpool_rules(models, rule, backend, dtype):
    case = models["conv1d_avgpool"]
    middle = AvgPool(6, 3)
    middle.rule = "Z" if rule is None else type(rule).__name__
    composite = lrp.Composite([] if rule is None else [("avgpool", rule)], default=lrp.Epsilon(0.1))
    reference = chain_reference(case, case["x"], TARGETS["conv1d_avgpool"], lrp.Epsilon(0.1), lrp.Epsilon(0.1),
                                middle)
    check(explain(case, composite, backend, dtype, "conv1d_avgpool"), reference, dtype,
          f"{rule!r} {backend} {dtype}")


def test_bn_rules_differ(models):
    case = models["dense_bn"]
    maps = []
    for rule in ("BatchNormRule", "Pass", "Gradient"):
        middle = BatchNorm(case["weights"], "batchnorm_1")
        middle.rule = rule
        maps.append(chain_reference(case, case["x"], TARGETS["dense_bn"], lrp.Epsilon(0.1), lrp.Epsilon(0.1),
                                    middle))
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(maps[i] - maps[j]).max() > 1e-3 * np.abs(maps[i]).max()


# --- rule objects are data --------------------------------------------------------------------------------------

def test_repr_equality_and_hash():
    assert repr(lrp.Epsilon(0.1)) == "Epsilon(epsilon=0.1)"
    assert repr(lrp.AlphaBeta(2, 1)) == "AlphaBeta(alpha=2.0, beta=1.0)"
    assert repr(lrp.Sign()) == "Sign(mu=0.0)"
    assert repr(lrp.Z()) == "Z()"
    assert repr(Gamma(0.5)) == "Gamma(gamma=0.5)"
    assert lrp.Epsilon(0.1) == lrp.Epsilon(0.1) and hash(lrp.Epsilon(0.1)) == hash(lrp.Epsilon(0.1))
    assert lrp.Epsilon(0.1) != lrp.Epsilon(0.2)
    assert lrp.Epsilon(0.1) != lrp.StdxEpsilon(0.1)
    assert lrp.AlphaBeta(1, 0) == lrp.AlphaBeta(1.0, 0.0)
    assert lrp.ZBox(np.zeros(3), np.ones(3)) == lrp.ZBox(np.zeros(3), np.ones(3))
    assert lrp.ZBox(np.zeros(3), np.ones(3)) != lrp.ZBox(np.zeros(3), np.full(3, 2.0))
    assert lrp.ZBox(-1, 1) != lrp.ZBox(np.full(2, -1.0), np.ones(2))
    assert lrp.Epsilon(0.25).params == {"epsilon": 0.25} and lrp.Epsilon(0.25).epsilon == 0.25
    assert {lrp.Z(), lrp.Z(), lrp.Flat()} == {lrp.Z(), lrp.Flat()}
    rule = lrp.Epsilon(0.1)
    with pytest.raises(AttributeError, match="cannot be changed"):
        rule.epsilon = 0.2
    assert rule == lrp.Epsilon(0.1)


def test_applies_to():
    for rule in (lrp.Epsilon(1), lrp.StdxEpsilon(1), lrp.AlphaBeta(1, 0), lrp.WSquare(), lrp.Flat(),
                 lrp.ZBox(0, 1), lrp.Sign(), Gamma()):
        assert rule.applies_to("dense") and rule.applies_to("conv")
        assert not any(rule.applies_to(kind) for kind in ("batchnorm", "add", "avgpool", "activation", "pass"))
    assert all(lrp.Z().applies_to(kind) for kind in ("dense", "conv", "add", "avgpool"))
    assert not lrp.Z().applies_to("batchnorm")
    assert lrp.BatchNormRule().applies_to("batchnorm") and not lrp.BatchNormRule().applies_to("conv")
    assert lrp.Pass().applies_to("batchnorm") and lrp.Pass().applies_to("activation")
    assert not lrp.Pass().applies_to("add") and not lrp.Pass().applies_to("dense")
    assert lrp.Gradient().applies_to("gradient") and not lrp.Gradient().applies_to("dense")
    assert lrp.SignalTakeAll().applies_to("product") and not lrp.SignalTakeAll().applies_to("add")


@pytest.mark.parametrize("make,message", [
    (lambda: lrp.Epsilon(0), "epsilon must be a finite number > 0"),
    (lambda: lrp.Epsilon(-0.1), "epsilon must be a finite number > 0"),
    (lambda: lrp.Epsilon(float("nan")), "epsilon"),
    (lambda: lrp.Epsilon("0.1"), "epsilon"),
    (lambda: lrp.StdxEpsilon(0), "stdfactor must be a finite number > 0"),
    (lambda: lrp.AlphaBeta(-1, 0), "alpha must be a finite number >= 0"),
    (lambda: lrp.AlphaBeta(1, True), "beta"),
    (lambda: lrp.Sign(float("inf")), "mu must be a finite number"),
    (lambda: lrp.ZBox(2.0, 1.0), "low must be <= high"),
    (lambda: lrp.ZBox(np.zeros(2), np.ones(3)), "broadcast"),
    (lambda: lrp.ZBox(np.array([0.0, np.nan]), 1.0), "finite"),
])
def test_invalid_parameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_rule_without_relevance_says_so(models):
    class Incomplete(lrp.KernelRule):
        pass
    case = models["dense"]
    with pytest.raises(NotImplementedError, match="Incomplete does not implement kernel_relevance"):
        signxai.calculate_relevancemap(case["keras"], case["x"], lrp.Composite([], default=Incomplete()))
