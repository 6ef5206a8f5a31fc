"""Keras ↔ PyTorch converters: equal outputs (float32, ≤ 1e-5), structure, traceability, errors."""
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch  # before TensorFlow (NOTES: triton)
from torch import fx, nn

import keras  # noqa: E402

from signxai.converters import (convert_tf_to_torch_direct, convert_tf_to_torch_via_onnx,  # noqa: E402
                                convert_torch_to_tf_direct)
from signxai.converters.spec_models import build_keras_model, build_torch_model, load_spec_npz  # noqa: E402

L = keras.layers
REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference"
NETWORKS = ("mlp", "cnn2d", "ecg1d")
ATOL = 1e-5


def randomize(model, seed=0):
    """He-scaled kernels, non-zero biases, non-trivial BN statistics and PReLU slopes."""
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomize(layer, seed + 1)
            continue
        values = []
        for w in layer.weights:
            name, shape = w.path.split("/")[-1], tuple(w.shape)
            if name == "kernel":
                fan_in = np.prod(shape[:-1]) if len(shape) > 1 else shape[0]
                values.append(rng.normal(0, np.sqrt(2.0 / fan_in), shape))
            elif name in ("gamma", "moving_variance"):
                values.append(rng.uniform(0.5, 1.5, shape))
            elif name == "alpha":
                values.append(rng.uniform(0.05, 0.3, shape))
            else:
                values.append(rng.normal(0, 0.1, shape))
        if values:
            layer.set_weights([v.astype(w.dtype) for v, w in zip(values, layer.weights)])
    return model


def channels_first(a):
    return np.moveaxis(a, -1, 1) if a.ndim > 2 else a


def assert_equivalent(keras_model, torch_model, x=None, seed=0):
    """max|keras(x) − torch(x_nchw)| ≤ ATOL on a random batch (outputs compared channels-first)."""
    if x is None:
        x = np.random.RandomState(seed).uniform(-1, 1, (2, *keras_model.input_shape[1:])).astype("float32")
    expected = channels_first(keras.ops.convert_to_numpy(keras_model(x, training=False)))
    with torch.no_grad():
        actual = torch_model(torch.tensor(channels_first(x))).numpy()
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)


def sequential(input_shape, *layers, name=None):
    return randomize(keras.Sequential([keras.Input(input_shape), *layers], name=name))


# ------------------------------------------------------------------------------------------- Keras → PyTorch
@pytest.mark.parametrize("network", NETWORKS)
def test_reference_networks_match_keras_and_the_spec_twin(network):
    spec, weights, rest = load_spec_npz(REFERENCE / f"{network}_x0.npz")
    keras_model = build_keras_model(spec, weights)
    converted = convert_tf_to_torch_direct(keras_model)
    assert isinstance(converted, nn.Sequential)
    assert_equivalent(keras_model, converted, rest["x"][None])
    assert_equivalent(keras_model, converted)
    twin = build_torch_model(spec, weights)  # the hand-built twin: same names, types and weights
    assert [(n, type(m)) for n, m in converted.named_modules()] == [(n, type(m)) for n, m in twin.named_modules()]
    for (name, a), (_, b) in zip(converted.state_dict().items(), twin.state_dict().items()):
        assert torch.equal(a, b), name


def test_batchnorm_global_average_pooling_cnn():
    model = sequential((12, 12, 3), L.Conv2D(6, 3, padding="same", name="conv"),
                       L.BatchNormalization(epsilon=1e-3, name="bn"), L.ReLU(name="relu"),
                       L.Conv2D(8, 3, activation="relu", name="conv2"), L.BatchNormalization(name="bn2"),
                       L.GlobalAveragePooling2D(name="gap"), L.Dense(4, name="logits"))
    converted = convert_tf_to_torch_direct(model)
    assert_equivalent(model, converted)
    assert converted.bn.eps == pytest.approx(1e-3) and isinstance(converted.gap[0], nn.AdaptiveAvgPool2d)
    assert torch.equal(converted.bn.running_var, torch.tensor(model.get_layer("bn").moving_variance.numpy()))


