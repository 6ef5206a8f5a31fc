"""The family records and the wrapper form ``wrapper(base)[product]`` (docs/methods.md#families, #wrappers): grammar,
bit-identity of the catalog wrappers with their explicit ``(gradient)`` form, a NumPy replica of the noise tunnel and
the cross-framework gates on the twins of tests/twins.py."""

import functools
import re
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import signxai
from signxai.core import explain as explain_module
from signxai.lrp import Epsilon
from signxai.methods import CATALOG, parse_method, resolve_method
from signxai.methods.families import FAMILIES, FAMILY_LIST, WRAPPERS, Family

from gates import assert_gates
from matrix import one_host_each, split
from twins import fast_twins, torch_input

DOCS = Path(__file__).resolve().parents[2] / "docs" / "methods.md"
SG = {"num_samples": 50, "noise_level": 0.2, "seed": 0}


def as_tuple(method):
    return (method.base, method.product, method.input_rule, method.rule, dict(method.params), method.timeseries)


def chain(method):
    return [(m.name, as_tuple(m)) for m in method.chain]


# --- records -----------------------------------------------------------------------------------------------------


def test_every_family_has_a_driver_and_every_catalog_name_a_family():
    assert set(FAMILIES) == {family.name for family in FAMILY_LIST}
    for family in FAMILY_LIST:
        assert type(family.driver) in explain_module._DRIVERS, family.name
        assert family.keywords and family.group
        if family.wraps is not None:
            assert family.chunked and set(family.wraps.bases) <= set(FAMILIES)
            assert family.wraps.default_base in FAMILIES
    for name in CATALOG:
        assert parse_method(name).family is FAMILIES[parse_method(name).base]
    assert WRAPPERS == ("integrated_gradients", "smoothgrad", "vargrad")


def test_records_are_immutable():
    family = FAMILIES["smoothgrad"]
    with pytest.raises(AttributeError):
        family.chunked = False
    with pytest.raises(TypeError):
        family.params["seed"] = None
    assert isinstance(family, Family) and family.params["num_samples"].default == 50


def test_the_families_table_of_the_docs_lists_every_record():
    """docs/methods.md#families has one row per record, with its driver and parameters."""
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("{ #families }"):text.index("{ #wrappers }")]
    section = section[section.index("The families:"):]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)` \|.*$", section, re.M)}
    assert set(rows) == set(FAMILIES)
    for family in FAMILY_LIST:
        assert f"`{type(family.driver).__name__}" in rows[family.name], family.name
        for key in family.params:
            assert f"`{key}`" in rows[family.name], (family.name, key)


def test_applicability_follows_the_chain():
    assert parse_method("grad_cam").applies_to == "convolutional"
    assert parse_method("smoothgrad(guided_grad_cam_MNISTCNN)").applies_to == "convolutional"
    assert parse_method("smoothgrad(lrp_z)").applies_to == "any"


# --- grammar of the wrapper form -----------------------------------------------------------------------------------


@pytest.mark.parametrize("plain, wrapped", [
    ("smoothgrad", "smoothgrad(gradient)"), ("smoothgrad_x_input", "smoothgrad(gradient)_x_input"),
    ("smoothgrad_x_sign_mu_neg_0_5", "smoothgrad(gradient)_x_sign_mu_neg_0_5"),
    ("vargrad", "vargrad(gradient)"), ("vargrad_x_sign", "vargrad(gradient)_x_sign"),
    ("integrated_gradients", "integrated_gradients(gradient)"),
    ("integrated_gradients_x_input", "integrated_gradients(gradient)_x_input"),
])
def test_plain_wrapper_names_wrap_the_gradient(plain, wrapped):
    a, b = resolve_method(plain), resolve_method(wrapped)
    assert chain(a)[1:] == chain(b)[1:] and as_tuple(a) == as_tuple(b)
    assert a.inner == resolve_method("gradient")
    assert a == replace(b, name=plain)  # only the name differs


