"""signxai._keras_torch: the shared Keras ↔ PyTorch conventions, checked against the frameworks themselves."""
import subprocess
import sys

import numpy as np
import pytest
import torch  # before TensorFlow (NOTES: triton)
import torch.nn.functional as F
from torch import nn

import keras  # noqa: E402

from signxai import _keras_torch as kt  # noqa: E402

L = keras.layers


def test_importing_the_module_imports_no_framework():
    code = "import sys, signxai._keras_torch; print('torch' in sys.modules, 'tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == \
        ["False", "False"]


@pytest.mark.parametrize("size,kernel,stride,dilation", [(16, 3, 2, 1), (15, 3, 2, 1), (8, 4, 1, 1), (9, 3, 1, 2),
                                                         (7, 1, 3, 1), (5, 6, 1, 1)])
def test_same_padding_reproduces_keras_same(size, kernel, stride, dilation):
    x = np.random.RandomState(0).normal(size=(1, size, 2)).astype("float32")
    layer = L.Conv1D(1, kernel, strides=stride, dilation_rate=dilation, padding="same", use_bias=False)
    expected = keras.ops.convert_to_numpy(layer(x))
    before, after = kt.same_padding(size, kernel, stride, dilation)
    padded = np.pad(x, ((0, 0), (before, after), (0, 0)))
    valid = L.Conv1D(1, kernel, strides=stride, dilation_rate=dilation, padding="valid", use_bias=False)
    valid.build(padded.shape)
    valid.set_weights(layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(valid(padded)), expected, rtol=1e-6, atol=1e-6)
    assert kt.is_keras_same([before], [size], [kernel], [stride], [dilation]) == (before == after)


def test_padding_forms():
    pairs = [(0, 1), (2, 3)]
    assert kt.torch_pad(pairs) == (2, 3, 0, 1)
    assert kt.pairs_of_torch_pad(kt.torch_pad(pairs)) == pairs
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    assert F.pad(x, kt.torch_pad(pairs)).shape[2:] == (2 + 0 + 1, 3 + 2 + 3)
    assert kt.torch_conv_padding([(1, 1), (2, 2)]) == (None, (1, 2))
    assert kt.torch_conv_padding(pairs) == ((2, 3, 0, 1), 0)
    assert kt.as_tuple(3, 2) == (3, 3) and kt.as_tuple([1, 2], 2) == (1, 2)
    with pytest.raises(ValueError, match="static input size"):
        kt.same_padding(None, 3, 2)


def test_layouts_and_axes():
    x = np.random.RandomState(0).normal(size=(2, 4, 5, 3))
    cf = kt.channels_first(x)
    assert cf.shape == (2, 3, 4, 5) and cf.flags.c_contiguous
    assert np.array_equal(kt.channels_last(cf), x)
    assert np.array_equal(kt.channels_first(x[0], batch=False), cf[0])
    assert kt.channels_first_shape((4, 5, 3)) == (3, 4, 5) and kt.channels_last_shape((3, 4, 5)) == (4, 5, 3)
    assert kt.channels_first_shape((7,)) == (7,)
    t = torch.tensor(x)
    assert torch.equal(t.permute(*kt.channels_first_dims(3)), torch.tensor(cf))
    assert torch.equal(t.permute(*kt.channels_first_dims(3)).permute(*kt.channels_last_dims(3)), t)
    for rank in (1, 2, 3, 4):
        for axis in range(rank):
            assert kt.keras_axis(kt.torch_axis(axis, rank), rank) == axis
            # the Keras axis of a channels-last tensor and the PyTorch axis of its twin index the same data
            if rank == 3:
                keras_size = x.shape[1 + axis]
                assert cf.shape[1 + kt.torch_axis(axis, rank)] == keras_size


@pytest.mark.parametrize("shape", [(4, 5, 3), (6, 2), (1, 3, 1, 2)])
def test_flatten_orders(shape):
    x = np.random.RandomState(1).normal(size=(2, *shape))
    keras_flat = x.reshape(2, -1)
    torch_flat = torch.flatten(torch.tensor(kt.channels_first(x)), 1).numpy()
    index = kt.keras_to_torch_flat_index(shape)
    assert np.array_equal(keras_flat[:, index], torch_flat)
    assert np.array_equal(torch_flat[:, kt.torch_to_keras_flat_index(kt.channels_first_shape(shape))], keras_flat)
    kernel = np.random.RandomState(2).normal(size=(keras_flat.shape[1], 3))  # a Dense kernel after the Flatten
    rows = kt.flat_rows_to_torch(kernel, shape)
    np.testing.assert_allclose(torch_flat @ rows, keras_flat @ kernel, rtol=1e-12)
    assert np.array_equal(kt.flat_rows_to_keras(rows, kt.channels_first_shape(shape)), kernel)


