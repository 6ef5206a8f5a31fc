"""LRP kernel rules against an independent float64 NumPy reference in matrix form (docs/lrp.md#head, §7.4, §7.5).

Every kernel layer is written as an explicit dense matrix ``W`` (m×n) acting on one sample flattened in the canonical
(channels-last) order, plus a bias vector ``b`` (m). For Dense ``W`` is the kernel transposed; for convolutions it is
built column by column by applying a small NumPy convolution (written here, 'valid'/'same' zero padding, strides) to
each unit basis vector. The rules of docs/lrp.md#kernel-rules are then applied literally:

* ``W⁺ = max(W, 0)``, ``W⁻ = min(W, 0)``, ``W² = W ⊙ W``; ``𝟏`` is the matrix of the same layer with a kernel of ones
  (zero where the layer has no connection, e.g. at padded borders), never a full ones matrix;
* ``SD(p, q) = p / (q + 1e-7·[q == 0])``, ``sign0(z) = +1 if z ≥ 0 else −1``, ``s_μ(x) = −1 if x < μ else +1``;
* the head of the (only / last) kernel layer is ``R = z_c·e_c`` with ``z = W a + b``.

The single-layer models make that one kernel layer both the input layer and the output layer (D8), so every rule —
also SIGN/SIGNmu, W², Flat, ZB and AlphaBeta — is checked together with the head. A Conv→Flatten model is still a
single-kernel-layer model: Flatten passes relevance by its gradient (re-indexing), which in matrix form is the
identity on the Keras (channels-last) flatten order. The PyTorch twin flattens (C, d…) instead, so its class index for
the same unit is the position of that unit in channels-first flatten order (``_torch_index``).

Tolerances (docs/equivalence.md#agreement-gates): float64 results ≤ 1e-9 · peak|R_ref|,
float32 results ≤ 1e-5 · peak|R_ref|.
"""
# torch must be imported before TensorFlow (see NOTES.md: triton/LLVM segfault trap).
import torch  # noqa: F401  (import order)

import itertools

import numpy as np
import pytest

import signxai
from signxai.converters.spec_models import build_keras_model, build_torch_model, random_weights

TOL = {"float64": 1e-9, "float32": 1e-5}


# ----------------------------------------------------------------------------------------------------------------
# NumPy building blocks
# ----------------------------------------------------------------------------------------------------------------

