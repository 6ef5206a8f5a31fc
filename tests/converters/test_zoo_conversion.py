"""Real architectures through the direct converters: keras.applications → PyTorch (``convert_tf_to_torch_direct``)
and torchvision → Keras (``convert_torch_to_tf_direct``), random weights.

Outputs: the float64 copies of the two models agree to 1e-12 of the logit scale (the same function), and the
float32 models within docs/equivalence.md#gate-2 applied to the logits, ``max(1e-5·scale, 4·(e_tf + e_pt))`` with
``e_fw`` the framework's own float32-vs-float64 error. Then every method family agrees across the converted pair
(docs/equivalence.md#agreement-gates gates 1–2, ``tests/gates.py``).

Random weights (He-scaled kernels, drawn from a seeded ``RandomState`` for Keras, under a forked torch RNG for
torchvision) are calibrated so that activations are of order 1 (LRP relevance can otherwise vanish through the BN
stabiliser): every BatchNorm gets ``moving_mean = 0`` and ``moving_variance = mean(a²)`` of its actual input on a
calibration batch that contains the explained samples, in one inference-mode pass on the test's own model.
"""
from __future__ import annotations

import copy
import functools
import operator

import numpy as np
import pytest
import torch  # before TensorFlow (NOTES: triton)
import torch.nn.functional as F
import torchvision
from torch import fx, nn

import keras  # noqa: E402

from gates import assert_gates  # noqa: E402
from signxai.common.agreement import sweep_kwargs  # noqa: E402
from signxai.converters import convert_tf_to_torch_direct, convert_torch_to_tf_direct  # noqa: E402
from twins import Twin, torch_input  # noqa: E402

L = keras.layers
A = keras.applications
FAMILIES = ("gradient", "gradient_x_sign", "guided_backprop", "deconvnet", "integrated_gradients", "smoothgrad",
            "grad_cam", "lrp_z", "lrp_epsilon_0_1", "lrpsign_epsilon_0_25_std_x", "lrp_alpha_1_beta_0",
            "lrp_sequential_composite_a")


# ------------------------------------------------------------------------------------------------------- helpers
def images(n, size, high, seed, low=0.0):
    """Smooth random RGB images in (low, high), channels-last: a 4×4 pattern per channel, bilinearly upsampled, plus
    fine noise, squashed by a sigmoid."""
    rs = np.random.RandomState(seed)
    coarse = rs.normal(size=(n, 4, 4, 3))
    grid = (np.arange(size) + 0.5) * 4 / size - 0.5
    i0 = np.clip(np.floor(grid).astype(int), 0, 3)
    i1 = np.clip(i0 + 1, 0, 3)
    t = np.clip(grid - np.floor(grid), 0, 1)
    rows = coarse[:, i0] * (1 - t)[None, :, None, None] + coarse[:, i1] * t[None, :, None, None]
    image = rows[:, :, i0] * (1 - t)[None, None, :, None] + rows[:, :, i1] * t[None, None, :, None]
    image = image + 0.3 * rs.normal(size=image.shape)
    return (low + (high - low) / (1 + np.exp(-image))).astype(np.float32)


def _keras_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _keras_layers(layer)
        else:
            yield layer


def randomize_keras(model, seed):
    """He-scaled normal kernels (depthwise: fan-in of the window), small biases, γ and LayerScale factors in
    [0.5, 1.5]; non-trainable weights (BN and Normalization statistics) are left alone."""
    rng = np.random.RandomState(seed)
    for layer in _keras_layers(model):
        for w in layer.trainable_weights:
            name, shape = w.path.split("/")[-1], tuple(w.shape)
            if name in ("kernel", "pointwise_kernel", "depthwise_kernel"):
                fan_in = np.prod(shape[:-2] if name == "depthwise_kernel" else shape[:-1])
                value = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
            elif name in ("bias", "beta"):
                value = rng.normal(0, 0.1, shape)
            else:  # gamma, a LayerScale factor
                value = rng.uniform(0.5, 1.5, shape)
            w.assign(value.astype(w.dtype))
    return model


