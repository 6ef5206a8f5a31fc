"""Recurrent layers unrolled for the rule-based methods (docs/layers.md#recurrent): Keras and PyTorch twins agree
(SPEC §9 gates 1–2), LRP-z conserves on bias-free recurrent nets, LRP-ε equals an independent NumPy replica, and
what is not supported is refused naming the cause.

The default run checks every method family once (the twins taken in turn); the full twins × families matrix runs
under ``slow``."""
import functools

import keras
import numpy as np
import pytest
import torch
from keras import layers as L
from torch import nn

import signxai
from gates import assert_gates, explain_both
from matrix import FAMILY_SLICE, one_host_each, split
from recurrent_twins import ALL_TWINS, H, T, recurrent_twin
from signxai.common.agreement import not_applicable, sweep_kwargs
from twins import to_channels_last, torch_input

DEFAULT_HOSTS = ("lstm", "gru", "rnn", "lstm_nobias", "gru_bi", "rnn_stacked")


@functools.lru_cache(maxsize=None)
def twin(name):
    return recurrent_twin(name)


def _applies(name, method):
    return not_applicable(method, twin(name).keras_model) is None


FULL = [(name, method) for name in ALL_TWINS for method in FAMILY_SLICE]
DEFAULT = one_host_each(FAMILY_SLICE, DEFAULT_HOSTS, lambda n, m: True)


@pytest.mark.parametrize("name,method", split(FULL, DEFAULT))
def test_twins_agree(name, method):
    """SPEC §9 gates 1 (float64: ≤ 1e-9 of the peak, same zeros) and 2 (float32) on the recurrent twins."""
    t = twin(name)
    if not _applies(name, method):  # Grad-CAM: no convolution
        for model, x in ((t.keras_model, t.x), (t.torch_model, torch_input(t.x))):
            with pytest.raises(ValueError, match="convolution"):
                signxai.calculate_relevancemap(model, x, method)
        return
    agreement = assert_gates(t, method, **sweep_kwargs(method, t.x))
    assert agreement.peak > 0


def test_twin_logits_equal():
    for name in ("lstm", "gru_bi", "rnn_stacked"):
        t = twin(name)
        keras_logits = np.asarray(t.keras_model(t.x))
        torch_logits = t.torch_model(torch.from_numpy(torch_input(t.x))).detach().numpy()
        np.testing.assert_allclose(keras_logits, torch_logits, rtol=0, atol=2e-6)


@pytest.mark.parametrize("name", ["lstm", "gru_bi"])
def test_guided_backprop_is_the_gradient_without_relus(name):
    """GBP and DeconvNet modify only ReLU-family nodes: on a sigmoid/tanh network they are the gradient of the
    unrolled graph, which must be the model's own gradient (autograd through the framework's recurrent kernel)."""
    t = twin(name)
    for model, x in ((t.keras_model, t.x), (t.torch_model, torch_input(t.x))):
        gradient = signxai.calculate_relevancemap(model, x, "gradient", target=2, dtype="float64")
        for method in ("guided_backprop", "deconvnet"):
            mine = signxai.calculate_relevancemap(model, x, method, target=2, dtype="float64")
            assert np.abs(mine - gradient).max() <= 1e-12 * np.abs(gradient).max(), (method, type(model))


# --- conservation ---------------------------------------------------------------------------------------------

def _bias_free(model):
    """The twin's PyTorch model with its Linear bias zeroed (a copy)."""
    import copy
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.fc.bias.zero_()
    return model