def conv_nd(a, kernel, strides, padding):
    """Channels-last N-d cross-correlation of one sample ``a`` (d…, Cin) with ``kernel`` (k…, Cin, Cout).

    ``padding`` is ``'valid'`` or ``'same'`` (TensorFlow convention: total padding ``max((out−1)·s + k − d, 0)``,
    the smaller half before). No bias.
    """
    nsp = kernel.ndim - 2
    dims, ks = a.shape[:nsp], kernel.shape[:nsp]
    pads, outs = [], []
    for d, k, s in zip(dims, ks, strides):
        if padding == "same":
            out = -(-d // s)
            total = max((out - 1) * s + k - d, 0)
            pads.append((total // 2, total - total // 2))
        elif padding == "valid":
            out = (d - k) // s + 1
            pads.append((0, 0))
        else:
            raise ValueError(padding)
        outs.append(out)
    padded = np.pad(a, pads + [(0, 0)])
    result = np.zeros(tuple(outs) + (kernel.shape[-1],), dtype=np.float64)
    for o in itertools.product(*[range(n) for n in outs]):
        window = padded[tuple(slice(oi * s, oi * s + k) for oi, s, k in zip(o, strides, ks))]
        result[o] = np.tensordot(window, kernel, axes=nsp + 1)
    return result


def operator_matrix(apply, in_shape):
    """The dense matrix of a linear map on arrays of ``in_shape`` (columns = images of the unit basis vectors)."""
    n = int(np.prod(in_shape))
    columns = []
    for j in range(n):
        e = np.zeros(n)
        e[j] = 1.0
        columns.append(np.asarray(apply(e.reshape(in_shape)), dtype=np.float64).reshape(-1))
    return np.stack(columns, axis=1)


class KernelLayer:
    """One kernel layer in matrix form: ``W``, ``b``, the ones-kernel matrix ``ONE`` and the squared-kernel one."""

    def __init__(self, kind, kernel, bias, in_shape, strides=None, padding=None):
        kernel = np.asarray(kernel, dtype=np.float64)
        bias = np.asarray(bias, dtype=np.float64)
        self.in_shape = tuple(in_shape)
        if kind == "dense":
            self.W = kernel.T.copy()
            self.ONE = np.ones_like(self.W)
            self.W2_op = (kernel ** 2).T.copy()
            self.b = bias.copy()
            self.out_shape = (kernel.shape[1],)
        else:
            nsp = kernel.ndim - 2
            strides = tuple(strides) if strides is not None else (1,) * nsp

            def matrix(k):
                return operator_matrix(lambda e: conv_nd(e, k, strides, padding), self.in_shape)

            self.W = matrix(kernel)
            self.ONE = matrix(np.ones_like(kernel))
            self.W2_op = matrix(kernel ** 2)
            self.out_shape = conv_nd(np.zeros(self.in_shape), kernel, strides, padding).shape
            spatial = int(np.prod(self.out_shape[:-1]))
            self.b = np.tile(bias, spatial)  # channels-last flatten order: channel fastest
        self.m, self.n = self.W.shape

    def z(self, a):
        return self.W @ a + self.b


def SD(p, q):
    return p / (q + 1e-7 * (q == 0))


def sign0(z):
    return np.where(z >= 0, 1.0, -1.0)


def s_mu(a, mu):
    return np.where(a < mu, -1.0, 1.0)


def kernel_rule(rule, layer, a, R, **p):
    """docs/lrp.md#kernel-rules literally, in matrix form. ``a``: flat input (n), ``R``: relevance at the output (m)."""
    W, b = layer.W, layer.b
    Wp, Wn = np.maximum(W, 0.0), np.minimum(W, 0.0)
    z = W @ a + b
    if rule == "z":
        return a * (W.T @ SD(R, z))
    if rule == "epsilon":
        return a * (W.T @ SD(R, z + p["epsilon"] * sign0(z)))
    if rule == "std_x":
        eps = p["stdfactor"] * np.std(a)  # population std over the whole sample input of this layer
        return a * (W.T @ SD(R, z + eps * sign0(z)))
    if rule == "sign":
        return s_mu(a, p.get("mu", 0.0)) * (W.T @ SD(R, z))
    if rule == "w2":
        W2 = W * W
        return W2.T @ SD(R, W2 @ np.ones(layer.n))
    if rule == "flat":
        ONE = layer.ONE
        return ONE.T @ SD(R, ONE @ np.ones(layer.n))
    if rule == "zb":
        lo, hi = p["low"], p["high"]
        s = SD(R, W @ a - Wp @ lo - Wn @ hi)
        return a * (W.T @ s) - lo * (Wp.T @ s) - hi * (Wn.T @ s)
    if rule == "alpha_beta":
        ap, an = np.maximum(a, 0.0), np.minimum(a, 0.0)
        bp, bn = np.maximum(b, 0.0), np.minimum(b, 0.0)
        z_act = (Wp @ ap + bp) + (Wn @ an + bn)
        z_inh = (Wn @ ap + bn) + (Wp @ an + bp)
        R_act = ap * (Wp.T @ SD(R, z_act)) + an * (Wn.T @ SD(R, z_act))
        R_inh = ap * (Wn.T @ SD(R, z_inh)) + an * (Wp.T @ SD(R, z_inh))
        return p["alpha"] * R_act - p["beta"] * R_inh
    raise ValueError(rule)


def head(layer, a, c):
    z = layer.z(a)
    R = np.zeros(layer.m)
    R[c] = z[c]
    return R


# ----------------------------------------------------------------------------------------------------------------
# Models and inputs
# ----------------------------------------------------------------------------------------------------------------

SINGLE_SPECS = {
    "dense": {"input_shape": [5], "layers": [{"kind": "dense", "units": 4}]},
    "conv1d_valid": {"input_shape": [9, 2],
                     "layers": [{"kind": "conv1d", "filters": 3, "kernel": 3, "padding": "valid"},
                                {"kind": "flatten"}]},
    "conv1d_valid_stride2": {"input_shape": [9, 2],
                             "layers": [{"kind": "conv1d", "filters": 3, "kernel": 3, "strides": 2,
                                         "padding": "valid"},
                                        {"kind": "flatten"}]},
    "conv2d_same": {"input_shape": [5, 5, 2],
                    "layers": [{"kind": "conv2d", "filters": 3, "kernel": 3, "padding": "same"},
                               {"kind": "flatten"}]},
}

# Per-sample targets (Keras flatten order), chosen to hit corners/borders of the conv outputs.
SINGLE_TARGETS = {
    "dense": [0, 2, 3, 1],
    "conv1d_valid": [0, 11, 20, 5],               # output (7, 3): first, middle, last positions
    "conv1d_valid_stride2": [0, 5, 11, 7],        # output (4, 3)
    "conv2d_same": [0, 37, 74, 14],               # output (5, 5, 3): (0,0,0), (2,2,1), (4,4,2), (0,4,2)
}


def spec_layer(spec, weights):
    """The single kernel layer of a spec in matrix form (from the Keras-layout weights)."""
    first = spec["layers"][0]
    name = f"{first['kind']}_0"
    return KernelLayer(first["kind"], weights[f"{name}/kernel"], weights[f"{name}/bias"], spec["input_shape"],
                       strides=(first.get("strides", 1),) * (len(spec["input_shape"]) - 1),
                       padding=first.get("padding", "valid"))


def make_input(shape, n, seed):
    """Mixed-sign float32 inputs that also contain exact 0, 0.5 and −1.5 (sign thresholds of the tested μ)."""
    rs = np.random.RandomState(seed)
    x = rs.uniform(-2.0, 2.0, size=(n,) + tuple(shape)).astype(np.float32)
    flat = x.reshape(n, -1)
    for i in range(n):
        idx = rs.choice(flat.shape[1], size=3, replace=False)
        flat[i, idx] = [0.0, 0.5, -1.5]
    return flat.reshape(x.shape)


def to_torch_layout(x):
    return np.moveaxis(x, -1, 1) if x.ndim > 2 else x


def from_torch_layout(r):
    return np.moveaxis(r, 1, -1) if r.ndim > 2 else r


def torch_index(c, out_shape):
    """Index in PyTorch's (C, d…) flatten order of the unit that Keras' (d…, C) flatten order calls ``c``."""
    if len(out_shape) == 1:
        return int(c)
    order = np.moveaxis(np.arange(int(np.prod(out_shape))).reshape(out_shape), -1, 0).reshape(-1)
    return int(np.nonzero(order == c)[0][0])


@pytest.fixture(scope="module")
def single_models():
    models = {}
    for i, (key, spec) in enumerate(SINGLE_SPECS.items()):
        weights = random_weights(spec, seed=10 + i, bias_scale=0.5)
        layer = spec_layer(spec, weights)
        assert np.all(np.abs(layer.b) > 1e-3)  # non-zero biases, so the bias terms of every rule matter
        models[key] = {"spec": spec, "weights": weights, "layer": layer,
                       "keras": build_keras_model(spec, weights), "torch": build_torch_model(spec, weights),
                       "x": make_input(spec["input_shape"], len(SINGLE_TARGETS[key]), seed=100 + i)}
    return models


RULES = {  # method name -> (reference rule, rule params, extra kwargs for calculate_relevancemap)
    "lrp_z": ("z", {}, {}),
    "lrp_epsilon_0_1": ("epsilon", {"epsilon": 0.1}, {}),
    "lrp_epsilon_0_5_std_x": ("std_x", {"stdfactor": 0.5}, {}),
    "lrpsign_z": ("sign", {"mu": 0.0}, {}),
    "lrpsign_z_mu_0_5": ("sign", {"mu": 0.5}, {}),
    "lrpsign_z_mu_neg_1_5": ("sign", {"mu": -1.5}, {}),
    "w2lrp_z": ("w2", {}, {}),
    "flatlrp_z": ("flat", {}, {}),
    "zblrp_z": ("zb", {"low": -1.0, "high": 2.0}, {"low": -1.0, "high": 2.0}),
    "zblrp_z[arrays]": ("zb", "arrays", "arrays"),
    "zblrp_z[channel_arrays]": ("zb", "channel_arrays", "channel_arrays"),
    "lrp_alpha_1_beta_0": ("alpha_beta", {"alpha": 1.0, "beta": 0.0}, {}),
    "lrp_alpha_2_beta_1": ("alpha_beta", {"alpha": 2.0, "beta": 1.0}, {}),
}


def zb_arrays(in_shape):
    """Non-constant ZB bounds with low < high, in the canonical layout (one sample)."""
    rs = np.random.RandomState(7)
    low = rs.uniform(-2.0, -0.5, size=in_shape).astype(np.float32)
    high = rs.uniform(0.5, 2.5, size=in_shape).astype(np.float32)
    return low, high


def zb_channel_arrays(in_shape):
    """Per-channel ZB bounds (one value per channel, broadcast over the other axes of the sample).

    Returns the canonical full-sample arrays plus the kwargs forms: Keras ``(C,)``, PyTorch ``(C, 1…)``. For a
    rank-1 (Dense) sample the "channel" axis is the only axis, so the bounds have shape ``(1,)``.
    """
    rs = np.random.RandomState(8)
    if len(in_shape) == 1:
        low, high = np.float32([-0.75]), np.float32([1.25])
        return (np.broadcast_to(low, in_shape), np.broadcast_to(high, in_shape)), (low, high), (low, high)
    C = in_shape[-1]
    low = rs.uniform(-2.0, -0.5, size=C).astype(np.float32)
    high = rs.uniform(0.5, 2.5, size=C).astype(np.float32)
    torch_shape = (C,) + (1,) * (len(in_shape) - 1)
    full = (np.broadcast_to(low, in_shape), np.broadcast_to(high, in_shape))
    return full, (low, high), (low.reshape(torch_shape), high.reshape(torch_shape))


def reference_single(layer, x, targets, rule, params):
    out = []
    for a, c in zip(x.reshape(len(x), -1).astype(np.float64), targets):
        out.append(kernel_rule(rule, layer, a, head(layer, a, c), **params))
    return np.stack(out).reshape(x.shape)


def rel_err(result, reference):
    peak = np.abs(reference).max()
    assert peak > 0 and np.isfinite(peak)
    return np.abs(result - reference).max() / peak


# ----------------------------------------------------------------------------------------------------------------
# Self-checks of the reference (independent of signxai's explanation code)
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", list(SINGLE_SPECS))
def test_reference_matrix_reproduces_both_models(single_models, key):
    """``W a + b`` in Keras flatten order equals the Keras model output and the permuted PyTorch output."""
    case = single_models[key]
    layer, x = case["layer"], case["x"]
    z_ref = np.stack([layer.z(a) for a in x.reshape(len(x), -1).astype(np.float64)])
    k64 = build_keras_model(case["spec"], case["weights"], "float64")
    z_keras = np.asarray(k64(x.astype(np.float64)))
    np.testing.assert_allclose(z_keras, z_ref, rtol=0, atol=1e-12)
    t64 = build_torch_model(case["spec"], case["weights"], "float64")
    with torch.no_grad():
        z_torch = t64(torch.tensor(to_torch_layout(x).astype(np.float64))).numpy()
    perm = [torch_index(c, layer.out_shape) for c in range(layer.m)]
    np.testing.assert_allclose(z_torch[:, perm], z_ref, rtol=0, atol=1e-12)
    # the squared-kernel operator is the elementwise square of the matrix, and the ones-kernel matrix is its
    # connection pattern (zeros at padded borders)
    np.testing.assert_array_equal(layer.W2_op, layer.W * layer.W)
    np.testing.assert_array_equal(layer.ONE, (layer.W != 0).astype(np.float64))
    if key == "conv2d_same":
        # corner output unit (0,0,k) sees a 2×2 window of 2 channels: 8 connections; the centre one 3·3·2 = 18
        assert layer.ONE[0].sum() == 8 and layer.ONE[37].sum() == 18


@pytest.mark.parametrize("key", list(SINGLE_SPECS))
def test_reference_conservation(single_models, key):
    """Sum rules of the reference: Z sums to z_c − b_c; W², Flat and ZB (bias-free) sum to z_c."""
    case = single_models[key]
    layer, x = case["layer"], case["x"]
    low, high = np.full(layer.n, -1.0), np.full(layer.n, 2.0)
    for a, c in zip(x.reshape(len(x), -1).astype(np.float64), SINGLE_TARGETS[key]):
        R = head(layer, a, c)
        z_c = layer.z(a)[c]
        np.testing.assert_allclose(kernel_rule("z", layer, a, R).sum(), z_c - layer.b[c], rtol=1e-12)
        for rule, p in (("w2", {}), ("flat", {}), ("zb", {"low": low, "high": high})):
            np.testing.assert_allclose(kernel_rule(rule, layer, a, R, **p).sum(), z_c, rtol=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# signxai against the reference: single-layer models
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["keras", "torch"])
@pytest.mark.parametrize("method", list(RULES))
@pytest.mark.parametrize("key", list(SINGLE_SPECS))
def test_single_layer_rule(single_models, key, method, backend, dtype):
    case = single_models[key]
    layer, x, targets = case["layer"], case["x"], SINGLE_TARGETS[key]
    rule, params, kwargs = RULES[method]
    name = method.split("[")[0]
    if params == "arrays":
        low, high = zb_arrays(tuple(case["spec"]["input_shape"]))
        params = {"low": low.reshape(-1).astype(np.float64), "high": high.reshape(-1).astype(np.float64)}
        if backend == "torch":
            kwargs = {"low": to_torch_layout(low[None])[0], "high": to_torch_layout(high[None])[0]}
        else:
            kwargs = {"low": low, "high": high}
    elif params == "channel_arrays":
        (low, high), keras_kw, torch_kw = zb_channel_arrays(tuple(case["spec"]["input_shape"]))
        params = {"low": low.reshape(-1).astype(np.float64), "high": high.reshape(-1).astype(np.float64)}
        kwargs = dict(zip(("low", "high"), torch_kw if backend == "torch" else keras_kw))
    elif rule == "zb":
        params = {"low": np.full(layer.n, params["low"]), "high": np.full(layer.n, params["high"])}
    reference = reference_single(layer, x, targets, rule, params)

    if backend == "keras":
        result = signxai.calculate_relevancemap(case["keras"], x, name, target=np.array(targets), dtype=dtype,
                                                **kwargs)
    else:
        torch_targets = np.array([torch_index(c, layer.out_shape) for c in targets])
        result = signxai.calculate_relevancemap(case["torch"], to_torch_layout(x), name, target=torch_targets,
                                                dtype=dtype, **kwargs)
        assert result.shape == to_torch_layout(x).shape
        result = from_torch_layout(result)
    assert result.dtype == np.dtype(dtype)
    assert result.shape == x.shape
    err = rel_err(result.astype(np.float64), reference)
    assert err <= TOL[dtype], f"{key} {method} {backend} {dtype}: max|R − R_ref|/peak = {err:.3e}"
    if dtype == "float64":
        # exact zeros (a = 0 for the a⊙… rules, inputs outside the receptive field of unit c) are exact in both
        np.testing.assert_array_equal(result == 0, reference == 0)


def test_sign_rules_differ_from_z_where_input_is_negative(single_models):
    """Guard that the inputs make the sign rules meaningful: SIGN ≠ Z·sign, SIGNmu(0.5) ≠ SIGN, μ=−1.5 ≠ all +1."""
    case = single_models["conv2d_same"]
    layer, x, targets = case["layer"], case["x"], SINGLE_TARGETS["conv2d_same"]
    sign = reference_single(layer, x, targets, "sign", {"mu": 0.0})
    sign_half = reference_single(layer, x, targets, "sign", {"mu": 0.5})
    sign_neg = reference_single(layer, x, targets, "sign", {"mu": -1.5})
    assert np.abs(sign - sign_half).max() > 1e-3 * np.abs(sign).max()
    # D9: μ ≤ −1 does not collapse to all +1 (which would equal SIGN with every input ≥ μ)
    all_plus = reference_single(layer, x, targets, "sign", {"mu": -np.inf})
    assert np.abs(sign_neg - all_plus).max() > 1e-3 * np.abs(sign_neg).max()
    r = signxai.calculate_relevancemap(case["keras"], x, "lrpsign_z_mu_neg_1_5", target=np.array(targets),
                                       dtype="float64")
    assert rel_err(r, sign_neg) <= 1e-9


# ----------------------------------------------------------------------------------------------------------------
# Two-layer chains: input-layer rule at the first kernel layer, base rule at the output layer
# (docs/lrp.md#input-layers, D10)
# ----------------------------------------------------------------------------------------------------------------

CHAIN_SPECS = {
    "dense_relu_dense": {"input_shape": [5],
                         "layers": [{"kind": "dense", "units": 6, "activation": "relu"},
                                    {"kind": "dense", "units": 3}]},
    "conv2d_relu_flatten_dense": {"input_shape": [5, 5, 2],
                                  "layers": [{"kind": "conv2d", "filters": 3, "kernel": 3, "padding": "same",
                                              "activation": "relu"},
                                             {"kind": "flatten"},
                                             {"kind": "dense", "units": 4}]},
}
CHAIN_TARGETS = {"dense_relu_dense": [0, 2, 1, 2], "conv2d_relu_flatten_dense": [3, 0, 2, 1]}

CHAIN_METHODS = {  # name -> (input-layer rule, params), (output-layer rule, params), kwargs
    "lrpsign_epsilon_0_1": (("sign", {"mu": 0.0}), ("epsilon", {"epsilon": 0.1}), {}),
    "w2lrp_alpha_1_beta_0": (("w2", {}), ("alpha_beta", {"alpha": 1.0, "beta": 0.0}), {}),
    "flatlrp_alpha_2_beta_1": (("flat", {}), ("alpha_beta", {"alpha": 2.0, "beta": 1.0}), {}),
    "zblrp_epsilon_0_1": (("zb", {"low": -1.0, "high": 2.0}), ("epsilon", {"epsilon": 0.1}),
                          {"low": -1.0, "high": 2.0}),
    "lrpsign_z_mu_0_5": (("sign", {"mu": 0.5}), ("z", {}), {}),
    "lrp_epsilon_0_5_std_x": (("std_x", {"stdfactor": 0.5}), ("std_x", {"stdfactor": 0.5}), {}),
}


@pytest.fixture(scope="module")
def chain_models():
    models = {}
    for i, (key, spec) in enumerate(CHAIN_SPECS.items()):
        weights = random_weights(spec, seed=20 + i, bias_scale=0.5)
        first = spec["layers"][0]
        n0, n_last = f"{first['kind']}_0", f"dense_{len(spec['layers']) - 1}"
        l1 = KernelLayer(first["kind"], weights[f"{n0}/kernel"], weights[f"{n0}/bias"], spec["input_shape"],
                         strides=(1,) * (len(spec["input_shape"]) - 1), padding=first.get("padding", "valid"))
        l2 = KernelLayer("dense", weights[f"{n_last}/kernel"], weights[f"{n_last}/bias"], (l1.m,))
        models[key] = {"spec": spec, "weights": weights, "layers": (l1, l2),
                       "keras": build_keras_model(spec, weights), "torch": build_torch_model(spec, weights),
                       "x": make_input(spec["input_shape"], len(CHAIN_TARGETS[key]), seed=200 + i)}
    return models


def reference_chain(layers, x, targets, first_rule, last_rule):
    l1, l2 = layers
    out = []
    for a, c in zip(x.reshape(len(x), -1).astype(np.float64), targets):
        hidden = np.maximum(l1.z(a), 0.0)  # ReLU (fused in Keras, a module in PyTorch)
        R_hidden = kernel_rule(last_rule[0], l2, hidden, head(l2, hidden, c), **last_rule[1])
        # the ReLU passes relevance through unchanged; Flatten re-indexes (identity in Keras order)
        p = dict(first_rule[1])
        if first_rule[0] == "zb":
            p = {"low": np.full(l1.n, p["low"]), "high": np.full(l1.n, p["high"])}
        out.append(kernel_rule(first_rule[0], l1, a, R_hidden, **p))
    return np.stack(out).reshape(x.shape)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["keras", "torch"])
@pytest.mark.parametrize("method", list(CHAIN_METHODS))
@pytest.mark.parametrize("key", list(CHAIN_SPECS))
def test_two_layer_chain(chain_models, key, method, backend, dtype):
    case = chain_models[key]
    first_rule, last_rule, kwargs = CHAIN_METHODS[method]
    x, targets = case["x"], np.array(CHAIN_TARGETS[key])
    reference = reference_chain(case["layers"], x, targets, first_rule, last_rule)
    if backend == "keras":
        result = signxai.calculate_relevancemap(case["keras"], x, method, target=targets, dtype=dtype, **kwargs)
    else:
        result = from_torch_layout(signxai.calculate_relevancemap(case["torch"], to_torch_layout(x), method,
                                                                  target=targets, dtype=dtype, **kwargs))
    assert result.dtype == np.dtype(dtype) and result.shape == x.shape
    err = rel_err(result.astype(np.float64), reference)
    assert err <= TOL[dtype], f"{key} {method} {backend} {dtype}: max|R − R_ref|/peak = {err:.3e}"
    if dtype == "float64":
        np.testing.assert_array_equal(result == 0, reference == 0)


def test_chain_input_rule_is_not_the_base_rule(chain_models):
    """The input-layer split matters on these models: prefixed chains differ from the all-base-rule chain."""
    for key, case in chain_models.items():
        x, targets = case["x"], CHAIN_TARGETS[key]
        base = reference_chain(case["layers"], x, targets, ("epsilon", {"epsilon": 0.1}), ("epsilon", {"epsilon": 0.1}))
        signed = reference_chain(case["layers"], x, targets, ("sign", {"mu": 0.0}), ("epsilon", {"epsilon": 0.1}))
        assert np.abs(base - signed).max() > 1e-2 * np.abs(base).max()
        r = signxai.calculate_relevancemap(case["keras"], x, "lrp_epsilon_0_1", target=np.array(targets),
                                           dtype="float64")
        assert rel_err(r, base) <= 1e-9