def calibrate_keras(model, x):
    """BatchNorm statistics from ``x`` (see the module docstring): each BN layer's ``call`` is wrapped for one
    inference pass so that it first sets its statistics from its actual input; the wrappers are removed."""
    wrapped = []
    for layer in _keras_layers(model):
        if isinstance(layer, L.BatchNormalization):
            def call(inputs, *args, _layer=layer, _call=layer.call, **kwargs):
                a = keras.ops.convert_to_numpy(inputs).astype(np.float64)
                _layer.moving_mean.assign(np.zeros(a.shape[-1], dtype=_layer.moving_mean.dtype))
                _layer.moving_variance.assign((a ** 2).mean(axis=tuple(range(a.ndim - 1)))
                                              .astype(_layer.moving_variance.dtype))
                return _call(inputs, *args, **kwargs)
            layer.call = call
            wrapped.append(layer)
    try:
        model(x, training=False)
    finally:
        for layer in wrapped:
            del layer.call
    return model


def calibrate_torch(model, x):
    """The same for a PyTorch module (forward pre-hooks, removed afterwards); leaves it in eval mode."""
    def set_statistics(module, inputs):
        a = inputs[0].detach().double()
        module.running_mean.zero_()
        module.running_var.copy_((a ** 2).mean(dim=[0, *range(2, a.dim())]).to(module.running_var.dtype))

    hooks = [m.register_forward_pre_hook(set_statistics) for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    try:
        with torch.no_grad():
            model(torch.as_tensor(x))
    finally:
        for hook in hooks:
            hook.remove()
    return model


def _gelu64(x):
    """The exact GELU ``x·Φ(x)`` (TensorFlow's float64 GELU is accurate to only ~5e-9: its constants are float32)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    return 0.5 * x * (1.0 + tf.math.erf(x / tf.constant(np.sqrt(2.0), x.dtype)))


def keras_float64(model):
    """A float64 clone of a Keras model with its weights: every layer, the Input and the Inputs of nested models
    float64, GELU exact in float64."""
    def clone(layer):
        if isinstance(layer, keras.Model):
            inputs = keras.Input(shape=layer.inputs[0].shape[1:], dtype="float64")
            return keras.models.clone_model(layer, input_tensors=inputs, clone_function=clone)
        if not isinstance(layer, L.Layer):  # an op layer (``x + 3.0``)
            return layer.__class__.from_config(layer.get_config())
        config = dict(layer.get_config(), dtype="float64")
        if getattr(layer, "activation", None) is keras.activations.gelu:
            config["activation"] = _gelu64
        return layer.__class__.from_config(config)

    inputs = keras.Input(shape=model.inputs[0].shape[1:], dtype="float64")
    copy_ = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone)
    copy_.set_weights([np.asarray(w, dtype=np.float64) for w in model.get_weights()])
    return copy_


def keras_logits(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False)).astype(np.float64)


def torch_logits(model, x):
    with torch.no_grad():
        return model(torch.as_tensor(torch_input(x))).double().numpy()


def assert_same_function(keras_model, torch_model, x, keras64=None, torch64=None):
    """Float64 copies agree to 1e-12 of the logit scale; float32 models within docs/equivalence.md#gate-2 (module
    docstring). Returns ``(scale, max|Δ| in float32, bound)``."""
    keras64 = keras64 or keras_float64(keras_model)
    torch64 = torch64 or copy.deepcopy(torch_model).double()
    tf32, pt32 = keras_logits(keras_model, x), torch_logits(torch_model, x)
    tf64, pt64 = keras_logits(keras64, x.astype(np.float64)), torch_logits(torch64, x.astype(np.float64))
    assert tf32.shape == pt32.shape == tf64.shape == (len(x), tf32.shape[1])
    scale = np.abs(tf64).max()
    assert 0.01 < scale < 100, f"logit scale {scale}: the calibration failed"
    assert np.abs(tf64 - pt64).max() <= 1e-12 * scale
    error32 = np.abs(tf32 - pt32).max()
    bound = max(1e-5 * scale, 4 * (np.abs(tf32 - tf64).max() + np.abs(pt32 - pt64).max()))
    assert error32 <= bound, f"float32 logits differ by {error32:.3g} > {bound:.3g} (scale {scale:.3g})"
    return scale, error32, bound


def graph_of(module):
    return module.graph if isinstance(module, fx.GraphModule) else fx.symbolic_trace(module).graph


def products(module):
    """The ``a * b`` nodes of a module's fx graph whose operands are both graph values (not constants)."""
    gm = module if isinstance(module, fx.GraphModule) else fx.symbolic_trace(module)
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target in (operator.mul, torch.mul)
            and all(isinstance(a, fx.Node) and a.op != "get_attr" for a in n.args)]


