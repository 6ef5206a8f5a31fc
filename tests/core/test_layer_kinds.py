"""The layer kinds of real architectures (docs/layers.md): separable convolutions, gated products (squeeze-excitation,
hard sigmoid written out, swish written out), constant scalings (LayerScale, parameters), inference identities
(stochastic depth) and shape arithmetic in traced graphs — their semantics, and cross-framework agreement
(docs/equivalence.md#agreement-gates) on a Keras/PyTorch twin that contains all of them."""
from __future__ import annotations

import copy
import functools
import warnings

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import signxai
from gates import assert_gates, assert_gradient_is_autograd
from signxai.common.agreement import sweep_kwargs
from twins import Twin, set_twin_weights, torch_input

METHODS = ("gradient", "gradient_x_sign", "guided_backprop", "deconvnet", "integrated_gradients", "smoothgrad",
           "vargrad", "grad_cam", "guided_grad_cam", "lrp_z", "lrp_epsilon_0_1", "lrpsign_epsilon_0_25_std_x",
           "lrpz_epsilon_0_1_std_x", "lrp_alpha_1_beta_0", "lrp_alpha_2_beta_1", "lrp_sequential_composite_a",
           "lrp_sequential_composite_b", "w2lrp_epsilon_0_1", "flatlrp_z", "zblrp_epsilon_0_1",
           "lrpsign_z", "lrpsign_epsilon_0_1_mu_0_5")


# --- the twin --------------------------------------------------------------------------------------------------

def _keras_gated_net():
    from keras.src.applications.convnext import LayerScale

    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(epsilon=1e-3, name="stem_bn")(x)
    x = keras.layers.Activation("hard_swish")(x)
    x = keras.layers.SeparableConv2D(8, 3, padding="same", activation="relu", name="separable")(x)
    # squeeze-excitation with the hard sigmoid written out as in keras.applications' MobileNetV3
    se = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    se = keras.layers.Conv2D(4, 1, activation="relu", name="se_reduce")(se)
    se = keras.layers.Conv2D(8, 1, name="se_expand")(se)
    gate = keras.layers.ReLU(6.0)(se + 3.0) * (1.0 / 6.0)
    x = keras.layers.Multiply()([x, gate])
    # swish written out, then a per-channel layer scale
    h = keras.layers.Conv2D(8, 3, padding="same", name="conv_swish")(x)
    x = keras.layers.Multiply()([h, keras.layers.Activation("sigmoid")(h)])
    x = LayerScale(0.5, 8, name="layer_scale")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, name="fc")(x)
    return keras.Model(inputs, outputs)


