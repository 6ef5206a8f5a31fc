"""Model-parameter randomisation test (Adebayo et al., *Sanity Checks for Saliency Maps*, NeurIPS 2018).

The kernel layers (Dense/``nn.Linear`` and 1-3-d convolutions) are re-initialised one after the other from the output
towards the input ("cascading"), or one at a time ("independent"), on a private copy of the model, and each map of the
randomised model is compared with the original map. A method whose maps stay similar while the weights that produced
the prediction are destroyed does not explain the model.

Re-initialisation is framework-neutral, so Keras/PyTorch twins get the same randomised weights: the new kernel of a
layer is drawn in NumPy in Keras layout (Dense ``(in, out)``, convolution ``(k..., in/groups, out)``) from
``numpy.random.default_rng([seed, i])``, where i counts the kernel layers from the top, as
``N(0, σ_kernel)`` and the bias as ``N(0, σ_bias)``, where σ is the standard deviation of the layer's trained
kernel or bias (the scale of the trained layer is kept, so the randomised network's activations stay in range; a bias
that is all zeros stays zero). For PyTorch the kernel is then transposed to ``(out, in)`` / ``(out, in, k...)``, and
a ``Linear`` layer fed by a flattened ``(C, d...)`` feature map gets its rows permuted from Keras's channels-last
flatten order, as in :mod:`signxai.converters`. Normalisation layers (BatchNorm, LayerNorm, GroupNorm, ...) keep
their parameters; any other layer with weights raises ValueError. The caller's model is never modified.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from signxai._keras_torch import (channels_last_shape, conv_kernel_to_keras, conv_kernel_to_torch,
                                  dense_kernel_to_keras, dense_kernel_to_torch, keras_to_torch_flat_index,
                                  torch_to_keras_flat_index)
from signxai.metrics._common import ModelHandle, check_seed
from signxai.metrics.similarity import spearman, ssim

MODES = ("cascading", "independent")


@dataclass(frozen=True)
class RandomisationResult:
    """Similarity of each randomised map to the original one, per sample (rows) and step (columns).

    Step j randomises ``layers[j]`` (top first) — together with all layers above it (cascading), or alone
    (independent). ``spearman``: rank correlation of the signed maps; ``spearman_abs``: of ``|R|``; ``ssim``: SSIM of
    the channel-summed maps, each scaled by its largest ``|value|`` (so data range 2), for samples with at least two
    spatial axes (None otherwise). Lower = the method is more sensitive to the model's parameters, as it should be.
    """

    layers: tuple  # names of the kernel layers, top first
    mode: str
    spearman: np.ndarray  # (N, L)
    spearman_abs: np.ndarray  # (N, L)
    ssim: np.ndarray | None  # (N, L)
    targets: np.ndarray  # (N,)


# ------------------------------------------------------------------------------------------------ kernel layers
@dataclass
class _Kernel:
    """One kernel layer of a private copy: how to read and write its weights in Keras layout."""

    name: str
    shape: tuple  # Keras-layout kernel shape
    get: object  # () -> (kernel, bias or None) in Keras layout
    set: object  # (kernel, bias or None) -> None


def _keras_kernels(model) -> list:
    import keras

    kernel_types = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
    norm_types = tuple(getattr(keras.layers, n) for n in ("BatchNormalization", "LayerNormalization",
                                                          "GroupNormalization", "Normalization",
                                                          "UnitNormalization", "SpectralNormalization")
                       if hasattr(keras.layers, n))
    kernels = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.Model):
            continue
        own = list(getattr(layer, "_trainable_variables", [])) + list(getattr(layer, "_non_trainable_variables", []))
        if isinstance(layer, kernel_types):
            kernels.append(_keras_kernel(layer))
        elif own and not isinstance(layer, norm_types):
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has weights, but model-parameter "
                             f"randomisation re-initialises only Dense and Conv1D/2D/3D kernel layers (and keeps "
                             f"normalisation layers)")
    return kernels


def _keras_kernel(layer):
    def get():
        bias = None if layer.bias is None else np.asarray(layer.bias.numpy())
        return np.asarray(layer.kernel.numpy()), bias

    def set_(kernel, bias):
        layer.kernel.assign(kernel.astype(layer.kernel.dtype))
        if bias is not None:
            layer.bias.assign(bias.astype(layer.bias.dtype))

    return _Kernel(layer.name, tuple(layer.kernel.shape), get, set_)


def _torch_kernels(model, x) -> list:
    """Kernel modules of ``model`` in execution order, found by running it once on the first sample of ``x``."""
    import torch
    from torch import nn

    kernel_types = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    norm_types = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
    names = {module: name for name, module in model.named_modules()}
    records, hooks = [], []

    def hook(module, inputs, output):
        first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        records.append((module, None if first is None else tuple(first.shape[1:]),
                        tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else None))

    for module in model.modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(hook))
    flags = [(m, m.training) for m in model.modules()]
    parameter = next(iter(model.parameters()), None)
    try:
        model.eval()
        sample = torch.as_tensor(x[:1], device=parameter.device if parameter is not None else None,
                                 dtype=parameter.dtype if parameter is not None else None)
        with torch.no_grad():
            model(sample)
    finally:
        for h in hooks:
            h.remove()
        for module, training in flags:
            module.training = training

    kernels, seen = [], set()
    for i, (module, _in_shape, _out_shape) in enumerate(records):
        if module in seen:
            continue
        seen.add(module)
        own = list(module.parameters(recurse=False))
        if isinstance(module, kernel_types):
            if isinstance(module, nn.Linear):
                kernels.append(_torch_linear(names[module], module, _flattened_from(records, i, tuple(x.shape[1:]))))
            else:
                kernels.append(_torch_conv(names[module], module))
        elif own and not isinstance(module, norm_types):
            raise ValueError(f"module {names[module]!r} ({type(module).__name__}) has parameters, but model-parameter "
                             f"randomisation re-initialises only Linear and Conv1d/2d/3d kernel layers (and keeps "
                             f"normalisation layers)")
    return kernels


def _flattened_from(records, i, input_shape):
    """The channels-first (C, d...) shape a Linear's flat input was flattened from, or None."""
    features = records[i][0].in_features
    if records[i][1] is not None and len(records[i][1]) != 1:
        return None  # a Linear applied along the last axis of a larger tensor: no flatten involved
    for _, in_shape, out_shape in reversed(records[:i]):
        if in_shape == out_shape == (features,):
            continue  # elementwise module on the flat vector (activation, dropout)
        if out_shape is not None and len(out_shape) >= 2 and int(np.prod(out_shape)) == features:
            return out_shape
        if (in_shape is not None and len(in_shape) >= 2 and int(np.prod(in_shape)) == features
                and out_shape == (features,)):
            return in_shape
        return None
    if len(input_shape) >= 2 and int(np.prod(input_shape)) == features:
        return input_shape
    return None