def test_strided_valid_convs_and_average_pooling():
    model = sequential((17, 15, 2), L.Conv2D(4, 3, strides=2, activation="relu", name="c1"),
                       L.Conv2D(6, (2, 3), strides=(1, 2), activation="tanh", name="c2"),
                       L.AveragePooling2D((2, 2), name="avg"), L.Flatten(name="flat"), L.Dense(3, name="out"))
    converted = convert_tf_to_torch_direct(model)
    assert_equivalent(model, converted)
    assert converted.c1.padding == (0, 0) and converted.c1.stride == (2, 2)


def test_asymmetric_same_padding_becomes_explicit_zero_pad():
    model = sequential((16, 16, 3), L.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="down"),
                       L.Conv2D(4, 4, padding="same", activation="relu", name="even"),
                       L.Conv2D(4, 3, padding="same", name="symmetric"), L.Flatten(name="flat"),
                       L.Dense(5, name="out"))
    converted = convert_tf_to_torch_direct(model)
    assert_equivalent(model, converted)
    names = [n for n, _ in converted.named_children()]
    assert names[:4] == ["down_pad", "down", "down_relu", "even_pad"]
    assert isinstance(converted.down_pad, nn.ZeroPad2d) and converted.down_pad.padding == (0, 1, 0, 1)
    assert converted.down.padding == (0, 0) and converted.symmetric.padding == (1, 1)


def test_residual_network_is_a_traceable_graph_module():
    inputs = keras.Input((10, 10, 4))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    y = L.Conv2D(8, 3, padding="same", name="branch_a")(x)
    y = L.BatchNormalization(name="branch_bn")(y)
    y = L.Add(name="skip_add")([x, y])
    y = L.Activation("relu", name="add_relu")(y)
    z = L.Conv2D(8, 1, name="branch_b")(y) + y  # a keras.ops add between model tensors
    out = L.Dense(3, name="logits")(L.GlobalMaxPooling2D(name="gmp")(z))
    model = randomize(keras.Model(inputs, out))
    converted = convert_tf_to_torch_direct(model)
    assert isinstance(converted, fx.GraphModule)
    assert_equivalent(model, converted)
    traced = fx.symbolic_trace(converted)
    adds = [n for n in traced.graph.nodes if n.op == "call_function" and "add" in str(n.target)]
    assert len(adds) == 2
    assert_equivalent(model, traced)


def test_conv1d_with_separate_elu_activations():
    model = sequential((40, 3), L.Conv1D(8, 5, padding="same", name="c1"), L.ELU(name="elu1"),
                       L.MaxPooling1D(2, name="pool"), L.Conv1D(8, 3, strides=2, padding="same", name="c2"),
                       L.Activation("elu", name="elu2"), L.Conv1D(4, 3, padding="causal", dilation_rate=2, name="c3"),
                       L.Flatten(name="flat"), L.Dense(6, name="d"), L.Activation("elu", name="elu3"),
                       L.Dense(2, name="out"))
    converted = convert_tf_to_torch_direct(model)
    assert_equivalent(model, converted)
    assert isinstance(converted.elu1, nn.ELU) and isinstance(converted.elu2, nn.ELU)
    assert isinstance(converted.c2_pad, nn.ZeroPad1d) and isinstance(converted.c3_pad, nn.ZeroPad1d)


def test_concatenate_network():
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="a")(inputs)
    b = L.Conv2D(5, 1, activation="relu", name="b")(inputs)
    c = L.Concatenate(name="cat")([a, b])
    flat = L.Flatten(name="flat")(L.MaxPooling2D(name="pool")(c))
    d = L.Dense(6, activation="relu", name="dense")(flat)
    e = L.Concatenate(axis=1, name="cat_flat")([d, flat])  # the flat branch is re-ordered to Keras order first
    model = randomize(keras.Model(inputs, L.Dense(3, name="out")(e)))
    converted = convert_tf_to_torch_direct(model)
    assert_equivalent(model, converted)
    assert_equivalent(model, fx.symbolic_trace(converted))