def module_types(module):
    return {type(m) for m in module.modules()}


def keras_weights(model):
    return [w.copy() for w in model.get_weights()]


# ------------------------------------------------------------------------------------------- keras.applications
# Input sizes are odd, so that every strided 'same' conv pads symmetrically in TensorFlow too and both sides pad the
# same way (docs/equivalence.md#model-equivalence: std-x sees the padding form); explicit ZeroPadding layers (Keras)
# convert as they are.
# The input range is the one each model's preprocessing contract specifies: [0, 255] for the models that preprocess
# themselves, [-1, 1] for 'tf' mode, the ImageNet-standardised range for 'torch' mode, BGR minus means for 'caffe'.
RAW, TF_MODE, TORCH_MODE, CAFFE_MODE = (0.0, 255.0), (-1.0, 1.0), (-2.1, 2.6), (-124.0, 152.0)
APPLICATIONS = {  # name: (builder, input size, input range)
    "MobileNetV3Small": (A.MobileNetV3Small, 33, RAW),
    "EfficientNetB0": (A.EfficientNetB0, 33, RAW),
    "EfficientNetV2B0": (A.EfficientNetV2B0, 33, RAW),
    "ConvNeXtTiny": (A.ConvNeXtTiny, 33, RAW),
    "Xception": (A.Xception, 71, TF_MODE),
    "InceptionV3": (A.InceptionV3, 75, TF_MODE),
    "ResNet50V2": (A.ResNet50V2, 33, TF_MODE),
    "NASNetMobile": (A.NASNetMobile, 33, TF_MODE),
    "VGG16": (A.VGG16, 33, CAFFE_MODE),
    "ResNet50": (A.ResNet50, 33, CAFFE_MODE),
    "DenseNet121": (A.DenseNet121, 33, TORCH_MODE),
    "MobileNetV2": (A.MobileNetV2, 33, TF_MODE),
}
FAST_APPLICATIONS = ("MobileNetV3Small", "EfficientNetB0")


def _slow_unless(name, fast):
    return name if name in fast else pytest.param(name, marks=pytest.mark.slow)


@functools.lru_cache(maxsize=None)
def application_pair(name):
    """``(keras_model, converted, x, keras_weights_before_conversion)``: random weights, 10 classes, logits."""
    builder, size, (low, high) = APPLICATIONS[name]
    model = builder(input_shape=(size, size, 3), include_top=True, weights=None, classes=10,
                    classifier_activation=None)
    randomize_keras(model, seed=0)
    batch = images(16, size, high, seed=1, low=low)
    calibrate_keras(model, batch)
    before = keras_weights(model)
    return model, convert_tf_to_torch_direct(model), batch[:2], before


