"""Composites (layer-wise rule maps) on both backends: selection by type, name, glob and predicate, the catalog names
compiled to composites, cross-framework agreement on the twin networks (docs/equivalence.md#agreement-gates), and bad
rule maps."""
import torch  # noqa: F401  (torch before TensorFlow)

import functools

import keras
import numpy as np
import pytest

import signxai
from signxai import lrp
from signxai.common.agreement import sweep_kwargs
from signxai.methods import CATALOG, parse_method, resolve_method
from signxai.tf_signxai.backend import BACKEND as TF
from signxai.torch_signxai.backend import BACKEND as PT
from gates import assert_gates
from twins import fast_twins, to_channels_last, torch_input


class Gamma(lrp.KernelRule):
    """The user-defined LRP-γ rule of docs/lrp_rules.md (no framework code)."""

    def __init__(self, gamma=0.25):
        super().__init__(gamma=float(gamma))

    def kernel_relevance(self, ops, kernel, a, z, R):
        def boost(w):
            return w + self.gamma * ops.positive(w)
        s = lrp.safe_divide(ops, R, kernel.apply(a, boost, boost))
        return a * lrp.transpose_apply(ops, kernel, a, s, boost)


@functools.lru_cache(maxsize=None)
def twin(name):
    return fast_twins()[name]()


def both(t, method, dtype="float32", **kwargs):
    tf_map = signxai.calculate_relevancemap(t.keras_model, t.x, method, dtype=dtype, **kwargs)
    pt_map = signxai.calculate_relevancemap(t.torch_model, torch_input(t.x), method, dtype=dtype, **kwargs)
    return tf_map, to_channels_last(pt_map)


def assignment(composite, t):
    """``{node name: rule}`` of both captured graphs, for the layer kinds whose nodes carry the same names in the
    twins (activations, pooling and reshaping nodes are named differently in the two frameworks)."""
    out = []
    for backend, model in ((TF, t.keras_model), (PT, t.torch_model)):
        chosen = composite.assign(backend.graph(model))
        out.append({layer.name: rule for rule, layer in chosen.values()
                    if layer.kind in ("dense", "conv", "add", "batchnorm", "pass")})
    return out


# --- catalog names compile to composites -------------------------------------------------------------------------

def test_catalog_names_compile_to_rule_maps():
    assert lrp.composite_for("lrp_z") == lrp.Composite([], default=lrp.Z())
    assert lrp.composite_for("lrpsign_epsilon_0_1") == lrp.Composite([("input", lrp.Sign(0.0))],
                                                                     default=lrp.Epsilon(0.1))
    assert lrp.composite_for("lrpsign_epsilon_100_mu_neg_0_5") == lrp.Composite([("input", lrp.Sign(-0.5))],
                                                                                default=lrp.Epsilon(100))
    assert lrp.composite_for("zblrp_epsilon_0_25_std_x_VGG16ILSVRC") == lrp.Composite(
        [("input", lrp.ZBox(-123.68, 151.061))], default=lrp.StdxEpsilon(0.25))
    assert lrp.composite_for("zblrp_z", low=-1, high=2) == lrp.Composite([("input", lrp.ZBox(-1, 2))],
                                                                         default=lrp.Z())
    assert lrp.composite_for("w2lrp_alpha_1_beta_0") == lrp.Composite([("input", lrp.WSquare())],
                                                                      default=lrp.AlphaBeta(1, 0))
    assert lrp.composite_for("flatlrp_sequential_composite_b") == lrp.Composite(
        [("input", lrp.Flat()), ("dense", lrp.Epsilon(0.1)), ("conv", lrp.AlphaBeta(2, 1))])
    assert lrp.composite_for("lrp_sequential_composite_a", epsilon=0.5) == lrp.Composite(
        [("dense", lrp.Epsilon(0.5)), ("conv", lrp.AlphaBeta(1, 0))])
    assert lrp.composite_for("lrpz_epsilon_1") == lrp.Composite([("input", lrp.Z())], default=lrp.Epsilon(1))
    with pytest.raises(ValueError, match="not an LRP method"):
        lrp.composite_for("gradient")