def test_wrapped_forms_parse():
    method = resolve_method("smoothgrad(lrp_epsilon_0_1)_x_sign")
    assert as_tuple(method) == ("smoothgrad", "sign", None, None, {"mu": 0.0, **SG}, False)
    assert as_tuple(method.inner) == ("lrp", None, None, "epsilon", {"epsilon": 0.1}, False)
    nested = resolve_method("vargrad(integrated_gradients)_x_input")
    assert [m.base for m in nested.chain] == ["vargrad", "integrated_gradients", "gradient"]
    assert resolve_method("smoothgrad(grad_cam_MNISTCNN)").inner.params == {"layer": "conv2d_1"}
    assert resolve_method("smoothgrad(input_t_gradient)").inner.product == "input"
    assert resolve_method("smoothgrad(zblrp_z_VGG16ILSVRC)").inner.input_rule == "zb"


def test_keywords_go_to_the_part_that_takes_them():
    method = resolve_method("smoothgrad(lrp_epsilon)", epsilon=0.5, seed=3, num_samples=4)
    assert dict(method.params) == {"num_samples": 4, "noise_level": 0.2, "seed": 3}
    assert dict(method.inner.params) == {"epsilon": 0.5}
    sign = resolve_method("vargrad(lrpsign_z_mu)_x_sign", mu=-1)
    assert sign.params["mu"] == 0.0 and sign.inner.params["mu"] == -1.0
    both_fixed = resolve_method("vargrad(lrpsign_z_mu_neg_1)_x_sign_mu_0_5")
    assert both_fixed.params["mu"] == 0.5 and both_fixed.inner.params["mu"] == -1.0
    with pytest.raises(ValueError, match="mu= would set both the wrapper and its base"):
        resolve_method("vargrad(lrpsign_z_mu_neg_1)_x_sign_mu_0_5", mu=0.5)
    ig = resolve_method("smoothgrad(integrated_gradients)", steps=7, reference=1.0, noise_level=0.1)
    assert ig.inner.params == {"steps": 7, "reference": 1.0} and ig.params["noise_level"] == 0.1
    cam = resolve_method("smoothgrad(grad_cam)", last_conv_layer_name="conv")
    assert cam.inner.params == {"layer": "conv"}
    zb = resolve_method("smoothgrad(zblrp_z)", low=-1, high=1)
    assert zb.inner.params == {"low": -1.0, "high": 1.0}


def test_a_rule_map_can_be_the_base():
    method = resolve_method("smoothgrad(lrp)", rules=Epsilon(0.25), seed=1)
    assert method.inner.base == "lrp" and method.inner.composite is not None and method.params["seed"] == 1
    with pytest.raises(ValueError, match="takes its rules from rules="):
        parse_method("smoothgrad(lrp)")
    with pytest.raises(ValueError, match="requires rules="):
        resolve_method("smoothgrad(lrp)")
    with pytest.raises(ValueError, match="cannot wrap the lrp family"):
        resolve_method("integrated_gradients(lrp)", rules=Epsilon(0.25))


def test_wrapped_keyword_errors():
    with pytest.raises(TypeError, match=r"accepts: num_samples, noise_level, seed, epsilon, attention, target, "
                                        r"batched, dtype"):
        resolve_method("smoothgrad(lrp_epsilon_0_1)", alpha=1)
    with pytest.raises(ValueError, match="requires the keyword argument.*epsilon="):
        resolve_method("smoothgrad(lrp_epsilon)")
    with pytest.raises(ValueError, match="conflicts with the value embedded"):
        resolve_method("smoothgrad(lrp_epsilon_0_1)", epsilon=0.2)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        resolve_method("vargrad(lrp_z)", num_samples=0)
    with pytest.raises(ValueError, match="requires both low= and high="):
        resolve_method("smoothgrad(zblrp_z)")


