"""How explanations are executed (issue 11), without timing anything: no separate logits pass, TensorFlow passes
compiled once per (model, method, sample shape) and used for every batch size, chunks of IG/SmoothGrad/VarGrad
from a memory budget (``batch_size=`` overrides), and per-model caches released with the model."""
from __future__ import annotations

import gc
import weakref

import torch  # noqa: F401  (import torch before tensorflow: NOTES.md)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import signxai  # noqa: E402
import signxai.core.explain as core_explain  # noqa: E402
import signxai.tf_signxai.backend as tf_backend  # noqa: E402
from signxai.tf_signxai.backend import BACKEND as TF_BACKEND  # noqa: E402
from signxai.torch_signxai.backend import BACKEND as TORCH_BACKEND  # noqa: E402

import robustness_models as rm  # noqa: E402
from robustness_models import BACKENDS, assert_close, cnn, cnn_input  # noqa: E402

BACKEND_OF = {"keras": TF_BACKEND, "torch": TORCH_BACKEND}


def explain(model, x, method="gradient", **kwargs):
    return signxai.calculate_relevancemap(model, x, method, **kwargs)


class _Counting:
    """Counts calls of a backend primitive (wrapping the bound method on the singleton, restored afterwards)."""

    def __init__(self, monkeypatch, backend, name):
        self.calls = []
        original = getattr(backend, name)

        def counted(*args, **kwargs):
            self.calls.append(args[1] if len(args) > 1 else None)
            return original(*args, **kwargs)
        monkeypatch.setattr(backend, name, counted)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["gradient", "lrp_epsilon_0_1", "guided_backprop", "grad_cam",
                                    "guided_grad_cam"])