def _torch_linear(name, module, flattened_from):
    import torch

    to_torch = to_keras = None
    if flattened_from is not None:  # the rows of the flattened input: PyTorch's (C, d...) order, Keras's (d..., C)
        to_torch = keras_to_torch_flat_index(channels_last_shape(flattened_from))
        to_keras = torch_to_keras_flat_index(flattened_from)

    def get():
        kernel = dense_kernel_to_keras(module.weight.detach().cpu().double().numpy())
        if to_keras is not None:
            kernel = kernel[to_keras]
        bias = None if module.bias is None else module.bias.detach().cpu().double().numpy()
        return kernel, bias

    def set_(kernel, bias):
        rows = kernel[to_torch] if to_torch is not None else kernel
        with torch.no_grad():
            module.weight.copy_(torch.as_tensor(np.ascontiguousarray(dense_kernel_to_torch(rows))))
            if bias is not None and module.bias is not None:
                module.bias.copy_(torch.as_tensor(bias))

    return _Kernel(name, (module.in_features, module.out_features), get, set_)


def _torch_conv(name, module):
    import torch

    def get():
        weight = module.weight.detach().cpu().double().numpy()
        bias = None if module.bias is None else module.bias.detach().cpu().double().numpy()
        return conv_kernel_to_keras(weight), bias

    def set_(kernel, bias):
        with torch.no_grad():
            module.weight.copy_(torch.as_tensor(np.ascontiguousarray(conv_kernel_to_torch(kernel))))
            if bias is not None and module.bias is not None:
                module.bias.copy_(torch.as_tensor(bias))

    shape = tuple(module.weight.shape)
    return _Kernel(name, (*shape[2:], shape[1], shape[0]), get, set_)