@pytest.mark.parametrize("name, message", [
    ("smoothgrad(lrp_epsilon_0_1", "unbalanced parentheses"),
    ("smoothgrad)lrp_z(", "unbalanced parentheses"),
    ("smoothgrad()", "the parentheses are empty"),
    ("smoothgrd(lrp_z)", "unknown wrapper 'smoothgrd'. Did you mean: smoothgrad?"),
    ("SmoothGrad(lrp_z)", "unknown wrapper"),
    ("gradient(lrp_z)", "'gradient' does not wrap a base method; the wrappers are"),
    ("lrp_epsilon_0_1(gradient)", "does not wrap a base method"),
    ("smoothgrad_x_input(lrp_z)", r"a product goes after the parentheses: 'smoothgrad\(lrp_z\)_x_input'"),
    ("smoothgrad(lrp_z)_x_foo", "'_x_foo' after the parentheses is not a product"),
    ("smoothgrad(lrp_z)x_input", "after the parentheses is not a product"),
    ("smoothgrad(lrp_z)(gradient)", "after the parentheses is not a product"),
    ("smoothgrad(lrp_epsilon_0_1_x)",
     r"its base method: Unknown method 'lrp_epsilon_0_1_x'. Did you mean: lrp_epsilon_0_1"),
    ("vargrad(gradient_x_inputs)", "Did you mean: gradient_x_input"),
    ("smoothgrad( lrp_z)", "Unknown method ' lrp_z'"),
    ("integrated_gradients(lrp_epsilon_0_1)",
     "integrated_gradients cannot wrap the lrp family: path integration integrates the gradient.*families: gradient"),
    ("integrated_gradients(gradient_x_input)", "must be the plain gradient without a product"),
    ("integrated_gradients(smoothgrad)", "cannot wrap the smoothgrad family"),
    ("smoothgrad(vargrad(lrp_z))", "smoothgrad cannot wrap the vargrad family"),
    ("smoothgrad(smoothgrad)", "cannot wrap the smoothgrad family"),
    ("smoothgrad(random_uniform)", "cannot wrap the random_uniform family.*families: gradient, guided_backprop"),
    ("smoothgrad(gradient_x_sign_mu)_x_sign_mu", "both the wrapper and its base 'gradient_x_sign_mu' take the keyword"),
    ("vargrad(lrpsign_z_mu)_x_sign_mu_0_5", "embed both values in the name"),
    ("vargrad(lrp_z_mu_0_5)", "'_mu' suffix is allowed only with the 'lrpsign' prefix"),
])
def test_bad_wrapper_forms(name, message):
    with pytest.raises(ValueError, match=message):
        parse_method(name)
    with pytest.raises(ValueError, match=message):
        resolve_method(name)


def test_an_underscore_guess_points_to_the_wrapper_form():
    with pytest.raises(ValueError, match=r"Did you mean: .*To wrap a base method, write 'smoothgrad\(lrp_z\)'"):
        parse_method("smoothgrad_lrp_z")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["smoothgrad", "vargrad", "integrated_gradients", "(", ")", "_", "lrp", "z",
                                 "x", "input", "gradient", "epsilon", "0", "1", "sign", "mu", "grad_cam", ""]),
                max_size=10).map("".join))
def test_random_wrapper_text_raises_only_value_error(name):
    for function in (parse_method, resolve_method):
        try:
            function(name)
        except ValueError:
            pass


# --- numbers -------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def twin(name):
    return fast_twins()[name]()


def both(t, method, dtype="float32", **kwargs):
    return (signxai.calculate_relevancemap(t.keras_model, t.x, method, dtype=dtype, **kwargs),
            signxai.calculate_relevancemap(t.torch_model, torch_input(t.x), method, dtype=dtype, **kwargs))


@pytest.mark.parametrize("plain, wrapped, kwargs", [
    ("smoothgrad", "smoothgrad(gradient)", {"num_samples": 5}),
    ("smoothgrad_x_sign", "smoothgrad(gradient)_x_sign", {"num_samples": 3, "noise_level": 0.5}),
    ("vargrad_x_input", "vargrad(gradient)_x_input", {"num_samples": 4, "seed": 9}),
    ("integrated_gradients_x_sign_mu", "integrated_gradients(gradient)_x_sign_mu", {"steps": 6, "mu": 0.25}),
])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_explicit_gradient_base_is_bit_identical(plain, wrapped, kwargs, dtype):
    t = twin("cnn2d")
    for a, b in zip(both(t, plain, dtype, **kwargs), both(t, wrapped, dtype, **kwargs)):
        assert a.dtype == b.dtype == np.dtype(dtype)
        assert a.tobytes() == b.tobytes()


