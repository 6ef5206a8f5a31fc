"""Robustness with respect to models and global state on both backends (docs/api.md#model-requirements, §2.5, D5–D7,
D13).

Model requirements (softmax, inputs/outputs, unsupported layers, training mode, unbuilt and shared Keras layers) and
invariants (the caller's model, input, RNGs and framework settings are untouched; repeated, threaded and batched
calls agree).
"""
from __future__ import annotations

import copy
import random
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch  # noqa: F401  (import torch before tensorflow: NOTES.md)
from torch import nn  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers as L  # noqa: E402

import signxai  # noqa: E402
import signxai.tf_signxai.model_utils  # noqa: E402
import signxai.utils.utils  # noqa: E402
from signxai.torch_signxai.utils import remove_softmax as torch_remove_softmax  # noqa: E402

import robustness_models as rm  # noqa: E402
from robustness_models import BACKENDS, K, assert_close, cnn, cnn_input, vectors  # noqa: E402

FAMILIES = ["gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "vargrad", "guided_backprop",
            "deconvnet", "lrp_z", "lrp_epsilon_0_1", "lrpsign_epsilon_0_1", "lrp_alpha_1_beta_0",
            "lrp_sequential_composite_a", "grad_cam", "guided_grad_cam", "random_uniform"]


def explain(model, x, method="gradient", **kwargs):
    return signxai.calculate_relevancemap(model, x, method, **kwargs)


@pytest.fixture(scope="module", params=BACKENDS)
def case(request):
    return request.param, cnn(request.param), cnn_input(request.param)


def keras_gradient(model, x, target):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x, training=False)[:, target]
    return tape.gradient(y, x).numpy()


def torch_gradient(model, x, target):
    x = torch.tensor(x, requires_grad=True)
    model(x)[:, target].sum().backward()
    return x.grad.numpy()


# ---------------------------------------------------------------------------------------------------------------
# Softmax left in (docs/api.md#model-requirements): ValueError mentioning remove_softmax, for every family

KERAS_SOFTMAX = rm.keras_softmax_models()
TORCH_SOFTMAX = rm.torch_softmax_models()


@pytest.mark.parametrize("method", FAMILIES)
@pytest.mark.parametrize("label", sorted(KERAS_SOFTMAX))
def test_keras_softmax_is_rejected(label, method):
    with pytest.raises(ValueError, match=r"softmax.*signxai\.utils\.utils\.remove_softmax"):
        explain(KERAS_SOFTMAX[label], rm.images(2), method)


@pytest.mark.parametrize("method", FAMILIES)
@pytest.mark.parametrize("label", sorted(TORCH_SOFTMAX))
def test_torch_softmax_is_rejected(label, method):
    with pytest.raises(ValueError, match=r"softmax.*remove_softmax"):
        explain(TORCH_SOFTMAX[label], cnn_input("torch", 2), method)


def test_softmax_rejected_with_dtype_float64_too():
    with pytest.raises(ValueError, match="remove_softmax"):
        explain(KERAS_SOFTMAX["Softmax layer"], rm.images(2), "lrp_epsilon_0_1", dtype="float64")
    with pytest.raises(ValueError, match="remove_softmax"):
        explain(TORCH_SOFTMAX["nn.Softmax"], cnn_input("torch", 2), "lrp_epsilon_0_1", dtype="float64")


def _keras_with_head(head):
    """The tiny CNN (same weights) followed by ``head`` layers."""
    model = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(3, 3, padding="same", activation="relu",
                                                               name="conv2d_0"),
                              L.MaxPooling2D(2), L.Flatten(), *head])
    logits_model = cnn("keras")
    for src, dst in zip(logits_model.layers, model.layers):
        dst.set_weights(src.get_weights())
    return model, logits_model


KERAS_HEADS = {
    "Dense(activation='softmax')": lambda: [L.Dense(K, activation="softmax")],
    "Dense(activation='log_softmax')": lambda: [L.Dense(K, activation="log_softmax")],
    "Activation('softmax') layer": lambda: [L.Dense(K), L.Activation("softmax")],
    "Softmax layer": lambda: [L.Dense(K), L.Softmax()],
}


