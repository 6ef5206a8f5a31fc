"""Two small trained demo models, as identical Keras and PyTorch twins, with held-out samples to explain.

* ``"digits"``: a CNN on scikit-learn's 8×8 handwritten digits, input ``(8, 8, 1)`` in [0, 1], 10 logits.
* ``"eeg"``: a Conv1D network that detects an injected spike in 64-step windows of matplotlib's bundled 4-channel
  EEG recording, input ``(64, 4)``, 2 logits (``background``, ``spike``).

Both were trained by ``scripts/train_demo_models.py``; each is stored once as an architecture spec with Keras-layout
weights (``signxai/data/demo_<name>.npz``) and built with :mod:`signxai.converters.spec_models`.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

from signxai._keras_torch import channels_first
from signxai.converters.spec_models import build_keras_model, build_torch_model, load_spec_npz

DEMOS = ("digits", "eeg")
FRAMEWORKS = ("keras", "torch", "both")


@dataclass(frozen=True)
class Demo:
    """A demo model (one or both twins), 64 held-out samples ``x`` (channels-last) with labels ``y``."""

    name: str
    keras_model: object
    torch_model: object
    x: np.ndarray
    y: np.ndarray
    accuracy: float  # held-out accuracy measured by the training script on the whole test set
    class_names: tuple
    spec: dict

    @property
    def x_channels_first(self) -> np.ndarray:
        """``x`` in the PyTorch twin's layout ``(N, C, ...)``."""
        return channels_first(self.x)


def load_demo(name: str = "digits", framework: str = "both") -> Demo:
    """Load the demo model ``name`` for ``framework`` (``"keras"``, ``"torch"`` or ``"both"``)."""
    if name not in DEMOS:
        raise ValueError(f"unknown demo {name!r}; choose one of {DEMOS}")
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; choose one of {FRAMEWORKS}")
    with resources.as_file(resources.files("signxai") / "data" / f"demo_{name}.npz") as path:
        spec, weights, rest = load_spec_npz(path)
    # PyTorch first: importing it after TensorFlow can crash where triton is installed.
    torch_model = build_torch_model(spec, weights) if framework in ("torch", "both") else None
    keras_model = build_keras_model(spec, weights) if framework in ("keras", "both") else None
    return Demo(name=name, keras_model=keras_model, torch_model=torch_model, x=rest["x"], y=rest["y"],
                accuracy=float(rest["accuracy"]), class_names=tuple(str(c) for c in rest["class_names"]), spec=spec)