def test_catalog_smoothgrad_is_bit_identical_to_smoothgrad_of_gradient_with_defaults():
    t = twin("mlp")
    for a, b in zip(both(t, "smoothgrad"), both(t, "smoothgrad(gradient)")):
        assert a.tobytes() == b.tobytes()


def _noisy(x_n, seed, n, sigma):
    """The noise of docs/methods.md#smoothgrad-vargrad for one channels-last float32 sample, written out here."""
    eps = np.random.RandomState(seed).normal(0, sigma, size=(n,) + x_n.shape)
    return (x_n.astype(np.float64) + eps).astype(np.float32)


@pytest.mark.parametrize("base, outer", [("lrp_epsilon_0_1", ""), ("gradient_x_input", ""),
                                         ("lrpsign_z", "_x_sign"), ("guided_backprop", "_x_input")])
def test_numpy_replica_of_the_noise_tunnel(base, outer):
    """mean_k B(x̃_k) and mean_k (B(x̃_k) − mean)² from one-point calls of the base on the same noise draws, with the
    class fixed at x, then the wrapper's product with the clean x (Keras twin: its layout is the canonical one)."""
    t = twin("mlp")
    n, sigma, seed = 4, 0.3, 5
    target = np.asarray(t.keras_model(t.x)).argmax(axis=1)
    maps = np.stack([np.stack([signxai.calculate_relevancemap(t.keras_model, point, base, target=int(c))
                               for point in _noisy(x_n, seed, n, sigma)])
                     for x_n, c in zip(t.x, target)]).astype(np.float64)  # (N, n, features)
    mean = maps.mean(axis=1)
    variance = ((maps - mean[:, None]) ** 2).mean(axis=1)
    x = t.x.astype(np.float64)
    factor = {"": 1.0, "_x_input": x, "_x_sign": np.where(x < 0, -1.0, 1.0)}[outer]
    kwargs = {"num_samples": n, "noise_level": sigma, "seed": seed, "target": target}
    smooth = signxai.calculate_relevancemap(t.keras_model, t.x, f"smoothgrad({base}){outer}", **kwargs)
    var = signxai.calculate_relevancemap(t.keras_model, t.x, f"vargrad({base}){outer}", **kwargs)
    # float32 maps of single points against the same points in one batch: float32 rounding only
    np.testing.assert_allclose(smooth, mean * factor, rtol=0, atol=1e-5 * np.abs(mean * factor).max())
    np.testing.assert_allclose(var, variance * factor, rtol=0, atol=1e-4 * np.abs(variance * factor).max())
    other_seed = signxai.calculate_relevancemap(t.keras_model, t.x, f"smoothgrad({base}){outer}",
                                                **{**kwargs, "seed": seed + 1})
    assert np.abs(other_seed - mean * factor).max() > 1e-3 * np.abs(mean * factor).max()  # the draws matter