@pytest.mark.parametrize("remove", [signxai.utils.utils.remove_softmax, signxai.tf_signxai.model_utils.remove_softmax],
                         ids=["signxai.utils.utils", "signxai.tf_signxai.model_utils"])
@pytest.mark.parametrize("label", sorted(KERAS_HEADS))
def test_keras_remove_softmax_returns_a_working_copy(label, remove):
    model, logits_model = _keras_with_head(KERAS_HEADS[label]())
    x = rm.images(3)
    weights = [w.copy() for w in model.get_weights()]
    outputs = model(x, training=False).numpy()
    activations = [getattr(layer, "activation", None) for layer in model.layers]

    clean = remove(model)

    assert clean is not model
    # the original is untouched: same weights, activations, outputs, and it is still rejected
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    assert [getattr(layer, "activation", None) for layer in model.layers] == activations
    np.testing.assert_array_equal(model(x, training=False).numpy(), outputs)
    with pytest.raises(ValueError, match="remove_softmax"):
        explain(model, x)
    # the copy gives logits and explains like the model that never had a softmax
    np.testing.assert_allclose(clean(x, training=False).numpy(), logits_model(x, training=False).numpy(),
                               rtol=1e-6, atol=1e-6)
    for method in ("gradient", "lrp_epsilon_0_1", "grad_cam"):
        assert_close(explain(clean, x, method), explain(logits_model, x, method), 1e-6)


@pytest.mark.parametrize("tail", [nn.Softmax, nn.LogSoftmax])
def test_torch_remove_softmax_returns_a_working_copy(tail):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU()), nn.Flatten(),
                          nn.Sequential(nn.Linear(108, K), tail(dim=1)))
    logits_model = nn.Sequential(model[0], model[1], model[2][0])
    x = cnn_input("torch")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        outputs = model(torch.tensor(x))

    clean = torch_remove_softmax(model)

    assert clean is not model
    assert isinstance(model[2][1], tail)  # the original keeps its softmax
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert torch.equal(model(torch.tensor(x)), outputs)
        assert torch.equal(clean(torch.tensor(x)), logits_model(torch.tensor(x)))
    with pytest.raises(ValueError, match="remove_softmax"):
        explain(model, x)
    for method in ("gradient", "lrp_epsilon_0_1", "grad_cam"):
        np.testing.assert_array_equal(explain(clean, x, method), explain(logits_model, x, method))


# ---------------------------------------------------------------------------------------------------------------
# Inputs and outputs of the model (docs/api.md#model-requirements)

def test_keras_multiple_inputs_or_outputs():
    a, b = keras.Input((5,)), keras.Input((5,))
    two_inputs = keras.Model([a, b], L.Dense(K)(L.Concatenate()([a, b])))
    two_outputs = keras.Model(a, [L.Dense(K)(a), L.Dense(2)(a)])
    x = vectors()
    for method in ("gradient", "lrp_epsilon_0_1"):
        with pytest.raises(ValueError, match=r"takes 2 inputs \[.*\], but x is one array; give x as a list"):
            explain(two_inputs, x, method)
        with pytest.raises(ValueError, match="1 inputs and 2 outputs.*single-input, single-output"):
            explain(two_outputs, x, method)


@pytest.mark.parametrize("method", ["gradient", "lrp_epsilon_0_1", "smoothgrad"])
def test_torch_multiple_inputs(method):
    with pytest.raises(ValueError, match=r"takes 2 inputs \['a', 'b'\], but x is one array; give x as a list"):
        explain(rm.TwoInputs(), vectors(), method)


@pytest.mark.parametrize("method", ["gradient", "lrp_epsilon_0_1", "smoothgrad"])
def test_torch_multiple_outputs(method):
    with pytest.raises(ValueError, match="single tensor|output"):
        explain(rm.TupleOutput(), vectors(), method)


