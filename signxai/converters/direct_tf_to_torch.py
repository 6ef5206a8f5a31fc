"""Keras 3 → PyTorch, layer by layer, into a structurally equivalent channels-first module (docs/layers.md, §8).

Layout convention: every Keras tensor with a per-sample rank ≥ 2 is channels-last, and its PyTorch twin is the same
tensor with the channel axis moved to position 1. So a Keras input of shape ``(N, H, W, C)`` becomes ``(N, C, H, W)``,
``(N, T, C)`` becomes ``(N, C, T)`` — and a ``(N, 28, 28)`` input without a channel axis becomes ``(N, 28, 28)`` with
the last two axes swapped (``np.moveaxis(x, -1, 1)``), as in ``spec_models.build_torch_model``. Flat tensors keep
their shape. Outputs follow the same rule.

Layers that act on the channel axis of a tensor of rank ≥ 2 (``Dense``, ``LayerNormalization``, ``LayerScale``)
run on a channels-last view (a ``Permute`` module ``<tensor>_channels_last``); elementwise layers that follow keep that
layout, and the first consumer that needs channels-first gets the inverse ``Permute`` (``<tensor>_channels_first``).

Flatten: PyTorch flattens ``(C, H, W)``, Keras ``(H, W, C)``. The converter keeps the PyTorch order and permutes the
input rows of the Dense layer(s) that consume it (through Dropout/activation/BN/PReLU, whose per-feature parameters
are permuted alike); a consumer that needs the Keras order (Reshape, Concatenate, the model output, …) first gets an
explicit re-ordering module (``KerasReshape``). The orders agree (nothing is permuted) when at most one axis of the
flattened tensor is longer than 1.

Further equivalences (docs/layers.md, §8):

* ``SeparableConv*D`` → a depthwise ``Conv*d`` (``groups=C``, no bias, ``<layer>_depthwise``) followed by a pointwise
  1×1 ``Conv*d`` with the bias (``<layer>``), as the explainers treat it.
* Element-wise products (``Multiply``, ``a * b`` between model tensors) → ``a * b`` (``operator.mul``); constant
  operands of Keras op layers (``x + 3.0``, ``x * (1 / 6)``) → the same Python scalar in the graph, array constants →
  buffers of the module. ``Rescaling`` → ``x * scale + offset``; ``Normalization`` → ``(x − mean) /
  max(√variance, ε)`` with buffers ``<layer>_mean``/``<layer>_variance`` (the constants rounded as Keras rounds them,
  so float64 copies agree too); ``LayerScale`` (``keras.src.applications.convnext``) → ``x * gamma`` with the
  parameter ``<layer>_gamma``; ``LayerNormalization`` over the channel axis → ``nn.LayerNorm``.
* Asymmetric ``'same'`` pooling (stride 2 on an even size): TensorFlow's padding is ignored by the max and left out
  of the average, as PyTorch's ``ceil_mode=True`` windows are; the pool gets ``ceil_mode=True`` with the leading
  padding when both give the same windows.

Softmax: a ``Softmax`` layer or a ``softmax``/``log_softmax`` activation raises ValueError
(docs/api.md#model-requirements: no method explains a softmax model); remove it first.
"""
from __future__ import annotations

import operator
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx, nn

from signxai._keras_torch import (KERAS_OP_ARITHMETIC, SOFTMAX_ACTIVATIONS, channels_first, channels_first_dims,
                                  channels_first_shape, channels_last_dims, conv_kernel_to_torch, dense_kernel_to_torch,
                                  depthwise_kernel_to_torch, flat_rows_to_torch, keras_activation_name, keras_axis,
                                  keras_functional, replay_keras_graph, same_padding, torch_activations, torch_axis,
                                  torch_conv_padding, torch_pad, unique_name)

__all__ = ["convert_tf_to_torch_direct", "KerasReshape", "Permute", "Crop", "KerasRecurrent"]

_OPERATORS = {"add": operator.add, "subtract": operator.sub, "multiply": operator.mul, "divide": operator.truediv}
_BINARY_OPS = {name: _OPERATORS[operation] for name, operation in KERAS_OP_ARITHMETIC.items()}
"""Keras op layers (``keras.src.ops.numpy``), created by ``+ - * /`` on Keras tensors, → Python operators."""

TORCH_ACTIVATIONS = torch_activations()
"""Keras activation name → PyTorch module factory (same function, Keras default parameters)."""

_SOFTMAX_HINT = "remove the softmax first (the explanation methods need logits; docs/api.md#model-requirements)"


class KerasReshape(nn.Module):
    """Keras ``Reshape`` between PyTorch-layout tensors: view as ``input_shape`` (channels-first), move channels
    last, reshape to the Keras ``target_shape``, move channels first again."""

    def __init__(self, input_shape, target_shape):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.target_shape = tuple(target_shape)

    def forward(self, x):
        x = x.reshape(-1, *self.input_shape)
        rank = len(self.input_shape)
        if rank > 1:
            x = x.permute(*channels_last_dims(rank))
        x = x.reshape(-1, *self.target_shape)
        rank = len(self.target_shape)
        if rank > 1:
            x = x.permute(*channels_first_dims(rank))
        return x

    def extra_repr(self):
        return f"input_shape={self.input_shape}, target_shape={self.target_shape}"


