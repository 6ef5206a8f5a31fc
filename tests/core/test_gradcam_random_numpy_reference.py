"""Grad-CAM, guided Grad-CAM and random_uniform against independent NumPy references
(docs/methods.md#random-uniform, §6).

These methods have no signxai 1.x reference (D11, D12, D13, D17). The references here take only the activation map
``A`` and ``∂y_c/∂A`` from plain framework autodiff — a Keras sub-model ``keras.Model(model.inputs, [layer.output,
model.outputs[0]])`` under ``tf.GradientTape``, and a PyTorch forward hook with ``torch.autograd.grad`` — on float64
copies of the models built here; the α mean, ReLU, max normalisation and half-pixel linear upsampling are written in
NumPy below (the upsampling as explicit interpolation matrices, cross-checked against
``torch.nn.functional.interpolate(align_corners=False)``).

Tolerances (docs/equivalence.md#agreement-gates): float64 results ≤ 1e-9 · peak|ref|,
float32 results ≤ 1e-5 · peak|ref|.
"""
# torch must be imported before TensorFlow (see NOTES.md: triton/LLVM segfault trap).
import torch
import torch.nn.functional as F

import keras
import numpy as np
import pytest
import tensorflow as tf

import signxai
from signxai.converters.spec_models import build_keras_model, build_torch_model, random_weights

TOL = {"float64": 1e-9, "float32": 1e-5}

SPEC_2D = {"input_shape": [12, 10, 3],
           "layers": [{"kind": "conv2d", "filters": 4, "kernel": 3, "padding": "same", "activation": "relu"},
                      {"kind": "maxpool2d", "pool": 2},
                      {"kind": "conv2d", "filters": 5, "kernel": 3, "padding": "same", "activation": "relu"},
                      {"kind": "flatten"},
                      {"kind": "dense", "units": 4}]}
SPEC_1D = {"input_shape": [20, 2],
           "layers": [{"kind": "conv1d", "filters": 4, "kernel": 3, "padding": "same", "activation": "relu"},
                      {"kind": "maxpool1d", "pool": 2},
                      {"kind": "conv1d", "filters": 3, "kernel": 3, "padding": "valid", "activation": "relu"},
                      {"kind": "flatten"},
                      {"kind": "dense", "units": 3}]}
SPEC_DENSE = {"input_shape": [5], "layers": [{"kind": "dense", "units": 4}]}

# Keras layer name -> the PyTorch module whose output is the same A (the conv's fused ReLU is a separate module)
TORCH_A_MODULE = {"conv2d_0": "conv2d_0_relu", "conv2d_2": "conv2d_2_relu", "conv1d_0": "conv1d_0_relu",
                  "conv1d_2": "conv1d_2_relu"}


# ----------------------------------------------------------------------------------------------------------------
# NumPy reference
# ----------------------------------------------------------------------------------------------------------------

def interpolation_matrix(n_in, n_out):
    """(n_out × n_in) half-pixel linear interpolation, no antialiasing, edges clamped (docs/methods.md#upsampling)."""
    M = np.zeros((n_out, n_in))
    for i in range(n_out):
        u = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1.0)
        i0 = int(np.floor(u))
        i1 = min(i0 + 1, n_in - 1)
        t = u - i0
        M[i, i0] += 1.0 - t
        M[i, i1] += t
    return M


def upsample(cam, out_shape):
    """Separable linear resize of the spatial axes of one map ``cam`` (s₁…s_q), axes in increasing order."""
    cam = np.asarray(cam, dtype=np.float64)
    for axis, n_out in enumerate(out_shape):
        M = interpolation_matrix(cam.shape[axis], n_out)
        cam = np.moveaxis(np.tensordot(M, np.moveaxis(cam, axis, 0), axes=1), 0, axis)
    return cam


def cam_reference(A, g, spatial_out):
    """Per sample: α_k = mean g[..., k]; cam = ReLU(Σ_k α_k A_k); cam / max(cam) (0 if max ≤ 0); upsample.

    ``A``, ``g``: channels-last ``(N, s…, k)``. Returns ``(cams (N, spatial_out), raw pre-ReLU maps)``.
    """
    cams, raws = [], []
    for a, grad in zip(np.asarray(A, np.float64), np.asarray(g, np.float64)):
        k = a.shape[-1]
        alpha = grad.reshape(-1, k).mean(axis=0)
        raw = np.zeros(a.shape[:-1])
        for j in range(k):
            raw = raw + alpha[j] * a[..., j]
        cam = np.maximum(raw, 0.0)
        peak = cam.max()
        cam = cam / peak if peak > 0 else np.zeros_like(cam)
        cams.append(upsample(cam, spatial_out))
        raws.append(raw)
    return np.stack(cams), np.stack(raws)