def test_keras_output_shapes_are_heads():
    """(N, T, K) outputs need a (t, k) target; an (N,) output is explained as the single output
    (docs/api.md#targets)."""
    sequence = keras.Sequential([keras.Input((3, 5)), L.Dense(K)])
    inp = keras.Input((5,))
    flat = keras.Model(inp, keras.ops.sum(L.Dense(K)(inp), axis=1))
    x = np.random.RandomState(3).normal(size=(2, 3, 5)).astype(np.float32)
    with pytest.raises(ValueError, match=r"shape \(3, 4\) per sample \(\(N, T, K\).*give target=\(t, k\)"):
        explain(sequence, x)
    np.testing.assert_allclose(explain(sequence, x, target=(1, 2)), keras_gradient(
        keras.Sequential([sequence, L.Reshape((3 * K,))]), x, 1 * K + 2), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(explain(flat, vectors()), keras_gradient(
        keras.Sequential([flat, L.Reshape((1,))]), vectors(), 0), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", ["gradient", "lrp_epsilon_0_1"])
def test_torch_output_shapes_are_heads(method):
    with pytest.raises(ValueError, match=r"shape \(2, 4\) per sample \(\(N, T, K\).*give target=\(t, k\)"):
        explain(rm.Rank3Output(), vectors(), method)
    model = rm.Rank3Output()
    expected = torch_gradient(lambda x: model(x).reshape(-1, 2 * K), vectors(), 1 * K + 2)
    if method == "gradient":
        np.testing.assert_allclose(explain(model, vectors(), target=(1, 2)), expected, rtol=1e-6, atol=1e-7)
        flat = rm.Rank1Output()
        np.testing.assert_allclose(explain(flat, vectors()), torch_gradient(lambda x: flat(x)[:, None], vectors(), 0),
                                   rtol=1e-6, atol=1e-7)
    else:
        assert explain(model, vectors(), method, target=(1, 2)).shape == vectors().shape


# ---------------------------------------------------------------------------------------------------------------
# Unsupported layers (docs/api.md#model-requirements, D18): rule-based methods name the layer, pure-autodiff
# methods work

RULE_BASED = ["lrp_z", "lrp_epsilon_0_1", "lrpsign_epsilon_0_1", "guided_backprop", "deconvnet", "guided_grad_cam"]


def _keras_lambda_cnn():
    inp = keras.Input((6, 6, 2))
    h = L.Conv2D(3, 3, padding="same", activation="relu", name="conv")(inp)
    h = L.Lambda(lambda t: t * 2.0, name="double_it")(h)
    out = L.Dense(K, name="out")(L.Flatten()(h))
    model = keras.Model(inp, out)
    rng = np.random.RandomState(7)
    model.set_weights([rng.normal(0, 0.4, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def test_keras_lambda_layer():
    model, x = _keras_lambda_cnn(), rm.images(2)
    for method in RULE_BASED:
        with pytest.raises(ValueError, match=r"layer 'double_it' \(Lambda\) is not supported"):
            explain(model, x, method)
    np.testing.assert_allclose(explain(model, x, target=1), keras_gradient(model, x, 1), rtol=1e-6, atol=1e-7)
    for method, kwargs in (("gradient_x_input", {}), ("integrated_gradients", {"steps": 5}),
                           ("smoothgrad", {"num_samples": 4}), ("vargrad", {"num_samples": 4}), ("grad_cam", {})):
        result = explain(model, x, method, **kwargs)
        assert result.shape == x.shape and np.isfinite(result).all() and np.abs(result).max() > 0, method


def test_torch_product_without_a_gate_takes_the_uniform_rule():
    """``relu(a) * tanh(b)`` has no gate operand: since attention-aware LRP it is a bilinear product whose operands
    share the relevance by AttnLRP's uniform rule (docs/layers.md#gated-products), no longer a refusal."""
    torch.manual_seed(0)
    model, x = rm.GatedNet(), cnn_input("torch", 2)
    for method in RULE_BASED:
        result = explain(model, x, method)
        assert result.shape == x.shape and np.isfinite(result).all() and np.abs(result).max() > 0, method
    np.testing.assert_allclose(explain(model, x, target=1), torch_gradient(model, x, 1), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("model_class, x, name", [
    (rm.LSTMNet, np.random.RandomState(0).normal(size=(2, 7, 5)).astype(np.float32), r"'rnn' \(LSTM\)"),
])
def test_torch_unsupported_layer(model_class, x, name):
    torch.manual_seed(0)
    model = model_class()
    for method in RULE_BASED:
        if method == "guided_grad_cam" and model_class is rm.LSTMNet:
            continue  # no convolution at all
        with pytest.raises(ValueError, match=f"layer {name} is not supported"):
            explain(model, x, method)
    np.testing.assert_allclose(explain(model, x, target=1), torch_gradient(model, x, 1), rtol=1e-6, atol=1e-7)
    methods = {"gradient_x_input": {}, "integrated_gradients": {"steps": 5}, "smoothgrad": {"num_samples": 4},
               "vargrad": {"num_samples": 4}, **({"grad_cam": {}} if model_class is rm.GatedNet else {})}
    for method, kwargs in methods.items():
        result = explain(model, x, method, **kwargs)
        assert result.shape == x.shape and np.isfinite(result).all() and np.abs(result).max() > 0, method


# ---------------------------------------------------------------------------------------------------------------
# Training mode, Dropout, BatchNorm (docs/api.md#model-requirements)

def _flags(model):
    return [(name, module.training) for name, module in model.named_modules()]


@pytest.mark.parametrize("traceable", [True, False], ids=["traceable", "not traceable by torch.fx"])
def test_torch_training_mode_model(traceable):
    torch.manual_seed(0)
    model = rm.TrainableCNN(data_dependent_branch=not traceable)
    reference = copy.deepcopy(model).eval()
    model.train()
    model.fc.eval()  # mixed flags must come back exactly as they were
    flags = _flags(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = cnn_input("torch")
    methods = ["gradient", "smoothgrad", "integrated_gradients"]
    if traceable:
        methods += ["lrp_epsilon_0_1", "grad_cam", "guided_backprop"]
    for method in methods:
        result = explain(model, x, method, **({"num_samples": 4} if method == "smoothgrad" else {}))
        np.testing.assert_array_equal(result, explain(reference, x, method,
                                                      **({"num_samples": 4} if method == "smoothgrad" else {})))
        assert _flags(model) == flags, method
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items()), method  # BN stats untouched
    # the result is the eval-mode (running-statistics, no-dropout) gradient
    np.testing.assert_allclose(explain(model, x, target=2), torch_gradient(reference, x, 2), rtol=1e-6, atol=1e-7)


def test_torch_batchnorm_without_running_stats_is_rejected():
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6, track_running_stats=False), nn.Linear(6, K))
    for method in ("gradient", "lrp_epsilon_0_1"):
        with pytest.raises(ValueError, match="track_running_stats=False"):
            explain(model, vectors(), method)


def test_keras_dropout_and_batchnorm_use_inference_mode():
    model = keras.Sequential([keras.Input((5,)), L.Dense(6, activation="relu"), L.Dropout(0.5),
                              L.BatchNormalization(), L.Dense(K)])
    bn = model.layers[2]
    bn.set_weights([np.full(6, 1.3, np.float32), np.full(6, 0.2, np.float32), np.linspace(-1, 1, 6, dtype=np.float32),
                    np.linspace(0.5, 2, 6, dtype=np.float32)])
    stats = [w.copy() for w in bn.get_weights()]
    x = vectors(4)
    first = explain(model, x, target=1)
    np.testing.assert_allclose(first, keras_gradient(model, x, 1), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(explain(model, x, target=1), first)  # no dropout sampling
    lrp = explain(model, x, "lrp_epsilon_0_1")
    np.testing.assert_array_equal(explain(model, x, "lrp_epsilon_0_1"), lrp)
    assert all(np.array_equal(a, b) for a, b in zip(stats, bn.get_weights()))


# ---------------------------------------------------------------------------------------------------------------
# Keras model forms

def test_keras_sequential_with_input_never_called():
    model = keras.Sequential([keras.Input((5,)), L.Dense(6, activation="relu"), L.Dense(K)])
    x = vectors()
    np.testing.assert_allclose(explain(model, x, target=0), keras_gradient(model, x, 0), rtol=1e-6, atol=1e-7)
    for method in ("lrp_epsilon_0_1", "guided_backprop", "smoothgrad"):
        result = explain(model, x, method)
        assert result.shape == x.shape and np.isfinite(result).all()


def test_keras_sequential_without_input_is_rejected_until_built():
    model = keras.Sequential([L.Dense(6, activation="relu"), L.Dense(K)])
    with pytest.raises(ValueError, match="has not been built"):
        explain(model, vectors())
    model.build((None, 5))
    np.testing.assert_allclose(explain(model, vectors(), target=0), keras_gradient(model, vectors(), 0),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", ["gradient", "lrp_epsilon_0_1", "lrp_z", "lrp_alpha_1_beta_0", "guided_backprop",
                                    "lrpsign_epsilon_0_1", "integrated_gradients"])
def test_shared_layers(method):
    """One Dense (one nn.Linear) used twice equals the twin with two copies; Keras equals PyTorch."""
    shared, weights = rm.keras_shared_model()
    unshared, _ = rm.keras_shared_model(unshared=True)
    x = vectors(4)
    keras_result = explain(shared, x, method)
    assert_close(keras_result, explain(unshared, x, method), 1e-6)
    torch_shared = rm.torch_shared_model(weights)
    assert torch_shared.second is torch_shared.shared
    torch_result = explain(torch_shared, x, method)
    assert_close(torch_result, explain(rm.torch_shared_model(weights, share=False), x, method), 1e-6)
    assert_close(torch_result, keras_result, 1e-5)
    assert np.abs(keras_result).max() > 0


# ---------------------------------------------------------------------------------------------------------------
# Invariants: the caller's model and input, global state (docs/api.md#arguments, §2.4, D5, D13)

INVARIANT_CALLS = [("gradient", {}), ("smoothgrad", {}), ("vargrad", {"num_samples": 5}),
                   ("lrp_epsilon_0_1", {}), ("lrp_epsilon_0_1_std_x", {}), ("grad_cam", {}),
                   ("guided_backprop", {}), ("random_uniform", {}), ("integrated_gradients", {"steps": 5}),
                   ("gradient", {"dtype": "float64"}), ("lrp_epsilon_0_1", {"dtype": "float64"}),
                   ("grad_cam", {"dtype": "float64"})]


def _snapshot_model(backend, model):
    if backend == "keras":
        return [(w.dtype, w.tobytes()) for w in model.get_weights()], [layer.dtype for layer in model.layers]
    return ({k: (v.dtype, v.detach().numpy().tobytes()) for k, v in model.state_dict().items()},
            _flags(model), [(p.requires_grad, p.grad) for p in model.parameters()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
            [sorted(vars(m)) for m in model.modules()])


def test_model_and_input_are_untouched(case):
    backend, _, x = case
    model = cnn(backend)
    if backend == "torch":
        model.train()
        model.conv2d_0.eval()
    x = x.copy()
    before_model, before_x = _snapshot_model(backend, model), x.tobytes()
    tensor = torch.tensor(x)
    for method, kwargs in INVARIANT_CALLS:
        result = explain(model, x, method, **kwargs)
        assert result.dtype == np.dtype(kwargs.get("dtype", "float32"))
        explain(model, tensor, method, **kwargs)
        assert _snapshot_model(backend, model) == before_model, method
        assert x.tobytes() == before_x, method
    np.testing.assert_array_equal(tensor.numpy(), x)
    assert tensor.grad is None and not tensor.requires_grad


def _global_state():
    return {
        "numpy": _numpy_state(),
        "torch": torch.random.get_rng_state().numpy().tobytes(),
        "eager": tf.executing_eagerly(),
        "floatx": keras.config.floatx(),
        "image_data_format": keras.config.image_data_format(),
        "keras epsilon": keras.config.epsilon(),
        "torch default dtype": torch.get_default_dtype(),
        "grad enabled": torch.is_grad_enabled(),
        "tf32 (tf)": tf.config.experimental.tensor_float_32_execution_enabled(),
        "tf32 (torch matmul)": torch.backends.cuda.matmul.allow_tf32,
        "tf32 (cudnn)": torch.backends.cudnn.allow_tf32,
        "cudnn benchmark/deterministic": (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic),
        "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "matmul precision": torch.get_float32_matmul_precision(),
        "warning filters": list(warnings.filters),
    }


def _numpy_state():
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return name, keys.tobytes(), pos, has_gauss, gauss


def _same_state(a, b):
    for key in a:
        assert a[key] == b[key], key


def test_no_global_state_is_changed(case):
    backend, model, x = case
    for method, kwargs in INVARIANT_CALLS:  # warm-up: first-use imports inside torch (sympy) add a warning filter
        explain(model, x, method, **kwargs)
    np.random.seed(1234)
    torch.manual_seed(1234)
    before = _global_state()
    for method, kwargs in INVARIANT_CALLS:
        explain(model, x, method, **kwargs)
        _same_state(before, _global_state())
    with torch.no_grad():  # a caller's no_grad context: gradients still work, and the context is kept
        np.testing.assert_array_equal(explain(model, x), explain(model, x))
        assert not torch.is_grad_enabled()
    # the global generators still produce the same stream as without the calls
    np.random.seed(5)
    expected = np.random.rand(3)
    np.random.seed(5)
    explain(model, x, "smoothgrad")
    np.testing.assert_array_equal(np.random.rand(3), expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_python_random_is_not_drawn_from(backend):
    """D13: no draws from any global RNG, Python's ``random`` included (also on the first float64 call)."""
    model, x = cnn(backend), cnn_input(backend)
    state = random.getstate()
    for method, kwargs in INVARIANT_CALLS:
        explain(model, x, method, **kwargs)
        assert random.getstate() == state, (method, kwargs)


@pytest.mark.parametrize("method, kwargs", [("gradient", {}), ("smoothgrad", {}), ("vargrad", {}),
                                            ("lrp_epsilon_0_1", {}), ("lrp_epsilon_0_1_std_x", {}),
                                            ("grad_cam", {}), ("guided_grad_cam", {}), ("random_uniform", {}),
                                            ("integrated_gradients", {}), ("lrp_epsilon_0_1", {"dtype": "float64"}),
                                            ("smoothgrad", {"dtype": "float64"})])
def test_repeated_calls_are_identical(case, method, kwargs):
    _, model, x = case
    first = explain(model, x, method, **kwargs)
    np.testing.assert_array_equal(explain(model, x, method, **kwargs), first)
    np.testing.assert_array_equal(explain(model, x, method, **kwargs), first)


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_get_the_maps_of_sequential_calls(backend):
    """Four threads share one fresh model (first use, graph capture and, for PyTorch, training mode included)."""
    x = cnn_input(backend, n=4, seed=4)
    jobs = [(method, i, target) for i in range(len(x)) for method in ("gradient", "lrp_epsilon_0_1")
            for target in (None, 1)]
    twin = cnn(backend)
    expected = [explain(twin, x[i], method, target=target) for method, i, target in jobs]
    model = cnn(backend)
    if backend == "torch":
        model.train()
        flags = _flags(model)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: explain(model, x[job[1]], job[0], target=job[2]), jobs * 2))
    for job, got, want in zip(jobs * 2, results, expected * 2):
        np.testing.assert_array_equal(got, want, err_msg=str(job))
    if backend == "torch":
        assert _flags(model) == flags


BN_SPEC = {"input_shape": [6, 6, 2], "layers": [
    {"kind": "conv2d", "filters": 3, "kernel": 3, "padding": "same"}, {"kind": "batchnorm"},
    {"kind": "activation", "activation": "relu"}, {"kind": "flatten"}, {"kind": "dense", "units": K}]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_new_weights_are_used_after_a_first_explanation(backend):
    """Whatever is cached per model (captured graph, compiled functions, float64 copy) must not keep old weights:
    after ``set_weights``/``load_state_dict`` the model explains like a fresh model with the new weights."""
    build = rm.build_keras_model if backend == "keras" else rm.build_torch_model
    model = build(BN_SPEC, rm.random_weights(BN_SPEC, seed=1))
    fresh = build(BN_SPEC, rm.random_weights(BN_SPEC, seed=2))
    x = cnn_input(backend)
    calls = [("gradient", {}), ("lrp_epsilon_0_1", {}), ("lrp_z", {}), ("lrp_alpha_1_beta_0", {}), ("grad_cam", {}),
             ("guided_backprop", {}), ("lrp_epsilon_0_1", {"dtype": "float64"})]
    for method, kwargs in calls:
        explain(model, x, method, **kwargs)
    if backend == "keras":
        model.set_weights(fresh.get_weights())
    else:
        model.load_state_dict(fresh.state_dict())
    for method, kwargs in calls:
        np.testing.assert_array_equal(explain(model, x, method, **kwargs), explain(fresh, x, method, **kwargs),
                                      err_msg=f"{method} {kwargs}")


# ---------------------------------------------------------------------------------------------------------------
# Batch invariance (docs/api.md#batch-invariance, D5, D6, D7)

BATCH_METHODS = [("gradient", {}), ("guided_backprop", {}), ("deconvnet", {}), ("integrated_gradients", {"steps": 8}),
                 ("smoothgrad", {"num_samples": 8}), ("vargrad", {"num_samples": 8}),
                 ("smoothgrad_x_input", {"num_samples": 8}), ("lrp_z", {}), ("lrp_epsilon_0_1", {}),
                 ("lrp_epsilon_0_1_std_x", {}), ("lrpsign_epsilon_0_1_std_x", {}), ("lrp_alpha_1_beta_0", {}),
                 ("grad_cam", {}), ("guided_grad_cam", {}), ("random_uniform", {})]


@pytest.mark.parametrize("method, kwargs", BATCH_METHODS, ids=[m for m, _ in BATCH_METHODS])
def test_batch_equals_per_sample_calls(case, method, kwargs):
    _, model, x = case
    for target in (None, [1, 3, 0]):
        batch = explain(model, x, method, target=target, **kwargs)
        separate = np.stack([explain(model, x[i], method, target=None if target is None else target[i], **kwargs)
                             for i in range(len(x))])
        assert_close(batch, separate)


def test_smoothgrad_noise_is_independent_per_sample_and_input_not_mutated(case):
    """D5: each sample gets its own RandomState(seed) stream; the caller's batch is never modified."""
    _, model, x = case
    duplicated = np.concatenate([x[:1], x[:1], x[1:2]])
    snapshot = duplicated.copy()
    sg = explain(model, duplicated, "smoothgrad", num_samples=6)
    vg = explain(model, duplicated, "vargrad", num_samples=6)
    np.testing.assert_array_equal(duplicated, snapshot)
    assert_close(sg[0], sg[1], 1e-6)
    assert_close(vg[0], vg[1], 1e-6)
    assert np.abs(vg).max() > 1e-3 * np.abs(sg).max()  # not the ≈0 variance of 1.x's shared in-place noise
    assert_close(sg[2], explain(model, x[1], "smoothgrad", num_samples=6))
    # a different seed gives different noise
    assert not np.array_equal(explain(model, x[1], "smoothgrad", num_samples=6, seed=1), sg[2])


def test_std_x_epsilon_is_per_sample(case):
    """D6: scaling one sample of the batch must not change another sample's map."""
    _, model, x = case
    batch = np.stack([x[0], 100.0 * x[1]])
    for method in ("lrp_epsilon_0_5_std_x", "lrpsign_epsilon_0_5_std_x"):
        result = explain(model, batch, method, target=[1, 1])
        assert_close(result[0], explain(model, x[0], method, target=1))
        assert_close(result[1], explain(model, 100.0 * x[1], method, target=1))