class Permute(nn.Module):
    """``x.permute(*dims)`` (``dims`` includes the batch axis)."""

    def __init__(self, dims):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x):
        return x.permute(*self.dims)

    def extra_repr(self):
        return f"dims={self.dims}"


class Crop(nn.Module):
    """Keras ``Cropping*D`` on a channels-first tensor: ``crops`` holds one ``(start, end)`` pair per spatial axis."""

    def __init__(self, crops):
        super().__init__()
        self.crops = tuple(tuple(pair) for pair in crops)

    def forward(self, x):
        return x[(slice(None), slice(None)) + tuple(slice(a, -b if b else None) for a, b in self.crops)]

    def extra_repr(self):
        return f"crops={self.crops}"


class KerasRecurrent(nn.Module):
    """A Keras ``LSTM``/``GRU``/``SimpleRNN`` (possibly ``Bidirectional``) as PyTorch computes it: the batch-first
    module ``rnn`` on the channels-last sequence (N, T, F), then what Keras returns — the sequence, or the last
    processed step (bidirectional: the forward direction's last step and the backward direction's first), merged
    by ``merge_mode``. ``go_backwards``: the sequence is reversed first (Keras then returns it in processing
    order)."""

    def __init__(self, rnn, return_sequences, go_backwards=False, merge_mode=None):
        super().__init__()
        self.rnn, self.return_sequences, self.go_backwards, self.merge_mode = (rnn, return_sequences, go_backwards,
                                                                               merge_mode)

    def forward(self, x):
        if self.go_backwards:
            x = torch.flip(x, [1])
        out, _ = self.rnn(x)
        if self.merge_mode is None:
            return out if self.return_sequences else out[:, -1]
        if self.merge_mode == "concat" and self.return_sequences:
            return out
        units = self.rnn.hidden_size
        if self.return_sequences:
            forward, backward = out[:, :, :units], out[:, :, units:]
        else:
            forward, backward = out[:, -1, :units], out[:, 0, units:]
        if self.merge_mode == "concat":
            return torch.cat([forward, backward], 1)
        if self.merge_mode == "sum":
            return forward + backward
        return (forward + backward) / 2

    def extra_repr(self):
        return (f"return_sequences={self.return_sequences}, go_backwards={self.go_backwards}, "
                f"merge_mode={self.merge_mode}")


def convert_tf_to_torch_direct(keras_model) -> nn.Module:
    """A channels-first PyTorch module computing the same function as ``keras_model`` (which is left untouched).

    A model whose graph is a chain becomes an ``nn.Sequential`` whose children carry the Keras layer names (fused
    activations and explicit paddings get ``<layer>_<activation>`` / ``<layer>_pad``); any other graph becomes a
    ``torch.fx.GraphModule`` whose forward uses ``+``, ``*``, ``torch.cat`` and constant arithmetic (symbolically
    traceable). Nested models are inlined. The result is in eval mode, in the dtype of the Keras input. Raises
    ValueError naming the first unsupported layer (name and class).
    """
    import keras

    return _Converter(keras).convert(keras_model)


@dataclass(frozen=True)
class _Tensor:
    """A converted tensor: its fx node, its per-sample Keras shape, and — for a flat tensor still in PyTorch's
    flatten order — the channels-last shape it was flattened from."""

    node: fx.Node
    shape: tuple
    flat_from: tuple | None = None
    channels_last: bool = False  # the PyTorch tensor is (still) in Keras's channels-last layout


def _parameter(array):
    return nn.Parameter(torch.tensor(np.array(array)))


