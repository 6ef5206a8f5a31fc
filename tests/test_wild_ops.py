"""Models as users write them (issue 19): the verified capture (gate 4, docs/api.md#verified-capture), semantics by
what runs (docs/layers.md#what-runs), the torch.export capture (docs/layers.md#export-capture), Keras subclassed
models and custom layers, model outputs, and the ops seen in the wild (docs/layers.md#clamp). Small models, default
tier; the third-party zoos are in tests/test_wild_zoos.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import keras
from keras import layers as L

import signxai
from signxai.core.verify import CaptureMismatch
from signxai.torch_signxai.backend import BACKEND as TORCH
from gates import assert_gates, autograd_gradient
from twins import Twin, set_twin_weights

RULE_BASED = ("lrp_epsilon_0_1", "lrp_alpha_1_beta_0", "guided_backprop", "deconvnet", "grad_cam")


def _explain(model, x, method, **kwargs):
    return signxai.calculate_relevancemap(model, x, method, **kwargs)


def _calibrated(model, shape, seed=0):
    """BatchNorm statistics from three train-mode passes on random data; eval mode after."""
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn((8,) + shape, generator=generator))
    return model.eval()


def _seeded(build, seed=0):
    """A model built with the given weights seed (PyTorch's global generator is restored afterwards)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


def _same_maps(model_a, model_b, x, methods=RULE_BASED + ("gradient",)):
    for method in methods:
        a, b = _explain(model_a, x, method, target=1), _explain(model_b, x, method, target=1)
        assert np.abs(a).max() > 0, method
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.abs(b).max(), err_msg=method)


# --- semantics by what runs ----------------------------------------------------------------------------------------

class BatchNormAct(nn.BatchNorm2d):
    """As timm's BatchNormAct2d: a BatchNorm2d subclass that applies its activation in forward."""

    def __init__(self, channels):
        super().__init__(channels)
        self.act = nn.Hardswish()

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         self.training, self.momentum, self.eps)
        return self.act(x)


class StdConv(nn.Conv2d):
    """As timm's ScaledStdConv2d: a Conv2d subclass that standardises its weight in forward."""

    def forward(self, x):
        weight = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True,
                              momentum=0.0, eps=1e-6).reshape_as(self.weight)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def _timm_like():
    return _calibrated(_seeded(lambda: nn.Sequential(StdConv(3, 6, 3), BatchNormAct(6), nn.Conv2d(6, 4, 3),
                                                     nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                                     nn.Linear(4, 3))), (3, 9, 9))


def _plain_equivalent(model):
    """The same function written with plain modules: the standardised weight copied into an nn.Conv2d, BN + act."""
    std, bn = model[0], model[1]
    conv = nn.Conv2d(3, 6, 3)
    with torch.no_grad():
        weight = F.batch_norm(std.weight.reshape(1, 6, -1), None, None, training=True, momentum=0.0,
                              eps=1e-6).reshape_as(std.weight)
        conv.weight.copy_(weight)
        conv.bias.copy_(std.bias)
    plain_bn = nn.BatchNorm2d(6)
    plain_bn.load_state_dict(bn.state_dict())
    return nn.Sequential(conv, plain_bn, nn.Hardswish(), *list(model)[2:]).eval()


def test_subclasses_that_compute_otherwise_are_traced_into_not_replayed_as_their_base():
    model = _timm_like()
    x = np.random.RandomState(0).randn(2, 3, 9, 9).astype(np.float32)
    graph = TORCH.graph(model)
    assert [n.layer_type for n in graph.nodes[1:4]] == ["conv2d", "batch_norm", "Hardswish"]
    # the gradient is torch.autograd's on the model itself
    gradient = _explain(model, x, "gradient", target=1)
    np.testing.assert_array_equal(gradient, autograd_gradient(model, x, 1, "float32"))
    # every rule-based method gives the maps of the same function written with plain modules
    _same_maps(model, _plain_equivalent(model), x)