def keras_A_and_grad(model64, layer_name, x, targets):
    layer = model64.get_layer(layer_name)
    sub = keras.Model(model64.inputs, [layer.output, model64.outputs[0]])
    xt = tf.constant(np.asarray(x, dtype=np.float64))
    with tf.GradientTape() as tape:
        A, y = sub(xt, training=False)
        selected = tf.reduce_sum(y * tf.one_hot(np.asarray(targets), y.shape[-1], dtype=y.dtype))
    g = tape.gradient(selected, A)
    return A.numpy(), g.numpy()


def torch_A_and_grad(model64, module_name, x_channels_first, targets):
    captured = {}
    module = dict(model64.named_modules())[module_name]
    handle = module.register_forward_hook(lambda mod, inp, out: captured.__setitem__("A", out))
    try:
        xt = torch.tensor(np.asarray(x_channels_first, dtype=np.float64))
        y = model64(xt)
        selected = (y * F.one_hot(torch.as_tensor(np.asarray(targets)), y.shape[-1]).to(y.dtype)).sum()
        (g,) = torch.autograd.grad(selected, captured["A"])
    finally:
        handle.remove()
    # channels-first (N, k, s…) -> channels-last (N, s…, k)
    return np.moveaxis(captured["A"].detach().numpy(), 1, -1), np.moveaxis(g.numpy(), 1, -1)


def to_torch_layout(x):
    return np.moveaxis(x, -1, 1) if x.ndim > 2 else x


def from_torch_layout(r):
    return np.moveaxis(r, 1, -1) if r.ndim > 2 else r


def rel_err(result, reference):
    peak = np.abs(reference).max()
    assert peak > 0 and np.isfinite(peak)
    return np.abs(np.asarray(result, np.float64) - reference).max() / peak


# ----------------------------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------------------------

def _case(spec, seed, n, weights=None):
    weights = weights if weights is not None else random_weights(spec, seed=seed, bias_scale=0.1)
    x = np.random.RandomState(seed + 1000).uniform(-1.0, 1.0, size=(n,) + tuple(spec["input_shape"]))
    return {"spec": spec, "weights": weights, "x": x.astype(np.float32),
            "keras": build_keras_model(spec, weights), "torch": build_torch_model(spec, weights),
            "keras64": build_keras_model(spec, weights, "float64"),
            "torch64": build_torch_model(spec, weights, "float64")}


@pytest.fixture(scope="module")
def cnn2d():
    return _case(SPEC_2D, seed=6, n=3)


@pytest.fixture(scope="module")
def cnn1d():
    return _case(SPEC_1D, seed=6, n=3)


TARGETS_2D = np.array([0, 3, 1])
TARGETS_1D = np.array([2, 0, 1])


def reference_cams(case, backend, layer_name, targets):
    """The reference CAM (N, spatial of x), A and ∂y_c/∂A taken with ``backend``'s own autodiff (float64)."""
    x = case["x"]
    if backend == "keras":
        A, g = keras_A_and_grad(case["keras64"], layer_name, x, targets)
    else:
        A, g = torch_A_and_grad(case["torch64"], TORCH_A_MODULE[layer_name], to_torch_layout(x), targets)
    cams, raws = cam_reference(A, g, tuple(case["spec"]["input_shape"][:-1]))
    return cams, raws


def run(case, backend, method, targets, dtype, **kwargs):
    """signxai on ``backend`` with x in that backend's layout; the result is returned channels-last."""
    if backend == "keras":
        result = signxai.calculate_relevancemap(case["keras"], case["x"], method, target=targets, dtype=dtype,
                                                **kwargs)
        assert result.shape == case["x"].shape
    else:
        xt = to_torch_layout(case["x"])
        result = signxai.calculate_relevancemap(case["torch"], xt, method, target=targets, dtype=dtype, **kwargs)
        assert result.shape == xt.shape
        result = from_torch_layout(result)
    assert result.dtype == np.dtype(dtype)
    assert np.isfinite(result).all()
    return result


# ----------------------------------------------------------------------------------------------------------------
# Upsampling reference
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("in_shape,out_shape", [((6, 5), (12, 10)), ((3, 7), (11, 4)), ((4, 4), (4, 4)),
                                                ((1, 3), (5, 9)), ((5, 2), (5, 13))])
def test_bilinear_upsampling_matches_torch_interpolate(in_shape, out_shape):
    v = np.random.RandomState(0).uniform(0.0, 1.0, size=in_shape)
    ours = upsample(v, out_shape)
    theirs = F.interpolate(torch.tensor(v)[None, None], size=out_shape, mode="bilinear",
                           align_corners=False, antialias=False)[0, 0].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-14)
    if in_shape == out_shape:
        np.testing.assert_array_equal(ours, v)