class _Converter:
    def __init__(self, keras):
        self.keras = keras
        self.graph = fx.Graph()
        self.modules = OrderedDict()
        self.constants = OrderedDict()  # buffers and parameters read with get_attr
        self.layouts = {}  # (fx node, "first"/"last") → the tensor in that layout
        L = keras.layers
        handlers = {
            L.Dense: self._dense, L.BatchNormalization: self._batchnorm, L.Flatten: self._flatten,
            L.Reshape: self._reshape, L.Permute: self._permute, L.Activation: self._activation_layer,
            L.ReLU: self._relu, L.LeakyReLU: self._leaky_relu, L.ELU: self._elu, L.PReLU: self._prelu,
            L.Add: self._add, L.Concatenate: self._concatenate, L.Softmax: self._softmax,
            L.Multiply: self._multiply, L.Subtract: self._subtract, L.Rescaling: self._rescaling,
            L.Normalization: self._normalization, L.LayerNormalization: self._layer_normalization,
            L.SeparableConv1D: self._separable_conv, L.SeparableConv2D: self._separable_conv,
            L.LSTM: self._recurrent, L.GRU: self._recurrent, L.SimpleRNN: self._recurrent,
            L.Bidirectional: self._recurrent,
        }
        try:
            from keras.src.applications.convnext import LayerScale
        except ImportError:  # a Keras without ConvNeXt
            pass
        else:
            handlers[LayerScale] = self._layer_scale
        for cls in (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D,
                    L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose):
            handlers[cls] = self._conv
        for cls in (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
                    L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D):
            handlers[cls] = self._pool
        for cls in (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
                    L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D):
            handlers[cls] = self._global_pool
        for cls in (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.AlphaDropout,
                    L.GaussianNoise, L.GaussianDropout, L.ActivityRegularization, L.Identity):
            handlers[cls] = self._dropout
        for cls in (L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D):
            handlers[cls] = self._zero_padding
        for cls in (L.Cropping1D, L.Cropping2D, L.Cropping3D):
            handlers[cls] = self._cropping
        for cls in (L.UpSampling1D, L.UpSampling2D, L.UpSampling3D):
            handlers[cls] = self._upsampling
        self.handlers = handlers
        # handlers that accept a channels-last tensor (all others get channels-first inputs)
        self.layout_aware = {self._dense, self._layer_normalization, self._layer_scale, self._activation_layer,
                             self._relu, self._leaky_relu, self._elu, self._dropout, self._add, self._multiply,
                             self._subtract, self._binary_op, self._rescaling, self._normalization, self._flatten,
                             self._softmax, self._recurrent}
        self.multi_input = {self._add, self._concatenate, self._multiply, self._subtract, self._binary_op}

    # ----------------------------------------------------------------------------------------------- graph walk
    def convert(self, model):
        functional = keras_functional(model)
        if len(functional.inputs) != 1 or len(functional.outputs) != 1:
            raise ValueError(f"model {model.name!r} must have one input and one output")
        (keras_input,) = functional.inputs
        self.dtype = str(keras_input.dtype)
        x = _Tensor(self.graph.placeholder("x"), tuple(keras_input.shape[1:]))
        (y,) = replay_keras_graph(functional, [x], self._node)
        self.graph.output(self._keras_order(self._to_channels_first(y), "output").node)
        module = self._finish()
        return module.to(getattr(torch, str(keras_input.dtype))).eval()

    def _node(self, node, args):
        """The converted outputs of one graph node (``replay_keras_graph`` walks the graph, nested models inlined)."""
        operation = node.operation
        if self._binary_op_of(operation) is not None:  # constants are arguments of op layers
            tensors = {id(kt): t for kt, t in zip(node.input_tensors, args)}
            args = [tensors[id(a)] if isinstance(a, self.keras.KerasTensor) else a for a in node.arguments.args]
            if node.arguments.kwargs:
                raise ValueError(f"layer {operation.name!r} ({type(operation).__name__}): keyword arguments are "
                                 f"not supported")
        return [self._layer(operation, args, tuple(node.outputs[0].shape[1:]))]

    @staticmethod
    def _binary_op_of(operation):
        """The Python operator of a Keras op layer (``a + b``, ``x * 0.5`` …), else None."""
        if type(operation).__module__ == "keras.src.ops.numpy":
            return _BINARY_OPS.get(type(operation).__name__)
        return None

    def _layer(self, layer, inputs, out_shape):
        handler = self.handlers.get(type(layer))
        if handler is None and self._binary_op_of(layer) is not None:
            handler = self._binary_op  # `a + b`, `x * 0.5`, keras.ops.multiply … on model tensors
        if handler is None:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) is not supported by the Keras → PyTorch "
                             f"converter (see docs/layers.md)")
        if handler not in self.layout_aware:
            inputs = [self._to_channels_first(t) if isinstance(t, _Tensor) else t for t in inputs]
        if handler not in self.multi_input:
            if len(inputs) != 1:
                raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) must have exactly one input")
            inputs = inputs[0]
        data_format = getattr(layer, "data_format", "channels_last")
        if data_format != "channels_last":
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}): only channels_last is supported")
        return handler(layer, inputs, out_shape)

    def _finish(self):
        """``nn.Sequential`` for a chain of modules, else a GraphModule."""
        nodes = list(self.graph.nodes)
        chain = all(node.op == "call_module" and node.args == (previous,) and not node.kwargs
                    for previous, node in zip(nodes, nodes[1:-1]))
        if chain and nodes[-1].args == (nodes[-2],):
            return nn.Sequential(self.modules)
        root = nn.Module()
        for name, module in self.modules.items():
            root.add_module(name, module)
        for name, value in self.constants.items():
            if isinstance(value, nn.Parameter):
                root.register_parameter(name, value)
            else:
                root.register_buffer(name, value)
        self.graph.lint()
        return fx.GraphModule(root, self.graph, class_name="ConvertedKerasModel")

    # ------------------------------------------------------------------------------------------------- emitters
    def _unique(self, name):
        return unique_name(name, lambda n: n in self.modules or n in self.constants)

    def _emit(self, name, module, t, shape, flat_from=None, channels_last=False):
        unique = self._unique(name)
        self.modules[unique] = module
        return _Tensor(self.graph.call_module(unique, (t.node,)), tuple(shape), flat_from, channels_last)

    def _elementwise(self, name, module, t):
        """Append an elementwise module: shape, pending flatten order and layout are kept."""
        return self._emit(name, module, t, t.shape, t.flat_from, t.channels_last)

    def _constant(self, name, value, parameter=False):
        """A ``get_attr`` node of a new buffer (or parameter) holding ``value``."""
        unique = self._unique(name)
        tensor = torch.tensor(np.array(value))
        self.constants[unique] = nn.Parameter(tensor) if parameter else tensor
        return self.graph.get_attr(unique)

    @staticmethod
    def _source_name(t):
        node = t.node
        return node.target if node.op == "call_module" else node.name

    def _to_channels_first(self, t):
        """``t`` in the channels-first layout (a ``<tensor>_channels_first`` Permute if it is channels-last)."""
        if not t.channels_last:
            return t
        key = (t.node, "first")
        if key not in self.layouts:
            rank = len(t.shape)
            self.layouts[key] = self._emit(f"{self._source_name(t)}_channels_first",
                                           Permute(channels_first_dims(rank)), t, t.shape)
        return self.layouts[key]

    def _to_channels_last(self, t):
        """``t`` in the channels-last layout (a ``<tensor>_channels_last`` Permute if needed; rank-1 tensors are
        unchanged)."""
        rank = len(t.shape)
        if t.channels_last or rank < 2:
            return t
        key = (t.node, "last")
        if key not in self.layouts:
            self.layouts[key] = self._emit(f"{self._source_name(t)}_channels_last",
                                           Permute(channels_last_dims(rank)), t, t.shape, channels_last=True)
        return self.layouts[key]

    def _same_layout(self, tensors):
        """Tensors of one elementwise op in one layout: channels-last only if all of them are."""
        if all(t.channels_last for t in tensors):
            return tensors
        return [self._to_channels_first(t) for t in tensors]

    def _layout_constant(self, name, array, t, dtype):
        """A ``get_attr`` node for a constant that broadcasts against the Keras tensor of ``t`` (Keras broadcasting
        aligns trailing axes), rearranged for ``t``'s PyTorch layout."""
        rank = len(t.shape)
        array = np.asarray(array, dtype=dtype)
        if array.ndim == rank + 1 and array.shape[0] == 1:
            array = array[0]
        if array.ndim > rank:
            raise ValueError(f"{name}: a constant of shape {array.shape} does not broadcast per sample against a "
                             f"tensor of shape {t.shape}")
        array = array.reshape((1,) * (rank - array.ndim) + array.shape)
        if rank >= 2 and not t.channels_last:
            array = channels_first(array, batch=False)
        return self._constant(name, np.ascontiguousarray(array[None]))

    def _call(self, function, args, shape, like, kwargs=None):
        """A ``call_function`` node; ``like`` (a converted operand) gives flatten order and layout."""
        node = self.graph.call_function(function, tuple(args), kwargs or {})
        return _Tensor(node, tuple(shape), like.flat_from, like.channels_last)

    def _keras_order(self, t, name):
        """``t`` in Keras's element order (undoes a pending PyTorch flatten order)."""
        if t.flat_from is None:
            return t
        return self._emit(f"{name}_keras_order", KerasReshape(channels_first_shape(t.flat_from), t.shape), t, t.shape)

    def _activation(self, layer, t, activation, name):
        """Append the module for a Keras activation function (nothing for ``linear``)."""
        key = keras_activation_name(activation)
        if key is None:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}): custom activation {activation!r} "
                             f"is not supported")
        if key == "linear":
            return t
        if key in SOFTMAX_ACTIVATIONS:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has a {key} activation; {_SOFTMAX_HINT}")
        if key not in TORCH_ACTIVATIONS:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}): activation {key!r} is not supported; "
                             f"supported: {sorted(TORCH_ACTIVATIONS)}")
        return self._elementwise(name or f"{layer.name}_{key}", TORCH_ACTIVATIONS[key](), t)

    # ---------------------------------------------------------------------------------------------- layer types
    def _dense(self, layer, t, out_shape):
        kernel = layer.kernel.numpy()
        if t.flat_from is not None:
            kernel = flat_rows_to_torch(kernel, t.flat_from)
        linear = nn.Linear(kernel.shape[0], kernel.shape[1], bias=layer.use_bias)
        linear.weight = _parameter(dense_kernel_to_torch(kernel))
        if layer.use_bias:
            linear.bias = _parameter(layer.bias.numpy())
        # Dense acts on the channel axis: a tensor of rank ≥ 2 is (made) channels-last, and stays so
        t = self._to_channels_last(t)
        t = self._emit(layer.name, linear, t, out_shape, channels_last=len(out_shape) > 1)
        return self._activation(layer, t, layer.activation, None)

    def _recurrent(self, layer, t, out_shape):
        """``LSTM``/``GRU``/``SimpleRNN`` (``Bidirectional``) → :class:`KerasRecurrent` around ``nn.LSTM``/
        ``nn.GRU``/``nn.RNN`` (docs/converters.md#recurrent): GRU gate blocks (z, r, h) → (r, z, n); Keras's single
        LSTM/SimpleRNN bias → ``bias_ih`` (``bias_hh`` zero)."""
        L = self.keras.layers
        bidirectional = isinstance(layer, L.Bidirectional)
        layers = [layer.forward_layer, layer.backward_layer] if bidirectional else [layer]
        where = f"layer {layer.name!r} ({type(layer).__name__})"
        if bidirectional and (layer.merge_mode not in ("concat", "sum", "ave") or layer.forward_layer.go_backwards):
            raise ValueError(f"{where}: only merge_mode 'concat', 'sum' or 'ave' with a forward first layer is "
                             f"supported (got merge_mode={layer.merge_mode!r})")
        if any(type(inner) not in (L.LSTM, L.GRU, L.SimpleRNN) for inner in layers):
            raise ValueError(f"{where}: only Keras LSTM, GRU and SimpleRNN layers are supported")
        first = layers[0]
        for inner in layers:
            if inner.stateful or inner.return_state or getattr(inner, "return_state", False):
                raise ValueError(f"{where}: stateful layers and return_state are not supported")
            if isinstance(inner, L.GRU) and not inner.reset_after:
                raise ValueError(f"{where}: GRU(reset_after=False) has no PyTorch counterpart (nn.GRU applies the "
                                 f"reset gate after the recurrent kernel, as reset_after=True)")
            activation = keras_activation_name(inner.cell.activation)
            gate = keras_activation_name(getattr(inner.cell, "recurrent_activation", None)) or "sigmoid"
            allowed = ("tanh", "relu") if isinstance(inner, L.SimpleRNN) else ("tanh",)
            if activation not in allowed or gate != "sigmoid":
                raise ValueError(f"{where}: activation {activation!r} / recurrent_activation {gate!r} have no "
                                 f"PyTorch counterpart (PyTorch: tanh and sigmoid; nn.RNN: tanh or relu)")
        if bidirectional and getattr(layer, "return_state", False):
            raise ValueError(f"{where}: return_state is not supported")
        units, features = first.cell.units, t.shape[-1]
        kwargs = {"batch_first": True, "bidirectional": bidirectional, "bias": first.cell.use_bias}
        if isinstance(first, L.LSTM):
            rnn, order = nn.LSTM(features, units, **kwargs), (0, 1, 2, 3)
        elif isinstance(first, L.GRU):
            rnn, order = nn.GRU(features, units, **kwargs), (1, 0, 2)
        else:
            rnn, order = nn.RNN(features, units, nonlinearity=keras_activation_name(first.cell.activation),
                                **kwargs), (0,)

        def blocks(w):  # rows in PyTorch's gate order
            parts = np.split(w, len(order), axis=0)
            return np.concatenate([parts[k] for k in order], axis=0)
        for inner, suffix in zip(layers, ("_l0", "_l0_reverse")):
            cell = inner.cell
            setattr(rnn, f"weight_ih{suffix}", _parameter(blocks(cell.kernel.numpy().T)))
            setattr(rnn, f"weight_hh{suffix}", _parameter(blocks(cell.recurrent_kernel.numpy().T)))
            if cell.use_bias:
                bias = cell.bias.numpy()
                b_ih, b_hh = (bias[0], bias[1]) if isinstance(inner, L.GRU) else (bias, np.zeros_like(bias))
                setattr(rnn, f"bias_ih{suffix}", _parameter(blocks(b_ih)))
                setattr(rnn, f"bias_hh{suffix}", _parameter(blocks(b_hh)))
        rnn.flatten_parameters()
        module = KerasRecurrent(rnn, layer.return_sequences, go_backwards=not bidirectional and first.go_backwards,
                                merge_mode=layer.merge_mode if bidirectional else None)
        t = self._to_channels_last(t)
        return self._emit(layer.name, module, t, out_shape, channels_last=len(out_shape) > 1)

    def _conv(self, layer, t, out_shape):
        L = self.keras.layers
        n = layer.rank
        transposed = isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose))
        depthwise = isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D))
        kernel = layer.kernel.numpy()
        stride, dilation = layer.strides, layer.dilation_rate
        in_channels = t.shape[-1]
        weight = depthwise_kernel_to_torch(kernel) if depthwise else conv_kernel_to_torch(kernel)
        if transposed:
            conv_padding, output_padding = self._transposed_padding(layer)
            module = getattr(nn, f"ConvTranspose{n}d")(in_channels, weight.shape[1], layer.kernel_size, stride=stride,
                                                       padding=conv_padding, output_padding=output_padding,
                                                       bias=layer.use_bias)
        else:
            t, conv_padding = self._conv_padding(layer, t)
            groups = in_channels if depthwise else layer.groups
            module = getattr(nn, f"Conv{n}d")(in_channels, weight.shape[0], layer.kernel_size, stride=stride,
                                              padding=conv_padding, dilation=dilation, groups=groups,
                                              bias=layer.use_bias)
        module.weight = _parameter(weight)
        if layer.use_bias:
            module.bias = _parameter(layer.bias.numpy())
        t = self._emit(layer.name, module, t, out_shape)
        return self._activation(layer, t, layer.activation, None)

    def _conv_padding(self, layer, t):
        """``(t, padding)``: Keras's padding as PyTorch's symmetric ``padding``, or an explicit ``<layer>_pad``
        zero pad followed by a ``'valid'`` conv where it is asymmetric (docs/equivalence.md#model-equivalence)."""
        n, size, dilation = layer.rank, t.shape[:-1], layer.dilation_rate
        if layer.padding == "valid":
            pads = [(0, 0)] * n
        elif layer.padding == "same":
            pads = [same_padding(*args) for args in zip(size, layer.kernel_size, layer.strides, dilation)]
        else:  # causal (Conv1D)
            pads = [((layer.kernel_size[0] - 1) * dilation[0], 0)]
        explicit, padding = torch_conv_padding(pads)
        if explicit is None:
            return t, padding
        padded = tuple(d + a + b for d, (a, b) in zip(size, pads))
        t = self._emit(f"{layer.name}_pad", getattr(nn, f"ZeroPad{n}d")(explicit), t, (*padded, t.shape[-1]))
        return t, padding

    def _separable_conv(self, layer, t, out_shape):
        """A depthwise conv (``groups=C``, no bias) and a pointwise 1×1 conv with the bias and the activation."""
        n = layer.rank
        in_channels = t.shape[-1]
        t, padding = self._conv_padding(layer, t)
        depthwise_kernel = layer.depthwise_kernel.numpy()  # (k..., C, M)
        middle = in_channels * depthwise_kernel.shape[-1]
        depthwise = getattr(nn, f"Conv{n}d")(in_channels, middle, layer.kernel_size, stride=layer.strides,
                                             padding=padding, dilation=layer.dilation_rate, groups=in_channels,
                                             bias=False)
        depthwise.weight = _parameter(depthwise_kernel_to_torch(depthwise_kernel))
        pointwise = getattr(nn, f"Conv{n}d")(middle, layer.filters, 1, bias=layer.use_bias)
        pointwise.weight = _parameter(conv_kernel_to_torch(layer.pointwise_kernel.numpy()))
        if layer.use_bias:
            pointwise.bias = _parameter(layer.bias.numpy())
        t = self._emit(f"{layer.name}_depthwise", depthwise, t, (*out_shape[:-1], middle))
        t = self._emit(layer.name, pointwise, t, out_shape)
        return self._activation(layer, t, layer.activation, None)

    @staticmethod
    def _transposed_padding(layer):
        """``(padding, output_padding)`` of the PyTorch twin of a Keras ConvTranspose layer."""
        if layer.output_padding is not None or any(d != 1 for d in layer.dilation_rate):
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}): output_padding and dilation are not "
                             f"supported")
        padding, output_padding = [], []
        for k, s in zip(layer.kernel_size, layer.strides):
            crop = max(k - s, 0) if layer.padding == "same" else 0  # cropped from the full (n-1)·s + k output
            if crop % 2:
                raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}): asymmetric 'same' padding is not "
                                 f"supported")
            padding.append(crop // 2)
            output_padding.append(max(s - k, 0))
        return tuple(padding), tuple(output_padding)

    def _batchnorm(self, layer, t, out_shape):
        rank = len(t.shape)
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        if [a % (rank + 1) for a in axes] != [rank]:
            raise ValueError(f"layer {layer.name!r} (BatchNormalization): only the channel (last) axis is supported")
        mean, var = layer.moving_mean.numpy(), layer.moving_variance.numpy()
        gamma = layer.gamma.numpy() if layer.scale else np.ones_like(mean)
        beta = layer.beta.numpy() if layer.center else np.zeros_like(mean)
        if t.flat_from is not None:
            mean, var, gamma, beta = (flat_rows_to_torch(a, t.flat_from) for a in (mean, var, gamma, beta))
        module = getattr(nn, f"BatchNorm{max(rank - 1, 1)}d")(mean.shape[0], eps=layer.epsilon)
        module.weight, module.bias = _parameter(gamma), _parameter(beta)
        module.running_mean.data, module.running_var.data = torch.tensor(mean), torch.tensor(var)
        return self._emit(layer.name, module, t, out_shape, t.flat_from)

    def _pool(self, layer, t, out_shape):
        n = len(layer.pool_size)
        average = "Average" in type(layer).__name__
        ceil_mode = False
        if layer.padding == "valid":
            padding = 0
        else:
            size, kernel, stride = t.shape[:-1], layer.pool_size, layer.strides
            pads = [same_padding(*args) for args in zip(size, kernel, stride)]
            padding = tuple(a for a, _ in pads)
            if any(2 * a > k for a, k in zip(padding, kernel)):
                raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}): this 'same' padding exceeds half "
                                 f"the pool size and has no PyTorch form")
            if any(a != b for a, b in pads):
                # TensorFlow ignores its padding (max) and leaves it out of the count (average); PyTorch's ceil_mode
                # windows past the end do the same. Same windows iff the output sizes agree.
                ceil_mode = True
                for d, a, k, s, o in zip(size, padding, kernel, stride, out_shape[:-1]):
                    windows = -(-(d + 2 * a - k) // s) + 1
                    if (windows - 1) * s >= d + a:
                        windows -= 1
                    if windows != o:
                        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}): this asymmetric 'same' "
                                         f"padding has no exact PyTorch form")
        if average:
            module = getattr(nn, f"AvgPool{n}d")(layer.pool_size, layer.strides, padding, ceil_mode=ceil_mode,
                                                 count_include_pad=False)
        else:
            module = getattr(nn, f"MaxPool{n}d")(layer.pool_size, layer.strides, padding, ceil_mode=ceil_mode)
        return self._emit(layer.name, module, t, out_shape)

    def _global_pool(self, layer, t, out_shape):
        n = len(t.shape) - 1
        kind = "Avg" if "Average" in type(layer).__name__ else "Max"
        module = getattr(nn, f"Adaptive{kind}Pool{n}d")(1)
        if not layer.keepdims:
            module = nn.Sequential(module, nn.Flatten())
        return self._emit(layer.name, module, t, out_shape)

    def _flatten(self, layer, t, out_shape):
        if len(t.shape) == 1:
            flat_from = t.flat_from
        elif t.channels_last or sum(d != 1 for d in t.shape) <= 1:
            flat_from = None  # the PyTorch tensor flattens in Keras's order already
        else:
            flat_from = t.shape
        return self._emit(layer.name, nn.Flatten(), t, out_shape, flat_from)

    def _reshape(self, layer, t, out_shape):
        t = self._keras_order(t, layer.name)
        return self._emit(layer.name, KerasReshape(channels_first_shape(t.shape), out_shape), t, out_shape)

    def _permute(self, layer, t, out_shape):
        rank = len(t.shape)
        if rank == 1:
            return self._emit(layer.name, nn.Identity(), t, out_shape, t.flat_from)
        keras_of_torch = [keras_axis(a, rank) for a in range(rank)]  # per-sample Keras axis of each PyTorch axis
        dims = [0] + [1 + torch_axis(layer.dims[k] - 1, rank) for k in keras_of_torch]
        return self._emit(layer.name, Permute(dims), t, out_shape)

    def _activation_layer(self, layer, t, out_shape):
        if layer.activation is self.keras.activations.linear:
            return self._elementwise(layer.name, nn.Identity(), t)
        return self._activation(layer, t, layer.activation, layer.name)

    def _relu(self, layer, t, out_shape):
        if layer.threshold == 0 and layer.negative_slope == 0 and layer.max_value in (None, 6):
            module = nn.ReLU() if layer.max_value is None else nn.ReLU6()
        elif layer.threshold == 0 and layer.max_value is None:
            module = nn.LeakyReLU(float(layer.negative_slope))
        else:
            raise ValueError(f"layer {layer.name!r} (ReLU): threshold / this max_value are not supported")
        return self._elementwise(layer.name, module, t)

    def _leaky_relu(self, layer, t, out_shape):
        return self._elementwise(layer.name, nn.LeakyReLU(float(layer.negative_slope)), t)

    def _elu(self, layer, t, out_shape):
        return self._elementwise(layer.name, nn.ELU(float(layer.alpha)), t)

    def _prelu(self, layer, t, out_shape):
        alpha = layer.alpha.numpy()
        if len(t.shape) == 1:
            if t.flat_from is not None:
                alpha = flat_rows_to_torch(alpha, t.flat_from)
        elif any(d != 1 for d in alpha.shape[:-1]):
            raise ValueError(f"layer {layer.name!r} (PReLU): only a per-channel or shared alpha is supported; "
                             f"set shared_axes to all spatial axes")
        alpha = alpha.reshape(-1)
        module = nn.PReLU(alpha.shape[0])
        module.weight = _parameter(alpha)
        return self._emit(layer.name, module, t, out_shape, t.flat_from)

    def _dropout(self, layer, t, out_shape):
        L = self.keras.layers
        rate = getattr(layer, "rate", 0.0)
        kinds = {L.Dropout: nn.Dropout, L.SpatialDropout1D: nn.Dropout1d, L.SpatialDropout2D: nn.Dropout2d,
                 L.SpatialDropout3D: nn.Dropout3d, L.AlphaDropout: nn.AlphaDropout}
        module = kinds[type(layer)](rate) if type(layer) in kinds else nn.Identity()
        if isinstance(module, (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
            t = self._to_channels_first(t)  # drops whole channels
        return self._elementwise(layer.name, module, t)

    def _zero_padding(self, layer, t, out_shape):
        pads = [layer.padding] if isinstance(layer.padding[0], int) else layer.padding
        return self._emit(layer.name, getattr(nn, f"ZeroPad{len(pads)}d")(torch_pad(pads)), t, out_shape)

    def _cropping(self, layer, t, out_shape):
        crops = [layer.cropping] if isinstance(layer.cropping[0], int) else layer.cropping
        return self._emit(layer.name, Crop(crops), t, out_shape)

    def _upsampling(self, layer, t, out_shape):
        if getattr(layer, "interpolation", "nearest") != "nearest":
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}): only nearest interpolation is supported")
        size = (layer.size,) if isinstance(layer.size, int) else tuple(layer.size)
        return self._emit(layer.name, nn.Upsample(scale_factor=tuple(float(s) for s in size), mode="nearest"),
                          t, out_shape)

    def _add(self, layer, inputs, out_shape):
        if len(inputs) < 2:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}): only sums of model tensors are "
                             f"supported, not a tensor plus a constant")
        return self._merge(layer, inputs, out_shape, operator.add)

    def _multiply(self, layer, inputs, out_shape):
        return self._merge(layer, inputs, out_shape, operator.mul)

    def _subtract(self, layer, inputs, out_shape):
        return self._merge(layer, inputs, out_shape, operator.sub)

    def _merge(self, layer, inputs, out_shape, function):
        """``a ∘ b ∘ …`` of model tensors (Keras broadcasting between tensors of one rank)."""
        if len({len(t.shape) for t in inputs}) > 1:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}): operands of different ranks "
                             f"{[t.shape for t in inputs]} are not supported")
        if len({t.flat_from for t in inputs}) > 1:
            inputs = [self._keras_order(t, f"{layer.name}_{i}") for i, t in enumerate(inputs)]
        inputs = self._same_layout(inputs)
        node = inputs[0].node
        for t in inputs[1:]:
            node = self.graph.call_function(function, (node, t.node))
        return _Tensor(node, out_shape, inputs[0].flat_from, inputs[0].channels_last)

    def _binary_op(self, layer, operands, out_shape):
        """A Keras op layer ``a ∘ b`` (``+ - * /``): between model tensors, or with a constant operand (a Python
        scalar in the graph, an array as a buffer in the PyTorch layout)."""
        function = self._binary_op_of(layer)
        tensors = [a for a in operands if isinstance(a, _Tensor)]
        if len(operands) != 2 or not tensors:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}): expected two operands")
        if len(tensors) == 2:
            if function is operator.add:
                return self._add(layer, tensors, out_shape)
            return self._merge(layer, tensors, out_shape, function)
        (t,) = tensors
        constant = next(a for a in operands if not isinstance(a, _Tensor))
        if isinstance(constant, (int, float)) and not isinstance(constant, bool):
            value = float(constant)  # Keras converts a Python scalar to the tensor's dtype, as PyTorch does
        else:
            array = np.asarray(self.keras.ops.convert_to_numpy(constant), dtype=self.dtype)
            if array.size == 1 and array.ndim <= len(t.shape) + 1:
                value = float(array.reshape(()))
            else:
                t = self._keras_order(t, layer.name)
                value = self._layout_constant(f"{layer.name}_constant", array, t, self.dtype)
        args = [t.node if isinstance(a, _Tensor) else value for a in operands]
        return self._call(function, args, out_shape, t)

    def _rescaling(self, layer, t, out_shape):
        """``x * scale + offset``, the constants rounded to float32 as Keras's ``cast`` rounds them."""
        for key in ("scale", "offset"):
            value = np.asarray(getattr(layer, key), dtype=np.float32)
            neutral = 1.0 if key == "scale" else 0.0
            if value.size == 1:
                value = float(value.reshape(()))
                if value == neutral:
                    continue
            else:
                t = self._keras_order(t, layer.name)
                value = self._layout_constant(f"{layer.name}_{key}", value, t, self.dtype)
            t = self._call(operator.mul if key == "scale" else operator.add, (t.node, value), out_shape, t)
        return t

    def _normalization(self, layer, t, out_shape):
        """``(x − mean) / max(√variance, ε)`` (``mean + x·max(√variance, ε)`` with ``invert``), over the channel axis.
        √ and max are computed in the graph from the buffers, so a float64 copy computes them in float64 as Keras's
        float64 copy does."""
        rank = len(t.shape)
        keep = tuple(a % (rank + 1) for a in layer._keep_axis)
        if keep != (rank,):
            raise ValueError(f"layer {layer.name!r} (Normalization): only normalization over the last (channel) axis "
                             f"is supported")
        t = self._keras_order(t, layer.name)
        mean = self.keras.ops.convert_to_numpy(layer.mean)
        variance = self.keras.ops.convert_to_numpy(layer.variance)
        mean = self._layout_constant(f"{layer.name}_mean", mean, t, self.dtype)
        variance = self._layout_constant(f"{layer.name}_variance", variance, t, self.dtype)
        scale = self.graph.call_function(torch.clamp, (self.graph.call_function(torch.sqrt, (variance,)),),
                                         {"min": float(self.keras.backend.epsilon())})
        if layer.invert:
            product = self.graph.call_function(operator.mul, (t.node, scale))
            return _Tensor(self.graph.call_function(operator.add, (mean, product)), out_shape, None, t.channels_last)
        centred = self.graph.call_function(operator.sub, (t.node, mean))
        return _Tensor(self.graph.call_function(operator.truediv, (centred, scale)), out_shape, None, t.channels_last)

    def _layer_normalization(self, layer, t, out_shape):
        rank = len(t.shape)
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        if [a % (rank + 1) for a in axes] != [rank] or getattr(layer, "rms_scaling", False):
            raise ValueError(f"layer {layer.name!r} (LayerNormalization): only normalization over the last (channel) "
                             f"axis, without rms_scaling, is supported")
        channels = t.shape[-1]
        gamma = layer.gamma.numpy() if layer.scale else np.ones(channels, dtype=layer.compute_dtype)
        beta = layer.beta.numpy() if layer.center else np.zeros(channels, dtype=layer.compute_dtype)
        if t.flat_from is not None:
            gamma, beta = (flat_rows_to_torch(a, t.flat_from) for a in (gamma, beta))
        module = nn.LayerNorm(channels, eps=layer.epsilon)
        module.weight, module.bias = _parameter(gamma), _parameter(beta)
        t = self._to_channels_last(t)
        return self._elementwise(layer.name, module, t)

    def _layer_scale(self, layer, t, out_shape):
        """ConvNeXt's LayerScale: ``x * gamma`` per channel (``gamma`` a parameter ``<layer>_gamma``)."""
        t = self._to_channels_last(self._keras_order(t, layer.name))
        gamma = self._constant(f"{layer.name}_gamma", layer.gamma.numpy(), parameter=True)
        return self._call(operator.mul, (t.node, gamma), out_shape, t)

    def _concatenate(self, layer, inputs, out_shape):
        inputs = [self._keras_order(t, f"{layer.name}_{i}") for i, t in enumerate(inputs)]
        rank = len(out_shape)
        axis = layer.axis % (rank + 1)
        if axis == 0:
            raise ValueError(f"layer {layer.name!r} (Concatenate): concatenation along the batch axis")
        dim = 1 + torch_axis(axis - 1, rank)
        return _Tensor(self.graph.call_function(torch.cat, ([t.node for t in inputs],), {"dim": dim}), out_shape)

    def _softmax(self, layer, t, out_shape):
        raise ValueError(f"layer {layer.name!r} (Softmax): {_SOFTMAX_HINT}")