class TorchGatedNet(nn.Module):
    """The PyTorch twin, written as torchvision writes such blocks (functional gates, ``x.size()`` arithmetic)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(8, eps=1e-3)
        self.act = nn.Hardswish()
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.pointwise = nn.Conv2d(8, 8, 1)
        self.se_reduce = nn.Conv2d(8, 4, 1)
        self.se_expand = nn.Conv2d(4, 8, 1)
        self.conv_swish = nn.Conv2d(8, 8, 3, padding=1)
        self.gamma = nn.Parameter(torch.full((8, 1, 1), 0.5))
        self.last_conv = nn.Conv2d(8, 6, 3, padding=1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = self.act(self.stem_bn(self.stem(x)))
        x = F.relu(self.pointwise(self.depthwise(x)))
        se = F.adaptive_avg_pool2d(x, 1)
        se = self.se_expand(F.relu(self.se_reduce(se)))
        x = x * (F.relu6(se + 3.0) / 6.0)
        h = self.conv_swish(x)
        x = h * torch.sigmoid(h)
        x = self.gamma * x
        x = F.relu(self.last_conv(x))
        n, c = x.size(0), x.size(1)
        x = x.mean(dim=(2, 3)).view(n, c // 1)
        return self.fc(x)


def _conv(kernel):
    return torch.tensor(np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1))))


@functools.lru_cache(maxsize=None)
def gated_twin() -> Twin:
    keras_model, torch_model = _keras_gated_net(), TorchGatedNet().eval()
    rng = np.random.RandomState(0)
    for layer in keras_model.layers:
        layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) if "variance" not in v.path else
                           rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                           for w, v in zip(layer.get_weights(), layer.weights)])
    with torch.no_grad():
        for name in ("stem", "se_reduce", "se_expand", "conv_swish", "last_conv"):
            kernel, bias = keras_model.get_layer(name).get_weights()
            getattr(torch_model, name).weight.copy_(_conv(kernel))
            getattr(torch_model, name).bias.copy_(torch.tensor(bias))
        gamma, beta, mean, variance = keras_model.get_layer("stem_bn").get_weights()
        for target, value in zip(("weight", "bias", "running_mean", "running_var"), (gamma, beta, mean, variance)):
            getattr(torch_model.stem_bn, target).copy_(torch.tensor(value))
        depthwise, pointwise, bias = keras_model.get_layer("separable").get_weights()
        torch_model.depthwise.weight.copy_(torch.tensor(np.ascontiguousarray(np.transpose(depthwise, (2, 3, 0, 1)))))
        torch_model.pointwise.weight.copy_(_conv(pointwise))
        torch_model.pointwise.bias.copy_(torch.tensor(bias))
        (scale,) = keras_model.get_layer("layer_scale").get_weights()
        torch_model.gamma.copy_(torch.tensor(scale).reshape(8, 1, 1))
        kernel, bias = keras_model.get_layer("fc").get_weights()
        torch_model.fc.weight.copy_(torch.tensor(kernel.T))
        torch_model.fc.bias.copy_(torch.tensor(bias))
    x = rng.uniform(-1, 1, (2, 10, 10, 3)).astype(np.float32)
    return Twin("gated", keras_model, torch_model, x, 2)


def test_twin_outputs_match():
    t = gated_twin()
    keras_logits = keras.ops.convert_to_numpy(t.keras_model(t.x))
    with torch.no_grad():
        torch_logits = t.torch_model(torch.tensor(torch_input(t.x))).numpy()
    assert np.abs(keras_logits).max() > 0.1
    np.testing.assert_allclose(keras_logits, torch_logits, rtol=0, atol=1e-5 * np.abs(keras_logits).max())


@pytest.mark.parametrize("method", METHODS)
def test_gated_twin_cross_framework(method):
    t = gated_twin()
    kwargs = sweep_kwargs(method, t.x)
    if method.startswith("zblrp"):
        kwargs.update(low=-1.0, high=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a vanished-relevance warning fails the test
        agreement = assert_gates(t, method, **kwargs)
    assert agreement.peak > 0


# --- semantics ---------------------------------------------------------------------------------------------------

def _keras_chain(separable: bool):
    inputs = keras.Input((9, 9, 3))
    if separable:
        x = keras.layers.SeparableConv2D(5, 3, padding="same", depth_multiplier=2, activation="relu",
                                         name="sep")(inputs)
    else:
        x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False, name="dw")(inputs)
        x = keras.layers.Conv2D(5, 1, activation="relu", name="pw")(x)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))


@pytest.mark.parametrize("method", ["lrp_epsilon_0_1", "lrpsign_epsilon_0_1", "lrp_alpha_2_beta_1", "w2lrp_z",
                                    "zblrp_z", "guided_backprop", "lrp_sequential_composite_b"])
def test_separable_conv_is_depthwise_then_pointwise(method):
    """SeparableConv2D = its bias-free depthwise kernel layer (an input layer) followed by its pointwise layer."""
    separable, factored = _keras_chain(True), _keras_chain(False)
    rng = np.random.RandomState(3)
    depthwise, pointwise, bias = (rng.normal(0, 0.5, w.shape).astype(np.float32)
                                  for w in separable.get_layer("sep").get_weights())
    separable.get_layer("sep").set_weights([depthwise, pointwise, bias])
    factored.get_layer("dw").set_weights([depthwise])
    factored.get_layer("pw").set_weights([pointwise, bias])
    for name in ("conv", "fc"):
        weights = [rng.normal(0, 0.5, w.shape).astype(np.float32) for w in separable.get_layer(name).get_weights()]
        separable.get_layer(name).set_weights(weights)
        factored.get_layer(name).set_weights(weights)
    x = rng.uniform(-1, 1, (2, 9, 9, 3)).astype(np.float32)
    kwargs = {"low": -1.0, "high": 1.0} if method.startswith("zb") else {}
    a = signxai.calculate_relevancemaps(separable, x, method, dtype="float64", **kwargs)
    b = signxai.calculate_relevancemaps(factored, x, method, dtype="float64", **kwargs)
    assert np.abs(b).max() > 0
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(b).max())


class _Gated(nn.Module):
    def __init__(self, gate):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.se = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4 * 6 * 6, 3)
        self.gate = gate

    def forward(self, x):
        h = F.relu(self.conv(x))
        return self.fc(torch.flatten(h * self.gate(self.se(h.mean(dim=(2, 3), keepdim=True))), 1))


def _ungated(model, x):
    """The same network with the gate values frozen to constants: LRP must give the same map (signal-take-all)."""
    class Frozen(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = model.conv, model.fc
            with torch.no_grad():
                h = F.relu(model.conv(x))
                self.register_buffer("g", model.gate(model.se(h.mean(dim=(2, 3), keepdim=True))))

        def forward(self, t):
            return self.fc(torch.flatten(F.relu(self.conv(t)) * self.g, 1))
    return Frozen()


@pytest.mark.parametrize("gate", [nn.Sigmoid(), nn.Hardsigmoid(), lambda t: F.relu6(t + 3) / 6])
@pytest.mark.parametrize("method", ["lrp_z", "lrp_epsilon_0_1", "lrp_alpha_1_beta_0", "lrpsign_z"])
def test_gate_receives_no_relevance(gate, method):
    torch.manual_seed(0)
    model = _Gated(gate).double()
    # float32 values: the library explains x as float32 (then float64), and the frozen gate must see the same x
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1)).double()
    frozen = _ungated(model, x)
    a = signxai.calculate_relevancemap(model, x, method, dtype="float64")
    b = signxai.calculate_relevancemap(frozen, x, method, dtype="float64")
    assert np.abs(b).max() > 0
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-13 * np.abs(b).max())


def test_guided_backprop_takes_the_exact_jacobian_of_a_product():
    """Without ReLUs, guided backprop is the gradient, through both operands of a gated product."""
    class Smooth(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.se, self.fc = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1), nn.Linear(4, 3)

        def forward(self, x):
            h = torch.tanh(self.conv(x))
            return self.fc((h * torch.sigmoid(self.se(h))).mean(dim=(2, 3)))
    torch.manual_seed(0)
    model, x = Smooth(), torch.rand(2, 3, 7, 7, generator=torch.Generator().manual_seed(2))
    gbp = signxai.calculate_relevancemaps(model, x, "guided_backprop", target=1, dtype="float64")
    grad = signxai.calculate_relevancemaps(model, x, "gradient", target=1, dtype="float64")
    assert np.abs(grad).max() > 0
    np.testing.assert_allclose(gbp, grad, rtol=0, atol=1e-12 * np.abs(grad).max())


class _Product(nn.Module):
    def __init__(self, second):
        super().__init__()
        self.a, self.b, self.fc = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.second = second

    def forward(self, x):
        return self.fc(self.a(x) * self.second(self.b(x)))


@pytest.mark.parametrize("second", [torch.tanh, lambda t: t, F.relu6, torch.sigmoid])
def test_product_without_single_gate_takes_the_uniform_rule(second):
    """A product whose operands are not exactly one gate is bilinear: each operand receives half (AttnLRP's uniform
    rule, docs/transformers.md#bilinear); on a bias-free model the Z rule then conserves the logit."""
    model = _Product(second)
    if second is torch.sigmoid:  # both operands gates
        model.a = nn.Sequential(model.a, nn.Sigmoid())
    for layer in (model.a, model.b, model.fc):
        for module in layer.modules():
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
    x = np.random.RandomState(0).normal(size=(3, 4)).astype(np.float32)
    relevance = signxai.calculate_relevancemap(model, x, "lrp_z", dtype="float64", target=1).astype(np.float64)
    logits = copy.deepcopy(model).double()(torch.as_tensor(x, dtype=torch.float64)).detach().numpy()[:, 1]
    if second is torch.sigmoid or second is F.relu6:  # sigmoid (and ReLU6's clipping) is an activation: not
        assert np.abs(relevance).sum() > 0          # linear, only the product's split is conservative
    else:
        np.testing.assert_allclose(relevance.reshape(3, -1).sum(1), logits, rtol=1e-9)
    assert np.abs(signxai.calculate_relevancemap(model, x, "guided_backprop")).max() > 0  # exact VJP there


def test_keras_product_without_gate_takes_the_uniform_rule():
    inputs = keras.Input((4,))
    a = keras.layers.Dense(4, name="a", use_bias=False)(inputs)
    b = keras.layers.Dense(4, activation="tanh", name="b", use_bias=False)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, use_bias=False)(keras.layers.Multiply(name="gating")([a, b])))
    x = np.random.RandomState(1).normal(size=(2, 4)).astype(np.float32)
    relevance = signxai.calculate_relevancemap(model, x, "lrp_z", dtype="float64", target=0).astype(np.float64)
    logits = np.asarray(model(x))[:, 0]  # (the float32 model: its own rounding)
    np.testing.assert_allclose(relevance.sum(1), logits, rtol=1e-5)


