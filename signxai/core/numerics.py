"""Shared NumPy numerics (docs/methods.md#numerics … docs/methods.md#grad-cam): signs, noise streams, IG points,
Grad-CAM reduction and upsampling."""
from __future__ import annotations

import numpy as np


def sign_mu(x: np.ndarray, mu: float) -> np.ndarray:
    """``s_mu(x)``: −1 where ``x < mu``, +1 elsewhere (so ``s_0(0) = +1``)."""
    return np.where(x < mu, -1.0, 1.0).astype(x.dtype)


def integrated_gradient_points(x: np.ndarray, reference, steps: int) -> np.ndarray:
    """The ``steps`` IG path points per sample, both endpoints included: shape ``(N, steps) + sample shape``."""
    reference = np.broadcast_to(np.asarray(reference, dtype=x.dtype), x.shape)
    step = ((x - reference) / x.dtype.type(steps - 1)).astype(x.dtype)
    i = np.arange(steps, dtype=x.dtype).reshape((1, steps) + (1,) * (x.ndim - 1))
    return (reference[:, None] + step[:, None] * i).astype(x.dtype)


def noise_stream(seed: int, num_samples: int, noise_level: float, canonical_shape: tuple) -> np.ndarray:
    """SmoothGrad/VarGrad noise for one sample, float64, drawn in the canonical (channels-last) layout."""
    rs = np.random.RandomState(seed)
    return rs.normal(0.0, noise_level, size=(num_samples,) + tuple(canonical_shape))


def random_uniform_plane(seed: int, canonical_shape: tuple) -> np.ndarray:
    """A U(−1, 1) plane over the non-channel axes, broadcast over channels (rank-1 samples: one value each)."""
    plane_shape = canonical_shape if len(canonical_shape) == 1 else canonical_shape[:-1]
    plane = np.random.RandomState(seed).uniform(-1.0, 1.0, size=plane_shape)
    if len(canonical_shape) == 1:
        return plane
    return np.broadcast_to(plane[..., None], canonical_shape)


def grad_cam_map(activation: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """Per-sample CAM in [0, 1] from channels-last ``(N, s..., k)`` activations and gradients (float64)."""
    activation = activation.astype(np.float64)
    spatial_axes = tuple(range(1, gradient.ndim - 1))
    alpha = gradient.astype(np.float64).mean(axis=spatial_axes, keepdims=True)
    cam = np.maximum((alpha * activation).sum(axis=-1), 0.0)
    peak = cam.reshape(len(cam), -1).max(axis=1).reshape((-1,) + (1,) * (cam.ndim - 1))
    return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)


def resize_linear(values: np.ndarray, out_shape: tuple, first_axis: int = 1) -> np.ndarray:
    """Separable linear interpolation with half-pixel centres (no antialiasing) of axes ``first_axis…``."""
    for offset, n_out in enumerate(out_shape):
        axis = first_axis + offset
        n_in = values.shape[axis]
        if n_in == n_out:
            continue
        u = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(u).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        shape = [1] * values.ndim
        shape[axis] = n_out
        t = (u - i0).reshape(shape)
        values = (1 - t) * np.take(values, i0, axis=axis) + t * np.take(values, i1, axis=axis)
    return values