@pytest.mark.parametrize("name", [_slow_unless(n, FAST_APPLICATIONS) for n in APPLICATIONS])
def test_keras_application_converts_to_the_same_function(name):
    model, converted, x, before = application_pair(name)
    scale, error, bound = assert_same_function(model, converted, x)
    for a, b in zip(before, model.get_weights()):  # the Keras model is left untouched
        np.testing.assert_array_equal(a, b)
    assert not converted.training
    traced = fx.symbolic_trace(converted)  # the explainers capture the module with torch.fx
    np.testing.assert_array_equal(torch_logits(traced, x), torch_logits(converted, x))
    keras_kinds = {type(layer) for layer in _keras_layers(model)}
    torch_kinds = module_types(converted)
    if L.SeparableConv2D in keras_kinds:  # depthwise (groups = C, no bias) + pointwise 1×1 with the bias
        separable = [layer for layer in _keras_layers(model) if isinstance(layer, L.SeparableConv2D)]
        for layer in separable:
            depthwise = converted.get_submodule(f"{layer.name}_depthwise")
            pointwise = converted.get_submodule(layer.name)
            assert depthwise.groups == depthwise.in_channels and depthwise.bias is None
            assert pointwise.kernel_size == (1, 1) and (pointwise.bias is not None) == layer.use_bias
    if L.Multiply in keras_kinds:  # squeeze-excitation gates: a * b in the graph
        assert len(products(converted)) >= sum(isinstance(layer, L.Multiply) for layer in _keras_layers(model))
    activations = {getattr(layer, "activation", None) for layer in _keras_layers(model)}
    for keras_fn, torch_cls in ((keras.activations.silu, nn.SiLU), (keras.activations.hard_silu, nn.Hardswish),
                                (keras.activations.gelu, nn.GELU), (keras.activations.sigmoid, nn.Sigmoid)):
        if keras_fn in activations:
            assert torch_cls in torch_kinds
    if any(isinstance(layer, L.ReLU) and layer.max_value == 6 for layer in _keras_layers(model)):
        assert nn.ReLU6 in torch_kinds
    if L.LayerNormalization in keras_kinds:
        assert nn.LayerNorm in torch_kinds
    print(f"{name}: logit scale {scale:.3g}, float32 max|Δlogit| {error:.2e} (bound {bound:.2e}, "
          f"{error / scale:.1e} of the scale)")


@functools.lru_cache(maxsize=None)
def keras_zoo_pair():
    """One small Keras graph with every layer kind the applications above added: separable convs, asymmetric
    'same' pooling (max and average), Rescaling (scalar and per channel), Normalization, LayerNormalization on 4-D,
    Dense on 4-D with gelu, LayerScale, op layers with constants (x + 3, x · 1/6, 2 − x, x / 4), a sigmoid and a
    hard-sigmoid gate, Multiply, Cropping and Dropout. Every strided conv sees an odd size, so TensorFlow's 'same'
    is symmetric and both sides pad implicitly (docs/equivalence.md#model-equivalence: std-x sees the padding form)."""
    from keras.src.applications.convnext import LayerScale

    inputs = keras.Input((13, 13, 3))
    x = L.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    x = L.Rescaling([1.0, 0.5, 2.0], name="rescale_rgb")(x)
    x = L.Normalization(mean=[0.1, -0.2, 0.3], variance=[1.5, 0.5, 2.0], name="norm")(x)
    x = L.SeparableConv2D(8, 3, padding="same", depth_multiplier=2, activation="relu", name="sep")(x)
    x = L.MaxPooling2D(2, strides=2, padding="same", name="max_same")(x)  # 13 → 7: TF pads (0, 1)
    x = L.BatchNormalization(name="bn")(x)
    y = L.SeparableConv2D(8, 3, strides=2, padding="same", use_bias=False, name="sep_strided")(x)  # 7 → 4
    y = L.Activation("swish", name="swish")(y)
    y = L.Cropping2D(((0, 1), (1, 0)), name="crop_up")(L.UpSampling2D(2, name="up")(y))
    x = L.Add(name="residual")([x, y])
    x = L.AveragePooling2D(2, strides=2, padding="same", name="avg_same")(x)  # 7 → 4: TF pads (0, 1)
    gate = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    gate = L.Conv2D(8, 1, activation="sigmoid", name="excite")(gate)
    x = L.Multiply(name="gate")([x, gate])
    hard = L.Conv2D(8, 1, name="hard_pre")(L.GlobalAveragePooling2D(keepdims=True, name="squeeze2")(x))
    hard = L.ReLU(6.0, name="relu6")(hard + 3.0) * (1.0 / 6.0)  # MobileNetV3's hard sigmoid
    x = L.Multiply(name="hard_gate")([x, hard])
    x = L.LayerNormalization(epsilon=1e-6, name="ln")(x)
    x = L.Dense(16, activation="gelu", name="mlp_1")(x)
    x = L.Dense(8, name="mlp_2")(x)
    x = LayerScale(0.5, 8, name="layer_scale")(x)
    x = (2.0 - x) / 4.0
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.ZeroPadding2D(((1, 0), (0, 1)), name="zp")(x)
    x = L.Cropping2D(((0, 1), (1, 0)), name="crop")(x)
    x = L.Dropout(0.2, name="drop")(x)
    x = L.Flatten(name="flat")(x)
    outputs = L.Dense(5, name="logits")(x)
    model = randomize_keras(keras.Model(inputs, outputs), seed=1)
    batch = images(8, 13, 255.0, seed=2)
    calibrate_keras(model, batch)
    return model, convert_tf_to_torch_direct(model), batch