def test_nested_models_are_inlined():
    block = keras.Sequential([keras.Input((8, 8, 4)), L.Conv2D(4, 3, padding="same", activation="relu", name="inner"),
                              L.BatchNormalization(name="inner_bn")], name="block")
    head = keras.Sequential([keras.Input((4,)), L.Dense(5, activation="relu", name="h1"), L.Dense(2, name="h2")],
                            name="head")
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 1, name="stem")(inputs)
    x = L.Add(name="skip")([x, block(x)])
    model = randomize(keras.Model(inputs, head(L.GlobalAveragePooling2D(name="gap")(x))))
    converted = convert_tf_to_torch_direct(model)
    assert {"stem", "inner", "inner_relu", "inner_bn", "gap", "h1", "h2"} <= {n for n, _ in converted.named_children()}
    assert_equivalent(model, converted)

    chain = sequential((6, 6, 2), L.Conv2D(3, 3, name="c"),
                       keras.Sequential([L.Flatten(name="f"), L.Dense(4, name="d")], name="inner_seq"))
    converted = convert_tf_to_torch_direct(chain)
    assert isinstance(converted, nn.Sequential) and [n for n, _ in converted.named_children()] == ["c", "f", "d"]
    assert_equivalent(chain, converted)


def test_layer_zoo():
    inputs = keras.Input((9, 9, 3))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(inputs)
    x = L.Conv2D(6, 3, groups=3, dilation_rate=2, padding="same", name="grouped")(x)
    x = L.Conv2DTranspose(4, 4, strides=2, padding="same", activation="gelu", name="up_conv")(x)
    x = L.Cropping2D(((1, 0), (0, 2)), name="crop")(x)
    x = L.UpSampling2D(2, name="up")(x)
    x = L.ZeroPadding2D(((1, 2), (0, 1)), name="zp")(x)
    x = L.MaxPooling2D(3, strides=2, padding="same", name="mp")(x)
    x = L.AveragePooling2D(3, strides=1, padding="same", name="ap")(x)
    x = L.PReLU(shared_axes=[1, 2], name="prelu")(x)
    x = L.SpatialDropout2D(0.3, name="sdrop")(x)
    flat = L.Flatten(name="flat")(x)
    y = L.BatchNormalization(name="flat_bn")(flat)  # per-feature parameters follow PyTorch's flatten order
    y = L.PReLU(name="flat_prelu")(L.Dropout(0.2, name="drop")(y))
    y = L.LeakyReLU(0.1, name="lrelu")(L.Dense(6, name="dense")(y))
    y = L.Permute((2, 1), name="perm")(L.Reshape((3, 2), name="resh")(y))
    y = L.Dense(4, activation="swish", name="dense_3d")(y)
    model = randomize(keras.Model(inputs, L.Dense(3, name="out")(L.Flatten(name="flat2")(y))))
    converted = convert_tf_to_torch_direct(model)
    assert isinstance(converted.dw, nn.Conv2d) and converted.dw.groups == 3 and converted.dw.out_channels == 6
    assert isinstance(converted.up_conv, nn.ConvTranspose2d)
    assert_equivalent(model, converted)
    assert_equivalent(model, fx.symbolic_trace(converted))


def test_one_and_three_dimensional_layers():
    volume = sequential((6, 7, 5, 2), L.ZeroPadding3D(((1, 0), (0, 1), (1, 1))),
                        L.Conv3D(4, 3, strides=(1, 2, 1), padding="same", activation="relu"),
                        L.Cropping3D(((0, 1), (1, 0), (0, 0))), L.UpSampling3D((1, 2, 1)), L.MaxPooling3D(2),
                        L.AveragePooling3D((1, 2, 1)), L.Conv3DTranspose(3, 2, strides=2), L.BatchNormalization(),
                        L.GlobalMaxPooling3D(), L.Dense(2))
    signal = sequential((20, 3), L.DepthwiseConv1D(3, depth_multiplier=2, strides=2, padding="same"),
                        L.Cropping1D((2, 1)), L.UpSampling1D(3), L.AveragePooling1D(3, strides=2, padding="same"),
                        L.Conv1DTranspose(4, 3, strides=2), L.Conv1DTranspose(4, 1, strides=2, padding="same"),
                        L.GlobalAveragePooling1D(keepdims=True), L.Flatten(), L.Dense(2))
    for model in (volume, signal):
        assert_equivalent(model, convert_tf_to_torch_direct(model))