class _Shuffle(nn.Module):
    """Channel shuffle and chunking as torchvision's ShuffleNetV2 writes them (``x.size()``, ``//``, ``chunk``)."""

    def __init__(self, symbolic: bool):
        super().__init__()
        self.symbolic = symbolic
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(8 * 6 * 6, 3)

    def forward(self, x):
        x = F.relu(self.conv(x))
        if self.symbolic:
            batch, channels, height, width = x.size()
            x = x.view(batch, 2, channels // 2, height, width).transpose(1, 2).contiguous()
            x = x.view(batch, channels, height, width)
            left, right = x.chunk(2, dim=1)
            torch._assert(left.shape[1] == right.shape[1], "halves differ")
        else:
            x = x.view(-1, 2, 4, 6, 6).transpose(1, 2).contiguous().view(-1, 8, 6, 6)
            left, right = x[:, :4], x[:, 4:]
        x = torch.cat([left, F.relu(self.conv2(right))], dim=1)
        return self.fc(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize("method", ["lrp_epsilon_0_1", "lrp_alpha_1_beta_0", "guided_backprop", "deconvnet",
                                    "grad_cam"])
def test_shape_arithmetic_is_not_a_layer(method):
    symbolic, constant = _Shuffle(True), _Shuffle(False)
    constant.load_state_dict(symbolic.state_dict())
    x = np.random.RandomState(4).uniform(0, 1, (2, 3, 6, 6)).astype(np.float32)
    kwargs = {"layer": "conv"} if method == "grad_cam" else {}  # the map of the layer before the shuffle
    a = signxai.calculate_relevancemaps(symbolic, x, method, **kwargs)
    b = signxai.calculate_relevancemaps(constant, x, method, **kwargs)
    assert np.abs(b).max() > 0
    np.testing.assert_array_equal(a, b)


def test_stochastic_depth_is_the_identity_at_inference():
    from torchvision.ops import StochasticDepth

    class Block(nn.Module):
        def __init__(self, depth):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 3, 3, padding=1), nn.Linear(3, 2)
            self.depth = depth

        def forward(self, x):
            return self.fc((x + self.depth(F.relu(self.conv(x)))).mean(dim=(2, 3)))
    with_depth, plain = Block(StochasticDepth(0.5, "row")), Block(nn.Identity())
    plain.load_state_dict(with_depth.state_dict())
    x = np.random.RandomState(5).uniform(0, 1, (1, 3, 5, 5)).astype(np.float32)
    for method in ("lrp_epsilon_0_1", "guided_backprop"):
        a, b = (signxai.calculate_relevancemap(m, x, method) for m in (with_depth, plain))
        assert np.abs(b).max() > 0
        np.testing.assert_array_equal(a, b)


def test_vanished_relevance_warns_and_names_the_layer():
    """Default BatchNorm statistics with tiny activations: the BN rule's 1e-7 stabiliser swallows the relevance."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    with torch.no_grad():
        model[0].weight.mul_(1e-9)
        model[0].bias.zero_()
        model[1].bias.fill_(1.0)
    model.eval()
    x = np.random.RandomState(6).uniform(0, 1, (1, 3, 6, 6)).astype(np.float32)
    assert np.abs(signxai.calculate_relevancemap(model, x, "gradient")).max() > 0
    with pytest.warns(RuntimeWarning, match=r"all zeros although the gradient is not.*'1' \(BatchNorm2d\)"):
        relevance = signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_1")
    assert not relevance.any()


# --- activations of the zoos, module and functional forms ---------------------------------------------------------

ACTIVATIONS = {  # Keras activation name -> (PyTorch module, functional form)
    "relu6": (nn.ReLU6, F.relu6), "hard_swish": (nn.Hardswish, F.hardswish), "silu": (nn.SiLU, F.silu),
    "gelu": (nn.GELU, F.gelu), "mish": (nn.Mish, F.mish), "sigmoid": (nn.Sigmoid, torch.sigmoid),
    "hard_sigmoid": (nn.Hardsigmoid, F.hardsigmoid), "tanh": (nn.Tanh, torch.tanh), "elu": (nn.ELU, F.elu),
    "softplus": (nn.Softplus, F.softplus),
}


class _ActivationNet(nn.Module):
    def __init__(self, activation, functional):
        super().__init__()
        self.conv, self.conv2, self.fc = nn.Conv2d(2, 6, 3, padding=1), nn.Conv2d(6, 4, 3), nn.Linear(4, 3)
        module, function = ACTIVATIONS[activation]
        self.act = function if functional else module()

    def forward(self, x):
        return self.fc(F.relu(self.conv2(self.act(self.conv(x)))).mean(dim=(2, 3)))


@functools.lru_cache(maxsize=None)
def activation_twin(activation, functional):
    inputs = keras.Input((7, 7, 2))
    h = keras.layers.Conv2D(6, 3, padding="same", activation=activation, name="conv")(inputs)
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv2")(h)
    outputs = keras.layers.Dense(3, name="fc")(keras.layers.GlobalAveragePooling2D()(h))
    keras_model, torch_model = keras.Model(inputs, outputs), _ActivationNet(activation, functional).eval()
    rng = np.random.RandomState(7)
    set_twin_weights(keras_model, torch_model, ("conv", "conv2", "fc"), rng, 0.7, 0.3)
    x = rng.uniform(-2, 2, (2, 7, 7, 2)).astype(np.float32)
    return Twin(f"activation_{activation}", keras_model, torch_model, x, 2)


@pytest.mark.parametrize("functional", [False, True], ids=["module", "functional"])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_zoo_activations_cross_framework(activation, functional):
    t = activation_twin(activation, functional)
    methods = ("gradient", "guided_backprop", "deconvnet", "lrp_epsilon_0_1", "lrp_alpha_1_beta_0")
    if activation == "hard_sigmoid":
        # the gradient family is PyTorch's own autograd (D21), whose float64 hardsigmoid backward uses a float32
        # 1/6 (5e-9 relative, docs/equivalence.md#framework-autograd): it equals autograd, not Keras, there
        assert_gradient_is_autograd(t, target=0)
        methods = methods[1:]
    for method in methods:
        assert_gates(t, method)


# --- custom layer kinds (signxai.register_layer) -------------------------------------------------------------------

class KerasHalf(keras.layers.Layer):
    def call(self, x):
        return x * 0.5


class KerasSquash(keras.layers.Layer):
    """A custom gate activation: (tanh(x) + 1) / 2 lies in [0, 1]."""

    def call(self, x):
        return (keras.ops.tanh(x) + 1.0) * 0.5


class TorchHalf(nn.Module):
    def forward(self, x):
        return x * 0.5


class TorchSquash(nn.Module):
    def forward(self, x):
        return (torch.tanh(x) + 1.0) * 0.5


class _CustomNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.gate, self.fc = nn.Conv2d(2, 4, 3), nn.Conv2d(2, 4, 3), nn.Linear(4, 3)
        self.halve, self.squash = TorchHalf(), TorchSquash()

    def forward(self, x):
        h = self.halve(F.relu(self.conv(x))) * self.squash(self.gate(x))
        return self.fc(h.mean(dim=(2, 3)))


def _custom_twin():
    inputs = keras.Input((6, 6, 2))
    h = KerasHalf()(keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs))
    gate = KerasSquash()(keras.layers.Conv2D(4, 3, name="gate")(inputs))
    h = keras.layers.Multiply()([h, gate])
    keras_model = keras.Model(inputs, keras.layers.Dense(3, name="fc")(keras.layers.GlobalAveragePooling2D()(h)))
    torch_model = _CustomNet().eval()
    rng = np.random.RandomState(8)
    set_twin_weights(keras_model, torch_model, ("conv", "gate", "fc"), rng, 0.7, 0.3)
    return Twin("custom", keras_model, torch_model, rng.uniform(-1, 1, (2, 6, 6, 2)).astype(np.float32), 2)


def test_custom_layers_are_descended_into_or_registered_and_agree_across_frameworks():
    """Unregistered custom layers are captured by descending into their call (Keras: keras.ops recorded on symbolic
    inputs; PyTorch: torch.fx traces user modules), registered ones as their declared kind; both agree across
    frameworks (docs/layers.md#keras-descend)."""
    t = _custom_twin()
    from signxai.tf_signxai.backend import BACKEND
    graph = BACKEND.graph(t.keras_model)
    assert "KerasHalf" not in [n.layer_type for n in graph.nodes]
    assert {"Multiply", "Tanh"} <= {n.layer_type for n in graph.nodes}
    for method in ("lrp_epsilon_0_1", "guided_backprop"):
        assert assert_gates(t, method).peak > 0
    try:
        for cls in (KerasHalf, TorchHalf):
            signxai.register_layer(cls, "pass")
        for cls in (KerasSquash, TorchSquash):
            signxai.register_layer(cls, "activation", value_range=(0.0, 1.0))
        t = _custom_twin()  # fresh models: captured graphs are cached per model
        for method in ("lrp_epsilon_0_1", "lrp_alpha_1_beta_0", "guided_backprop", "deconvnet", "lrpsign_z"):
            assert assert_gates(t, method).peak > 0
    finally:
        for cls in (KerasHalf, TorchHalf, KerasSquash, TorchSquash):
            signxai.unregister_layer(cls)


def test_register_layer_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown layer kind 'pas'.*did you mean 'pass'"):
        signxai.register_layer(TorchHalf, "pas")
    with pytest.raises(TypeError, match="layer class"):
        signxai.register_layer(TorchHalf(), "pass")
    with pytest.raises(ValueError, match="value_range applies to 'activation' and 'relu'"):
        signxai.register_layer(TorchHalf, "pass", value_range=(0, 1))
    with pytest.raises(ValueError, match="low <= high"):
        signxai.register_layer(TorchSquash, "activation", value_range=(1, 0))


def test_register_layer_reindex_and_its_first_name_route():
    from signxai.core import graph as g
    from signxai.core.layers import registered
    try:
        for kind in ("reindex", "route"):
            signxai.register_layer(TorchHalf, kind)
            assert registered(TorchHalf()) == (g.REINDEX, {})
    finally:
        signxai.unregister_layer(TorchHalf)


def test_global_max_pooling_splits_exact_ties_as_keras_does():
    """``nn.AdaptiveMaxPool2d(1)`` and Keras ``GlobalMaxPooling2D`` give an exact tie's signal in equal parts."""
    inputs = keras.Input((2, 2, 1))
    h = keras.layers.Conv2D(1, 1, use_bias=False, name="conv")(inputs)
    keras_model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(keras.layers.GlobalMaxPooling2D()(h)))
    torch_model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                                nn.Linear(1, 2)).eval()
    keras_model.get_layer("conv").set_weights([np.ones((1, 1, 1, 1), np.float32)])
    kernel, bias = np.array([[0.7, -0.4]], np.float32), np.array([0.1, 0.2], np.float32)
    keras_model.get_layer("fc").set_weights([kernel, bias])
    with torch.no_grad():
        torch_model[0].weight.fill_(1.0)
        torch_model[3].weight.copy_(torch.tensor(kernel.T))
        torch_model[3].bias.copy_(torch.tensor(bias))
    x = np.zeros((1, 2, 2, 1), np.float32)
    x[0, 0, 0, 0] = x[0, 1, 1, 0] = 1.0  # two equal maxima
    t = Twin("global_max_tie", keras_model, torch_model, x, 2)
    for method in ("guided_backprop", "lrp_z"):
        keras_map = signxai.calculate_relevancemap(keras_model, x, method, target=0)
        assert keras_map[0, 0, 0, 0] == keras_map[0, 1, 1, 0] != 0
        assert_gates(t, method, target=0)
    # the gradient is each framework's own autograd (D21): TensorFlow splits the tie, PyTorch's max pooling routes it
    # to one of the maxima (docs/equivalence.md#framework-autograd)
    assert_gradient_is_autograd(t, target=0)
    torch_map = signxai.calculate_relevancemap(torch_model, x.transpose(0, 3, 1, 2), "gradient", target=0)
    assert sorted(torch_map[0, 0].ravel().tolist()) == [0.0, 0.0, 0.0, float(np.float32(0.7))]