def test_keras_layer_zoo():
    model, converted, batch = keras_zoo_pair()
    assert isinstance(converted, fx.GraphModule)
    assert_same_function(model, converted, batch)
    # symbolic tracing evaluates expressions of buffers (√variance) once, in the traced module's dtype
    assert_same_function(model, fx.symbolic_trace(converted), batch,
                         torch64=fx.symbolic_trace(copy.deepcopy(converted).double()))

    assert converted.sep_depthwise.groups == 3 and converted.sep_depthwise.out_channels == 6
    assert converted.sep_depthwise.bias is None and converted.sep.kernel_size == (1, 1)
    assert converted.sep_strided_depthwise.padding == (1, 1) and converted.sep_strided.bias is None
    assert converted.max_same.ceil_mode and converted.max_same.padding == (0, 0)
    assert converted.avg_same.ceil_mode and not converted.avg_same.count_include_pad
    assert isinstance(converted.ln, nn.LayerNorm) and isinstance(converted.mlp_1_gelu, nn.GELU)
    assert isinstance(converted.relu6, nn.ReLU6) and isinstance(converted.excite_sigmoid, nn.Sigmoid)
    assert isinstance(converted.layer_scale_gamma, nn.Parameter)
    assert {name for name, _ in converted.named_buffers(recurse=False)} == {"rescale_rgb_scale", "norm_mean",
                                                                            "norm_variance"}
    assert len(products(converted)) == 2  # the two gates; constants are scalings
    scalars = {a for n in converted.graph.nodes if n.op == "call_function" for a in n.args
               if isinstance(a, float)}
    assert {3.0, 1.0 / 6.0, 2.0, 4.0, -1.0} <= scalars
    assert float(np.float32(1 / 127.5)) in scalars  # Rescaling's constant rounded as Keras's cast rounds it
    # the Dense/LayerNorm block runs channels-last with one permutation in and one out
    permutes = [n for n, m in converted.named_modules() if type(m).__name__ == "Permute"]
    assert len(permutes) == 2, permutes


def test_asymmetric_same_separable_conv_gets_an_explicit_pad():
    model = randomize_keras(keras.Sequential([keras.Input((8, 8, 3)), L.SeparableConv2D(4, 3, strides=2,
                                              padding="same", name="sep"), L.Flatten(), L.Dense(2)]), seed=2)
    converted = convert_tf_to_torch_direct(model)
    assert [n for n, _ in converted.named_children()][:3] == ["sep_pad", "sep_depthwise", "sep"]
    assert converted.sep_pad.padding == (0, 1, 0, 1) and converted.sep_depthwise.padding == (0, 0)
    assert_same_function(model, converted, images(2, 8, 1.0, seed=5))