def test_no_separate_logits_pass(backend, method, monkeypatch):
    """The targets (argmax) come from the explanation's own forward pass (the rule-based methods' gate-4 check runs
    the model once more through ``model_output``, which is not a target pass)."""
    model, x = cnn(backend), cnn_input(backend)
    logits = _Counting(monkeypatch, BACKEND_OF[backend], "logits")
    result = explain(model, x, method)
    assert logits.calls == []
    monkeypatch.undo()
    np.testing.assert_array_equal(result, explain(model, x, method, target=_argmax(backend, model, x)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["smoothgrad", "integrated_gradients"])
def test_many_point_methods_resolve_the_argmax_once_at_x(backend, method, monkeypatch):
    """D4: the target is taken once, at the unperturbed x: PyTorch from a logits pass, TensorFlow from its
    compiled gradient pass (no logits pass is traced); an explicit target needs no pass on TensorFlow, whose
    models declare their number of classes."""
    model, x = cnn(backend), cnn_input(backend)
    kwargs = {"num_samples": 3} if method == "smoothgrad" else {"steps": 3}
    logits = _Counting(monkeypatch, BACKEND_OF[backend], "logits")
    gradients = _Counting(monkeypatch, BACKEND_OF[backend], "gradients")
    explain(model, x, method, **kwargs)
    at_x = [c for c in gradients.calls if c.shape == x.shape and np.array_equal(c, x)]
    assert (len(logits.calls), len(at_x)) == ((0, 1) if backend == "keras" else (1, 0))
    logits.calls.clear(), gradients.calls.clear()
    explain(model, x, method, target=1, **kwargs)
    at_x = [c for c in gradients.calls if c.shape == x.shape and np.array_equal(c, x)]
    assert (len(logits.calls), len(at_x)) == ((0, 0) if backend == "keras" else (1, 0))


def _argmax(backend, model, x):
    if backend == "keras":
        return model(x, training=False).numpy().argmax(1)
    with torch.no_grad():
        return model(torch.tensor(x)).numpy().argmax(1)


@pytest.mark.parametrize("method", ["gradient", "lrp_epsilon_0_1", "lrp_alpha_1_beta_0", "guided_backprop",
                                    "grad_cam", "smoothgrad"])
def test_tensorflow_passes_are_traced_once_for_every_batch_size(method, monkeypatch):
    """The compiled path (off by default, tf_signxai.backend.COMPILE_PASSES) traces each pass once."""
    monkeypatch.setattr(tf_backend, "COMPILE_PASSES", True)
    model = cnn("keras")
    x = cnn_input("keras", n=5)
    single = explain(model, x[:1], method)
    for n in (3, 5, 2, 1):
        explain(model, x[:n], method)
    np.testing.assert_array_equal(explain(model, x[:1], method), single)  # the same traced pass, whatever came between
    functions = TF_BACKEND._compiled[model]
    assert functions, "TensorFlow passes are compiled"
    for key, function in functions.items():
        assert function.experimental_get_tracing_count() == 1, key


def test_tensorflow_methods_with_the_same_rules_share_a_pass(monkeypatch):
    monkeypatch.setattr(tf_backend, "COMPILE_PASSES", True)
    model, x = cnn("keras"), cnn_input("keras")
    first = explain(model, x, "lrp_epsilon_0_1")
    np.testing.assert_array_equal(explain(model, x, "lrp_epsilon", epsilon=0.1), first)  # the same rules
    explain(model, x, "lrp_epsilon_0_01")  # another ε: the same pass, ε is its input (docs/api.md#compiled-passes)
    assert len([k for k in TF_BACKEND._compiled[model] if k[0] == "graph_backward"]) == 1
    explain(model, x, "lrp_z")  # other rules: another pass
    assert len([k for k in TF_BACKEND._compiled[model] if k[0] == "graph_backward"]) == 2


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["smoothgrad", "vargrad", "integrated_gradients"])
def test_chunks_follow_the_memory_budget(backend, method, monkeypatch):
    model, x = cnn(backend), cnn_input(backend)
    kwargs = dict({"steps": 7} if method == "integrated_gradients" else {"num_samples": 7}, target=[1, 0, 2])
    expected = explain(model, x, method, **kwargs)
    per_sample = BACKEND_OF[backend].activation_bytes(model, x.astype(np.float32))
    assert per_sample > x[0].nbytes
    monkeypatch.setattr(core_explain, "MEMORY_BUDGET", 4 * per_sample)
    gradients = _Counting(monkeypatch, BACKEND_OF[backend], "gradients")
    chunked = explain(model, x, method, **kwargs)
    assert len(gradients.calls) == -(-len(x) * 7 // 4)  # 21 points, at most 4 per pass: 6 equal chunks
    assert max(len(c) for c in gradients.calls) <= 4
    assert_close(chunked, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_size_overrides_the_chunk(backend, monkeypatch):
    model, x = cnn(backend), cnn_input(backend)
    expected = explain(model, x, "smoothgrad", num_samples=6, target=2)
    gradients = _Counting(monkeypatch, BACKEND_OF[backend], "gradients")
    result = explain(model, x, "smoothgrad", num_samples=6, batch_size=5, target=2)
    assert sorted(len(c) for c in gradients.calls) == [4, 4, 5, 5]  # 18 points in 4 chunks of at most 5
    assert_close(result, expected)
    np.testing.assert_array_equal(explain(model, x, "smoothgrad", num_samples=6, batch_size=5, target=2), result)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_size_is_validated(backend):
    model, x = cnn(backend), cnn_input(backend)
    for bad in (0, -1, 2.0, True, "4"):
        with pytest.raises(ValueError, match="batch_size"):
            explain(model, x, "integrated_gradients", batch_size=bad)
    with pytest.raises(TypeError, match="batch_size.*accepts"):
        explain(model, x, "lrp_epsilon_0_1", batch_size=4)
    assert explain(model, x, "vargrad", batch_size=None).shape == x.shape


@pytest.mark.parametrize("backend", BACKENDS)
def test_caches_and_the_float64_copy_are_released_with_the_model(backend):
    model, x = cnn(backend), cnn_input(backend)
    for method in ("gradient", "lrp_epsilon_0_1", "grad_cam", "smoothgrad"):
        for dtype in ("float32", "float64"):
            explain(model, x, method, dtype=dtype)
    store = BACKEND_OF[backend]
    copy = store._float64[model]
    model_ref, copy_ref = weakref.ref(model), weakref.ref(copy)
    del model, copy
    for _ in range(5):  # Keras models are reference cycles: each collection frees one level of the caches
        gc.collect()  # a full collection over the suite's heap takes seconds: stop once both are freed
        if model_ref() is None and copy_ref() is None:
            break
    assert model_ref() is None and copy_ref() is None
    for cache in (store._graphs, store._float64, store._compiled, store._activation_bytes):
        assert model_ref not in [weakref.ref(k) for k in cache.keys()]


def test_torch_float64_copy_keeps_parameters_and_flags():
    model = rm.cnn("torch").train()
    copy = TORCH_BACKEND.float64_copy(model)
    assert all(p.dtype == torch.float64 for p in copy.parameters())
    assert [n for n, _ in copy.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert all(a.requires_grad == b.requires_grad for a, b in zip(copy.parameters(), model.parameters()))
    assert all(p.dtype == torch.float32 for p in model.parameters()) and model.training
    for a, b in zip(copy.state_dict().values(), model.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy().astype(a.numpy().dtype))
