"""Train the models of the SIGN paper's MNIST experiment on scikit-learn's bundled 8×8 digits, deterministically.

Run from the repository root::

    .venv/bin/python scripts/train_sign_experiment.py

Gumpfer et al. (*SIGNed explanations*, Information Fusion 2023) train a Dense and a CNN model on MNIST in three
input ranges, each with normal and inverted intensities (12 models: ``DENSEMNIST01``, ``CNNMNIST10INV``, …). This
script does the same offline, on the 1,797 images of ``sklearn.datasets.load_digits`` (pixel values 0…16, scaled to
``v ∈ [0, 1]``) with a fixed split that keeps 500 images out of training (the split of the built-in demo):

| variant | input    | normal: background / stroke | inverted |
|---------|----------|-----------------------------|----------|
| ``01``  | [0, 1]   | ``v``: 0 / 1                | ``1 − v``: 1 / 0   |
| ``10``  | [−1, 0]  | ``−v``: 0 / −1              | ``v − 1``: −1 / 0  |
| ``11``  | [−1, 1]  | ``2v − 1``: −1 / 1          | ``1 − 2v``: 1 / −1 |

As in the paper, the training set is augmented with the four diagonal one-pixel shifts of every image (filled with the
background value) and with salt-and-pepper noise (10 % of the pixels set to the image's minimum, 10 % to its maximum),
which keeps the models from being thrown by the noise that pixel flipping inserts. The architectures are the paper's,
scaled to 8×8 inputs (CNN: two 3×3 convolutions with 16 and 32 filters, each followed by 2×2 max pooling, then three
Dense layers 64–64–10; Dense: 128–128–10), with dropout 0.1 instead of the paper's 0.25 (on 1,297 training images
0.25 cost the CNNs 3–6 points of accuracy). The softmax is left out: signxai explains logits, and the metrics apply the
softmax themselves. Training: Adam, learning rate 5e-3 with cosine decay, 40 epochs, batch 128.

It writes ``signxai/data/sign_experiment/<NET>_<variant>[_INV].npz`` (reference-data format: ``spec`` JSON,
Keras-layout weights ``w:<layer>/<param>``, ``accuracy`` on the 500 held-out images, ``variant``, ``inverted``,
``low``/``high`` of the input range) and ``digits_test.npz`` (the held-out images as integers 0…16 and their labels).
Seeds are fixed here and only here, so a second run writes the same models.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

import keras
import tensorflow as tf

from signxai.converters.spec_models import build_keras_model, layer_names, random_weights
from signxai.evaluate import VARIANTS, transform  # the input ranges, shared with `signxai evaluate`

OUT_DIR = Path(__file__).resolve().parents[1] / "signxai" / "data" / "sign_experiment"
SEED = 0
N_TEST = 500

NETS = {
    "CNN": {"input_shape": [8, 8, 1], "layers": [
        {"kind": "conv2d", "filters": 16, "kernel": 3, "padding": "same", "activation": "relu"},
        {"kind": "maxpool2d", "pool": 2},
        {"kind": "conv2d", "filters": 32, "kernel": 3, "padding": "same", "activation": "relu"},
        {"kind": "maxpool2d", "pool": 2},
        {"kind": "flatten"},
        {"kind": "dropout", "rate": 0.1},
        {"kind": "dense", "units": 64, "activation": "relu"},
        {"kind": "dropout", "rate": 0.1},
        {"kind": "dense", "units": 64, "activation": "relu"},
        {"kind": "dropout", "rate": 0.1},
        {"kind": "dense", "units": 10},
    ]},
    "DENSE": {"input_shape": [8, 8, 1], "layers": [
        {"kind": "flatten"},
        {"kind": "dense", "units": 128, "activation": "relu"},
        {"kind": "dropout", "rate": 0.1},
        {"kind": "dense", "units": 128, "activation": "relu"},
        {"kind": "dense", "units": 10},
    ]},
}


def digits_split():
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.RandomState(SEED).permutation(len(digits.images))
    test, train = order[:N_TEST], order[N_TEST:]
    return (digits.images[train], digits.target[train]), (digits.images[test], digits.target[test])


def shifted(x: np.ndarray, fill: float) -> np.ndarray:
    """``x`` (N, 8, 8) and its four diagonal one-pixel shifts, filled with ``fill``: (5N, 8, 8)."""
    out = [x]
    for dy, dx in ((-1, 1), (-1, -1), (1, 1), (1, -1)):
        y = np.full_like(x, fill)
        ys, yd = (slice(1, None), slice(None, -1)) if dy < 0 else (slice(None, -1), slice(1, None))
        xs, xd = (slice(1, None), slice(None, -1)) if dx < 0 else (slice(None, -1), slice(1, None))
        y[:, yd, xd] = x[:, ys, xs]
        out.append(y)
    return np.concatenate(out)


def salt_and_pepper(x: np.ndarray, rng, prob: float = 0.1) -> np.ndarray:
    flat = x.reshape(len(x), -1)
    low, high = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    u = rng.random_sample(flat.shape)
    noisy = np.where(u < prob, low, np.where(u > 1 - prob, high, flat))
    return noisy.reshape(x.shape).astype(np.float32)


def training_set(images, labels, variant, inverted):
    x = transform(images / 16.0, variant, inverted)
    background = float(transform(np.zeros(1), variant, inverted)[0])
    x = shifted(x, background)
    y = np.tile(labels, 5)
    x = salt_and_pepper(x, np.random.RandomState(SEED))
    return x[..., None], y


def train(spec, x, y, epochs=40, learning_rate=5e-3, batch_size=128):
    keras.utils.set_random_seed(SEED)
    model = build_keras_model(spec, random_weights(spec, seed=SEED, bias_scale=0.0))
    steps = epochs * -(-len(y) // batch_size)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
    return model


def keras_layout_weights(spec, model) -> dict:
    params = {"dense": ("kernel", "bias"), "conv2d": ("kernel", "bias")}
    weights = {}
    for name, layer, klayer in zip(layer_names(spec), spec["layers"], model.layers):
        for param, value in zip(params.get(layer["kind"], ()), klayer.get_weights()):
            weights[f"w:{name}/{param}"] = value.astype(np.float32)
    return weights


def main():
    tf.config.experimental.enable_op_determinism()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (train_images, train_labels), (test_images, test_labels) = digits_split()
    np.savez_compressed(OUT_DIR / "digits_test.npz", images=test_images.astype(np.uint8),
                        labels=test_labels.astype(np.int64))
    for net, spec in NETS.items():
        for variant, (low, high) in VARIANTS.items():
            for inverted in (False, True):
                name = f"{net}_{variant}{'_INV' if inverted else ''}"
                start = time.perf_counter()
                model = train(spec, *training_set(train_images, train_labels, variant, inverted))
                x_test = transform(test_images / 16.0, variant, inverted)[..., None]
                predicted = np.argmax(model.predict(x_test, verbose=0), axis=-1)
                accuracy = float(np.mean(predicted == test_labels))
                path = OUT_DIR / f"{name}.npz"
                np.savez_compressed(path, spec=json.dumps(spec), **keras_layout_weights(spec, model),
                                    accuracy=accuracy, variant=variant, inverted=inverted, low=low, high=high)
                print(f"{name:<13} held-out accuracy {accuracy:.4f}  {path.stat().st_size / 1024:5.0f} kB  "
                      f"{time.perf_counter() - start:5.1f} s")


if __name__ == "__main__":
    main()