def test_a_capture_that_is_not_the_model_is_refused_naming_the_layer():
    """A deliberately wrong mapping: a module that doubles its input, registered as the identity."""
    class Double(nn.Module):
        def forward(self, x):
            return 2.0 * x

    model = _seeded(lambda: nn.Sequential(nn.Conv2d(1, 2, 3), Double(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))).eval()
    x = np.random.RandomState(1).randn(2, 1, 6, 6).astype(np.float32)
    signxai.register_layer(Double, "identity")
    try:
        for method in RULE_BASED:
            with pytest.raises(CaptureMismatch, match=r"does not reproduce.*first layer whose captured form differs "
                                                      r"from the layer itself is '1' \(Double\).*register_layer"):
                _explain(model, x, method, target=0)
        # the gradient family runs on the model itself
        np.testing.assert_array_equal(_explain(model, x, "gradient", target=0),
                                      autograd_gradient(model, x, 0, "float32"))
    finally:
        signxai.unregister_layer(Double)


def test_keras_capture_mismatch_is_refused_too():
    class Double(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    inputs = keras.Input((5,))
    model = keras.Model(inputs, L.Dense(3)(Double()(L.Dense(4)(inputs))))
    x = np.random.RandomState(2).randn(2, 5).astype(np.float32)
    assert np.abs(_explain(model, x, "lrp_epsilon_0_1")).max() > 0  # descended into: x * 2 is a constant scaling
    signxai.register_layer(Double, "identity")
    try:
        fresh = keras.Model(inputs, model.layers[-1].output)  # graphs are cached per model
        with pytest.raises(CaptureMismatch, match=r"'double' \(Double\)"):
            _explain(fresh, x, "lrp_epsilon_0_1")
    finally:
        signxai.unregister_layer(Double)


# --- torch.export capture ------------------------------------------------------------------------------------------

class Untraceable(nn.Module):
    """Shape-dependent control flow and iteration: torch.fx cannot trace it; a ModelOutput-like dict output."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
                                     nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))])
        self.fc = nn.Linear(4, 3)

    def forward(self, x, output_hidden_states=False):
        h = self.blocks[0](x)
        if h.shape[-1] > 4:  # control flow on a traced size
            h = h + self.blocks[1](h)
        h = F.relu(h)
        pooled = h.mean(dim=(2, 3))
        return {"logits": self.fc(pooled), "pooled": pooled}


class Traceable(Untraceable):
    def forward(self, x):
        h = self.blocks[0](x)
        h = F.relu(h + self.blocks[1](h))
        return self.fc(h.mean(dim=(2, 3)))


def test_export_capture_runs_where_fx_cannot_and_equals_the_fx_capture():
    untraceable = _calibrated(_seeded(Untraceable), (3, 6, 6))
    traceable = Traceable().eval()
    traceable.load_state_dict(untraceable.state_dict())
    x = np.random.RandomState(3).randn(3, 3, 6, 6).astype(np.float32)
    with pytest.raises(signxai.torch_signxai.backend.TraceError):
        TORCH.graph(untraceable)
    graph = TORCH.graph_for(untraceable, x)
    assert graph.nodes[graph.cam_node("blocks.1.0")].layer_type == "conv2d"  # module paths name the nodes
    for method in RULE_BASED + ("lrp_z", "lrpsign_epsilon_0_1", "gradient"):
        for dtype in ("float32", "float64"):
            a = _explain(untraceable, x, method, dtype=dtype)
            b = _explain(traceable, x, method, dtype=dtype)
            tolerance = 1e-12 if dtype == "float64" else 1e-5
            assert np.abs(b).max() > 0, method
            np.testing.assert_allclose(a, b, rtol=0, atol=tolerance * np.abs(b).max(), err_msg=(method, dtype))
    # a batch of one and a new batch size reuse the capture (dynamic batch axis)
    np.testing.assert_allclose(_explain(untraceable, x[:1], "lrp_epsilon_0_1"),
                               _explain(traceable, x[:1], "lrp_epsilon_0_1"), rtol=0, atol=1e-6)
    untraceable.train()  # every module's flag is restored after the eval-mode capture and passes
    _explain(untraceable, x, "lrp_epsilon_0_1")
    assert all(m.training for m in untraceable.modules())


def test_container_outputs_need_an_unambiguous_logits_entry():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x):
            return self.a(x), self.b(x)

    x = np.ones((2, 4), np.float32)
    for method in ("gradient", "lrp_epsilon_0_1"):
        with pytest.raises(ValueError, match=r"output is a tuple with 2 tensors \(\[0, 1\]\) and no 'logits'"):
            _explain(_seeded(Pair), x, method)


# --- softmax, optional parameters, several inputs ------------------------------------------------------------------

class InnerSoftmax(nn.Module):
    """A softmax inside (an attention-like gate over positions), logits at the output."""

    def __init__(self):
        super().__init__()
        self.score, self.value, self.fc = nn.Linear(4, 1), nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x, mask=None):
        weights = torch.softmax(self.score(x), dim=1)
        return self.fc((weights * self.value(x)).sum(dim=1))


class ConstantWeights(nn.Module):
    """InnerSoftmax with its attention weights for one input frozen as a constant."""

    def __init__(self, model, weights):
        super().__init__()
        self.value, self.fc = model.value, model.fc
        self.register_buffer("weights", weights)

    def forward(self, x):
        return self.fc((self.weights * self.value(x)).sum(dim=1))


def test_a_softmax_inside_is_a_gate_and_no_reason_to_refuse_the_gradient_family():
    model = _seeded(InnerSoftmax).eval()
    x = np.random.RandomState(4).randn(2, 5, 4).astype(np.float32)
    np.testing.assert_array_equal(_explain(model, x, "gradient", target=2),
                                  autograd_gradient(model, x, 2, "float32"))
    assert np.abs(_explain(model, x, "integrated_gradients", target=2, steps=4)).max() > 0
    # attention pooling: LRP holds the weights constant (CP-LRP), so its map is that of the model with the weights of
    # this input frozen
    with torch.no_grad():
        weights = torch.softmax(model.score(torch.tensor(x[:1])), dim=1)
    frozen = ConstantWeights(model, weights).eval()
    for method in ("lrp_epsilon_0_1", "lrp_z", "lrp_alpha_1_beta_0"):
        mine, reference = _explain(model, x[:1], method, target=2), _explain(frozen, x[:1], method, target=2)
        assert np.abs(reference).max() > 0
        np.testing.assert_allclose(mine, reference, rtol=0, atol=1e-6 * np.abs(reference).max(), err_msg=method)
    with pytest.raises(ValueError, match="applies a softmax: explanations need logits"):
        _explain(_seeded(lambda: nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=-1))), x[:, 0], "gradient")


def test_keras_multi_head_attention_is_explained():
    inputs = keras.Input((5, 4))
    h = L.MultiHeadAttention(2, 4)(inputs, inputs)
    model = keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling1D()(h)))
    x = np.random.RandomState(5).randn(2, 5, 4).astype(np.float32)
    gradient = _explain(model, x, "gradient", target=1)
    np.testing.assert_allclose(gradient, autograd_gradient(model, x, 1, "float32"), rtol=0,
                               atol=1e-6 * np.abs(gradient).max())
    relevance = _explain(model, x, "lrp_epsilon_0_1", target=1)  # attention-aware LRP (docs/transformers.md)
    assert relevance.shape == x.shape and np.isfinite(relevance).all() and np.abs(relevance).max() > 0


def test_two_required_inputs_given_one_array_are_named_for_every_family():
    class TwoInputs(nn.Module):
        def forward(self, signal, demographics):
            return signal.sum(1, keepdim=True) + demographics

    for method in ("gradient", "lrp_epsilon_0_1"):  # several inputs are explained from a list or dict of arrays
        with pytest.raises(ValueError, match=r"2 inputs \['signal', 'demographics'\], but x is one array"):
            _explain(TwoInputs(), np.ones((2, 3), np.float32), method)
    signal = keras.Input((8, 2))  # a one-input model given a list of arrays keeps its message
    model = keras.Model(signal, L.Dense(2)(L.Flatten()(signal)))
    with pytest.raises(ValueError, match="list of 2 arrays of different shapes"):
        signxai.calculate_relevancemaps(model, [np.ones((2, 8, 2)), np.ones((2, 3))], "gradient")


# --- ops seen in the wild ------------------------------------------------------------------------------------------

class Wild(nn.Module):
    """clamp(min=0) as ReLU, a PoolFormer token mixer (x − avg_pool(x)), a ResMLP affine (addcmul)."""

    def __init__(self, plain=False):
        super().__init__()
        self.plain = plain
        self.conv, self.conv2, self.fc = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 4, 1), nn.Linear(4, 3)
        self.alpha, self.beta = nn.Parameter(torch.linspace(0.5, 1.5, 4)), nn.Parameter(torch.linspace(-.2, .2, 4))

    def forward(self, x):
        h = self.conv(x)
        h = F.relu(h) if self.plain else h.clamp(min=0)
        pooled = F.avg_pool2d(h, 3, 1, 1, count_include_pad=False)
        h = h + self.conv2(pooled - h)  # PoolFormer: the difference of two input-dependent tensors
        h = h.mean(dim=(2, 3))
        h = h * self.alpha + self.beta if self.plain else torch.addcmul(self.beta, self.alpha, h)
        return self.fc(h)


def test_clamp_and_addcmul_are_their_plain_forms():
    wild, plain = _seeded(Wild).eval(), Wild(plain=True).eval()
    plain.load_state_dict(wild.state_dict())
    x = np.random.RandomState(6).randn(2, 2, 5, 5).astype(np.float32)
    kinds = [n.kind for n in TORCH.graph(wild).nodes]
    assert kinds.count("relu") == 1 and "unsupported" not in kinds
    _same_maps(wild, plain, x)


def _poolformer_twin():
    inputs = keras.Input((5, 5, 2))
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    pooled = L.AveragePooling2D(3, 1, padding="same")(h)
    h = L.Add()([h, L.Conv2D(4, 1, name="conv2")(L.Subtract()([pooled, h]))])
    keras_model = keras.Model(inputs, L.Dense(3, name="fc")(L.GlobalAveragePooling2D()(h)))

    class PoolFormer(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.conv2, self.fc = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 4, 1), nn.Linear(4, 3)

        def forward(self, x):
            h = F.relu(self.conv(x))
            h = h + self.conv2(F.avg_pool2d(h, 3, 1, 1, count_include_pad=False) - h)
            return self.fc(h.mean(dim=(2, 3)))

    torch_model = PoolFormer().eval()
    rng = np.random.RandomState(9)
    set_twin_weights(keras_model, torch_model, ("conv", "conv2", "fc"), rng, 0.6, 0.2)
    return Twin("poolformer", keras_model, torch_model, rng.uniform(-1, 1, (2, 5, 5, 2)).astype(np.float32), 2)


def test_subtraction_of_two_tensors_is_a_weighted_sum_on_both_frameworks():
    t = _poolformer_twin()
    for method in ("lrp_epsilon_0_1", "lrp_z", "guided_backprop", "lrp_alpha_1_beta_0"):
        assert assert_gates(t, method).peak > 0
    # LRP-z on a bias-free difference conserves: Σ R = the logit (float64)
    x = np.random.RandomState(10).randn(1, 4).astype(np.float32).astype(np.float64)  # what float32 inputs hold

    class Difference(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = (nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False),
                                      nn.Linear(4, 2, bias=False))

        def forward(self, x):
            return self.c(self.a(x) - self.b(x))
    model = _seeded(Difference).eval()
    relevance = _explain(model, x, "lrp_z", target=0, dtype="float64")
    logit = model.double()(torch.tensor(x))[0, 0].item()
    assert abs(relevance.sum() - logit) <= 1e-12 * abs(logit)


# --- Keras subclassed models ---------------------------------------------------------------------------------------

class SubclassedNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = L.Conv2D(4, 3, activation="relu")
        self.bn = L.BatchNormalization()
        self.flat, self.fc = L.Flatten(), L.Dense(3)

    def call(self, x, training=False):
        return self.fc(self.flat(self.bn(self.conv(x), training=training)))


def test_keras_subclassed_model_runs_every_family_as_its_functional_equal():
    rng = np.random.RandomState(13)  # weights for which every family's map is non-zero (Grad-CAM included)
    x = rng.randn(2, 6, 6, 1).astype(np.float32)
    model = SubclassedNet()
    model(x)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) if "variance" not in w.path
                       else rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in model.weights])
    inputs = keras.Input((6, 6, 1))
    functional = keras.Model(inputs, model.fc(model.flat(model.bn(model.conv(inputs)))))
    assert len(model.conv._inbound_nodes) == 1  # (the functional twin above added one node; the explanation adds none)
    nodes_before = len(model.conv._inbound_nodes)
    np.testing.assert_allclose(_explain(model, x, "gradient", target=1), autograd_gradient(model, x, 1, "float32"),
                               rtol=0, atol=1e-6)
    for method in RULE_BASED + ("integrated_gradients",):
        for dtype in ("float32", "float64"):
            a, b = _explain(model, x, method, dtype=dtype, target=1), _explain(functional, x, method, dtype=dtype,
                                                                               target=1)
            assert np.abs(b).max() > 0, (method, dtype)
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.abs(b).max(), err_msg=(method, dtype))
    assert len(model.conv._inbound_nodes) == nodes_before  # the caller's layers are left as they were


def test_keras_subclassed_model_that_cannot_run_symbolically_keeps_the_gradient_family():
    import tensorflow as tf

    class Cumulative(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = L.Dense(3)

        def call(self, x):
            return self.fc(tf.math.cumsum(x, axis=1))

    model = Cumulative()
    x = np.random.RandomState(12).randn(2, 5).astype(np.float32)
    model(x)
    np.testing.assert_allclose(_explain(model, x, "gradient", target=0), autograd_gradient(model, x, 0, "float32"),
                               rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"subclassed Keras model 'cumulative' could not be captured"):
        _explain(model, x, "lrp_epsilon_0_1")


def test_keras_subclass_of_a_known_layer_that_computes_otherwise_is_refused_by_name():
    class Scaled(L.Dense):
        def call(self, x):
            return super().call(x) * 2.0

    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Dense(2)(Scaled(3)(inputs)))
    with pytest.raises(ValueError, match=r"'scaled' \(Scaled\).*Scaled subclasses Dense but defines its own"):
        _explain(model, np.ones((1, 4), np.float32), "lrp_epsilon_0_1")


# --- Grad-CAM's default layer ----------------------------------------------------------------------------------------

def test_grad_cam_default_is_the_last_spatial_block_output_on_a_pre_activation_network():
    """Pre-activation: the last convolution's raw output feeds a residual sum, then BN and ReLU. Grad-CAM's default is
    the block output after them, as pytorch-grad-cam's layer4[-1]; the last convolution alone gives all zeros here."""
    class PreAct(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.conv = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
            self.bn, self.fc = nn.BatchNorm2d(4), nn.Linear(4, 2)

        def forward(self, x):
            h = self.stem(x)
            h = F.relu(self.bn(h + self.conv(h)))
            return self.fc(h.mean(dim=(2, 3)))

    model = _calibrated(_seeded(PreAct), (1, 6, 6))
    x = np.random.RandomState(13).randn(2, 1, 6, 6).astype(np.float32)
    default = _explain(model, x, "grad_cam", target=0)
    graph = TORCH.graph(model)
    relu = [i for i, n in enumerate(graph.nodes) if n.kind == "relu"][-1]
    assert graph.cam_node(None, TORCH.node_shapes(model, graph, x)) == relu
    assert np.abs(default).max() > 0


class GRN(nn.Module):
    """ConvNeXtV2's global response normalisation (channels-last), β = 0 for conservation."""

    def __init__(self, channels):
        super().__init__()
        self.gamma = nn.Parameter(torch.linspace(0.5, 1.5, channels))

    def forward(self, x):
        gx = x.norm(p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return x + self.gamma * (x * nx)


class GRNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.grn, self.fc = nn.Conv2d(2, 4, 3, bias=False), GRN(4), nn.Linear(4, 3, bias=False)

    def forward(self, x):
        h = self.grn(self.conv(x).permute(0, 2, 3, 1))
        return self.fc(h.mean(dim=(1, 2)))


def test_grn_normaliser_is_held_constant_and_lrp_z_conserves():
    model = _seeded(GRNNet).eval()
    x = np.random.RandomState(14).randn(2, 2, 6, 6).astype(np.float32)
    kinds = {n.name: n.kind for n in TORCH.graph(model).nodes}
    assert kinds["norm"] == "aux" and kinds["mul"] == kinds["mul_1"] == "pass"
    relevance = _explain(model, x, "lrp_z", target=1, dtype="float64")
    logits = model.double()(torch.tensor(x, dtype=torch.float64))[:, 1].detach().numpy()
    np.testing.assert_allclose(relevance.reshape(2, -1).sum(axis=1), logits, rtol=1e-10)
    np.testing.assert_array_equal(_explain(model.float(), x, "gradient", target=1),
                                  autograd_gradient(model, x, 1, "float32"))