def test_every_lrp_catalog_name_compiles():
    names = [name for name in CATALOG if parse_method(name).base == "lrp"]
    assert len(names) == 114
    for name in names:
        composite = lrp.composite_for(name, **sweep_kwargs(name, np.zeros(3)))
        method = parse_method(name)
        has_input_entry = bool(composite.rules) and composite.rules[0][0] == "input"
        assert has_input_entry == (method.input_rule is not None), name
        assert (composite.default is None) == method.rule.startswith("composite"), name


NAMES = ("lrp_z", "lrpsign_epsilon_0_1", "lrpz_epsilon_0_25_std_x", "zblrp_alpha_1_beta_0_VGG16ILSVRC",
         "w2lrp_sequential_composite_a", "flatlrp_sequential_composite_b", "lrpsign_epsilon_100_mu_0_5")


@pytest.mark.parametrize("name", NAMES)
def test_a_name_and_its_composite_give_identical_maps(name):
    t = twin("residual_add")
    kwargs = sweep_kwargs(name, t.x)
    for by_name, by_composite in zip(both(t, name, **kwargs), both(t, lrp.composite_for(name, **kwargs))):
        np.testing.assert_array_equal(by_name, by_composite)


# --- selection -------------------------------------------------------------------------------------------------

def test_selection_by_type_name_glob_and_predicate_is_the_same_on_both_backends():
    t = twin("cnn2d")
    composite = lrp.Composite([
        (lrp.Name("dense_7"), lrp.Epsilon(0.5)),                      # exact name, before the type entry
        ("dense", lrp.Epsilon(0.1)),                                   # type
        (lrp.Name("conv2d_*"), lrp.AlphaBeta(2, 1)),                   # glob: matches conv2d_0 and conv2d_2 …
        (lambda layer: layer.kind == "conv", lrp.Flat()),              # … so this predicate never wins
    ], default=lrp.Z())
    tf_rules, pt_rules = assignment(composite, t)
    assert tf_rules == pt_rules
    assert tf_rules["dense_7"] == lrp.Epsilon(0.5)          # first match wins
    assert tf_rules["dense_5"] == lrp.Epsilon(0.1)
    assert tf_rules["conv2d_0"] == tf_rules["conv2d_2"] == lrp.AlphaBeta(2, 1)
    assert tf_rules["dropout_6"] == lrp.Pass()


def test_input_selector_default_and_predicates_on_layer_facts():
    t = twin("residual_add")
    composite = lrp.Composite([
        ("input", lrp.Sign()),
        (lambda layer: layer.is_output, lrp.Epsilon(0.25)),
        (lambda layer: layer.kernel_index == 1, lrp.Flat()),
        ("add", lrp.Gradient()),
    ], default=lrp.AlphaBeta(1, 0))
    tf_rules, pt_rules = assignment(composite, t)
    assert tf_rules == pt_rules
    assert tf_rules == {"conv_a": lrp.Sign(), "conv_b": lrp.Flat(), "add": lrp.Gradient(),
                        "conv2d_1": lrp.AlphaBeta(1, 0), "fc": lrp.Epsilon(0.25)}


def test_a_glob_applies_to_the_kinds_its_rule_handles():
    """``Name("dense_*")`` also matches the fused activations (Keras) and the ReLU modules (PyTorch); a kernel rule
    applies to the kernel layers among them, the activations keep pass-through."""
    t = twin("mlp")
    composite = lrp.Composite([(lrp.Name("dense_*"), lrp.Epsilon(0.1))])
    for backend, model in ((TF, t.keras_model), (PT, t.torch_model)):
        chosen = composite.assign(backend.graph(model))
        for rule, layer in chosen.values():
            expected = lrp.Epsilon(0.1) if layer.kind == "dense" else lrp.Pass() if layer.kind == "activation" \
                else lrp.Gradient()
            assert rule == expected, layer
    tf_map, pt_map = both(t, composite)
    np.testing.assert_array_equal(tf_map, signxai.calculate_relevancemap(t.keras_model, t.x, "lrp_epsilon_0_1"))


