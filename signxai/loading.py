"""Loading models and inputs: the one I/O layer below the command line, :mod:`signxai.dataset` and
:mod:`signxai.evaluate`.

* **models**: Keras files (``.keras``/``.h5``), pickled PyTorch modules (``.pt``/``.pth``) and ONNX files (run as
  PyTorch via onnx2torch) with :func:`load_model`; model objects and zero-argument factories with :class:`ModelSpec`;
  the layout and per-sample input shape of a model with :class:`ModelInfo` / :func:`model_info`;
* **inputs**: an image converted to a model's input (:func:`load_image`) and a channels-last batch from an image or a
  ``.npy`` file (:func:`load_keras_batch`);
* **framework imports**: PyTorch before TensorFlow (the triton import-order trap, README) with
  :func:`import_frameworks`, and Keras/TensorFlow with its start-up logs hidden (:func:`import_keras`).

A problem with the user's file, model or input raises :class:`InputError`, whose message is one line meant for the
user (the command line prints it as ``signxai: error: ...``). Nothing here changes process-wide settings: no
environment variables, no logging configuration (the command line sets those for its own process).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from signxai._keras_torch import channels_first

KERAS_SUFFIXES = (".keras", ".h5")
TORCH_SUFFIXES = (".pt", ".pth")
MODEL_SUFFIXES = (*KERAS_SUFFIXES, *TORCH_SUFFIXES, ".onnx")


class InputError(Exception):
    """A user's file, model or input cannot be used; the message is one line for the user."""


def one_line(error) -> str:
    """An exception's message on one line (its class name if it has none)."""
    return " ".join(str(error).split()) or type(error).__name__


# ------------------------------------------------------------------------------------------------ framework imports
def import_frameworks() -> None:
    """Import PyTorch before TensorFlow where both are installed (the triton import-order trap)."""
    if find_spec("torch") is not None:
        import torch  # noqa: F401


def import_keras():
    """Import torch, then Keras/TensorFlow (the triton trap); returns ``keras``.

    TensorFlow's start-up logs are hidden: once torch is loaded they reach file descriptor 2 whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says. File descriptor 2 is pointed at ``os.devnull`` only while ``import keras`` runs
    and restored afterwards (also when the import fails).
    """
    import torch  # noqa: F401

    if "tensorflow" in sys.modules:
        import keras
        return keras
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import keras
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    return keras


def framework_of(model):
    """"pytorch", "keras" or None, without importing a framework that is not loaded."""
    if "torch" in sys.modules:
        import torch

        if isinstance(model, torch.nn.Module):
            return "pytorch"
    if "keras" in sys.modules:
        import keras

        if isinstance(model, keras.Model):
            return "keras"
    return None


# ------------------------------------------------------------------------------------------------------- models
@dataclass
class ModelInfo:
    """A model (or None, where only its layout travels) with its layout and per-sample input shape."""

    model: object
    channels_first: bool  # whether the model takes (N, C, ...) input
    input_shape: tuple | None  # per-sample, in the model's layout (None: unknown; None entries: free axes)


