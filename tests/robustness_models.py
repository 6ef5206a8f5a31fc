"""Tiny Keras/PyTorch twins and helpers for the robustness tests (tests/test_robustness_*.py).

torch is imported before TensorFlow on purpose (NOTES.md: with triton installed, importing ``torch._dynamo`` after
TensorFlow segfaults).
"""
from __future__ import annotations

import copy

import torch  # noqa: F401  (must come before tensorflow)
import torch.nn.functional as F
from torch import nn

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers as L  # noqa: E402

from signxai.converters.spec_models import build_keras_model, build_torch_model, random_weights  # noqa: E402

BACKENDS = ("keras", "torch")
K = 4  # classes of every model here

# Conv → MaxPool → Flatten → Dense: has a convolution for Grad-CAM; the sample rank is fixed by the Conv2d.
CNN_SPEC = {"input_shape": [6, 6, 2], "layers": [
    {"kind": "conv2d", "filters": 3, "kernel": 3, "padding": "same", "activation": "relu"},
    {"kind": "maxpool2d", "pool": 2},
    {"kind": "flatten"},
    {"kind": "dense", "units": K},
]}
# Dense only: a PyTorch twin without a leading convolution (batched unless x is 1-D, docs/api.md#batch-axis).
MLP_SPEC = {"input_shape": [5], "layers": [
    {"kind": "dense", "units": 6, "activation": "relu"},
    {"kind": "dense", "units": K},
]}
CNN_WEIGHTS = random_weights(CNN_SPEC, seed=1)
MLP_WEIGHTS = random_weights(MLP_SPEC, seed=2)


def cnn(backend: str):
    """A fresh tiny CNN of ``backend`` ('keras' or 'torch'); both backends share the same weights."""
    build = build_keras_model if backend == "keras" else build_torch_model
    return build(CNN_SPEC, CNN_WEIGHTS)


def mlp(backend: str):
    build = build_keras_model if backend == "keras" else build_torch_model
    return build(MLP_SPEC, MLP_WEIGHTS)


def images(n: int = 3, seed: int = 0) -> np.ndarray:
    """``n`` channels-last (6, 6, 2) float32 samples."""
    return np.random.RandomState(seed).normal(size=(n, 6, 6, 2)).astype(np.float32)


def vectors(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).normal(size=(n, 5)).astype(np.float32)


def layout(x: np.ndarray, backend: str, batched: bool = True) -> np.ndarray:
    """A channels-last array in ``backend``'s layout (PyTorch: channels first), C-contiguous."""
    if backend == "torch" and x.ndim - batched >= 2:
        x = np.moveaxis(x, -1, 1 if batched else 0)
    return np.ascontiguousarray(x)


def cnn_input(backend: str, n: int = 3, seed: int = 0) -> np.ndarray:
    return layout(images(n, seed), backend)