def test_several_patterns_in_one_name():
    t = twin("cnn2d")
    composite = lrp.Composite([(lrp.Name("conv2d_0", "dense_5"), lrp.Z())], default=lrp.Epsilon(0.1))
    tf_rules, pt_rules = assignment(composite, t)
    assert tf_rules == pt_rules
    assert [name for name, rule in tf_rules.items() if rule == lrp.Z()] == ["conv2d_0", "dense_5"]


def test_name_of_a_separable_convolution_matches_both_factors():
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.SeparableConv2D(4, 3, padding="same", activation="relu", name="sep")(inputs)
    h = keras.layers.Conv2D(4, 3, name="conv")(h)
    outputs = keras.layers.Dense(3, name="fc")(keras.layers.Flatten()(h))
    model = keras.Model(inputs, outputs)
    x = np.random.RandomState(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    composite = lrp.Composite([(lrp.Name("sep"), lrp.AlphaBeta(1, 0))], default=lrp.Epsilon(0.1))
    chosen = {layer.name: rule for rule, layer in composite.assign(TF.graph(model)).values()}
    assert chosen["sep/depthwise"] == chosen["sep"] == lrp.AlphaBeta(1, 0)
    assert chosen["conv"] == chosen["fc"] == lrp.Epsilon(0.1)
    by_name = signxai.calculate_relevancemap(model, x, composite, dtype="float64")
    by_predicate = signxai.calculate_relevancemap(model, x, lrp.Composite(
        [(lambda layer: layer.name.startswith("sep"), lrp.AlphaBeta(1, 0))], default=lrp.Epsilon(0.1)),
        dtype="float64")
    np.testing.assert_array_equal(by_name, by_predicate)
    everything = signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_1", dtype="float64")
    assert np.abs(by_name - everything).max() > 1e-3 * np.abs(everything).max()


def test_equivalent_selections_give_identical_maps():
    t = twin("cnn2d")
    by_type = lrp.Composite([("conv", lrp.AlphaBeta(2, 1)), ("dense", lrp.Epsilon(0.1))])
    by_glob = lrp.Composite([(lrp.Name("conv2d_?"), lrp.AlphaBeta(2, 1))], default=lrp.Epsilon(0.1))
    by_predicate = lrp.Composite([(lambda layer: layer.kernel is not None and not layer.kernel.is_dense,
                                   lrp.AlphaBeta(2, 1))], default=lrp.Epsilon(0.1))
    reference = both(t, "lrp_sequential_composite_b")
    for composite in (by_type, by_glob, by_predicate):
        for mine, theirs in zip(both(t, composite), reference):
            np.testing.assert_array_equal(mine, theirs)


def test_rule_choice_changes_the_map():
    t = twin("cnn2d")
    base = both(t, lrp.Composite([], default=lrp.Epsilon(0.1)))[0]
    changed = both(t, lrp.Composite([(lrp.Name("conv2d_2"), lrp.AlphaBeta(1, 0))], default=lrp.Epsilon(0.1)))[0]
    assert np.abs(base - changed).max() > 1e-2 * np.abs(base).max()


# --- the re-indexing layer type and its deprecated name "gradient" --------------------------------------------------

def test_reindexing_layers_are_of_type_reindex():
    """Max pooling, flatten, padding … are "reindex" layers on both backends (docs/lrp_rules.md)."""
    t = twin("cnn2d")
    from signxai.core.composite import graph_layers
    for backend, model in ((TF, t.keras_model), (PT, t.torch_model)):
        kinds = {layer.kind for layer in graph_layers(backend.graph(model))}
        assert "reindex" in kinds and "gradient" not in kinds
    assert "reindex" in lrp.LAYER_KINDS and "gradient" not in lrp.LAYER_KINDS


def test_the_selector_gradient_is_a_deprecated_alias_of_reindex():
    t = twin("residual_add")
    current = lrp.Composite([("reindex", lrp.Gradient()), ("conv", lrp.Epsilon(0.2))], default=lrp.Z())
    with pytest.warns(DeprecationWarning, match="'gradient' is now called 'reindex'"):
        old = lrp.Composite([("gradient", lrp.Gradient()), ("conv", lrp.Epsilon(0.2))], default=lrp.Z())
    assert old == current and "'reindex'" in repr(old)
    with pytest.warns(DeprecationWarning):
        listed = [("gradient", lrp.Gradient()), ("dense", lrp.Z()), ("conv", lrp.Z())]
        as_map = signxai.calculate_relevancemap(t.keras_model, t.x, "lrp", rules=listed)
    np.testing.assert_array_equal(as_map, signxai.calculate_relevancemap(
        t.keras_model, t.x, "lrp", rules=[("reindex", lrp.Gradient()), ("dense", lrp.Z()), ("conv", lrp.Z())]))
    for model, x in ((t.keras_model, t.x), (t.torch_model, torch_input(t.x))):
        np.testing.assert_array_equal(signxai.calculate_relevancemap(model, x, old),
                                      signxai.calculate_relevancemap(model, x, current))


def test_a_rule_class_written_for_the_old_name_still_applies():
    class OldStyle(lrp.Rule):
        kinds = ("gradient",)

        def relevance(self, ops, layer, inputs, output, R):
            return ops.vjp(layer.node.forward, inputs, R)

    assert OldStyle().applies_to("reindex")
    composite = lrp.Composite([("reindex", OldStyle())], default=lrp.Epsilon(0.1))
    t = twin("cnn2d")
    chosen = [rule for rule, layer in composite.assign(TF.graph(t.keras_model)).values() if layer.kind == "reindex"]
    assert chosen and all(isinstance(rule, OldStyle) for rule in chosen)


# --- the same composite on a Keras model and its PyTorch twin (docs/equivalence.md#agreement-gates) --------------

GATE_CASES = {
    "cnn2d/mixed": ("cnn2d", lrp.Composite([("input", lrp.ZBox(-3.0, 3.0)), (lrp.Name("dense_7"), lrp.Epsilon(0.5)),
                                            ("dense", lrp.StdxEpsilon(0.25)), ("conv", lrp.AlphaBeta(2, 1))])),
    "cnn2d/gamma": ("cnn2d", lrp.Composite([("input", lrp.Flat()), ("conv", Gamma(0.25))],
                                           default=lrp.Epsilon(0.1))),
    "residual_add/add_gradient": ("residual_add", lrp.Composite([("add", lrp.Gradient()), ("input", lrp.WSquare()),
                                                                 (lrp.Name("conv*"), lrp.Epsilon(0.2))],
                                                                default=lrp.Z())),
    "bn_gap_cnn/bn_pass": ("bn_gap_cnn", lrp.Composite([("batchnorm", lrp.Pass()), ("avgpool", lrp.Gradient()),
                                                        ("input", lrp.Sign(0.5))], default=lrp.Epsilon(0.1))),
    "ecg1d/predicate": ("ecg1d", lrp.Composite([(lambda layer: layer.kernel_index is not None
                                                 and layer.kernel_index % 2 == 0, lrp.AlphaBeta(1, 0))],
                                               default=lrp.Epsilon(0.01))),
}


@pytest.mark.parametrize("case", list(GATE_CASES))
def test_cross_framework_gates(case):
    name, composite = GATE_CASES[case]
    agreement = assert_gates(twin(name), composite)
    assert agreement.passed


def test_method_lrp_with_rules_and_a_single_rule():
    t = twin("cnn2d")
    composite = lrp.Composite([("conv", lrp.AlphaBeta(1, 0))], default=lrp.Epsilon(0.1))
    reference = signxai.calculate_relevancemap(t.keras_model, t.x, composite)
    np.testing.assert_array_equal(signxai.calculate_relevancemap(t.keras_model, t.x, "lrp", rules=composite),
                                  reference)
    np.testing.assert_array_equal(signxai.calculate_relevancemap(t.keras_model, t.x, "lrp", rules=[
        ("conv", lrp.AlphaBeta(1, 0)), ("dense", lrp.Epsilon(0.1))]), reference)
    np.testing.assert_array_equal(signxai.calculate_relevancemap(t.keras_model, t.x, lrp.Epsilon(0.1)),
                                  signxai.calculate_relevancemap(t.keras_model, t.x, "lrp_epsilon_0_1"))
    np.testing.assert_array_equal(signxai.calculate_relevancemap(t.torch_model, torch_input(t.x), "lrp",
                                                                 rules=lrp.Z()),
                                  signxai.calculate_relevancemap(t.torch_model, torch_input(t.x), "lrp_z"))
    batch = signxai.calculate_relevancemaps(t.keras_model, t.x, composite, target=[1, 2])
    single = signxai.calculate_relevancemap(t.keras_model, t.x[1], composite, target=2)
    assert np.abs(batch[1] - single).max() <= 1e-5 * np.abs(single).max()
    np.testing.assert_array_equal(signxai.calculate_relevancemap(t.keras_model, t.x, composite), reference)


# --- bad rule maps -------------------------------------------------------------------------------------------------

def test_a_name_no_layer_has_lists_the_layers_closest_first():
    t = twin("cnn2d")
    composite = lrp.Composite([(lrp.Name("conv2d_5"), lrp.Z())], default=lrp.Epsilon(0.1))
    for model, x in ((t.keras_model, t.x), (t.torch_model, torch_input(t.x))):
        with pytest.raises(ValueError, match="no layer of the model is named 'conv2d_5'") as info:
            signxai.calculate_relevancemap(model, x, composite)
        listed = str(info.value).split("closest first: ")[1]
        assert listed.startswith("'conv2d_0', 'conv2d_2'")
        assert "'dense_7'" in listed and "'maxpool2d_1'" in listed
    with pytest.raises(ValueError, match="no layer of the model is named 'fc_\\*'"):
        signxai.calculate_relevancemap(t.keras_model, t.x, lrp.Composite([(lrp.Name("conv*", "fc_*"), lrp.Z())],
                                                                          default=lrp.Z()))


def test_a_rule_for_a_kind_it_cannot_handle():
    with pytest.raises(ValueError, match=r"AlphaBeta\(alpha=1.0, beta=0.0\) cannot handle 'batchnorm' layers"):
        lrp.Composite([("batchnorm", lrp.AlphaBeta(1, 0))])
    with pytest.raises(ValueError, match=r"Pass\(\) cannot handle 'conv' layers"):
        lrp.Composite([("conv", lrp.Pass())])
    with pytest.raises(ValueError, match="input layers are kernel layers"):
        lrp.Composite([("input", lrp.BatchNormRule())])
    with pytest.raises(ValueError, match="cannot handle kernel layers"):
        lrp.Composite([], default=lrp.Pass())
    t = twin("bn_gap_cnn")
    for selector in (lrp.Name("batchnorm_1"), lrp.Name("batchnorm_*"), lambda layer: layer.kind == "batchnorm"):
        composite = lrp.Composite([(selector, lrp.AlphaBeta(1, 0))], default=lrp.Epsilon(0.1))
        for model, x in ((t.keras_model, t.x), (t.torch_model, torch_input(t.x))):
            with pytest.raises(ValueError, match=r"AlphaBeta\(alpha=1.0, beta=0.0\) cannot handle the selected "
                                                 r"layer\(s\) 'batchnorm_1' \(batchnorm, BatchNorm"):
                signxai.calculate_relevancemap(model, x, composite)


def test_a_kernel_layer_without_rule_and_no_default():
    t = twin("cnn2d")
    composite = lrp.Composite([("conv", lrp.AlphaBeta(1, 0))])
    for model, x in ((t.keras_model, t.x), (t.torch_model, torch_input(t.x))):
        with pytest.raises(ValueError, match="gives no rule to the kernel layer\\(s\\) 'dense_5' \\(dense, "
                                             "[A-Za-z]+\\), 'dense_7' \\(dense, [A-Za-z]+\\) and has no default"):
            signxai.calculate_relevancemap(model, x, composite)

    class DenseOnly(lrp.KernelRule):
        kinds = ("dense",)

        def kernel_relevance(self, ops, kernel, a, z, R):
            return a
    with pytest.raises(ValueError, match="default DenseOnly\\(\\) cannot handle kernel layer 'conv2d_0'"):
        signxai.calculate_relevancemap(t.keras_model, t.x, lrp.Composite([], default=DenseOnly()))


def test_input_rule_on_a_model_without_kernel_layers():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Activation("tanh")(inputs))
    x = np.ones((1, 4), np.float32)
    with pytest.raises(ValueError, match="no kernel layer"):
        signxai.calculate_relevancemap(model, x, lrp.Composite([("input", lrp.Sign())]))
    with pytest.raises(ValueError, match="method 'lrpsign_z' applies an input-layer rule, but the model has no "
                                         "kernel layer"):
        signxai.calculate_relevancemap(model, x, "lrpsign_z")


