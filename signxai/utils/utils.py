"""Helpers kept from signxai 1.x: image loading with VGG preprocessing, heatmap normalisation, softmax removal;
and sigmoid removal (docs/api.md#targets)."""
from __future__ import annotations

import numpy as np
from PIL import Image

IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


def load_image(img_path, target_size=(224, 224), expand_dims=False):
    """Load an image as ``(pil_image, x)`` with ``x`` VGG-preprocessed ('caffe': BGR, ImageNet means subtracted).

    As in signxai 1.x (Keras ``load_img``): RGB, resized with nearest-neighbour interpolation to ``target_size``
    ``(height, width)`` (``None`` keeps the size); ``x`` is float32 ``(H, W, 3)``, ``(1, H, W, 3)`` with
    ``expand_dims``, not scaled.
    """
    with Image.open(img_path) as img:
        img = img.convert("RGB")
    if target_size is not None and img.size != (target_size[1], target_size[0]):
        img = img.resize((target_size[1], target_size[0]), Image.NEAREST)
    x = np.asarray(img, dtype=np.float32)[..., ::-1] - np.asarray(IMAGENET_MEAN_BGR, dtype=np.float32)
    if expand_dims:
        x = x[None]
    return img, x


def normalize_heatmap(H):
    """``H / max|H|``, in [-1, 1]; an all-zero map stays zero."""
    H = np.asarray(H)
    peak = np.max(np.abs(H), initial=0)
    return H / peak if peak > 0 else np.zeros_like(H, dtype=np.result_type(H, np.float32))


def aggregate_and_normalize_relevancemap_rgb(R):
    """Sum a channels-last relevance map over its channels, then :func:`normalize_heatmap`."""
    return normalize_heatmap(np.asarray(R).sum(axis=-1))


def remove_softmax(model):
    """A copy of a Keras model whose softmax output activation is replaced by linear (the model is untouched)."""
    from signxai.tf_signxai.model_utils import remove_softmax as _remove_softmax
    return _remove_softmax(model)


def remove_sigmoid(model):
    """A copy of a Keras model whose output sigmoid is removed: its output is the logit (the model is untouched;
    docs/api.md#targets, D22)."""
    from signxai.tf_signxai.model_utils import remove_sigmoid as _remove_sigmoid
    return _remove_sigmoid(model)