@pytest.mark.parametrize("name", ["lstm_nobias", "gru_bi_nobias", "rnn_nobias_stacked"])
def test_lrp_z_conserves(name):
    """Σ input relevance = explained logit (float64) on bias-free recurrent nets: the sums split by the Z rule, the
    gates receive nothing, every kernel is bias-free."""
    t = twin(name)
    torch_model = _bias_free(t.torch_model)
    keras_model = keras.models.clone_model(t.keras_model)
    keras_model.set_weights(t.keras_model.get_weights())
    keras_model.layers[-1].bias.assign(np.zeros(3, np.float32))
    x = t.x.astype(np.float64)
    logits = torch_model.double()(torch.from_numpy(torch_input(x))).detach().numpy()
    targets = np.array([0, 2])
    for model, x_model in ((keras_model, x), (_bias_free(t.torch_model), torch_input(x))):
        relevance = signxai.calculate_relevancemap(model, x_model, "lrp_z", target=targets, dtype="float64")
        explained = logits[np.arange(len(x)), targets]
        np.testing.assert_allclose(relevance.sum(axis=(1, 2)), explained, rtol=0, atol=1e-6)
        assert np.abs(relevance).max() > 1e-3


# --- an independent NumPy replica of LRP-ε through an LSTM -------------------------------------------------

def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _stab(z, eps):
    z = z + eps * np.where(z >= 0, 1.0, -1.0)
    return z + 1e-7 * (z == 0)


def lstm_lrp_epsilon(W, U, b, V, c_bias, x, target, eps):
    """LRP-ε of ``y = V h_T + c`` after one LSTM layer (gates i, f, g, o), Arras et al.'s rules with the sums split
    by their summands: written from the equations, not from signxai's graph."""
    steps, Hn = x.shape[0], U.shape[1]
    xp = x @ W.T + b  # (T, 4H)
    h, c = np.zeros(Hn), np.zeros(Hn)
    hs, cs, uhs, gates = [h], [c], [], []
    for t in range(steps):
        uh = U @ h
        pre = xp[t] + uh
        i, f, g, o = (pre[k * Hn:(k + 1) * Hn] for k in range(4))
        i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h), cs.append(c), uhs.append(uh), gates.append((i, f, g, o))
    y = V @ h + c_bias
    R_y = np.zeros_like(y)
    R_y[target] = y[target]
    R_h = h * (V.T @ (R_y / _stab(y, eps)))
    R_c_carry = np.zeros(Hn)
    R_x = np.zeros_like(x)
    for t in range(steps - 1, -1, -1):
        i, f, g, o = gates[t]
        c_t, c_prev, h_prev = cs[t + 1], cs[t], hs[t]
        R_c = R_h + R_c_carry  # o ⊙ tanh(c): all to tanh(c), passed to c
        R_c_carry = f * c_prev * R_c / _stab(c_t, 0)
        R_g = i * g * R_c / _stab(c_t, 0)
        R_pre = np.zeros(4 * Hn)
        R_pre[2 * Hn:3 * Hn] = R_g
        pre = xp[t] + uhs[t]
        R_xp = xp[t] * R_pre / _stab(pre, 0)
        R_uh = uhs[t] * R_pre / _stab(pre, 0)
        R_x[t] = x[t] * (W.T @ (R_xp / _stab(xp[t], eps)))
        R_h = h_prev * (U.T @ (R_uh / _stab(uhs[t], eps)))
    return R_x


