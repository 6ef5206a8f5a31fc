"""Tests for the method-name grammar, the resolver and the catalog (docs/methods.md#names, Appendix A)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signxai.methods import CATALOG, Method, list_methods, method_families, parse_method, resolve_method

ZB = {"low": -123.68, "high": 151.061}
IG = {"steps": 50, "reference": 0.0}
SG = {"num_samples": 50, "noise_level": 0.2, "seed": 0}

# name -> (base, product, input_rule, rule, params, timeseries), from Appendix A's "result" and "input rule".
APPENDIX_A_ROWS = {
    "random_uniform": ("random_uniform", None, None, None, {"seed": 1}, False),
    "gradient": ("gradient", None, None, None, {}, False),
    "input_t_gradient": ("gradient", "input", None, None, {}, False),
    "gradient_x_input": ("gradient", "input", None, None, {}, False),
    "gradient_x_sign": ("gradient", "sign", None, None, {"mu": 0.0}, False),
    "gradient_x_sign_mu_0_5": ("gradient", "sign", None, None, {"mu": 0.5}, False),
    "gradient_x_sign_mu_neg_0_5": ("gradient", "sign", None, None, {"mu": -0.5}, False),
    "guided_backprop": ("guided_backprop", None, None, None, {}, False),
    "guided_backprop_x_sign_mu_0": ("guided_backprop", "sign", None, None, {"mu": 0.0}, False),
    "integrated_gradients": ("integrated_gradients", None, None, None, IG, False),
    "smoothgrad": ("smoothgrad", None, None, None, SG, False),
    "smoothgrad_x_input": ("smoothgrad", "input", None, None, SG, False),
    "smoothgrad_x_sign_mu_neg_0_5": ("smoothgrad", "sign", None, None, {**SG, "mu": -0.5}, False),
    "vargrad": ("vargrad", None, None, None, SG, False),
    "deconvnet_x_sign": ("deconvnet", "sign", None, None, {"mu": 0.0}, False),
    "grad_cam": ("grad_cam", None, None, None, {"layer": None}, False),
    "grad_cam_timeseries": ("grad_cam", None, None, None, {"layer": None}, True),
    "grad_cam_VGG16ILSVRC": ("grad_cam", None, None, None, {"layer": "block5_conv3"}, False),
    "guided_grad_cam_VGG16MITPL365": ("guided_grad_cam", None, None, None, {"layer": "relu5_3"}, False),
    "grad_cam_MNISTCNN": ("grad_cam", None, None, None, {"layer": "conv2d_1"}, False),
    "lrp_z": ("lrp", None, None, "z", {}, False),
    "lrpsign_z": ("lrp", None, "sign", "z", {"mu": 0.0}, False),
    "zblrp_z_VGG16ILSVRC": ("lrp", None, "zb", "z", ZB, False),
    "w2lrp_z": ("lrp", None, "w2", "z", {}, False),
    "flatlrp_z": ("lrp", None, "flat", "z", {}, False),
    "lrp_epsilon_0_001": ("lrp", None, None, "epsilon", {"epsilon": 0.001}, False),
    "lrpz_epsilon_0_01": ("lrp", None, "z", "epsilon", {"epsilon": 0.01}, False),
    "zblrp_epsilon_0_5_VGG16ILSVRC": ("lrp", None, "zb", "epsilon", {"epsilon": 0.5, **ZB}, False),
    "w2lrp_epsilon_10": ("lrp", None, "w2", "epsilon", {"epsilon": 10.0}, False),
    "flatlrp_epsilon_100": ("lrp", None, "flat", "epsilon", {"epsilon": 100.0}, False),
    "lrpsign_epsilon_100_mu_0": ("lrp", None, "sign", "epsilon", {"epsilon": 100.0, "mu": 0.0}, False),
    "lrpsign_epsilon_100_mu_0_5": ("lrp", None, "sign", "epsilon", {"epsilon": 100.0, "mu": 0.5}, False),
    "lrpsign_epsilon_100_mu_neg_0_5": ("lrp", None, "sign", "epsilon", {"epsilon": 100.0, "mu": -0.5}, False),
    "lrp_epsilon_0_1_std_x": ("lrp", None, None, "stdx_epsilon", {"stdfactor": 0.1}, False),
    "zblrp_epsilon_0_25_std_x_VGG16ILSVRC": ("lrp", None, "zb", "stdx_epsilon", {"stdfactor": 0.25, **ZB}, False),
    "lrpsign_epsilon_0_25_std_x_mu_neg_0_5":
        ("lrp", None, "sign", "stdx_epsilon", {"stdfactor": 0.25, "mu": -0.5}, False),
    "lrpz_epsilon_3_std_x": ("lrp", None, "z", "stdx_epsilon", {"stdfactor": 3.0}, False),
    "lrp_alpha_1_beta_0": ("lrp", None, None, "alpha_beta", {"alpha": 1.0, "beta": 0.0}, False),
    "w2lrp_alpha_1_beta_0": ("lrp", None, "w2", "alpha_beta", {"alpha": 1.0, "beta": 0.0}, False),
    "lrp_sequential_composite_a": ("lrp", None, None, "composite_a", {"epsilon": 0.1}, False),
    "lrpsign_sequential_composite_b": ("lrp", None, "sign", "composite_b", {"epsilon": 0.1, "mu": 0.0}, False),
    "zblrp_sequential_composite_b_VGG16ILSVRC": ("lrp", None, "zb", "composite_b", {"epsilon": 0.1, **ZB}, False),
}


def as_tuple(method):
    return (method.base, method.product, method.input_rule, method.rule, dict(method.params), method.timeseries)


def required_kwargs(name):
    """Kwargs a catalog name cannot resolve without (names ending in _mu)."""
    return {"mu": 0.5} if name.endswith("_mu") else {}


# --- catalog ---------------------------------------------------------------------------------------


def test_catalog_has_152_unique_names_in_appendix_order():
    names = list_methods()
    assert len(names) == 152 == len(set(names))
    assert names == list(CATALOG)
    assert names[:4] == ["random_uniform", "gradient", "input_t_gradient", "gradient_x_input"]
    assert names[97] == "lrpsign_epsilon_100_mu_0"
    assert names[-1] == "flatlrp_sequential_composite_b"


def test_method_families_partition_the_catalog():
    families = method_families()
    assert sorted(name for names in families.values() for name in names) == sorted(CATALOG)
    assert families["random"] == ["random_uniform"]
    assert families["integrated_gradients"] == ["integrated_gradients"]
    assert families["vargrad"] == ["vargrad"]
    assert len(families["grad_cam"]) == 8
    assert families["lrp_alpha_beta"][0] == "lrp_alpha_1_beta_0"
    assert {family: len(names) for family, names in families.items() if family.startswith("lrp_")} == {
        "lrp_z": 5, "lrp_epsilon": 61, "lrp_stdx_epsilon": 30, "lrp_alpha_beta": 6,
        "lrp_composite_a": 6, "lrp_composite_b": 6}


# --- Appendix A ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(APPENDIX_A_ROWS))
def test_appendix_a_rows(name):
    method = resolve_method(name)
    assert method.name == name
    assert as_tuple(method) == APPENDIX_A_ROWS[name]


@pytest.mark.parametrize("name", CATALOG)
def test_every_catalog_name_parses_and_resolves(name):
    method = resolve_method(name, **required_kwargs(name))
    assert isinstance(method, Method)
    assert parse_method(name).base == method.base
    if method.base == "lrp":
        assert method.rule in {"z", "epsilon", "stdx_epsilon", "alpha_beta", "composite_a", "composite_b"}
        assert method.input_rule in {None, "sign", "z", "zb", "w2", "flat"}
    assert (method.product == "sign" or method.input_rule == "sign") == ("mu" in method.params)


@pytest.mark.parametrize("name", ["gradient_x_sign_mu", "guided_backprop_x_sign_mu", "deconvnet_x_sign_mu",
                                  "smoothgrad_x_sign_mu"])
def test_names_ending_in_mu_require_mu(name):
    with pytest.raises(ValueError, match="requires the keyword argument.*mu="):
        resolve_method(name)
    assert resolve_method(name, mu=-0.25).params["mu"] == -0.25
    assert "mu" not in parse_method(name).params


def test_equivalent_spellings():
    assert as_tuple(resolve_method("input_t_gradient")) == as_tuple(resolve_method("gradient_x_input"))
    assert as_tuple(resolve_method("gradient_x_sign")) == as_tuple(resolve_method("gradient_x_sign_mu_0"))
    assert as_tuple(resolve_method("lrpsign_epsilon_100")) == as_tuple(resolve_method("lrpsign_epsilon_100_mu_0"))
    assert as_tuple(resolve_method("lrpz_z")) == ("lrp", None, "z", "z", {}, False)


# --- generalised names -----------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("vargrad_x_input", ("vargrad", "input", None, None, SG, False)),
    ("guided_grad_cam", ("guided_grad_cam", None, None, None, {"layer": None}, False)),
    ("lrp_alpha_2_beta_1", ("lrp", None, None, "alpha_beta", {"alpha": 2.0, "beta": 1.0}, False)),
    ("lrp_epsilon_0_37", ("lrp", None, None, "epsilon", {"epsilon": 0.37}, False)),
    ("lrpsign_alpha_2_beta_1", ("lrp", None, "sign", "alpha_beta", {"alpha": 2.0, "beta": 1.0, "mu": 0.0}, False)),
    ("gradient_x_sign_mu_neg_1_5", ("gradient", "sign", None, None, {"mu": -1.5}, False)),
    ("lrpz_epsilon_0_25_std_x", ("lrp", None, "z", "stdx_epsilon", {"stdfactor": 0.25}, False)),
    ("integrated_gradients_x_sign", ("integrated_gradients", "sign", None, None, {**IG, "mu": 0.0}, False)),
    ("lrp_epsilon_1_5", ("lrp", None, None, "epsilon", {"epsilon": 1.5}, False)),
    ("lrp_epsilon_007_05", ("lrp", None, None, "epsilon", {"epsilon": 7.05}, False)),
])
def test_generalised_names(name, expected):
    assert as_tuple(resolve_method(name)) == expected


# --- kwargs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("short, kwargs, embedded", [
    ("lrp_epsilon", {"epsilon": 0.1}, "lrp_epsilon_0_1"),
    ("lrp_epsilon_std_x", {"stdfactor": 0.25}, "lrp_epsilon_0_25_std_x"),
    ("lrpz_alpha_beta", {"alpha": 1, "beta": 0}, "lrpz_alpha_1_beta_0"),
    ("lrp_alpha_2_beta", {"beta": 1}, "lrp_alpha_2_beta_1"),
    ("lrpsign_epsilon_100_mu", {"mu": -0.5}, "lrpsign_epsilon_100_mu_neg_0_5"),
    ("gradient_x_sign_mu", {"mu": 0.5}, "gradient_x_sign_mu_0_5"),
])
def test_kwargs_give_what_the_name_leaves_out(short, kwargs, embedded):
    assert as_tuple(resolve_method(short, **kwargs)) == as_tuple(resolve_method(embedded))


def test_repeating_an_embedded_value_is_allowed():
    method = resolve_method("lrp_epsilon_0_1", epsilon=0.1)
    assert method.params["epsilon"] == 0.1
    assert resolve_method("lrp_alpha_1_beta_0", alpha=1, beta=np.float32(0)).params == {"alpha": 1.0, "beta": 0.0}
    assert resolve_method("grad_cam_VGG16ILSVRC", layer="block5_conv3").params["layer"] == "block5_conv3"


class NamedLayer:
    def __init__(self, name):
        self.name = name


@pytest.mark.parametrize("name, kwargs", [
    ("lrp_epsilon_0_1", {"epsilon": 0.2}),
    ("lrpsign_z_mu_0_5", {"mu": 0.0}),
    ("gradient_x_sign_mu_neg_0_5", {"mu": 0.5}),
    ("lrp_epsilon_0_25_std_x", {"stdfactor": 1}),
    ("grad_cam_VGG16ILSVRC", {"layer": "block4_conv3"}),
    ("guided_grad_cam_MNISTCNN", {"layer": NamedLayer("conv2d")}),
    ("grad_cam_MNISTCNN", {"layer": object()}),
])
def test_conflicting_kwargs(name, kwargs):
    with pytest.raises(ValueError, match="conflicts with the value embedded in the method name"):
        resolve_method(name, **kwargs)


def test_layer_object_matching_the_preset_is_accepted():
    assert resolve_method("grad_cam_MNISTCNN", layer=NamedLayer("conv2d_1")).params["layer"] == "conv2d_1"
    layer = NamedLayer("anything")
    assert resolve_method("grad_cam", layer=layer).params["layer"] is layer
    assert resolve_method("grad_cam", last_conv_layer_name="conv").params["layer"] == "conv"
    with pytest.raises(ValueError, match="not both"):
        resolve_method("grad_cam", layer="a", last_conv_layer_name="a")


def test_defaults_can_be_overridden():
    assert resolve_method("integrated_gradients", steps=10).params == {"steps": 10, "reference": 0.0}
    assert resolve_method("smoothgrad_x_input", num_samples=3, noise_level=0, seed=2**32 - 1).params == {
        "num_samples": 3, "noise_level": 0.0, "seed": 2**32 - 1}
    assert resolve_method("random_uniform", seed=7).params == {"seed": 7}
    assert resolve_method("lrp_sequential_composite_a", epsilon=0.5).params == {"epsilon": 0.5}
    reference = np.ones((2, 3))
    assert resolve_method("integrated_gradients", reference=reference).params["reference"] is reference


def test_zb_bounds():
    assert resolve_method("zblrp_z_VGG16ILSVRC", low=-1, high=1).params == {"low": -1.0, "high": 1.0}
    assert resolve_method("zblrp_z_VGG16ILSVRC", high=200).params == {"low": -123.68, "high": 200.0}
    low, high = np.zeros((1, 3)), np.array([[1.0], [2.0]])
    params = resolve_method("zblrp_epsilon_0_1", low=low, high=high).params
    assert params["low"] is low and params["high"] is high
    with pytest.raises(ValueError, match=r"requires both low= and high=.*-123\.68.*151\.061"):
        resolve_method("zblrp_z")
    with pytest.raises(ValueError, match="requires both low= and high="):
        resolve_method("zblrp_alpha_1_beta_0", low=0.0)
    with pytest.raises(ValueError, match="low must be <= high"):
        resolve_method("zblrp_z", low=np.array([0.0, 2.0]), high=1.0)
    with pytest.raises(ValueError, match="broadcast"):
        resolve_method("zblrp_z", low=np.zeros(2), high=np.ones(3))
    with pytest.raises(ValueError, match="finite"):
        resolve_method("zblrp_z", low=np.array([0.0, np.nan]), high=1.0)


def test_unknown_kwargs_raise_type_error_listing_accepted():
    with pytest.raises(TypeError, match="'mu'.*accepts: target, batched, dtype.*gradient_x_sign_mu"):
        resolve_method("gradient_x_sign", mu=0.5)
    with pytest.raises(TypeError, match="accepts: epsilon, attention, target, batched, dtype"):
        resolve_method("lrp_epsilon_0_1", alpha=1)
    with pytest.raises(TypeError, match="accepts: steps, reference, target"):
        resolve_method("integrated_gradients", num_samples=3)
    with pytest.raises(TypeError, match="last_conv_layer_name"):
        resolve_method("lrp_z", last_conv_layer_name="conv")
    with pytest.raises(TypeError):
        resolve_method("grad_cam", target=0)


@pytest.mark.parametrize("name, kwargs, message", [
    ("integrated_gradients", {"steps": 1}, "steps must be an integer >= 2"),
    ("integrated_gradients", {"steps": True}, "steps must be an integer >= 2"),
    ("integrated_gradients", {"steps": 50.0}, "steps must be an integer >= 2"),
    ("integrated_gradients", {"reference": "zero"}, "reference must be a finite number or an array"),
    ("smoothgrad", {"num_samples": 0}, "num_samples must be an integer >= 1"),
    ("vargrad", {"noise_level": -0.1}, "noise_level must be a finite number >= 0"),
    ("smoothgrad", {"seed": 2**32}, r"seed must be an integer in \[0, 2\*\*32\)"),
    ("random_uniform", {"seed": -1}, "seed must be an integer in"),
    ("lrp_epsilon", {"epsilon": 0}, "epsilon must be a finite number > 0"),
    ("lrp_epsilon", {"epsilon": math.inf}, "epsilon must be a finite number > 0"),
    ("lrp_epsilon_std_x", {"stdfactor": -1}, "stdfactor must be a finite number > 0"),
    ("lrp_alpha_beta", {"alpha": 1, "beta": -1}, "beta must be a finite number >= 0"),
    ("gradient_x_sign_mu", {"mu": math.nan}, "mu must be a finite number"),
    ("gradient_x_sign_mu", {"mu": "0.5"}, "mu must be a finite number"),
    ("grad_cam", {"layer": 3}, "layer must be a layer name"),
])
def test_constraint_errors(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        resolve_method(name, **kwargs)


@pytest.mark.parametrize("name, message", [
    ("lrp_epsilon_0", "epsilon must be a finite number > 0"),
    ("lrp_epsilon_0_std_x", "stdfactor must be a finite number > 0"),
    ("lrp_alpha_neg_1_beta_0", "alpha must be a finite number >= 0"),
    ("lrp_z_mu_0_5", "'_mu' suffix is allowed only with the 'lrpsign' prefix"),
    ("lrpz_epsilon_1_mu", "'_mu' suffix is allowed only with the 'lrpsign' prefix"),
    ("lrp_z_VGG16ILSVRC", "'_VGG16ILSVRC' suffix is allowed only with the 'zblrp' prefix"),
    ("lrpsign_z_VGG16ILSVRC", "'_VGG16ILSVRC' suffix is allowed only with the 'zblrp' prefix"),
])
def test_name_constraints(name, message):
    with pytest.raises(ValueError, match=message):
        parse_method(name)
    with pytest.raises(ValueError, match=message):
        resolve_method(name)


# --- unknown names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, suggestion", [
    ("lrp_epsilon_0_1_stdx", "lrp_epsilon_0_1_std_x"),
    ("gradient_x_inputs", "gradient_x_input"),
    ("smoothgrad_x_sing", "smoothgrad_x_sign"),
    ("Gradient", "gradient"),
    ("grad_cam_VGG16", "grad_cam_VGG16ILSVRC"),
])
def test_near_misses_are_suggested(name, suggestion):
    with pytest.raises(ValueError, match=f"Unknown method '{name}'. Did you mean: .*{suggestion}") as error:
        resolve_method(name)
    assert str(error.value).count(",") <= 2


@pytest.mark.parametrize("name", ["", "_", "gradient_", "lrp", "lrp_epsilon_", "lrp_epsilon_neg",
                                  "lrp_alpha_1", "lrp_epsilon_1_2_3", "grad_cam_timeseries_MNISTCNN",
                                  "lrp_epsilon_1e-3", "lrp_epsilon_\u0661", "zzz"])
def test_names_that_do_not_parse(name):
    with pytest.raises(ValueError, match="Unknown method"):
        parse_method(name)


@pytest.mark.parametrize("name", [None, 1, b"gradient", ["gradient"]])
def test_non_string_names_raise_type_error(name):
    with pytest.raises(TypeError):
        parse_method(name)
    with pytest.raises(TypeError):
        resolve_method(name)


def test_method_is_immutable():
    method = resolve_method("lrp_epsilon_0_1")
    with pytest.raises(TypeError):
        method.params["epsilon"] = 1.0
    with pytest.raises(AttributeError):
        method.rule = "z"
    assert hash(method) == hash(resolve_method("lrp_epsilon_0_1"))


# --- property tests --------------------------------------------------------------------------------

WORDS = ["lrp", "lrpsign", "zblrp", "epsilon", "std", "x", "mu", "neg", "0", "1", "25", "alpha", "beta",
         "sign", "input", "gradient", "grad", "cam", "VGG16ILSVRC", "sequential", "composite", "a", "z", ""]


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.lists(st.sampled_from(WORDS), max_size=8).map("_".join)))
def test_random_text_raises_only_value_error(name):
    for function in (parse_method, resolve_method):
        try:
            function(name)
        except ValueError:
            pass


VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5),
                   st.lists(st.floats(), max_size=3).map(np.array))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(CATALOG), st.dictionaries(st.sampled_from(
    ["mu", "epsilon", "stdfactor", "alpha", "beta", "low", "high", "steps", "reference", "num_samples",
     "noise_level", "seed", "layer"]), VALUES, max_size=3))
def test_random_kwargs_raise_only_value_or_type_error(name, kwargs):
    try:
        resolve_method(name, **kwargs)
    except ValueError:
        pass
    except TypeError as error:
        assert "unexpected keyword argument" in str(error)