def test_activations_in_float64():
    dtype = "float64"
    names = ["relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "tanh", "sigmoid", "hard_sigmoid",
             "hard_tanh", "silu", "hard_silu", "softplus", "softsign", "mish", "linear"]
    model = keras.Sequential([keras.Input((7,), dtype=dtype)]
                             + [L.Dense(7, activation=a, name=f"d_{a}", dtype=dtype) for a in names]
                             + [L.Activation(a, name=f"a_{a}", dtype=dtype) for a in names])
    randomize(model)
    converted = convert_tf_to_torch_direct(model)
    assert next(converted.parameters()).dtype == torch.float64
    x = np.random.RandomState(1).normal(0, 2, (5, 7))
    expected = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(converted(torch.tensor(x)).detach().numpy(), expected, rtol=0, atol=1e-10)


def test_errors_name_the_layer_and_the_keras_model_is_untouched():
    model = sequential((6, 6, 2), L.Conv2D(3, 3), L.UnitNormalization(name="unit"), L.Flatten(), L.Dense(2))
    with pytest.raises(ValueError, match=r"'unit' \(UnitNormalization\)"):
        convert_tf_to_torch_direct(model)
    model = sequential((4,), L.Dense(3, activation="softmax", name="probs"))
    with pytest.raises(ValueError, match=r"'probs'.*softmax"):
        convert_tf_to_torch_direct(model)
    model = sequential((4,), L.Dense(3, name="d"), L.Softmax(name="sm"))
    with pytest.raises(ValueError, match=r"'sm' \(Softmax\)"):
        convert_tf_to_torch_direct(model)
    inputs = keras.Input((4,))
    with pytest.raises(ValueError, match=r"'sin' \(Sin\) is not supported by the Keras → PyTorch converter"):
        convert_tf_to_torch_direct(keras.Model(inputs, keras.ops.sin(inputs)))

    model = sequential((6, 6, 2), L.Conv2D(3, 3, name="c"), L.Flatten(), L.Dense(2, activation="relu", name="d"))
    before = [w.copy() for w in model.get_weights()]
    x = np.random.RandomState(0).normal(size=(1, 6, 6, 2)).astype("float32")
    y_before = model(x).numpy()
    converted = convert_tf_to_torch_direct(model)
    with torch.no_grad():
        for p in converted.parameters():
            p.add_(1.0)  # the converted weights are copies
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model(x).numpy(), y_before)
    assert model.get_layer("d").activation is keras.activations.relu


# ------------------------------------------------------------------------------------------- PyTorch → Keras
def _torch_nets():
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6, eps=1e-4), nn.ReLU(),
                        nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
                        nn.Sequential(nn.Conv2d(6, 4, 2, padding=1), nn.GELU()), nn.ZeroPad2d((1, 0, 2, 1)),
                        nn.AvgPool2d(2), nn.Flatten(), nn.Dropout(0.3), nn.Linear(24, 7), nn.ELU(0.5),
                        nn.Linear(7, 3))
    signal = nn.Sequential(nn.Conv1d(2, 5, 5, padding=2), nn.SiLU(), nn.Conv1d(5, 5, 4, stride=3, padding=2),
                           nn.PReLU(5), nn.Upsample(scale_factor=2), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                           nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2))
    for m in cnn.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
    return [(cnn.eval(), (3, 13, 9)), (signal.eval(), (2, 20))]


@pytest.mark.parametrize("index", [0, 1])
def test_round_trip_torch_keras_torch(index):
    module, shape = _torch_nets()[index]
    keras_model = convert_torch_to_tf_direct(module, shape)
    assert keras_model.input_shape[1:] == (*shape[1:], shape[0])
    assert_equivalent(keras_model, module)
    back = convert_tf_to_torch_direct(keras_model)
    assert_equivalent(keras_model, back)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(back(x), module(x), rtol=0, atol=ATOL)


