"""The backend contract (docs/extending.md#backend-contract): both backends implement the neutral TensorOps and take
their passes — gradients, the graph backward pass, Grad-CAM's activations, target selection — from the shared
Backend, supplying only primitives."""
import torch  # noqa: F401  (torch before TensorFlow)

import numpy as np
import pytest

from signxai.core.backend import Backend
from signxai.core.ops import TensorOps
from signxai.core.rules import GuidedBackprop
from signxai.tf_signxai import backend as tf_backend
from signxai.torch_signxai import backend as torch_backend
from twins import fast_twins, torch_input

SHARED_PASSES = ("logits", "gradients", "graph_backward", "cam_activations", "run_pass", "_selected")
PRIMITIVES = ("capture", "float64_copy", "sync_weights", "activation_bytes_per_sample", "to_tensor", "to_numpy",
              "forward", "tape", "record_for_backward", "one_hot", "reduce_sum")


@pytest.mark.parametrize("module", [tf_backend, torch_backend], ids=["keras", "torch"])
def test_the_ops_implement_the_neutral_protocol(module):
    assert isinstance(module.OPS, TensorOps)
    assert isinstance(module.BACKEND.ops, TensorOps)


@pytest.mark.parametrize("cls", [tf_backend.KerasBackend, torch_backend.TorchBackend], ids=["keras", "torch"])
def test_the_passes_are_written_once(cls):
    """No backend overrides a shared pass; each supplies every primitive."""
    assert issubclass(cls, Backend)
    overridden = [name for name in SHARED_PASSES if name in vars(cls)]
    assert overridden == []
    missing = [name for name in PRIMITIVES if getattr(cls, name) is getattr(Backend, name)]
    assert missing == []


def test_the_earlier_import_paths_still_work():
    assert tf_backend.COMPILE_PASSES is True
    for name in ("BACKEND", "KerasBackend", "check_model", "_float64_copy", "_deterministic_config", "_Capture",
                 "TensorOps", "OPS"):
        assert hasattr(tf_backend, name), name
    for name in ("BACKEND", "TorchBackend", "TraceError", "trace", "_Capture", "_RecordedOps", "TensorOps", "OPS"):
        assert hasattr(torch_backend, name), name


def test_only_a_compiling_backend_evaluates_the_pass_key(monkeypatch):
    """The key of a graph pass is a function evaluated by TensorFlow (to cache the compiled pass), never by PyTorch;
    both give the same map."""
    t = fast_twins()["cnn2d"]()
    calls = []

    def key():
        calls.append(1)
        return ("guided_backprop", False)

    def guided(graph):
        return GuidedBackprop(deconvnet=False)
    pt = torch_backend.BACKEND.graph_backward(t.torch_model, torch_input(t.x), np.array([0, 1]), guided, False,
                                              key=key)
    assert calls == []
    monkeypatch.setattr(tf_backend, "COMPILE_PASSES", True)
    tf = tf_backend.BACKEND.graph_backward(t.keras_model, t.x, np.array([0, 1]), guided, False, key=key)
    assert calls == [1]
    assert np.abs(tf - np.moveaxis(pt, 1, -1)).max() <= 1e-5 * np.abs(tf).max()
