"""Recurrent layers in the converters (docs/converters.md#recurrent): Keras LSTM/GRU/SimpleRNN/Bidirectional →
PyTorch and nn.LSTM/GRU/RNN → Keras compute what the source computes, gate orders and biases mapped; what has no
counterpart is refused."""
import keras
import numpy as np
import pytest
import torch
from keras import layers as L
from torch import nn

import signxai
from signxai._keras_torch import channels_first, channels_last
from signxai.converters.direct_tf_to_torch import convert_tf_to_torch_direct
from signxai.converters.torch_to_tf import convert_torch_to_tf_direct

T, F = 12, 3
X = np.random.RandomState(0).normal(size=(2, T, F)).astype(np.float32)


def _keras(*layers):
    inputs = keras.Input((T, F))
    h = inputs
    for layer in layers:
        h = layer(h)
    model = keras.Model(inputs, L.Dense(3)(h))
    rng = np.random.RandomState(1)
    for weight in model.weights:
        weight.assign(rng.normal(0, 0.5, size=weight.shape).astype(np.float32))
    return model


KERAS_CASES = {
    "lstm": lambda: _keras(L.LSTM(8)),
    "gru": lambda: _keras(L.GRU(8)),
    "simple_relu": lambda: _keras(L.SimpleRNN(8, activation="relu")),
    "lstm_no_bias": lambda: _keras(L.LSTM(8, use_bias=False)),
    "gru_go_backwards_sequence": lambda: _keras(L.GRU(8, return_sequences=True, go_backwards=True), L.Flatten()),
    "bi_lstm_concat": lambda: _keras(L.Bidirectional(L.LSTM(8))),
    "bi_gru_sum_stacked": lambda: _keras(L.Bidirectional(L.GRU(8, return_sequences=True), merge_mode="sum"),
                                         L.LSTM(4)),
    "bi_simple_ave": lambda: _keras(L.Bidirectional(L.SimpleRNN(8), merge_mode="ave")),
}


@pytest.mark.parametrize("case", list(KERAS_CASES))
def test_keras_to_torch(case):
    model = KERAS_CASES[case]()
    converted = convert_tf_to_torch_direct(model)
    expected = np.asarray(model(X))
    actual = converted(torch.from_numpy(channels_first(X))).detach().numpy()
    assert np.abs(expected).max() > 1e-2
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-6)


class _TorchNet(nn.Module):
    def __init__(self, cell, **kwargs):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = cell(F, 8, batch_first=True, **kwargs)
        self.fc = nn.Linear(8 * (2 if kwargs.get("bidirectional") else 1), 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


TORCH_CASES = {
    "lstm": (nn.LSTM, {}), "gru": (nn.GRU, {}), "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm_bi_stacked": (nn.LSTM, {"bidirectional": True, "num_layers": 2}),
    "gru_bi": (nn.GRU, {"bidirectional": True}), "rnn_no_bias_stacked": (nn.RNN, {"bias": False, "num_layers": 2}),
}


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_torch_to_keras(case):
    cell, kwargs = TORCH_CASES[case]
    model = _TorchNet(cell, **kwargs).eval()
    with torch.no_grad():
        for p in model.rnn.parameters():  # biases apart from zero, b_hh included
            p.add_(0.1 * torch.randn_like(p))
    converted = convert_torch_to_tf_direct(model, (T, F))
    expected = model(torch.from_numpy(X)).detach().numpy()
    actual = np.asarray(converted(channels_last(X)))  # the converter's channels-last layout of (T, F)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-6)


def test_converted_model_explains_alike():
    """The PyTorch conversion of a bidirectional Keras LSTM gives the Keras model's LRP-ε map (float64)."""
    model = KERAS_CASES["bi_lstm_concat"]()
    converted = convert_tf_to_torch_direct(model)
    x = X.astype(np.float64)
    keras_map = signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_1", target=1, dtype="float64")
    torch_map = channels_last(signxai.calculate_relevancemap(converted, channels_first(x), "lrp_epsilon_0_1",
                                                             target=1, dtype="float64"))
    peak = np.abs(keras_map).max()
    assert peak > 0
    assert np.abs(keras_map - torch_map).max() <= 1e-9 * peak


@pytest.mark.parametrize("layer, message", [
    (lambda: L.GRU(4, reset_after=False), r"reset_after=False"),
    (lambda: L.Bidirectional(L.LSTM(4), merge_mode="mul"), r"merge_mode"),
    (lambda: L.LSTM(4, activation="relu"), r"activation 'relu'"),
])
def test_keras_refusals(layer, message):
    with pytest.raises(ValueError, match=message):
        convert_tf_to_torch_direct(_keras(layer()))


@pytest.mark.parametrize("kwargs, message", [({"batch_first": False}, "batch-first"),
                                             ({"proj_size": 2}, "proj_size")])
def test_torch_refusals(kwargs, message):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(F, 8, **kwargs)

        def forward(self, x):
            out, _ = self.rnn(x)
            return out[:, -1]
    with pytest.raises(ValueError, match=message):
        convert_torch_to_tf_direct(Net().eval(), (T, F))
