"""Explanations agree between a Keras model and its PyTorch conversion (docs/equivalence.md#agreement-gates) on the
three reference networks: ``convert_tf_to_torch_direct`` for every catalog name, ``convert_tf_to_torch_via_onnx`` for a
subset that covers every family, base rule and input rule.

The direct conversion of a reference network has the hand-built twin's modules, names and weights
(tests/converters/test_converters.py), so the default run explains each catalog name on one converted network where
it applies (the networks in turn) and checks every refusal; the whole networks × catalog matrix runs under ``slow``.
The ONNX subset runs on every network."""
import functools

import pytest
import torch  # before TensorFlow (NOTES: triton)

import signxai
from gates import assert_gates
from matrix import one_host_each, split
from signxai.common.agreement import not_applicable, sweep_kwargs
from signxai.converters import convert_tf_to_torch_direct, convert_tf_to_torch_via_onnx
from signxai.methods import CATALOG
from twins import Twin, reference_twin, torch_input

NETWORKS = ("mlp", "cnn2d", "ecg1d")
CONVERTERS = {"direct": convert_tf_to_torch_direct, "onnx": convert_tf_to_torch_via_onnx}
ONNX_METHODS = (
    "random_uniform", "gradient", "input_t_gradient", "gradient_x_sign_mu_neg_0_5", "guided_backprop_x_sign",
    "deconvnet_x_sign_mu_0_5", "integrated_gradients", "smoothgrad_x_input", "vargrad", "grad_cam",
    "grad_cam_timeseries", "guided_grad_cam", "lrp_z", "lrp_epsilon_0_001", "lrpsign_epsilon_100_mu_neg_0_5",
    "zblrp_epsilon_0_1_VGG16ILSVRC", "lrpz_epsilon_0_25_std_x", "w2lrp_alpha_1_beta_0",
    "flatlrp_sequential_composite_a", "lrpsign_sequential_composite_b", "zblrp_epsilon_1",
)  # zblrp_epsilon_1 and guided_grad_cam are grammar names outside the catalog (no preset bounds/layer)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Interleaved with TensorFlow's calls, torch's worker threads made these small calls 10-30x slower (2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.lru_cache(maxsize=None)
def converted_twin(network, path):
    """The reference network built in Keras (``spec_models.build_keras_model``) and its conversion."""
    reference = reference_twin(network)
    converted = CONVERTERS[path](reference.keras_model)
    return Twin(f"{network}/{path}", reference.keras_model, converted, reference.x, reference.conv_rank)


def cases():
    return [(network, path, method) for path, methods in (("direct", CATALOG), ("onnx", ONNX_METHODS))
            for network in NETWORKS for method in methods]


@functools.lru_cache(maxsize=None)
def _keras_reference(network):
    return reference_twin(network).keras_model


def _applies(network, method):
    return not_applicable(method, _keras_reference(network)) is None


def default_cases():
    """Each catalog name directly converted once where it applies, every refusal, the whole ONNX subset."""
    direct = one_host_each(CATALOG, NETWORKS, _applies)
    return ({(network, "direct", method) for network, method in direct}
            | {(n, "direct", m) for n in NETWORKS for m in CATALOG if not _applies(n, m)}
            | {(n, "onnx", m) for n in NETWORKS for m in ONNX_METHODS})


@pytest.mark.parametrize("network,path,method", split(cases(), default_cases()))
def test_converted_twin_agrees(network, path, method):
    twin = converted_twin(network, path)
    if not_applicable(method, twin.keras_model) is None:
        assert_gates(twin, method, **sweep_kwargs(method, twin.x))
    else:  # a Grad-CAM name whose layer or axis count the model lacks: both backends refuse it
        for model, x in ((twin.keras_model, twin.x), (twin.torch_model, torch_input(twin.x))):
            with pytest.raises(ValueError, match="convolution|spatial axis|not in the model"):
                signxai.calculate_relevancemap(model, x, method)