@pytest.mark.parametrize("n_in,n_out", [(8, 20), (10, 20), (7, 3), (5, 5), (1, 4)])
def test_linear_upsampling_matches_torch_interpolate(n_in, n_out):
    v = np.random.RandomState(1).uniform(0.0, 1.0, size=(n_in,))
    ours = upsample(v, (n_out,))
    theirs = F.interpolate(torch.tensor(v)[None, None], size=n_out, mode="linear",
                           align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-14)


# ----------------------------------------------------------------------------------------------------------------
# Grad-CAM
# ----------------------------------------------------------------------------------------------------------------

def test_reference_A_and_gradient_agree_across_frameworks(cnn2d, cnn1d):
    """The two autodiff references see the same A and ∂y_c/∂A (the twins are identical models)."""
    for case, layer, targets in ((cnn2d, "conv2d_2", TARGETS_2D), (cnn2d, "conv2d_0", TARGETS_2D),
                                 (cnn1d, "conv1d_2", TARGETS_1D)):
        Ak, gk = keras_A_and_grad(case["keras64"], layer, case["x"], targets)
        At, gt = torch_A_and_grad(case["torch64"], TORCH_A_MODULE[layer], to_torch_layout(case["x"]), targets)
        assert rel_err(At, Ak) <= 1e-12 and rel_err(gt, gk) <= 1e-12
        assert (Ak > 0).any() and (Ak == 0).any()  # the ReLU is part of A


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["keras", "torch"])
@pytest.mark.parametrize("layer", [None, "conv2d_2", "conv2d_0"])
def test_grad_cam_2d(cnn2d, layer, backend, dtype):
    """Default layer = last conv (6×5 map, upsampled to 12×10); conv2d_0 keeps 12×10 (identity upsampling)."""
    cams, raws = reference_cams(cnn2d, backend, layer or "conv2d_2", TARGETS_2D)
    for cam, raw in zip(cams, raws):  # non-trivial maps: some positive and some clipped positions
        assert cam.max() > 0 and (raw < 0).any()
    kwargs = {} if layer is None else {"layer": layer}
    result = run(cnn2d, backend, "grad_cam", TARGETS_2D, dtype, **kwargs)
    expected = np.broadcast_to(cams[..., None], result.shape)
    assert 0.0 <= result.min() and result.max() <= 1.0
    err = rel_err(result, expected)
    assert err <= TOL[dtype], f"grad_cam layer={layer} {backend} {dtype}: {err:.3e}"
    if layer == "conv2d_0":  # no resize: the per-sample maximum is exactly 1
        np.testing.assert_allclose(result.reshape(len(result), -1).max(axis=1), 1.0, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_grad_cam_timeseries(cnn1d, backend, dtype):
    """Conv1D model: last conv output has 8 steps (valid conv after pooling), linearly upsampled to 20."""
    cams, raws = reference_cams(cnn1d, backend, "conv1d_2", TARGETS_1D)
    for cam in cams:
        assert cam.max() > 0
    result = run(cnn1d, backend, "grad_cam_timeseries", TARGETS_1D, dtype)
    expected = np.broadcast_to(cams[..., None], result.shape)
    err = rel_err(result, expected)
    assert err <= TOL[dtype], f"grad_cam_timeseries {backend} {dtype}: {err:.3e}"
    # plain grad_cam on the same model gives the same map
    np.testing.assert_array_equal(run(cnn1d, backend, "grad_cam", TARGETS_1D, dtype), result)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["keras", "torch"])
@pytest.mark.parametrize("model", ["cnn2d", "cnn1d"])
def test_guided_grad_cam(request, model, backend, dtype):
    """guided_grad_cam = GBP_c (signxai's guided_backprop, seed 1) ⊙ the reference CAM↑, channel-broadcast."""
    case = request.getfixturevalue(model)
    targets, layer = (TARGETS_2D, "conv2d_2") if model == "cnn2d" else (TARGETS_1D, "conv1d_2")
    cams, _ = reference_cams(case, backend, layer, targets)
    gbp = run(case, backend, "guided_backprop", targets, dtype).astype(np.float64)
    assert np.abs(gbp).max() > 0
    expected = gbp * cams[..., None]
    result = run(case, backend, "guided_grad_cam", targets, dtype)
    err = rel_err(result, expected)
    assert err <= TOL[dtype], f"guided_grad_cam {model} {backend} {dtype}: {err:.3e}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_non_positive_cam_gives_zeros_not_nan(cnn2d, backend, dtype):
    """If every Σ_k α_k A_k ≤ 0 the CAM is all zeros (no 0/0): the dense column of class 0 is made all negative,
    so ∂y_0/∂A < 0 everywhere (A = ReLU(conv) feeds Flatten → Dense) and every α_k < 0. Sample 1 (class 3) is
    unaffected and still normalised to its own maximum."""
    weights = {k: v.copy() for k, v in cnn2d["weights"].items()}
    weights["dense_4/kernel"][:, 0] = -np.abs(weights["dense_4/kernel"][:, 0]) - 0.01
    case = _case(SPEC_2D, seed=6, n=2, weights=weights)
    targets = np.array([0, 3])
    cams, raws = reference_cams(case, backend, "conv2d_2", targets)
    assert (raws[0] < 0).any() and (raws[0] <= 0).all()  # the construction works: A is not all zero
    assert (cams[0] == 0).all() and cams[1].max() > 0
    for method in ("grad_cam", "guided_grad_cam"):
        result = run(case, backend, method, targets, dtype)
        assert (result[0] == 0).all(), f"{method} {backend} {dtype}: non-zero map for a non-positive CAM"
    result = run(case, backend, "grad_cam", targets, dtype)
    assert rel_err(result[1], np.broadcast_to(cams[1][..., None], result[1].shape)) <= TOL[dtype]