@pytest.mark.parametrize("rules,message", [
    ("dense", "list of \\(selector, rule\\) pairs"),
    ([("dense",)], "must be a \\(selector, rule\\) pair"),
    ([("dense", "epsilon")], "is not a rule"),
    ([("dens", lrp.Z())], "unknown layer type 'dens'.*Did you mean: dense"),
    ([(keras.layers.Dense, lrp.Z())], "framework classes such as Dense are not selectors"),
    ([(lrp.Z(), lrp.Z())], "a selector is a layer type string"),
    ([(3, lrp.Z())], "a selector is a layer type string"),
])
def test_malformed_rule_maps(rules, message):
    with pytest.raises(ValueError, match=message):
        lrp.Composite(rules)


def test_bad_arguments_to_the_api():
    t = twin("mlp")
    with pytest.raises(ValueError, match="requires rules="):
        signxai.calculate_relevancemap(t.keras_model, t.x, "lrp")
    with pytest.raises(TypeError, match="rules must be a signxai.lrp.Composite"):
        signxai.calculate_relevancemap(t.keras_model, t.x, "lrp", rules="epsilon")
    with pytest.raises(TypeError, match="unexpected keyword argument.*'epsilon'"):
        signxai.calculate_relevancemap(t.keras_model, t.x, lrp.Composite([], default=lrp.Z()), epsilon=0.1)
    with pytest.raises(TypeError, match="unexpected keyword argument.*'rules'"):
        signxai.calculate_relevancemap(t.keras_model, t.x, "lrp_z", rules=lrp.Z())
    with pytest.raises(ValueError, match="either as the method or as rules="):
        resolve_method(lrp.Z(), rules=lrp.Z())
    with pytest.raises(ValueError, match="Name\\(\\) needs at least one"):
        lrp.Name()