def rel_error(actual, expected) -> float:
    """max |actual − expected| relative to the peak of ``expected`` (docs/equivalence.md#agreement-gates style)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    peak = np.abs(expected).max()
    return float(np.abs(actual - expected).max() / (peak if peak > 0 else 1.0))


def assert_close(actual, expected, tol: float = 1e-5):
    error = rel_error(actual, expected)
    assert error <= tol, f"relative-to-peak error {error:.3g} > {tol}"


# --- models with a softmax left in (docs/api.md#model-requirements) ---------------------------------------------------

def keras_softmax_models() -> dict:
    """name -> a Keras CNN whose output goes through some form of softmax."""
    def base():
        return [keras.Input((6, 6, 2)), L.Conv2D(3, 3, padding="same", activation="relu"), L.Flatten()]

    inner = keras.Sequential([keras.Input((72,)), L.Dense(K, activation="softmax")], name="inner_head")
    nested_in = keras.Input((6, 6, 2))
    nested = keras.Model(nested_in, inner(L.Flatten()(L.Conv2D(2, 3, padding="same", activation="relu")(nested_in))))
    return {
        "Dense(activation='softmax')": keras.Sequential(base() + [L.Dense(K, activation="softmax")]),
        "Dense(activation='log_softmax')": keras.Sequential(base() + [L.Dense(K, activation="log_softmax")]),
        "Softmax layer": keras.Sequential(base() + [L.Dense(K), L.Softmax()]),
        "Activation('softmax') layer": keras.Sequential(base() + [L.Dense(K), L.Activation("softmax")]),
        "softmax in a nested model": nested,
    }


class FunctionalSoftmaxNet(nn.Module):
    def __init__(self, log=False, method=False):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(108, K)
        self.log, self.method = log, method

    def forward(self, x):
        y = self.fc(torch.flatten(F.relu(self.conv(x)), 1))
        if self.method:
            return y.log_softmax(dim=-1) if self.log else y.softmax(dim=-1)
        return F.log_softmax(y, dim=1) if self.log else F.softmax(y, dim=1)


def _torch_cnn_head(*tail):
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(108, K), *tail)


def torch_softmax_models() -> dict:
    torch.manual_seed(0)
    return {
        "nn.Softmax": _torch_cnn_head(nn.Softmax(dim=1)),
        "nn.LogSoftmax": _torch_cnn_head(nn.LogSoftmax(dim=1)),
        "nested nn.Softmax": nn.Sequential(nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU()), nn.Flatten(),
                                           nn.Sequential(nn.Linear(108, K), nn.Softmax(dim=-1))),
        "F.softmax in forward": FunctionalSoftmaxNet(),
        "F.log_softmax in forward": FunctionalSoftmaxNet(log=True),
        "Tensor.softmax in forward": FunctionalSoftmaxNet(method=True),
    }


# --- PyTorch models for the model-requirement tests ----------------------------------------------------------

class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, K)

    def forward(self, a, b):
        return self.fc(a) + self.fc(b)


class TupleOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, K)
        self.aux = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc(x), self.aux(x)


class Rank3Output(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 2 * K)

    def forward(self, x):
        return self.fc(x).reshape(-1, 2, K)


class Rank1Output(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, K)

    def forward(self, x):
        return self.fc(x).sum(dim=1)


class GatedNet(nn.Module):
    """``torch.mul`` of two input-dependent activations, neither of them a gate (tanh is not in [0, 1]): a bilinear
    product (AttnLRP's uniform rule, docs/layers.md#gated-products)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.gate = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(108, K)

    def forward(self, x):
        h = torch.mul(F.relu(self.conv(x)), torch.tanh(self.gate(x)))
        return self.fc(torch.flatten(h, 1))


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(5, 4, batch_first=True, proj_size=2)  # projected states: refused (docs/layers.md#recurrent)
        self.fc = nn.Linear(2, K)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


class TrainableCNN(nn.Module):
    """Conv → BatchNorm → ReLU → Dropout → Linear, with non-trivial running statistics."""

    def __init__(self, data_dependent_branch=False):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(108, K)
        self.branch = data_dependent_branch
        with torch.no_grad():
            self.bn.running_mean.copy_(torch.tensor([0.3, -0.2, 0.1]))
            self.bn.running_var.copy_(torch.tensor([0.5, 1.5, 2.0]))
            self.bn.weight.copy_(torch.tensor([1.2, 0.7, 0.9]))
            self.bn.bias.copy_(torch.tensor([0.1, -0.1, 0.05]))

    def forward(self, x):
        if self.branch and x.abs().sum() > 1e30:  # data-dependent control flow: torch.fx cannot trace it
            x = x * 0.5
        h = self.drop(F.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(h, 1))


class SharedLinearNet(nn.Module):
    """``first`` → ``shared`` → ``second`` → ``out``; ``second`` is ``shared`` itself (shared weights) or a copy."""

    def __init__(self, first, shared, out, share=True):
        super().__init__()
        self.first, self.shared, self.out = first, shared, out
        self.second = shared if share else copy.deepcopy(shared)

    def forward(self, x):
        h = F.relu(self.first(x))
        h = F.relu(self.shared(h))
        h = F.relu(self.second(h))
        return self.out(h)


def keras_shared_model(unshared: bool = False, seed: int = 3):
    """Dense 5 → (one Dense 5 used twice) → Dense K; ``unshared`` gives the twin with two copies of that layer."""
    rng = np.random.RandomState(seed)
    w_first = [rng.normal(0, 0.6, (5, 5)).astype(np.float32), rng.normal(0, 0.1, 5).astype(np.float32)]
    w_shared = [rng.normal(0, 0.6, (5, 5)).astype(np.float32), rng.normal(0, 0.1, 5).astype(np.float32)]
    w_out = [rng.normal(0, 0.6, (5, K)).astype(np.float32), rng.normal(0, 0.1, K).astype(np.float32)]
    inp = keras.Input((5,))
    first = L.Dense(5, activation="relu", name="first")
    shared = L.Dense(5, activation="relu", name="shared")
    second = L.Dense(5, activation="relu", name="shared_copy") if unshared else shared
    out = L.Dense(K, name="out")
    model = keras.Model(inp, out(second(shared(first(inp)))))
    first.set_weights(w_first)
    shared.set_weights(w_shared)
    second.set_weights(w_shared)
    out.set_weights(w_out)
    return model, (w_first, w_shared, w_out)


def torch_shared_model(weights, share: bool = True):
    w_first, w_shared, w_out = weights

    def linear(w):
        module = nn.Linear(w[0].shape[0], w[0].shape[1])
        with torch.no_grad():
            module.weight.copy_(torch.tensor(w[0].T))
            module.bias.copy_(torch.tensor(w[1]))
        return module
    return SharedLinearNet(linear(w_first), linear(w_shared), linear(w_out), share=share)