def test_lstm_epsilon_equals_numpy_replica():
    t = twin("lstm")
    m = t.torch_model.rnn
    W, U = m.weight_ih_l0.detach().double().numpy(), m.weight_hh_l0.detach().double().numpy()
    b = (m.bias_ih_l0 + m.bias_hh_l0).detach().double().numpy()
    V, c_bias = t.torch_model.fc.weight.detach().double().numpy(), t.torch_model.fc.bias.detach().double().numpy()
    x = t.x.astype(np.float64)
    targets = np.array([1, 2])
    expected = np.stack([lstm_lrp_epsilon(W, U, b, V, c_bias, x[n], targets[n], 0.1) for n in range(len(x))])
    assert np.abs(expected).max() > 1e-2
    for model, x_model, back in ((t.keras_model, x, np.asarray), (t.torch_model, torch_input(x), to_channels_last)):
        mine = back(signxai.calculate_relevancemap(model, x_model, "lrp_epsilon_0_1", target=targets,
                                                   dtype="float64"))
        np.testing.assert_allclose(mine, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


# --- how PyTorch models use the modules ----------------------------------------------------------------------

class _Variants(nn.Module):
    def __init__(self, cell, use, batch_first=True):
        super().__init__()
        self.use, self.batch_first = use, batch_first
        self.rnn = cell(3, H, batch_first=batch_first, num_layers=2)
        self.fc = nn.Linear(H, 3)

    def forward(self, x):
        if not self.batch_first:
            x = x.transpose(0, 1)
        if self.use == "h_n" and isinstance(self.rnn, nn.LSTM):
            out, (h_n, _) = self.rnn(x)
            return self.fc(h_n[-1])
        if self.use == "h_n":
            out, h_n = self.rnn(x)
            return self.fc(h_n[-1])
        if self.use == "c_n":
            out, (h_n, c_n) = self.rnn(x)
            return self.fc(torch.tanh(c_n[-1]))
        out, _ = self.rnn(x)
        return self.fc(out[-1] if not self.batch_first else out[:, -1])


@pytest.mark.parametrize("cell,use,batch_first", [(nn.LSTM, "out", False), (nn.GRU, "h_n", True),
                                                   (nn.LSTM, "h_n", False), (nn.LSTM, "c_n", True)])
def test_torch_module_uses(cell, use, batch_first):
    """``out[:, -1]``, ``h_n[-1]``, ``c_n[-1]``, batch_first either way: captured (gate 4 passes) and the same
    map as the batch-first model with the same weights where they compute the same."""
    torch.manual_seed(0)
    model = _Variants(cell, use, batch_first).eval()
    x = np.random.RandomState(0).normal(size=(2, T, 3))
    relevance = signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_1", target=1, dtype="float64")
    assert relevance.shape == x.shape and np.abs(relevance).max() > 0
    if use != "c_n":
        other = _Variants(cell, "out", True).eval()
        other.load_state_dict(model.state_dict())
        reference = signxai.calculate_relevancemap(other, x, "lrp_epsilon_0_1", target=1, dtype="float64")
        np.testing.assert_allclose(relevance, reference, rtol=0, atol=1e-12)


# --- refusals ----------------------------------------------------------------------------------------------

class _Initial(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, H, batch_first=True)
        self.fc = nn.Linear(H, 3)

    def forward(self, x):
        out, _ = self.rnn(x, torch.zeros(1, x.shape[0], H))
        return self.fc(out[:, -1])


class _Projected(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(3, H, batch_first=True, proj_size=2)
        self.fc = nn.Linear(2, 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


def _keras(layer, shape=(T, 3), before=None, batch_size=None):
    inputs = keras.Input(shape, batch_size=batch_size)
    h = inputs if before is None else before(inputs)
    return keras.Model(inputs, L.Dense(3)(layer(h)))


REFUSED = [
    ("torch proj_size", lambda: _Projected(), r"'rnn' \(LSTM\).*proj_size"),
    ("torch initial states", lambda: _Initial(), r"initial states"),
    ("keras merge mul", lambda: _keras(L.Bidirectional(L.LSTM(4), merge_mode="mul")), r"merge_mode 'mul'"),
    # Keras's Masking layer is refused before the recurrent layer that reads its mask
    ("keras masking", lambda: _keras(L.LSTM(4), before=L.Masking(0.0)), r"'not_equal' \(NotEqual\)"),
    ("keras free length", lambda: _keras(L.SimpleRNN(4), shape=(None, 3), before=L.Conv1D(3, 2, strides=2)),
     r"no fixed number of time steps"),
    ("keras activation", lambda: _keras(L.LSTM(4, activation="elu")), r"activation 'elu'"),
    ("keras stateful", lambda: _keras(L.GRU(4, stateful=True), batch_size=2), r"stateful"),
    ("keras initial state", lambda: _keras_initial_state(), r"initial states"),
]


def _keras_initial_state():
    inputs = keras.Input((T, 3))
    h0 = L.Dense(4)(L.Flatten()(inputs))
    return keras.Model(inputs, L.Dense(3)(L.LSTM(4)(inputs, initial_state=[h0, h0])))


@pytest.mark.parametrize("case,build,message", REFUSED, ids=[c[0] for c in REFUSED])
def test_refusals(case, build, message):
    """Unsupported recurrent configurations are refused by the rule-based methods naming the cause; the gradient
    still works on the model itself."""
    try:
        model = build()
    except (ValueError, TypeError) as error:  # Keras itself rejects the configuration
        pytest.skip(f"Keras does not build it: {error}")
    x = np.random.RandomState(0).normal(size=(2, T, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=f"is not supported.*{message}|{message}"):
        signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_1")
    gradient = signxai.calculate_relevancemap(model, x, "gradient")
    assert np.abs(gradient).max() > 0


def test_keras_return_state():
    """Keras ``return_state``: the final hidden state output is the last output (the same map), the cell state is
    captured too (gate 4 passes)."""
    inputs = keras.Input((T, 3))
    layer = L.LSTM(H, return_state=True)
    output, h, c = layer(inputs)
    head = L.Dense(3)
    x = np.random.RandomState(0).normal(size=(2, T, 3))
    maps = [signxai.calculate_relevancemap(keras.Model(inputs, head(t)), x, "lrp_epsilon_0_1", target=1,
                                           dtype="float64") for t in (output, h, L.Activation("tanh")(c))]
    np.testing.assert_array_equal(maps[0], maps[1])
    assert np.abs(maps[2]).max() > 0 and np.abs(maps[2] - maps[0]).max() > 0


def test_keras_free_length_input():
    """``keras.Input(shape=(None, F))``: the layers reading the input (and recurrent sequences computed from it) are
    unrolled per explained length: the maps equal those of the same model built for that length."""
    def build(steps):
        inputs = keras.Input((steps, 3))
        h = L.Bidirectional(L.SimpleRNN(4, return_sequences=True), merge_mode="sum")(inputs)
        return keras.Model(inputs, L.Dense(3)(L.GRU(4)(h)))
    free = build(None)
    for steps in (5, 9):
        fixed = build(steps)
        fixed.set_weights(free.get_weights())
        x = np.random.RandomState(steps).normal(size=(2, steps, 3))
        expected = signxai.calculate_relevancemap(fixed, x, "lrp_epsilon_0_1", target=0, dtype="float64")
        actual = signxai.calculate_relevancemap(free, x, "lrp_epsilon_0_1", target=0, dtype="float64")
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
        if steps != 5:
            continue
        x32 = x.astype(np.float32)
        np.testing.assert_allclose(signxai.calculate_relevancemap(free, x32, "lrp_epsilon_0_1", target=0),
                                   signxai.calculate_relevancemap(fixed, x32, "lrp_epsilon_0_1", target=0),
                                   rtol=0, atol=1e-5 * np.abs(expected).max())


# --- the float64 copy of a Bidirectional layer -----------------------------------------------------------------

def test_bidirectional_float64_copy_is_float64():
    """The Keras float64 copy of a Bidirectional layer computes in float64 throughout (its wrapped layers were
    float32: the twins' float64 gradients were 1e-7 of the peak apart); the gradients now agree to rounding."""
    from signxai.tf_signxai.backend import KerasBackend
    t = twin("gru_bi")
    copy = KerasBackend().float64_copy(t.keras_model)
    assert {w.dtype for w in copy.weights} == {"float64"}
    tf64, pt64 = explain_both(t, "gradient", "float64", target=0)
    assert np.abs(tf64 - pt64).max() <= 1e-12 * np.abs(pt64).max()