def test_composite_is_data():
    first = lrp.Composite([("input", lrp.Sign()), (lrp.Name("fc*"), lrp.Epsilon(0.1))], default=lrp.Z())
    assert first == lrp.Composite([("input", lrp.Sign()), (lrp.Name("fc*"), lrp.Epsilon(0.1))], default=lrp.Z())
    assert first != lrp.Composite([("input", lrp.Sign())], default=lrp.Z())
    assert repr(first) == ("Composite([('input', Sign(mu=0.0)), (Name('fc*'), Epsilon(epsilon=0.1))], "
                           "default=Z())")
    method = resolve_method(first)
    assert method.base == "lrp" and method.composite is first and dict(method.params) == {}


# --- the examples of docs/lrp_rules.md run as written -----------------------------------------------------------------

def _doc_blocks():
    import pathlib
    import re
    text = (pathlib.Path(__file__).parents[2] / "docs" / "lrp_rules.md").read_text()
    return [block for block in re.findall(r"```python\n(.*?)```", text, re.S) if ">>>" not in block]


@pytest.mark.parametrize("block", [0, 1], ids=["five_lines", "gamma_rule"])
def test_documented_examples(block):
    code = _doc_blocks()[block]
    t = twin("residual_add")
    results = []
    for model, x in ((t.keras_model, t.x), (t.torch_model, torch_input(t.x))):
        namespace = {"signxai": signxai, "model": model, "x": x}
        exec(code, namespace)
        results.append(namespace["R"])
    tf_map, pt_map = results[0], to_channels_last(results[1])
    assert tf_map.shape == t.x.shape and np.abs(tf_map).max() > 0
    assert np.abs(tf_map - pt_map).max() <= 1e-5 * np.abs(tf_map).max()
    if block == 0:
        assert_gates(t, namespace["rules"])