# ----------------------------------------------------------------------------------------------------------------
# random_uniform
# ----------------------------------------------------------------------------------------------------------------

def uniform_reference(seed, canonical_sample_shape):
    """U(−1,1) over the non-channel axes (all axes for a rank-1 sample), broadcast over channels, channels-last."""
    shape = tuple(canonical_sample_shape)
    if len(shape) == 1:
        return np.random.RandomState(seed).uniform(-1, 1, size=shape)
    plane = np.random.RandomState(seed).uniform(-1, 1, size=shape[:-1])
    return np.repeat(plane[..., None], shape[-1], axis=-1)


@pytest.fixture(scope="module")
def dense_models():
    weights = random_weights(SPEC_DENSE, seed=0)
    return {"keras": build_keras_model(SPEC_DENSE, weights), "torch": build_torch_model(SPEC_DENSE, weights)}


@pytest.mark.parametrize("seed", [None, 5])
@pytest.mark.parametrize("backend", ["keras", "torch"])
@pytest.mark.parametrize("model", ["cnn2d", "cnn1d", "dense"])
def test_random_uniform(request, model, backend, seed):
    if model == "dense":
        models = request.getfixturevalue("dense_models")
        x = np.random.RandomState(9).normal(size=(3, 5)).astype(np.float32)
        net, xb = models[backend], x
    else:
        case = request.getfixturevalue(model)
        net = case[backend]
        xb = case["x"] if backend == "keras" else to_torch_layout(case["x"])
    kwargs = {} if seed is None else {"seed": seed}
    canonical_shape = xb.shape[1:] if (backend == "keras" or xb.ndim == 2) else xb.shape[2:] + xb.shape[1:2]
    U = uniform_reference(1 if seed is None else seed, canonical_shape)
    expected_sample = U if (backend == "keras" or xb.ndim == 2) else np.moveaxis(U, -1, 0)

    result = signxai.calculate_relevancemap(net, xb, "random_uniform", **kwargs)
    assert result.dtype == np.float32 and result.shape == xb.shape
    for sample in result:  # every sample of a batch gets the same plane
        np.testing.assert_array_equal(sample, expected_sample.astype(np.float32))
    # the target is validated and ignored
    np.testing.assert_array_equal(signxai.calculate_relevancemap(net, xb, "random_uniform", target=2, **kwargs),
                                  result)
    with pytest.raises(ValueError):
        signxai.calculate_relevancemap(net, xb, "random_uniform", target=99, **kwargs)
    # float64: the same draw, kept in float64
    result64 = signxai.calculate_relevancemap(net, xb, "random_uniform", dtype="float64", **kwargs)
    assert result64.dtype == np.float64
    for sample in result64:
        np.testing.assert_array_equal(sample, expected_sample)
    # one sample without a batch axis (for Keras, and for PyTorch conv models)
    if model != "dense":
        single = signxai.calculate_relevancemap(net, xb[0], "random_uniform", **kwargs)
        np.testing.assert_array_equal(single, expected_sample.astype(np.float32))


def test_random_uniform_is_layout_consistent(cnn2d):
    """The PyTorch map is the Keras map with the channel axis moved first (canonical draw,
    docs/methods.md#random-uniform)."""
    rk = signxai.calculate_relevancemap(cnn2d["keras"], cnn2d["x"], "random_uniform")
    rt = signxai.calculate_relevancemap(cnn2d["torch"], to_torch_layout(cnn2d["x"]), "random_uniform")
    np.testing.assert_array_equal(from_torch_layout(rt), rk)
    plane = rk[0, ..., 0]
    assert plane.shape == (12, 10) and -1 <= plane.min() < 0 < plane.max() <= 1
