"""Method drivers: every method family expressed through a backend's few primitives (docs/methods.md#gradient-family
… docs/lrp.md), dispatched by the family's record (docs/methods.md#families).

A backend supplies ``logits``, ``gradients`` (∂y_c/∂x of a batch), ``graph_backward`` (a signal sent through the
captured graph with a per-node mapping), ``cam_activations`` (a layer's output and its gradient) and
``channels_first``. Arrays here are batched NumPy arrays in the caller's layout.

Each family record (``signxai/methods/families.py``) names its driver by a :class:`~signxai.methods.families.Driver`
subclass; :data:`_DRIVERS` maps it to the function here, which returns the base map B before products. The wrappers
(noise tunnel, path integration) evaluate the method they wrap, ``method.inner``, on many points with
:func:`_evaluate_points`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from signxai.core import numerics
from signxai.core.layout import from_canonical, to_canonical
from signxai.core.composite import LRP, lrp_key
from signxai.core.inputs import rows
from signxai.core.rules import GuidedBackprop
from signxai.core.targets import Targets
from signxai.methods import families as f

# IG/SmoothGrad/VarGrad evaluate their points in chunks whose gradient passes need at most this many bytes
# (estimated per sample from the activations of one sample, once per model); ``batch_size=`` sets the chunk instead.
MEMORY_BUDGET = 1 << 30


@dataclass(frozen=True)
class _Run:
    """What every driver of one call shares: the backend, the model, ``batch_size=``, and whether the driver
    evaluates the base of a wrapper (on noisy or path points rather than on the caller's samples)."""

    backend: Any
    model: Any
    batch_size: int | None = None
    nested: bool = False


def explain(backend, model, x: np.ndarray, method, targets, batch_size=None) -> np.ndarray:
    """The relevance map of ``method`` for the batch ``x`` (dtype float32 or float64) and per-sample targets.

    ``targets`` is an array of classes or a :class:`signxai.core.targets.Targets` that the first pass resolves from
    its own logits. ``batch_size`` caps the samples per pass of IG/SmoothGrad/VarGrad (default: memory budget).
    """
    return _evaluate(_Run(backend, model, batch_size), x, method, targets).astype(x.dtype)


def _evaluate(run: _Run, x, method, targets):
    """B ⊙ (its product) for the batch ``x``, before the one final cast: the family's driver, then the product."""
    driver = method.family.driver
    return _apply_product(_DRIVERS[type(driver)](run, x, method, targets, driver), x, method)


def _random_uniform(run, x, method, targets, driver):
    run.backend.resolved_targets(run.model, x, targets)  # it runs no pass of its own but validates the target
    canonical = to_canonical(x, run.backend.channels_first)
    plane = numerics.random_uniform_plane(method.params.get("seed", 1), canonical.shape[1:])
    stacked = np.broadcast_to(plane, canonical.shape)
    return from_canonical(np.ascontiguousarray(stacked), run.backend.channels_first).astype(x.dtype)


def _gradient(run, x, method, targets, driver):
    return run.backend.gradients(run.model, x, targets)


def _guided_backward(run, x, method, targets, driver):
    return _guided(run.backend, run.model, x, targets, deconvnet=driver.deconvnet)


def _guided(backend, model, x, targets, deconvnet):
    return backend.graph_backward(model, x, targets, lambda graph: GuidedBackprop(deconvnet), lrp_head=False,
                                  key=("guided_backprop", deconvnet))


def _lrp(run, x, method, targets, driver):
    backend, model = run.backend, run.model
    result = backend.graph_backward(model, x, targets, lambda graph, parameters=None: LRP(method, graph, parameters),
                                    lrp_head=True,
                                    key=lambda: lrp_key(method, backend.graph_for(model, x)))
    if not run.nested:  # noisy points of a wrapper are not the caller's samples
        _warn_if_vanished(backend, model, x, targets, method, result)
    return result


def _apply_product(result, x, method):
    """``B ⊙ x`` or ``B ⊙ s_mu(x)`` in float64 (exact for float32 factors), cast once by the caller."""
    if method.product is None:
        return result
    factor = x if method.product == "input" else numerics.sign_mu(x, method.params.get("mu", 0.0))
    return result.astype(np.float64) * factor.astype(np.float64)


def _evaluate_points(run: _Run, base, points, targets):
    """The maps of the method ``base`` (with its own product) at many points (N, m, ...) with per-sample targets, in
    float64, evaluated in passes of at most ``batch_size`` points (default: as many as fit :data:`MEMORY_BUDGET`),
    split into equal chunks. The fixed inputs of a multi-input model follow their sample: each point is evaluated
    with its own sample's fixed inputs (docs/api.md#multi-input)."""
    n, m = points.shape[:2]
    flat = points.reshape((n * m,) + points.shape[2:])
    flat_targets = Targets.of(targets).repeat(m)  # D4: each sample's targets at each of its points
    sample_of = np.repeat(np.arange(n), m)  # the sample each point belongs to
    size = run.batch_size or run.backend.chunk_size(rows(run.model, sample_of[:1]), flat[:1], MEMORY_BUDGET)
    bounds = np.linspace(0, len(flat), -(-len(flat) // size) + 1).round().astype(int)
    maps = np.empty(flat.shape, dtype=np.float64)  # float32 maps convert exactly
    for begin, end in zip(bounds[:-1], bounds[1:]):
        inner = replace(run, model=rows(run.model, sample_of[begin:end]), nested=True)
        maps[begin:end] = _evaluate(inner, flat[begin:end], base, flat_targets[begin:end])
    return maps.reshape(points.shape)


def _path_integral(run, x, method, targets, driver):
    targets = run.backend.resolved_targets(run.model, x, targets)  # D4: from the unperturbed x
    params = method.params
    reference = np.asarray(params.get("reference", 0.0), dtype=x.dtype)  # a scalar, one sample, or the batch
    reference = np.broadcast_to(reference if reference.ndim == x.ndim else reference[None], x.shape)
    points = numerics.integrated_gradient_points(x, reference, params.get("steps", 50))
    mean = _evaluate_points(run, method.inner, points, targets).mean(axis=1)
    return (x - reference).astype(x.dtype).astype(np.float64) * mean


def _noise_tunnel(run, x, method, targets, driver):
    targets = run.backend.resolved_targets(run.model, x, targets)  # D4: from the unperturbed x
    params = method.params
    n = params.get("num_samples", 50)
    channels_first = run.backend.channels_first
    canonical = to_canonical(x, channels_first)
    noisy = np.empty((len(x), n) + canonical.shape[1:], dtype=x.dtype)
    for i, sample in enumerate(canonical):
        noise = numerics.noise_stream(params.get("seed", 0), n, params.get("noise_level", 0.2), sample.shape)
        noisy[i] = (sample.astype(np.float64) + noise).astype(x.dtype)
    if channels_first and x.ndim > 2:
        noisy = np.moveaxis(noisy, -1, 2)
    maps = _evaluate_points(run, method.inner, noisy, targets)
    mean = maps.mean(axis=1)
    return ((maps - mean[:, None]) ** 2).mean(axis=1) if driver.variance else mean


def _grad_cam_driver(run, x, method, targets, driver):
    return _grad_cam(run.backend, run.model, x, targets, method, guided=driver.guided)


def _grad_cam(backend, model, x, targets, method, guided):
    activation, gradient = backend.cam_activations(model, x, targets, method.params.get("layer"))
    if activation.ndim < 3:
        raise ValueError(f"the Grad-CAM layer output has shape {activation.shape[1:]} per sample: it needs at "
                         f"least one spatial axis; pass layer= a convolution layer")
    if method.timeseries and activation.ndim != 3:
        raise ValueError(f"grad_cam_timeseries needs a layer with exactly one spatial axis, but its output has "
                         f"{activation.ndim - 2}; use grad_cam for images")
    canonical = to_canonical(x, backend.channels_first)
    spatial = canonical.shape[1:-1] if canonical.ndim > 2 else canonical.shape[1:]
    if len(spatial) != activation.ndim - 2:
        raise ValueError(f"the Grad-CAM layer has {activation.ndim - 2} spatial axes but the input has "
                         f"{len(spatial)}; choose a layer whose output keeps the input's spatial axes")
    cam = numerics.resize_linear(numerics.grad_cam_map(activation, gradient), spatial)
    cam = np.broadcast_to(cam[..., None], canonical.shape) if canonical.ndim > 2 else cam
    cam = from_canonical(np.ascontiguousarray(cam), backend.channels_first)
    if guided:
        guided_map = _guided(backend, model, x, targets, deconvnet=False)
        return guided_map.astype(np.float64) * cam
    return cam


class _VanishingTracker:
    """Wraps a mapping and remembers the first node (in backward order) that turns non-zero relevance into zeros."""

    def __init__(self, mapping):
        self.mapping = mapping
        self.culprit = None
        self.forward = getattr(mapping, "forward", None)

    def __call__(self, ops, index, node, inputs, output, R):
        shares = self.mapping(ops, index, node, inputs, output, R)
        if self.culprit is None and not ops.all_zero(R):
            if all(share is None or ops.all_zero(share) for share in shares):
                self.culprit = node
        return shares


def _warn_if_vanished(backend, model, x, targets, method, result):
    """An all-zero LRP map where the gradient is not zero: say so, and name the layer where relevance vanished."""
    empty = [i for i in range(len(x)) if not np.any(result[i])]
    if not empty or (method.params.get("alpha") == 0 and method.params.get("beta") == 0):
        return  # nothing vanished, or a rule that weights everything by zero on purpose
    gradient = backend.gradients(rows(model, empty), x[empty], targets[empty])
    vanished = [i for i, g in zip(empty, gradient) if np.any(g)]
    if not vanished:
        return
    tracker = None

    def factory(graph):
        nonlocal tracker
        tracker = _VanishingTracker(LRP(method, graph))
        return tracker
    backend.graph_backward(rows(model, vanished[:1]), x[vanished[:1]], targets[vanished[:1]], factory,
                           lrp_head=True)
    where = (f" at layer {tracker.culprit.describe()}" if tracker is not None and tracker.culprit is not None
             else "")
    warnings.warn(f"{method.name}: the relevance map of sample(s) {vanished} is all zeros although the gradient is "
                  f"not; the relevance vanished{where}. Typical causes: BatchNorm statistics that do not match the "
                  f"data (activations far below the BN rule's 1e-7 stabiliser, e.g. an untrained model with default "
                  f"statistics), or an epsilon much larger than the activations.", RuntimeWarning, stacklevel=6)


_DRIVERS: dict[type[f.Driver], Callable[..., Any]] = {
    f.RandomPlane: _random_uniform, f.Gradient: _gradient, f.GuidedBackward: _guided_backward,
    f.GradCam: _grad_cam_driver, f.LrpBackward: _lrp, f.NoiseTunnel: _noise_tunnel, f.PathIntegral: _path_integral}