def test_keras_conversion_errors_name_the_layer():
    inputs = keras.Input((6, 6, 2))
    outputs = L.Dense(2)(L.Flatten()(L.Lambda(lambda t: t * 2.0, name="doubling")(inputs)))
    with pytest.raises(ValueError, match=r"'doubling' \(Lambda\)"):
        convert_tf_to_torch_direct(keras.Model(inputs, outputs))
    inputs = keras.Input((6, 6, 2))
    x = L.LayerNormalization(axis=1, name="ln_rows")(inputs)
    with pytest.raises(ValueError, match=r"'ln_rows' \(LayerNormalization\)"):
        convert_tf_to_torch_direct(keras.Model(inputs, L.Dense(2)(L.Flatten()(x))))
    inputs = keras.Input((6, 6, 2))
    x = L.Multiply(name="rank_mix")([inputs, L.Dense(2)(L.Flatten()(inputs))])
    with pytest.raises(ValueError, match=r"'rank_mix' \(Multiply\)"):
        convert_tf_to_torch_direct(keras.Model(inputs, L.Dense(2)(L.Flatten()(x))))


# ------------------------------------------------------------------------------------------------- torchvision
TORCHVISION = {  # name: (constructor kwargs, input size)
    "resnet18": ({}, 33),
    "mobilenet_v2": ({"width_mult": 0.5}, 33),
    "efficientnet_b0": ({}, 33),
    "mobilenet_v3_small": ({}, 33),
    "resnet50": ({}, 33),
    "densenet121": ({}, 33),
}
FAST_TORCHVISION = ("resnet18", "mobilenet_v2")


@functools.lru_cache(maxsize=None)
def torchvision_pair(name):
    """``(module, converted, x)``: random weights (no download), 10 classes, BN calibrated."""
    kwargs, size = TORCHVISION[name]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = getattr(torchvision.models, name)(weights=None, num_classes=10, **kwargs)
    batch = images(16, size, TORCH_MODE[1], seed=3, low=TORCH_MODE[0])  # torchvision's standardised inputs
    calibrate_torch(module, torch_input(batch))
    return module, convert_torch_to_tf_direct(module, (3, size, size)), batch[:2]


@pytest.mark.parametrize("name", [_slow_unless(n, FAST_TORCHVISION) for n in TORCHVISION])
def test_torchvision_model_converts_to_the_same_function(name):
    module, converted, x = torchvision_pair(name)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    keras64 = convert_torch_to_tf_direct(copy.deepcopy(module).double(), (3, *x.shape[1:3]))
    assert keras64.inputs[0].dtype == "float64"
    scale, error, bound = assert_same_function(converted, module, x, keras64=keras64)
    assert isinstance(converted, keras.Model) and converted.input_shape[1:] == x.shape[1:]
    kinds = {type(layer).__name__ for layer in converted.layers}
    graph = graph_of(module)
    functions = {n.target for n in graph.nodes if n.op == "call_function"}
    if operator.add in functions or operator.iadd in functions:
        assert "Add" in kinds
    if torch.cat in functions:
        assert "Concatenate" in kinds
    if operator.mul in functions:  # SE: scale * input
        assert "Multiply" in kinds
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    keras_bns = [layer for layer in converted.layers if isinstance(layer, L.BatchNormalization)]
    assert [layer.epsilon for layer in keras_bns] == pytest.approx([m.eps for m in bns])
    assert module.training is False and all(torch.equal(v, module.state_dict()[k]) for k, v in state.items())
    print(f"{name}: logit scale {scale:.3g}, float32 max|Δlogit| {error:.2e} (bound {bound:.2e}, "
          f"{error / scale:.1e} of the scale)")