def test_kernel_layouts_match_the_frameworks():
    rng = np.random.RandomState(3)
    x = rng.normal(size=(2, 7, 6, 4)).astype("float32")
    xt = torch.tensor(kt.channels_first(x))
    conv = L.Conv2D(5, (3, 2), use_bias=False)
    expected = kt.channels_first(keras.ops.convert_to_numpy(conv(x)))
    weight = kt.conv_kernel_to_torch(conv.get_weights()[0])
    np.testing.assert_allclose(F.conv2d(xt, torch.tensor(weight.copy())).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert np.array_equal(kt.conv_kernel_to_keras(weight), conv.get_weights()[0])
    depthwise = L.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False)
    expected = kt.channels_first(keras.ops.convert_to_numpy(depthwise(x)))
    weight = kt.depthwise_kernel_to_torch(depthwise.get_weights()[0])
    assert weight.shape == (8, 1, 3, 3)
    np.testing.assert_allclose(F.conv2d(xt, torch.tensor(weight.copy()), groups=4).numpy(), expected, rtol=1e-5,
                               atol=1e-5)
    assert np.array_equal(kt.depthwise_kernel_to_keras(weight, 4), depthwise.get_weights()[0])
    dense = rng.normal(size=(4, 3))
    assert np.array_equal(kt.dense_kernel_to_keras(kt.dense_kernel_to_torch(dense)), dense)


def test_activation_tables():
    for name, factory in kt.torch_activations().items():
        assert getattr(keras.activations, name) is not None
        module = factory()
        assert kt.torch_module_activation(module) == (None if name == "leaky_relu" else name)
        x = np.linspace(-4, 4, 41)
        expected = keras.ops.convert_to_numpy(keras.activations.get(name)(x))
        if name == "leaky_relu":
            expected = keras.ops.convert_to_numpy(keras.activations.leaky_relu(x, negative_slope=0.2))
        np.testing.assert_allclose(module(torch.tensor(x)).numpy(), expected, rtol=1e-6, atol=1e-6, err_msg=name)
    assert kt.torch_module_activation(nn.ELU(alpha=0.5)) is None
    assert kt.torch_module_activation(nn.GELU(approximate="tanh")) is None
    for function, name in kt.torch_function_activations().items():
        assert name in kt.torch_activations(), function
    assert set(kt.TORCH_METHOD_ACTIVATIONS.values()) <= set(kt.torch_activations())
    assert kt.keras_activation_name(keras.activations.relu) == "relu"
    assert kt.keras_activation_name(lambda x: x) is None
    assert kt.activation_range("sigmoid") == (0.0, 1.0) and kt.activation_range("gelu") is None
    assert set(kt.torch_arithmetic().values()) == set(kt.KERAS_OP_ARITHMETIC.values())
    assert F.softmax in kt.torch_softmax_functions() and nn.Softmax in kt.torch_softmax_modules()


def test_unique_name():
    taken = {"a_b", "a_b_1"}
    assert kt.unique_name("a.b", taken) == "a_b_2"
    assert kt.unique_name("a-b", taken, invalid=r"[^\w-]") == "a-b"
    assert kt.unique_name("x", lambda n: n == "x") == "x_1"


def test_graph_walk_inlines_nested_models_in_keras_order():
    inner = keras.Sequential([keras.Input((4,)), L.Dense(3, name="inner_dense")], name="inner")
    inputs = keras.Input((6,))
    a = L.Dense(4, name="a")(inputs)
    b = L.Dense(4, name="b")(inputs)
    outputs = inner(L.Add(name="add")([a, b]))
    model = keras.Model(inputs, outputs)
    order = []

    def visit(node, parents):
        order.append((node.operation.name, tuple(parents)))
        return [node.operation.name]
    assert kt.replay_keras_graph(model, ["x"], visit) == ["inner_dense"]
    assert sorted(order[:2]) == [("a", ("x",)), ("b", ("x",))]
    assert order[2:] == [("add", ("a", "b")), ("inner_dense", ("add",))]
    assert [n.operation.name for n in kt.keras_operation_nodes(model)] == [name for name, _ in order]
    assert kt.keras_functional(inner) is inner._functional
    with pytest.raises(ValueError, match="not built"):
        kt.keras_functional(keras.Sequential([L.Dense(2)], name="unbuilt"))