# ---------------------------------------------------------------------------------------------- randomisation
class _PrivateCopy:
    """A copy of the model whose kernel layers (top first) can be randomised and restored."""

    def __init__(self, handle: ModelHandle, x: np.ndarray, seed: int):
        model = handle.model
        if handle.backend.name == "pytorch":
            self.model = copy.deepcopy(model)
            kernels = _torch_kernels(self.model, x)
            state = copy.deepcopy(self.model.state_dict())
            self._restore = lambda: self.model.load_state_dict(state)
        else:
            import keras

            try:
                self.model = keras.models.clone_model(model)
            except Exception as error:  # subclassed models cannot be cloned
                raise ValueError(f"model-parameter randomisation needs a copy of the Keras model, and "
                                 f"keras.models.clone_model failed: {error}") from error
            weights = model.get_weights()
            self.model.set_weights(weights)
            kernels = _keras_kernels(self.model)
            self._restore = lambda: self.model.set_weights(weights)
        if not kernels:
            raise ValueError("the model has no Dense/Linear or convolution layer to randomise")
        self.kernels = kernels[::-1]  # top first
        self.random = [self._draw(i, k, seed) for i, k in enumerate(self.kernels)]

    @staticmethod
    def _draw(i, kernel, seed):
        original, bias = kernel.get()
        rng = np.random.default_rng([seed, i])
        new_kernel = rng.standard_normal(kernel.shape) * _std(original)
        new_bias = None if bias is None else rng.standard_normal(bias.shape) * _std(bias)
        return new_kernel, new_bias

    def randomise(self, layers):
        """Restore the trained weights, then randomise the kernel layers with these top-first indices."""
        self._restore()
        for i in layers:
            self.kernels[i].set(*self.random[i])
        return self.model


def _std(values) -> float:
    """Standard deviation that does not depend on the order of the values (Keras and PyTorch layouts agree)."""
    return float(np.std(np.sort(np.asarray(values, dtype=np.float64).ravel())))


def randomised_copy(model, X, layers: int | None = None, *, seed: int = 0):
    """A copy of ``model`` with its top ``layers`` kernel layers re-initialised (all of them by default).

    ``X`` is a batch in the model's layout; a PyTorch model runs once on its first sample to find its layers in
    execution order. Keras/PyTorch twins get identical weights (module docstring).
    """
    handle = ModelHandle(model)
    x = handle.inputs(X)
    private = _PrivateCopy(handle, x, check_seed(seed))
    count = len(private.kernels) if layers is None else layers
    if isinstance(count, (bool, np.bool_)) or not isinstance(count, (int, np.integer)) or not \
            1 <= count <= len(private.kernels):
        raise ValueError(f"layers must be an integer in 1 … {len(private.kernels)} (the model's kernel layers), "
                         f"got {layers!r}")
    return private.randomise(range(count))


def model_parameter_randomisation(model, X, method: str, *, target=None, mode: str = "cascading", seed: int = 0,
                                  explain_kwargs=None) -> RandomisationResult:
    """Adebayo et al.'s model-parameter randomisation test for ``method`` on the batch ``X``.

    The target classes are fixed once, from the trained model (default: each sample's predicted class), and the
    randomised models are explained for the same classes. See the module docstring for the re-initialisation.
    """
    if not isinstance(method, str):
        raise ValueError(f"method must be a method name (the maps of each randomised model are computed here), got "
                         f"{type(method).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    seed = check_seed(seed)
    handle = ModelHandle(model)
    x = handle.inputs(X)
    targets = handle.targets(target, handle.classifier_logits(x))
    original = handle.canonical(handle.explain(x, method, targets, explain_kwargs)).astype(np.float64)
    private = _PrivateCopy(handle, x, seed)
    spatial = original.ndim >= 4 and min(original.shape[1:-1]) >= 3  # (N, d1, d2, ..., C)
    columns = {"spearman": [], "spearman_abs": [], "ssim": []}
    for step in range(len(private.kernels)):
        layers = range(step + 1) if mode == "cascading" else [step]
        randomised = ModelHandle(private.randomise(layers))
        maps = randomised.canonical(randomised.explain(x, method, targets, explain_kwargs)).astype(np.float64)
        columns["spearman"].append(spearman(original, maps))
        columns["spearman_abs"].append(spearman(np.abs(original), np.abs(maps)))
        if spatial:
            columns["ssim"].append(ssim(_scaled(original.sum(axis=-1)), _scaled(maps.sum(axis=-1)), data_range=2.0))
    return RandomisationResult(layers=tuple(k.name for k in private.kernels), mode=mode,
                               spearman=np.stack(columns["spearman"], axis=1),
                               spearman_abs=np.stack(columns["spearman_abs"], axis=1),
                               ssim=np.stack(columns["ssim"], axis=1) if spatial else None, targets=targets)


def _scaled(maps):
    peak = np.abs(maps).reshape(len(maps), -1).max(axis=1)
    return maps / np.where(peak > 0, peak, 1.0).reshape((-1,) + (1,) * (maps.ndim - 1))