class _GraphNet(nn.Module):
    """Functional ops the torchvision models do not cover: F.relu, torch.cat, x.reshape(x.size(0), -1), mean over
    the spatial axes, scalar arithmetic, a hard-sigmoid gate, a padded max pool on an even size, a padded average
    pool counting its padding, and a Flatten feeding a BatchNorm1d. Its convs' padding is TensorFlow's 'same', so
    both sides pad implicitly (docs/equivalence.md#model-equivalence)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg = nn.AvgPool2d(3, stride=1, padding=1)
        self.left = nn.Conv2d(6, 4, 1)
        self.right = nn.Conv2d(6, 4, 3, padding=1)
        self.fc_gate = nn.Conv2d(8, 8, 1)
        self.gate = nn.Hardsigmoid()
        self.bn = nn.BatchNorm1d(8 * 8 * 8)
        self.head = nn.Linear(8 * 8 * 8, 6)
        self.aux = nn.Linear(8, 6)

    def forward(self, x):
        x = self.pool(torch.relu(self.stem(x)))
        x = torch.cat([F.relu(self.left(x)), self.right(x) * 0.5 + 1.0], dim=1)
        x = self.avg(x)
        x = x * self.gate(self.fc_gate(x.mean((2, 3), keepdim=True)))
        flat = self.bn(x.reshape(x.size(0), -1))
        return self.head(flat) + self.aux(x.mean([-2, -1]))


@functools.lru_cache(maxsize=None)
def torch_graph_pair():
    with torch.random.fork_rng():
        torch.manual_seed(1)
        module = _GraphNet()
    batch = images(8, 16, 1.0, seed=4)
    calibrate_torch(module, torch_input(batch))
    return module, convert_torch_to_tf_direct(module, (3, 16, 16)), batch


def test_torch_graph_ops():
    module, converted, batch = torch_graph_pair()
    assert_same_function(converted, module, batch,
                         keras64=convert_torch_to_tf_direct(copy.deepcopy(module).double(), (3, 16, 16)))
    names = {layer.name: type(layer).__name__ for layer in converted.layers}
    assert names["pool"] == "MaxPooling2D" and converted.get_layer("pool").padding == "same"
    assert names["pool_pad"] == "ZeroPadding2D" and names["pool_crop"] == "Cropping2D"
    assert names["avg_pad"] == "ZeroPadding2D" and converted.get_layer("avg").padding == "valid"
    assert names["cat"] == "Concatenate" and names["mul_1"] == "Multiply" and names["add_1"] == "Add"
    assert names["reshape_channels_first"] == "Permute"  # the Flatten feeds a BatchNorm1d: PyTorch's order
    assert names["gate"] == "Activation" and converted.get_layer("gate").activation is keras.activations.hard_sigmoid


class _Difference(nn.Module):
    """``view(x.size(0), -1)`` feeding Linears (their columns are permuted), a difference of model tensors and a
    constant divided by a tensor."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.a = nn.Linear(27, 4)
        self.b = nn.Linear(27, 4)

    def forward(self, x):
        flat = F.relu(self.conv(x)).view(x.size(0), -1)
        return self.a(flat) - self.b(flat) + 1.0 / (2.0 + torch.sigmoid(self.a(flat)))


def test_torch_view_and_difference():
    with torch.random.fork_rng():
        torch.manual_seed(2)
        module = _Difference().eval()
    converted = convert_torch_to_tf_direct(module, (2, 5, 5))
    names = {layer.name: type(layer).__name__ for layer in converted.layers}
    assert names["view"] == "Flatten" and "view_channels_first" not in names and names["sub"] == "Subtract"
    assert_same_function(converted, module, images(3, 5, 1.0, seed=6)[..., :2],
                         keras64=convert_torch_to_tf_direct(copy.deepcopy(module).double(), (2, 5, 5)))


