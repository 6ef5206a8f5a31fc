"""Every catalog name (and generalised grammar names) agrees between Keras and PyTorch twins
(docs/equivalence.md#agreement-gates).

The default run checks every name on one twin where it applies (the twins in turn), a representative of every
family and rule on every twin, and every refusal (a Grad-CAM name on a twin without its layer); the rest of the
twins × names matrix runs under ``slow`` (tests/matrix.py)."""
import functools

import pytest

from signxai.common.agreement import not_applicable, sweep_kwargs
from signxai.methods import CATALOG

import signxai
from gates import assert_gates
from matrix import FAMILY_SLICE, one_host_each, split
from twins import fast_twins, torch_input, vgg16_twin

GENERALISED = ("lrp_alpha_2_beta_1", "lrpsign_alpha_2_beta_1", "lrp_epsilon_0_37", "lrpz_z",
               "gradient_x_sign_mu_neg_1_5", "vargrad_x_input", "vargrad_x_sign", "guided_grad_cam",
               "lrpsign_epsilon_0_25_std_x_mu_neg_0_5", "lrpz_epsilon_0_25_std_x", "zblrp_epsilon_0_1",
               "w2lrp_alpha_2_beta_1", "deconvnet_x_input", "integrated_gradients_x_sign")


@functools.lru_cache(maxsize=None)
def twin(name):
    return fast_twins()[name]() if name != "vgg16" else vgg16_twin()


def cases(twin_names):
    return [(t, m) for t in twin_names for m in CATALOG + GENERALISED]


def _applies(twin_name, method):
    return not_applicable(method, twin(twin_name).keras_model) is None


def default_cases(twin_names):
    """Every name once where it applies, the family slice on every twin, every refusal."""
    cases_ = one_host_each(CATALOG + GENERALISED, twin_names, _applies)
    cases_ |= {(t, m) for t in twin_names for m in FAMILY_SLICE}
    cases_ |= {(t, m) for t, m in cases(twin_names) if not _applies(t, m)}
    return cases_


@pytest.mark.parametrize("twin_name,method", split(cases(list(fast_twins())), default_cases(list(fast_twins()))))
def test_cross_framework(twin_name, method):
    t = twin(twin_name)
    if not_applicable(method, t.keras_model) is None:
        assert_gates(t, method, **sweep_kwargs(method, t.x))
    else:  # a Grad-CAM name whose layer or axis count the model lacks: both backends refuse it clearly
        for model, x in ((t.keras_model, t.x), (t.torch_model, torch_input(t.x))):
            with pytest.raises(ValueError, match="convolution|spatial axis|not in the model"):
                signxai.calculate_relevancemap(model, x, method)


VGG_METHODS = ("gradient", "lrp_epsilon_0_1", "lrpsign_epsilon_0_25_std_x", "lrp_alpha_1_beta_0",
               "lrp_sequential_composite_b", "zblrp_epsilon_0_1_VGG16ILSVRC", "guided_grad_cam_VGG16ILSVRC",
               "grad_cam_VGG16ILSVRC", "deconvnet_x_sign", "w2lrp_z", "flatlrp_epsilon_1")


@pytest.mark.slow
@pytest.mark.parametrize("method", VGG_METHODS)
def test_vgg16_cross_framework(method):
    t = twin("vgg16")
    assert_gates(t, method, **sweep_kwargs(method, t.x))