def load_model(path) -> ModelInfo:
    """A Keras (``.keras``/``.h5``), PyTorch (``.pt``/``.pth``: a whole pickled ``torch.nn.Module``, loaded with
    ``torch.load(weights_only=False)``: only load files you trust) or ONNX file (converted with onnx2torch)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise InputError(f"unknown model format {path.name!r}: use .keras/.h5, .pt/.pth or .onnx")
    keras = import_keras()
    import torch

    try:
        if suffix in KERAS_SUFFIXES:
            model = keras.models.load_model(path, compile=False)
            return ModelInfo(model, False, tuple(model.input_shape[1:]))
        if suffix in TORCH_SUFFIXES:
            model = torch.load(path, map_location="cpu", weights_only=False)
        else:
            return _onnx_model(path)
    except Exception as error:
        raise InputError(f"cannot load {path}: {one_line(error)}") from error
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"{path} holds a {type(model).__name__}, not a pickled torch.nn.Module (save the whole "
                         f"module with torch.save(model, path))")
    return ModelInfo(model, True, _torch_input_shape(model))


def _torch_input_shape(model):
    """``(C, None, ...)`` from the first convolution of a PyTorch module (None without one)."""
    import torch

    convs = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    conv = next((m for m in model.modules() if isinstance(m, convs)), None)
    return None if conv is None else (conv.in_channels, *[None] * len(conv.kernel_size))


def _onnx_model(path: Path) -> ModelInfo:
    import onnx

    from signxai.converters.onnx_to_torch import convert_onnx_to_torch

    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim[1:]
    shape = tuple(d.dim_value or None for d in dims)
    if None in shape:
        raise InputError(f"the ONNX model's input shape {shape} has unknown axes")
    first = len(shape) == 3 and shape[0] in (1, 3) and shape[-1] not in (1, 3)
    return ModelInfo(convert_onnx_to_torch(str(path), shape), first, shape)


def model_info(model) -> ModelInfo:
    """Layout and per-sample input shape of a model object (as :func:`load_model` infers them for files); the
    returned record holds no model, so it pickles cheaply."""
    if framework_of(model) == "keras":
        try:
            shape = model.input_shape
        except (AttributeError, ValueError):  # not built: calculate_relevancemaps says so in the probe
            shape = None
        single = isinstance(shape, tuple) and all(d is None or isinstance(d, int) for d in shape)
        return ModelInfo(None, False, tuple(shape[1:]) if single else None)
    return ModelInfo(None, True, _torch_input_shape(model))


class ModelSpec:
    """A model object, a zero-argument factory returning one, or a model file (loaded with :func:`load_model`)."""

    def __init__(self, model_or_factory):
        self.obj, self.path = model_or_factory, None
        if isinstance(model_or_factory, (str, os.PathLike)):
            self.kind, self.path, self.obj = "file", Path(model_or_factory), None
            if not self.path.is_file():
                raise ValueError(f"no such model file: {self.path}")
        elif framework_of(model_or_factory) is not None:
            self.kind = "model"
        elif callable(model_or_factory):
            self.kind = "factory"
        else:
            raise TypeError(f"model_or_factory must be a keras.Model, a torch.nn.Module, a zero-argument callable "
                            f"that returns one, or a .keras/.h5/.pt/.pth/.onnx file; got "
                            f"{type(model_or_factory).__name__}")

    def build(self):
        """``(model, info)``: the model and a picklable :class:`ModelInfo` without the model (layout, input
        shape)."""
        if self.kind == "file":
            try:
                loaded = load_model(self.path)
            except InputError as error:
                raise ValueError(str(error)) from None
            return loaded.model, ModelInfo(None, loaded.channels_first, loaded.input_shape)
        model = self.obj
        if self.kind == "factory":
            model = self.obj()
            if framework_of(model) is None:
                raise TypeError(f"the model factory returned a {type(model).__name__}, not a keras.Model or a "
                                f"torch.nn.Module")
        return model, model_info(model)


# ------------------------------------------------------------------------------------------------------- inputs
def load_image(path, loaded: ModelInfo, caffe: bool, size=None) -> np.ndarray:
    """One image sample in the model's layout.

    The image is converted to RGB or grayscale as the model's input needs, resized (bilinear) to ``size`` =
    ``(height, width)`` or else to the model's input size where it declares one (a PyTorch module declares none: the
    image keeps its size) and scaled to [0, 1]; ``caffe=True`` applies VGG 'caffe' preprocessing instead (BGR,
    ImageNet means subtracted, not scaled).
    """
    from PIL import Image

    shape = loaded.input_shape
    if shape is None or len(shape) not in (2, 3):
        raise InputError(f"the model's input shape {shape} is not that of an image; give a .npy input")
    channels, (height, width) = (None, shape) if len(shape) == 2 else \
        (shape[0], shape[1:]) if loaded.channels_first else (shape[-1], shape[:2])
    if channels not in (None, 1, 3) or (caffe and channels != 3):
        raise InputError(f"the model takes {channels} input channels; images give 1 (grayscale) or 3 (RGB"
                         f"{', which --caffe needs' if caffe else ''})")
    with Image.open(path) as image:
        size = size[::-1] if size else (width, height) if width and height else image.size
        if caffe:
            from signxai.utils.utils import load_image as load_caffe_image
            x = load_caffe_image(path, target_size=size[::-1])[1]
        else:
            image = image.convert("L" if channels in (None, 1) else "RGB").resize(size, Image.BILINEAR)
            x = np.asarray(image, dtype=np.float32) / 255
    if channels == 1:
        x = x[..., None]
    return channels_first(x, batch=False) if loaded.channels_first and x.ndim == 3 else x


def load_keras_batch(path, shape) -> np.ndarray:
    """A channels-last float32 batch for a Keras model taking ``shape`` per sample, from an image (converted by
    :func:`load_image`) or a ``.npy`` file in the Keras layout, with or without the batch axis."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        x = np.load(path)
        if x.ndim == len(shape):
            x = x[None]
        if x.ndim != len(shape) + 1 or any(d is not None and d != n for d, n in zip(shape, x.shape[1:])):
            raise InputError(f"the input has shape {x.shape}; the Keras model takes {shape} per sample "
                             f"(channels-last, batch axis optional)")
    else:
        x = load_image(path, ModelInfo(None, False, shape), caffe=False)[None]
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise InputError(f"the input {path} must hold finite numbers")
    return np.ascontiguousarray(x, dtype=np.float32)