def test_torch_conversion_errors_name_the_node_and_leave_the_module_alone():
    class Sorting(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(torch.sort(x, dim=1).values)

    module = Sorting().train()
    with pytest.raises(ValueError, match=r"node 'sort' \(function sort\)"):
        convert_torch_to_tf_direct(module, (4,))
    assert module.training

    class Normed(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(4)

        def forward(self, x):
            return self.norm(x)

    with pytest.raises(ValueError, match=r"'norm' \(LayerNorm\)"):
        convert_torch_to_tf_direct(Normed(), (4,))
    with pytest.raises(ValueError, match=r"\(Softmax\)"):
        convert_torch_to_tf_direct(nn.Sequential(nn.Linear(4, 3), nn.Softmax(-1)), (4,))

    resnet = torchvision.models.resnet18(weights=None, num_classes=3).train()
    hooks_before = [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in resnet.modules()]
    stats = resnet.bn1.running_mean.clone()
    convert_torch_to_tf_direct(resnet, (3, 32, 32))
    assert resnet.training and all(m.training for m in resnet.modules())
    assert torch.equal(resnet.bn1.running_mean, stats) and resnet.bn1.num_batches_tracked == 0
    assert hooks_before == [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in resnet.modules()]


# ------------------------------------------------------------------------------- explanations on converted pairs
def keras_to_torch_twin(name):
    if name == "layer_zoo":
        model, converted, batch = keras_zoo_pair()
        return Twin("layer zoo (keras → torch)", model, converted, batch[:2], 2)
    model, converted, x, _ = application_pair(name)
    return Twin(f"{name} (keras → torch)", model, converted, x, 2)


def torch_to_keras_twin(name):
    if name == "graph_net":
        module, converted, batch = torch_graph_pair()
        return Twin("graph net (torch → keras)", converted, module, batch[:2], 2)
    module, converted, x = torchvision_pair(name)
    return Twin(f"{name} (torch → keras)", converted, module, x, 2)


# The default run explains the two small graphs (every layer kind the converters add) with every family and resnet18
# with an LRP backward, an α-β backward and Grad-CAM (about 15 s on 2 idle CPU cores); resnet18's other families
# (about 30 s) and the other architectures (1–5 minutes each) are marked slow.
FAST_EXPLAINED = {("keras", "layer_zoo"): FAMILIES, ("torch", "graph_net"): FAMILIES,
                  ("torch", "resnet18"): ("lrp_epsilon_0_1", "lrp_alpha_1_beta_0", "grad_cam")}
SLOW_EXPLAINED = (("keras", "MobileNetV3Small"), ("keras", "EfficientNetB0"), ("keras", "Xception"),
                  ("keras", "ConvNeXtTiny"), ("keras", "NASNetMobile"), ("keras", "InceptionV3"),
                  ("keras", "ResNet50V2"), ("keras", "EfficientNetV2B0"), ("torch", "resnet18"),
                  ("torch", "mobilenet_v2"), ("torch", "efficientnet_b0"), ("torch", "densenet121"),
                  ("torch", "resnet50"))


def explained_cases():
    cases = [pytest.param(direction, name, method, id=f"{name}-{method}")
             for (direction, name), methods in FAST_EXPLAINED.items() for method in methods]
    cases += [pytest.param(direction, name, method, marks=pytest.mark.slow, id=f"{name}-{method}")
              for direction, name in SLOW_EXPLAINED for method in FAMILIES
              if method not in FAST_EXPLAINED.get((direction, name), ())]
    return cases


def _has_max_pooling(module):
    return any(isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)) for m in module.modules())


@pytest.mark.parametrize("direction,name,method", explained_cases())
def test_method_families_agree_on_converted_pairs(direction, name, method):
    twin = keras_to_torch_twin(name) if direction == "keras" else torch_to_keras_twin(name)
    kwargs = sweep_kwargs(method, twin.x)
    if method == "integrated_gradients" and _has_max_pooling(twin.torch_model):
        # from the zero reference every max-pooling window holds equal values and each framework's rounding picks
        # the winner (docs/equivalence.md#framework-autograd): IG is compared from a non-constant reference
        kwargs["reference"] = twin.x[::-1].copy()
    agreement = assert_gates(twin, method, **kwargs)
    assert np.isfinite(agreement.peak) and agreement.peak > 0  # the map is finite and not all zero
    print(f"{twin.name} {method}: peak {agreement.peak:.3g}, float64 {agreement.error64 / agreement.peak:.1e}, "
          f"float32 {agreement.error32 / agreement.peak:.1e} (bound {agreement.bound32 / agreement.peak:.1e}), "
          f"MAE {agreement.mae32:.1e}")