def test_the_noise_of_a_wrapper_is_per_sample_and_chunking_is_not_part_of_it():
    t = twin("strided_avgpool_cnn")
    kwargs = {"num_samples": 5, "dtype": "float64"}
    full = signxai.calculate_relevancemap(t.torch_model, torch_input(t.x), "smoothgrad(lrp_z)", **kwargs)
    single = signxai.calculate_relevancemap(t.torch_model, torch_input(t.x[1:]), "smoothgrad(lrp_z)", **kwargs)
    chunked = signxai.calculate_relevancemap(t.torch_model, torch_input(t.x), "smoothgrad(lrp_z)", batch_size=3,
                                             **kwargs)
    scale = np.abs(full).max()
    np.testing.assert_allclose(single[0], full[1], rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(chunked, full, rtol=0, atol=1e-12 * scale)


def test_noise_level_zero_gives_the_base_method():
    t = twin("ecg1d")
    base = signxai.calculate_relevancemap(t.torch_model, torch_input(t.x), "lrp_epsilon_0_1", dtype="float64")
    smooth = signxai.calculate_relevancemap(t.torch_model, torch_input(t.x), "smoothgrad(lrp_epsilon_0_1)",
                                            num_samples=2, noise_level=0, dtype="float64")
    np.testing.assert_allclose(smooth, base, rtol=0, atol=1e-12 * np.abs(base).max())


def test_bad_forms_fail_before_any_model_work():
    t = twin("mlp")
    with pytest.raises(ValueError, match="cannot wrap the lrp family"):
        signxai.calculate_relevancemap(t.keras_model, t.x, "integrated_gradients(lrp_z)")
    with pytest.raises(TypeError, match="unexpected keyword argument.*'steps'"):
        signxai.calculate_relevancemap(t.torch_model, torch_input(t.x), "smoothgrad(lrp_z)", steps=3)


# --- cross-framework gates (docs/equivalence.md#agreement-gates) ----------------------------------------------------

WRAPPED = {  # name -> keyword arguments (few samples: the gates compare frameworks, not the estimator)
    "smoothgrad(lrp_epsilon_0_1)": {"num_samples": 3},
    "vargrad(lrpsign_epsilon_0_25_std_x)_x_input": {"num_samples": 3, "noise_level": 0.1},
    "smoothgrad(lrp_alpha_1_beta_0)_x_sign": {"num_samples": 2},
    "smoothgrad(guided_backprop_x_sign)": {"num_samples": 3},
    "vargrad(deconvnet)": {"num_samples": 2},
    "smoothgrad(lrp_sequential_composite_b)": {"num_samples": 2},
    "smoothgrad(integrated_gradients)_x_input": {"num_samples": 2, "steps": 4},
    "smoothgrad(gradient)_x_input": {"num_samples": 3},
    "smoothgrad(grad_cam)": {"num_samples": 3},
    "vargrad(guided_grad_cam)": {"num_samples": 2},
}


def _refused(method, twin_name):
    return parse_method(method).applies_to == "convolutional" and twin(twin_name).conv_rank == 0


def _wrapped_cases():
    """The default run: each wrapped form on one twin where it applies (the twins in turn) and every refusal; the
    whole forms × twins matrix runs under ``slow``."""
    names = list(fast_twins())
    default = {(m, t) for t, m in one_host_each(WRAPPED, names, lambda t, m: not _refused(m, t))}
    default |= {(m, t) for m in WRAPPED for t in names if _refused(m, t)}
    return split([(m, t) for m in WRAPPED for t in names], default)


@pytest.mark.parametrize("method,twin_name", _wrapped_cases())
def test_wrapped_forms_agree_across_frameworks(twin_name, method):
    t = twin(twin_name)
    if _refused(method, twin_name):
        for model, x in ((t.keras_model, t.x), (t.torch_model, torch_input(t.x))):
            with pytest.raises(ValueError, match="convolution"):
                signxai.calculate_relevancemap(model, x, method, **WRAPPED[method])
        return
    assert_gates(t, method, **WRAPPED[method])


def test_vanished_relevance_warning_points_at_the_caller():
    """The LRP warning names the caller's line (stacklevel through the record dispatch); wrappers do not warn for
    their noisy points."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    with torch.no_grad():
        model[0].weight.mul_(1e-9)
        model[0].bias.zero_()
        model[1].bias.fill_(1.0)
    model.eval()
    x = np.random.RandomState(6).uniform(0, 1, (1, 3, 6, 6)).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="all zeros although the gradient is not") as record:
        signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_1")
    assert record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert not signxai.calculate_relevancemap(model, x, "smoothgrad(lrp_epsilon_0_1)", num_samples=2).any()