def test_torch_to_keras_structure():
    module, shape = _torch_nets()[0]
    keras_model = convert_torch_to_tf_direct(module, shape)
    kinds = {layer.name: type(layer).__name__ for layer in keras_model.layers}
    assert kinds["0"] == "Conv2D" and keras_model.get_layer("0").padding == "same"
    assert kinds["3"] == "DepthwiseConv2D" and keras_model.get_layer("3").padding == "same"
    assert kinds["6_0_pad"] == "ZeroPadding2D" and keras_model.get_layer("6_0").padding == "valid"
    assert keras_model.get_layer("1").epsilon == pytest.approx(1e-4)

    signal, signal_shape = _torch_nets()[1]
    kinds = [type(layer).__name__ for layer in convert_torch_to_tf_direct(signal, signal_shape).layers]
    assert "GlobalAveragePooling1D" in kinds and "Flatten" not in kinds

    flat_to_bn = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.BatchNorm1d(12), nn.Linear(12, 2)).eval()
    keras_model = convert_torch_to_tf_direct(flat_to_bn, (2, 4, 4))
    assert type(keras_model.layers[1]).__name__ == "Permute"
    assert_equivalent(keras_model, flat_to_bn)


def test_torch_to_keras_errors_name_the_module():
    with pytest.raises(ValueError, match=r"'1' \(Softmax\)"):
        convert_torch_to_tf_direct(nn.Sequential(nn.Linear(4, 3), nn.Softmax(-1)), (4,))
    with pytest.raises(ValueError, match=r"'block_0' \(LayerNorm\)"):
        convert_torch_to_tf_direct(nn.Sequential(OrderedDict(block=nn.Sequential(nn.LayerNorm(4)))), (4,))


# ----------------------------------------------------------------------------------------------- ONNX path
@pytest.mark.parametrize("network", NETWORKS)
def test_onnx_path_on_reference_networks(network):
    spec, weights, rest = load_spec_npz(REFERENCE / f"{network}_x0.npz")
    keras_model = build_keras_model(spec, weights)
    before = [w.copy() for w in keras_model.get_weights()]
    converted = convert_tf_to_torch_via_onnx(keras_model)
    x = np.concatenate([rest["x"][None], np.random.RandomState(0).uniform(0, 1, (2, *spec["input_shape"]))])
    x = x.astype("float32")
    assert_equivalent(keras_model, converted, x)  # the PyTorch layout, channels-first
    n_dense = sum(layer["kind"] == "dense" for layer in spec["layers"])
    n_conv = sum(layer["kind"].startswith("conv") for layer in spec["layers"])
    modules = list(converted.modules())
    assert sum(isinstance(m, nn.Linear) for m in modules) == n_dense
    conv_type = nn.Conv1d if network == "ecg1d" else nn.Conv2d  # a Keras Conv1D becomes an nn.Conv1d
    assert sum(type(m) is conv_type and m.bias is not None for m in modules) == n_conv
    traced = fx.symbolic_trace(converted)
    assert not [n for n in traced.graph.nodes if n.op == "call_module"
                and not type(traced.get_submodule(n.target)).__module__.startswith("torch.nn")]
    assert_equivalent(keras_model, traced, x)
    for a, b in zip(before, keras_model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_onnx_path_layouts():
    """channels_first=True: the NHWC → NCHW transpose of tf2onnx cancels against the input permute, so the first conv
    reads the input directly; channels_first=False keeps the Keras layout."""
    model = sequential((9, 7, 3), L.Conv2D(4, 3, padding="same", activation="relu", name="c"), L.Flatten(),
                       L.Dense(2, name="d"))
    x = np.random.RandomState(2).normal(size=(2, 9, 7, 3)).astype("float32")
    expected = model(x).numpy()
    first = convert_tf_to_torch_via_onnx(model)
    (placeholder,) = [n for n in first.graph.nodes if n.op == "placeholder"]
    (user,) = placeholder.users
    assert user.op == "call_module" and isinstance(first.get_submodule(user.target), nn.Conv2d)
    last = convert_tf_to_torch_via_onnx(model, channels_first=False)
    with torch.no_grad():
        np.testing.assert_allclose(first(torch.tensor(channels_first(x))).numpy(), expected, rtol=0, atol=ATOL)
        np.testing.assert_allclose(last(torch.tensor(x)).numpy(), expected, rtol=0, atol=ATOL)
