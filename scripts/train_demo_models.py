"""Train the two built-in demo models of ``signxai.demo`` on real data that ships offline, deterministically.

Run from the repository root::

    .venv/bin/python scripts/train_demo_models.py

It writes ``signxai/data/demo_digits.npz`` and ``signxai/data/demo_eeg.npz`` in the reference-data format
(``tests/data/reference/README.md``): ``spec`` (JSON), Keras-layout weights ``w:<layer>/<param>``, 64 held-out
samples ``x`` (channels-last float32) with labels ``y``, the held-out ``accuracy`` on the whole test set and
``class_names``. Seeds are fixed here (and only here), so a second run writes the same models.

* **digits** — scikit-learn's bundled 8×8 handwritten digits (1,797 images, scaled to [0, 1]); a fixed random split
  keeps 500 images out of training. A small CNN predicts the digit (10 logits).
* **eeg** — matplotlib's bundled ``eeg.dat`` (800 time steps × 4 channels, standardised). The recording has no
  labelled events, so the task is spike detection on a real background: class 1 windows (64 steps, 0.8 s) carry an
  injected sharp spike (a Gaussian of 4–6 standard deviations, σ = 1 step, random sign, channel and position);
  class 0 windows are the plain recording, which has sharp transients of its own (around steps 530, 590 and 690).
  Training windows come from steps 240–799 only; held-out windows come from steps 0–239, which training never
  sees, with spikes drawn from a separate random stream.

Both train for 40 epochs with AdamW (weight decay 0.1, learning rate 1e-2 with cosine decay), settings picked from a
few tried; without weight decay the EEG model overfits the short recording (held-out accuracy 0.86).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import keras
import tensorflow as tf

from signxai.converters.spec_models import build_keras_model, layer_names, random_weights

DATA_DIR = Path(__file__).resolve().parents[1] / "signxai" / "data"
N_STORED = 64
SEED = 0

DIGITS_SPEC = {"input_shape": [8, 8, 1], "layers": [
    {"kind": "conv2d", "filters": 8, "kernel": 3, "padding": "same", "activation": "relu"},
    {"kind": "maxpool2d", "pool": 2},
    {"kind": "conv2d", "filters": 16, "kernel": 3, "padding": "same", "activation": "relu"},
    {"kind": "flatten"},
    {"kind": "dense", "units": 32, "activation": "relu"},
    {"kind": "dense", "units": 10},
]}

EEG_WINDOW = 64
EEG_TEST_END = 240  # steps [0, 240) held out, [240, 800) train
EEG_SPEC = {"input_shape": [EEG_WINDOW, 4], "layers": [
    {"kind": "conv1d", "filters": 16, "kernel": 5, "padding": "same"},
    {"kind": "activation", "activation": "elu"},
    {"kind": "maxpool1d", "pool": 2},
    {"kind": "conv1d", "filters": 16, "kernel": 5, "padding": "same", "activation": "relu"},
    {"kind": "gap1d"},
    {"kind": "dense", "units": 2},
]}


def digits_data():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    order = np.random.RandomState(SEED).permutation(len(x))
    test, train = order[:500], order[500:]
    return (x[train], digits.target[train]), (x[test], digits.target[test])


def eeg_recording() -> np.ndarray:
    import matplotlib.cbook as cbook

    with cbook.get_sample_data("eeg.dat") as f:
        data = np.frombuffer(f.read(), dtype="<f8").reshape(800, 4)
    return (data - data.mean(axis=0)) / data.std(axis=0)


def eeg_windows(recording, start, stop, n, rng):
    """``n`` windows from ``recording[start:stop]``, half of them (label 1) with an injected spike."""
    starts = rng.randint(start, stop - EEG_WINDOW + 1, size=n)
    x = np.stack([recording[s:s + EEG_WINDOW] for s in starts])
    y = np.arange(n) % 2
    t = np.arange(EEG_WINDOW)
    for i in np.flatnonzero(y):
        centre = rng.randint(8, EEG_WINDOW - 8)
        amplitude = rng.uniform(4, 6) * rng.choice([-1, 1])
        x[i, :, rng.randint(4)] += amplitude * np.exp(-0.5 * (t - centre) ** 2)
    order = rng.permutation(n)
    return x[order].astype(np.float32), y[order]


def eeg_data():
    recording = eeg_recording()
    train = eeg_windows(recording, EEG_TEST_END, len(recording), 2000, np.random.RandomState(SEED))
    test = eeg_windows(recording, 0, EEG_TEST_END, 1000, np.random.RandomState(SEED + 1))
    return train, test


def train(spec, train_set, epochs=40, learning_rate=1e-2, weight_decay=0.1, batch_size=32):
    """Fit a Keras model of ``spec`` with AdamW and a cosine learning-rate decay."""
    keras.utils.set_random_seed(SEED)
    model = build_keras_model(spec, random_weights(spec, seed=SEED))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * -(-len(train_set[1]) // batch_size))
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=weight_decay),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(*train_set, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
    return model


def keras_layout_weights(spec, model) -> dict:
    """``{"w:<layer>/<param>": array}`` for every layer with weights, in the spec's parameter order."""
    params = {"dense": ("kernel", "bias"), "conv1d": ("kernel", "bias"), "conv2d": ("kernel", "bias")}
    weights = {}
    for name, layer, klayer in zip(layer_names(spec), spec["layers"], model.layers):
        for param, value in zip(params.get(layer["kind"], ()), klayer.get_weights()):
            weights[f"w:{name}/{param}"] = value.astype(np.float32)
    return weights


def save_demo(name, spec, model, test_set, class_names):
    x_test, y_test = test_set
    predicted = np.argmax(model.predict(x_test, verbose=0), axis=-1)
    accuracy = float(np.mean(predicted == y_test))
    path = DATA_DIR / f"demo_{name}.npz"
    np.savez_compressed(path, spec=json.dumps(spec), **keras_layout_weights(spec, model),
                        x=x_test[:N_STORED], y=y_test[:N_STORED].astype(np.int64), accuracy=accuracy,
                        class_names=np.array(class_names))
    print(f"{name}: held-out accuracy {accuracy:.4f} on {len(y_test)} samples "
          f"({np.mean(predicted[:N_STORED] == y_test[:N_STORED]):.4f} on the {N_STORED} stored); "
          f"{path.stat().st_size / 1024:.0f} kB -> {path}")


def main():
    tf.config.experimental.enable_op_determinism()
    DATA_DIR.mkdir(exist_ok=True)
    train_set, test_set = digits_data()
    save_demo("digits", DIGITS_SPEC, train(DIGITS_SPEC, train_set), test_set, [str(d) for d in range(10)])
    train_set, test_set = eeg_data()
    save_demo("eeg", EEG_SPEC, train(EEG_SPEC, train_set), test_set, ["background", "spike"])


if __name__ == "__main__":
    main()
