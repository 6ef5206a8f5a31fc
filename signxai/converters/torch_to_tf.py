"""PyTorch → Keras 3: a structurally equivalent channels-last Keras model, from the module's ``torch.fx`` graph.

The module is traced symbolically (containers and user-defined modules are traced through; ``torch.nn`` modules are
leaves), so branching networks — residual ``+``, ``torch.cat``, squeeze-excitation products ``scale * x``, stochastic
depth — convert as well as ``nn.Sequential`` ones: torchvision's ResNet, MobileNet, DenseNet and EfficientNet
families, for example. A chain of modules becomes a ``keras.Sequential``, any other graph a functional
``keras.Model``. Layer names are the module paths with ``.`` replaced by ``_`` (the fx node name for functions).

Leaf modules: ``Linear``, ``Conv1d/2d/3d`` (any stride/dilation/groups; ``padding_mode='zeros'``),
``ConvTranspose1d/2d/3d`` (no padding), ``BatchNorm1d/2d/3d`` (eps carried over), ``MaxPool``/``AvgPool`` 1d–3d,
``AdaptiveAvgPool``/``AdaptiveMaxPool`` with output size 1, ``Flatten``, the §7.3 activations, ``Dropout*``/
``AlphaDropout``/``Identity``, torchvision's ``StochasticDepth`` (the identity at inference), ``ZeroPad*d``/
``ConstantPad*d(…, 0)`` and nearest ``Upsample`` with integer factors. Functions and tensor methods: ``+ - * /``
(between model tensors — Keras ``Add``/``Subtract``/``Multiply`` — or with a constant), ``torch.cat``,
``torch.flatten``/``view``/``reshape`` (batch axis kept), the functional activations, ``F.dropout``,
``F.adaptive_avg_pool*``/``F.adaptive_max_pool*`` to size 1, ``mean`` over the spatial axes, shape arithmetic
(``x.size(0)``, ``x.shape``), ``contiguous``/``clone``. Anything else raises ValueError naming the node and the op.

Conv padding: ``padding=p`` becomes Keras ``'same'`` when that is exactly TensorFlow's ``'same'`` for the given input
size, and ``ZeroPadding<n>D(p)`` (named ``<layer>_pad``) + a ``'valid'`` conv otherwise
(docs/equivalence.md#model-equivalence). Pooling with ``padding=p``: PyTorch pads a max pool with −∞ and leaves the
padding out of an average with ``count_include_pad=False``, as TensorFlow's ``'same'`` does; where ``'same'`` does not
pad by ``p`` in front, the input gets trailing zeros that no kept window reads (``<layer>_pad``), and the extra
outputs are cropped (``<layer>_crop``). An average with ``count_include_pad=True`` becomes ``ZeroPadding`` + a
``'valid'`` pool.

Flatten: Keras flattens ``(H, W, C)``, PyTorch ``(C, H, W)``. Where every consumer of the flattened tensor is a
``Linear`` (through elementwise modules), the Linear's input columns are permuted; otherwise the Flatten gets a
channels-first ``Permute`` (``<layer>_channels_first``) in front. Nothing is permuted when at most one axis of the
flattened tensor is longer than 1.
"""
from __future__ import annotations

import copy
import operator
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from signxai._keras_torch import (SOFTMAX_ACTIVATIONS, TORCH_METHOD_ACTIVATIONS, as_tuple, channels_first_dims,
                                  channels_last, channels_last_dims, channels_last_shape, conv_kernel_to_keras,
                                  dense_kernel_to_keras, depthwise_kernel_to_keras, flat_rows_to_keras, is_keras_same,
                                  keras_axis, pairs_of_torch_pad, same_padding, torch_activations, torch_arithmetic,
                                  torch_function_activations, torch_module_activation, torch_softmax_functions,
                                  torch_softmax_modules, unique_name)

__all__ = ["convert_torch_to_tf_direct"]

_ELEMENTWISE = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity,
                *(type(factory()) for factory in torch_activations().values()))
"""Modules between a Flatten and the Linear it feeds that keep features in place (the Linear gets the permutation):
dropout, identity and the activation modules."""

_FUNCTION_ACTIVATIONS = torch_function_activations()
_TORCH_SPELLING = {"add": "add", "subtract": "sub", "multiply": "mul", "divide": "div"}
_ARITHMETIC = {target: _TORCH_SPELLING[operation] for target, operation in torch_arithmetic().items()
               if not isinstance(target, str)}
_ARITHMETIC_METHODS = {target: _TORCH_SPELLING[operation] for target, operation in torch_arithmetic().items()
                       if isinstance(target, str)}
"""Arithmetic functions and tensor methods → ``add``/``sub``/``mul``/``div`` (as the converter names them)."""
_SHAPE_METHODS = {"size", "dim", "numel", "ndimension", "nelement"}
_IDENTITY_METHODS = {"contiguous", "clone"}
_RESHAPE_METHODS = {"view", "reshape", "flatten"}
_ADAPTIVE_FUNCTIONS = {F.adaptive_avg_pool1d: "Average", F.adaptive_avg_pool2d: "Average",
                       F.adaptive_avg_pool3d: "Average", F.adaptive_max_pool1d: "Max", F.adaptive_max_pool2d: "Max",
                       F.adaptive_max_pool3d: "Max"}
_ADAPTIVE_MODULES = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                     nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)


def _stochastic_depth():
    """torchvision's stochastic depth (module, function): the identity at inference; (None, None) without it.

    Only an already imported torchvision is used (a module that contains its layers has imported it): importing it
    after TensorFlow can crash where triton is installed (README, known traps)."""
    if "torchvision" not in sys.modules:
        return None, None
    try:
        from torchvision.ops import StochasticDepth, stochastic_depth
    except Exception:  # a broken torchvision installation
        return None, None
    return StochasticDepth, stochastic_depth


def convert_torch_to_tf_direct(module: nn.Module, input_shape):
    """A Keras model (channels-last input) computing the same function as ``module`` in eval mode.

    ``input_shape`` is PyTorch's per-sample input shape (channels first, no batch axis); the Keras model takes the
    same tensor with the channel axis moved last, and a chain of modules becomes a ``keras.Sequential``, any other
    graph a functional ``keras.Model``. ``module`` is not modified (a private copy is traced). Raises ValueError
    naming the first unsupported module or op.
    """
    import keras

    return _Converter(keras, module, tuple(input_shape)).convert()


def _numpy(tensor):
    return tensor.detach().cpu().numpy()


class _Tracer(fx.Tracer):
    """``torch.nn`` modules (and torchvision's StochasticDepth) are leaves; containers and user modules are traced
    through."""

    def __init__(self, extra_leaves):
        super().__init__()
        self.extra_leaves = extra_leaves

    def is_leaf_module(self, module, qualname):
        if self.extra_leaves and isinstance(module, self.extra_leaves):
            return True
        return super().is_leaf_module(module, qualname)


class _Record:
    """A converted fx value: a Keras tensor step (``ref``), a constant (``const``) or shape metadata (``aux``)."""

    def __init__(self, kind, ref=None, shape=None, flat_from=None, value=None):
        self.kind = kind
        self.ref = ref  # index of the producing step (-1: the model input)
        self.shape = shape  # per-sample PyTorch shape (channels first)
        self.flat_from = flat_from  # flattened in Keras order from this channels-first shape (the Linear permutes)
        self.value = value  # a constant's value


class _Converter:
    def __init__(self, keras, module, input_shape):
        self.keras = keras
        self.L = keras.layers
        self.input_shape = input_shape
        self.dtype = next((str(p.dtype).replace("torch.", "") for p in module.parameters()), "float32")
        # a TensorFlow root scope name: letters, digits and ``_ . / > -``, not starting with ``_``
        self.model_name = re.sub(r"[^A-Za-z0-9_./>-]", "_", type(module).__name__).lstrip("_") or "converted"
        self.sd_module, self.sd_function = _stochastic_depth()
        model = copy.deepcopy(module).eval()  # never the caller's module (flags, hooks)
        tracer = _Tracer(tuple(c for c in (self.sd_module,) if c is not None))
        try:
            graph = tracer.trace(model)
        except Exception as error:
            raise ValueError(f"the module could not be traced with torch.fx ({type(error).__name__}: {error}); the "
                             f"PyTorch → Keras converter needs a symbolically traceable module") from error
        self.gm = fx.GraphModule(tracer.root, graph)
        self.modules = dict(self.gm.named_modules())
        self.values = self._propagate()
        self.steps = []  # (callable on Keras tensors, input refs, called on a list)
        self.op_names = {}  # step index → name of the op layer a function step creates
        self.weights = []  # (layer, arrays), set once the model is built
        self.names = set()
        self.records = {}
        self.folded = {}  # flatten node → record of the adaptive pool folded into it

    # ------------------------------------------------------------------------------------------------- driving
    def _propagate(self):
        """Every node's value on a zero batch of 2 (shapes; the batch of 2 tells batch-preserving reshapes)."""
        values = {}

        class Recorder(fx.Interpreter):
            def run_node(self, n):
                result = super().run_node(n)
                values[n] = result
                return result

        x = torch.zeros((2, *self.input_shape), dtype=getattr(torch, self.dtype))
        try:
            with torch.no_grad():
                Recorder(self.gm).run(x)
        except Exception as error:
            raise ValueError(f"the module cannot run on an input of per-sample shape {self.input_shape}: "
                             f"{type(error).__name__}: {error}") from error
        return values

    def convert(self):
        output = None
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                if self.records:
                    raise ValueError("the module's forward takes several inputs; one is supported")
                self.records[node] = _Record("tensor", -1, self.input_shape)
            elif node.op == "get_attr":
                value = self.gm
                for part in node.target.split("."):
                    value = getattr(value, part)
                self.records[node] = _Record("const", value=value)
            elif node.op == "output":
                output = node.args[0]
            else:
                self.records[node] = self._node(node)
        if not isinstance(output, fx.Node) or self.records[output].kind != "tensor":
            raise ValueError("the module must return a single tensor that depends on its input")
        out = self.records[output]
        if out.flat_from is not None:
            raise AssertionError("a pending flatten order reached the output")  # excluded by _feeds_only_linear
        return self._build(out.ref)

    def _build(self, output_ref):
        """A ``keras.Sequential`` for a chain of single-input layers, else a functional model."""
        keras = self.keras
        inputs = keras.Input(shape=channels_last_shape(self.input_shape), dtype=self.dtype)
        chain = bool(self.steps) and output_ref == len(self.steps) - 1 and all(
            isinstance(step, keras.layers.Layer) and not multi and refs == [i - 1]
            for i, (step, refs, multi) in enumerate(self.steps))
        if chain:
            model = keras.Sequential([inputs] + [step for step, _, _ in self.steps], name=self.model_name)
        else:
            tensors = {-1: inputs}
            for i, (step, refs, multi) in enumerate(self.steps):
                args = [tensors[r] for r in refs]
                tensors[i] = step(args) if multi else step(*args)
                if i in self.op_names:  # an op layer (``x + 1.0``): its name, not Keras's automatic one
                    tensors[i]._keras_history[0].name = self.op_names[i]
            model = keras.Model(inputs, tensors[output_ref], name=self.model_name)
        for layer, arrays in self.weights:
            layer.set_weights([np.asarray(a, dtype=self.dtype) for a in arrays])
        return model

    # ------------------------------------------------------------------------------------------------ emitting
    def _name(self, name):
        unique = unique_name(name, self.names, invalid=r"[^\w-]")
        self.names.add(unique)
        return unique

    def _step(self, step, refs, shape, flat_from=None, multi=False, name=None):
        """Append a step: a Keras layer, or a function of Keras tensors that creates one op layer named ``name``
        (``multi``: a layer called on a list)."""
        self.steps.append((step, list(refs), multi))
        if name is not None:
            self.op_names[len(self.steps) - 1] = self._name(name)
        return _Record("tensor", len(self.steps) - 1, tuple(shape), flat_from)

    def _layer(self, layer, record, shape, arrays=None, flat_from=None):
        """Apply a new single-input Keras layer to ``record``."""
        if arrays:
            self.weights.append((layer, arrays))
        return self._step(layer, [record.ref], shape, flat_from)

    def _activation(self, key, name, record):
        layer = self.L.Activation(key, name=self._name(name), dtype=self.dtype)
        return self._layer(layer, record, record.shape, flat_from=record.flat_from)

    def _keras_constant(self, value, like):
        """A constant operand in the Keras layout of the tensor ``like`` (PyTorch broadcasting aligns trailing
        axes): a Python float for one element, else an array."""
        if not isinstance(value, torch.Tensor):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"constant operand {value!r} is not supported")
            return float(value)
        array = _numpy(value).astype(self.dtype)
        if array.size == 1 and array.ndim <= len(like.shape) + 1:
            return float(array.reshape(()))
        rank = len(like.shape)
        if array.ndim == rank + 1 and array.shape[0] == 1:
            array = array[0]
        if array.ndim > rank or like.flat_from is not None:
            raise ValueError(f"a constant of shape {tuple(array.shape)} does not broadcast per sample against a "
                             f"tensor of shape {like.shape}")
        array = array.reshape((1,) * (rank - array.ndim) + array.shape)
        return channels_last(array, batch=False) if rank > 1 else array

    # ---------------------------------------------------------------------------------------------- dispatching
    def _node(self, node):
        args = [self._arg(a) for a in node.args]
        kwargs = {k: self._arg(v) for k, v in node.kwargs.items()}
        tensors = [a for a in _flat(args) + _flat(list(kwargs.values())) if isinstance(a, _Record)
                   and a.kind in ("tensor", "tuple", "state")]  # (a recurrent module's output tuple)
        if not tensors:  # constants and shape arithmetic: the propagated value
            value = self.values[node]
            kind = "const" if isinstance(value, torch.Tensor) else "aux"
            return _Record(kind, value=value)
        if node.op == "call_method" and node.target in _SHAPE_METHODS:
            return _Record("aux")
        if node.op == "call_function" and node.target is getattr:
            return _Record("aux")
        shape = tuple(self.values[node].shape[1:]) if isinstance(self.values[node], torch.Tensor) else None
        if node.op == "call_module":
            return self._module(node, self.modules[node.target], args, kwargs, shape)
        if node.op == "call_function":
            return self._function(node, node.target, args, kwargs, shape)
        return self._method(node, node.target, args, kwargs, shape)

    def _arg(self, a):
        if isinstance(a, fx.Node):
            return self.records[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self._arg(b) for b in a)
        return a

    def _unsupported(self, node, what):
        return ValueError(f"node {node.name!r} ({what}) is not supported by the PyTorch → Keras converter")

    def _single(self, node, args, what):
        tensors = [a for a in args if isinstance(a, _Record) and a.kind == "tensor"]
        if len(tensors) != 1 or args[0] is not tensors[0]:
            raise self._unsupported(node, what)
        return tensors[0]

    def _module(self, node, leaf, args, kwargs, shape):
        path = node.target
        name = path.replace(".", "_")
        if isinstance(leaf, torch_softmax_modules()):
            raise ValueError(f"module {name!r} ({type(leaf).__name__}): remove the softmax first "
                             f"(docs/api.md#model-requirements)")
        if len(args) != 1 or kwargs or not isinstance(args[0], _Record) or args[0].kind != "tensor":
            raise ValueError(f"module {name!r} ({type(leaf).__name__}) must be called on one model tensor")
        (record,) = args
        if type(leaf) in (nn.LSTM, nn.GRU, nn.RNN):
            return self._recurrent(name, leaf, record)
        if self.sd_module is not None and isinstance(leaf, self.sd_module):
            return self._layer(self.L.Identity(name=self._name(name), dtype=self.dtype), record, record.shape,
                               flat_from=record.flat_from)
        if isinstance(leaf, nn.Linear):
            return self._linear(name, leaf, record, shape)
        if isinstance(leaf, nn.Flatten):
            if leaf.start_dim != 1 or leaf.end_dim != -1:
                raise ValueError(f"module {name!r} (Flatten): only start_dim=1, end_dim=-1 is supported")
            return self._flatten(node, name, record, shape)
        if isinstance(leaf, _ADAPTIVE_MODULES):
            if any(d != 1 for d in shape[1:]):
                raise ValueError(f"module {name!r} ({type(leaf).__name__}): only output size 1 is supported")
            return self._global_pool(node, name, "Average" if "Avg" in type(leaf).__name__ else "Max", record)
        dtype, L = self.dtype, self.L
        in_shape = record.shape
        if isinstance(leaf, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return self._chain(record, _conv(self.keras, name, self._name, leaf, in_shape, dtype), shape)
        if isinstance(leaf, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            n = len(leaf.kernel_size)
            if (any(leaf.padding) or any(leaf.output_padding) or leaf.groups != 1
                    or any(d != 1 for d in leaf.dilation) or any(k < s for k, s in zip(leaf.kernel_size, leaf.stride))):
                raise ValueError(f"module {name!r} ({type(leaf).__name__}): only padding=0, output_padding=0, "
                                 f"groups=1, dilation=1 and kernel ≥ stride are supported")
            arrays = [conv_kernel_to_keras(_numpy(leaf.weight))]
            arrays += [_numpy(leaf.bias)] if leaf.bias is not None else []
            layer = getattr(L, f"Conv{n}DTranspose")(leaf.out_channels, leaf.kernel_size, strides=leaf.stride,
                                                     padding="valid", use_bias=leaf.bias is not None,
                                                     name=self._name(name), dtype=dtype)
            return self._layer(layer, record, shape, arrays)
        if isinstance(leaf, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            if not leaf.track_running_stats or leaf.running_mean is None:
                raise ValueError(f"module {name!r} ({type(leaf).__name__}) has no running statistics")
            record = self._torch_order(record)
            mean, var = _numpy(leaf.running_mean), _numpy(leaf.running_var)
            gamma = _numpy(leaf.weight) if leaf.affine else np.ones_like(mean)
            beta = _numpy(leaf.bias) if leaf.affine else np.zeros_like(mean)
            layer = L.BatchNormalization(epsilon=leaf.eps, name=self._name(name), dtype=dtype)
            return self._layer(layer, record, shape, [gamma, beta, mean, var])
        if isinstance(leaf, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
            return self._chain(record, _pool(self.keras, name, self._name, leaf, in_shape, shape, dtype), shape)
        if isinstance(leaf, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)):
            cls = {nn.Dropout: L.Dropout, nn.Dropout1d: L.SpatialDropout1D, nn.Dropout2d: L.SpatialDropout2D,
                   nn.Dropout3d: L.SpatialDropout3D, nn.AlphaDropout: L.AlphaDropout}[type(leaf)]
            if cls is not L.Dropout and cls is not L.AlphaDropout:
                record = self._torch_order(record)
            return self._layer(cls(leaf.p, name=self._name(name), dtype=dtype), record, shape,
                               flat_from=record.flat_from)
        if isinstance(leaf, nn.Identity):
            return self._layer(L.Identity(name=self._name(name), dtype=dtype), record, shape,
                               flat_from=record.flat_from)
        if isinstance(leaf, (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
                             nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d)):
            if leaf.value != 0 or min(leaf.padding) < 0:
                raise ValueError(f"module {name!r} ({type(leaf).__name__}): only non-negative zero padding is "
                                 f"supported")
            layer = _padding_layer(L, "ZeroPadding", pairs_of_torch_pad(leaf.padding), self._name(name), dtype)
            return self._layer(layer, record, shape)
        if isinstance(leaf, nn.Upsample):
            n = len(in_shape) - 1
            factors = [o // i for o, i in zip(shape[1:], in_shape[1:])]
            if leaf.mode != "nearest" or any(o != i * f for o, i, f in zip(shape[1:], in_shape[1:], factors)):
                raise ValueError(f"module {name!r} (Upsample): only nearest upsampling by integer factors is "
                                 f"supported")
            layer = getattr(L, f"UpSampling{n}D")(factors[0] if n == 1 else tuple(factors), name=self._name(name),
                                                  dtype=dtype)
            return self._layer(layer, record, shape)
        if isinstance(leaf, nn.PReLU):
            record = self._torch_order(record)
            rank = len(in_shape)
            per_channel = leaf.num_parameters > 1
            shared = list(range(1, rank)) if per_channel else list(range(1, rank + 1))
            alpha_shape = [1] * (rank - 1) + [in_shape[0] if per_channel else 1] if rank > 1 else [leaf.num_parameters]
            layer = L.PReLU(shared_axes=shared or None, name=self._name(name), dtype=dtype)
            return self._layer(layer, record, shape, [_numpy(leaf.weight).reshape(alpha_shape)])
        if isinstance(leaf, nn.LeakyReLU):
            layer = L.LeakyReLU(negative_slope=leaf.negative_slope, name=self._name(name), dtype=dtype)
            return self._layer(layer, record, shape, flat_from=record.flat_from)
        if isinstance(leaf, nn.ELU) and leaf.alpha != 1.0:
            return self._layer(L.ELU(alpha=leaf.alpha, name=self._name(name), dtype=dtype), record, shape,
                               flat_from=record.flat_from)
        key = torch_module_activation(leaf)
        if key is None:
            raise ValueError(f"module {name!r} ({type(leaf).__name__}) is not supported by the PyTorch → Keras "
                             f"converter")
        return self._activation(key, name, record)

    def _chain(self, record, layers, shape):
        for layer, arrays in layers:
            record = self._layer(layer, record, shape, arrays)
        return record

    def _recurrent(self, name, leaf, record):
        """``nn.LSTM``/``nn.GRU``/``nn.RNN`` (batch-first) → Keras ``LSTM``/``GRU(reset_after=True)``/``SimpleRNN``
        with ``return_sequences=True`` (``Bidirectional`` with ``merge_mode='concat'``; one layer per
        ``num_layers``) between two ``Permute``s (the sequence (T, F) is channels-first here,
        docs/converters.md#recurrent). The result is the module's output tuple: its item 0 is the sequence; the
        final states are not converted (index the sequence instead: ``out[:, -1]``)."""
        L, dtype = self.L, self.dtype
        where = f"module {name!r} ({type(leaf).__name__})"
        if not leaf.batch_first or getattr(leaf, "proj_size", 0) or len(record.shape) != 2 or record.flat_from:
            raise ValueError(f"{where}: only batch-first modules without proj_size on a (N, T, F) input are "
                             f"supported by the PyTorch → Keras converter")
        H = leaf.hidden_size
        cls, order = {nn.LSTM: (L.LSTM, (0, 1, 2, 3)), nn.GRU: (L.GRU, (1, 0, 2)), nn.RNN: (L.SimpleRNN, (0,))}[
            type(leaf)]
        options = {"return_sequences": True, "use_bias": leaf.bias}
        if cls is L.GRU:
            options["reset_after"] = True
        if cls is L.SimpleRNN:
            options["activation"] = leaf.nonlinearity

        def blocks(w):  # PyTorch's gate blocks in Keras's order
            parts = np.split(_numpy(w), len(order), axis=0)
            return np.concatenate([parts[k] for k in order], axis=0)

        def arrays(suffix):
            out = [blocks(getattr(leaf, f"weight_ih{suffix}")).T, blocks(getattr(leaf, f"weight_hh{suffix}")).T]
            if leaf.bias:
                b_ih, b_hh = blocks(getattr(leaf, f"bias_ih{suffix}")), blocks(getattr(leaf, f"bias_hh{suffix}"))
                out.append(np.stack([b_ih, b_hh]) if cls is L.GRU else b_ih + b_hh)
            return out
        T = record.shape[0]
        record = self._layer(L.Permute((2, 1), name=self._name(f"{name}_sequence"), dtype=dtype), record,
                             record.shape)
        for layer in range(leaf.num_layers):
            suffix = f"_l{layer}"
            label = name if leaf.num_layers == 1 else f"{name}_l{layer}"
            if leaf.bidirectional:
                keras_layer = L.Bidirectional(cls(H, **options, dtype=dtype), merge_mode="concat",
                                              name=self._name(label), dtype=dtype)
                weights = arrays(suffix) + arrays(suffix + "_reverse")
            else:
                keras_layer, weights = cls(H, **options, name=self._name(label), dtype=dtype), arrays(suffix)
            record = self._layer(keras_layer, record, (H * (2 if leaf.bidirectional else 1), T), weights)
        out_shape = (T, H * (2 if leaf.bidirectional else 1))
        sequence = self._layer(L.Permute((2, 1), name=self._name(f"{name}_output"), dtype=dtype), record, out_shape)
        return _Record("tuple", value=(sequence, _Record("state")))

    def _getitem(self, node, args, shape):
        """An item of a recurrent module's output tuple, or basic indexing (integers and slices) of a model tensor,
        the index moved to Keras's channels-last layout."""
        source, index = args[0], args[1]
        if isinstance(source, _Record) and source.kind in ("tuple", "state"):
            if source.kind == "state" or not isinstance(index, int):
                return _Record("state")
            return source.value[index]
        if not isinstance(source, _Record) or source.kind != "tensor" or source.flat_from is not None:
            raise self._unsupported(node, "indexing")
        index = index if isinstance(index, tuple) else (index,)
        rank = len(source.shape) + 1
        if (len(index) > rank or not index or index[0] != slice(None)
                or any(not isinstance(i, (int, slice)) or isinstance(i, bool) for i in index)):
            raise self._unsupported(node, "indexing other than integers and slices after ':' on the batch axis")
        index = tuple(index) + (slice(None),) * (rank - len(index))
        if rank > 2 and isinstance(index[1], int) and rank > 3:
            raise self._unsupported(node, "an integer index on the channel axis of a tensor with several other axes")
        keras_index = (index[0],) + tuple(index[2:]) + (index[1],) if rank > 2 else index
        return self._step(lambda t, keras_index=keras_index: t[keras_index], [source.ref], shape, name=node.name)

    def _function(self, node, target, args, kwargs, shape):
        if target is self.sd_function and self.sd_function is not None:  # stochastic depth: identity at inference
            return self._single(node, args, "stochastic_depth")
        if target in _ARITHMETIC:
            return self._arithmetic(node, _ARITHMETIC[target], args, kwargs, shape)
        if target in _FUNCTION_ACTIVATIONS:
            key = _FUNCTION_ACTIVATIONS[target]
            record = self._single(node, args, getattr(target, "__name__", str(target)))
            extra = {k: v for k, v in kwargs.items() if k != "inplace" and (k, v) != ("approximate", "none")}
            if extra or not all(isinstance(a, bool) for a in args[1:]):  # only an `inplace` flag
                raise self._unsupported(node, f"{target.__name__} with non-default parameters")
            return self._activation(key, node.name, record)
        if target is F.leaky_relu:
            record = self._single(node, args, "leaky_relu")
            slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
            layer = self.L.LeakyReLU(negative_slope=float(slope), name=self._name(node.name), dtype=self.dtype)
            return self._layer(layer, record, shape, flat_from=record.flat_from)
        if target is F.dropout:
            record = self._single(node, args, "dropout")
            p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
            return self._layer(self.L.Dropout(float(p), name=self._name(node.name), dtype=self.dtype), record, shape,
                               flat_from=record.flat_from)
        if target in (torch.cat, torch.concat):
            return self._concatenate(node, args, kwargs, shape)
        if target is torch.flatten:
            record = self._single(node, args, "flatten")
            start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
            end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
            if start != 1 or end != -1:
                raise self._unsupported(node, "flatten other than start_dim=1, end_dim=-1")
            return self._flatten(node, node.name, record, shape)
        if target is torch.reshape:
            return self._reshape(node, self._single(node, args, "reshape"), shape)
        if target in _ADAPTIVE_FUNCTIONS:
            record = self._single(node, args, target.__name__)
            if any(d != 1 for d in shape[1:]):
                raise self._unsupported(node, f"{target.__name__} to a size other than 1")
            return self._global_pool(node, node.name, _ADAPTIVE_FUNCTIONS[target], record)
        if target is torch.mean:
            return self._mean(node, args, kwargs, shape)
        if target is operator.getitem:
            return self._getitem(node, args, shape)
        if target in torch_softmax_functions():
            raise ValueError(f"node {node.name!r} applies a softmax: remove the softmax first "
                             f"(docs/api.md#model-requirements)")
        raise self._unsupported(node, f"function {getattr(target, '__name__', target)}")

    def _method(self, node, target, args, kwargs, shape):
        if target in _IDENTITY_METHODS:
            return self._single(node, args, f".{target}()")
        if target in _ARITHMETIC_METHODS:
            return self._arithmetic(node, _ARITHMETIC_METHODS[target], args, kwargs, shape)
        if target in TORCH_METHOD_ACTIVATIONS and len(args) == 1 and not kwargs:
            return self._activation(TORCH_METHOD_ACTIVATIONS[target], node.name, args[0])
        if target in _RESHAPE_METHODS:
            record = self._single(node, args, f".{target}()")
            if target == "flatten":
                start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
                end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
                if start != 1 or end != -1:
                    raise self._unsupported(node, ".flatten() other than start_dim=1, end_dim=-1")
            return self._reshape(node, record, shape)
        if target == "mean":
            return self._mean(node, args, kwargs, shape)
        if target in SOFTMAX_ACTIVATIONS:
            raise ValueError(f"node {node.name!r} applies a softmax: remove the softmax first "
                             f"(docs/api.md#model-requirements)")
        raise self._unsupported(node, f"tensor method .{target}()")

    # ------------------------------------------------------------------------------------------------- kinds
    def _linear(self, name, leaf, record, shape):
        kernel = dense_kernel_to_keras(_numpy(leaf.weight))
        if len(record.shape) > 1:
            raise ValueError(f"module {name!r} (Linear) on a tensor of per-sample shape {record.shape}: only flat "
                             f"inputs are supported")
        if record.flat_from is not None:  # rows from PyTorch (C, d...) order to Keras (d..., C) order
            kernel = flat_rows_to_keras(kernel, record.flat_from)
        arrays = [kernel] + ([_numpy(leaf.bias)] if leaf.bias is not None else [])
        layer = self.L.Dense(leaf.out_features, use_bias=leaf.bias is not None, name=self._name(name),
                             dtype=self.dtype)
        return self._layer(layer, record, shape, arrays)

    def _flatten(self, node, name, record, shape):
        if node in self.folded:  # an adaptive pool to size 1 already dropped the spatial axes
            return self.folded[node]
        if len(record.shape) == 1:
            return record
        layer = self.L.Flatten(name=self._name(name), dtype=self.dtype)
        if sum(d != 1 for d in record.shape) <= 1:  # the orders agree
            return self._layer(layer, record, shape)
        if _feeds_only_linear(node, self.modules):
            return self._layer(layer, record, shape, flat_from=record.shape)
        rank = len(record.shape)
        permute = self.L.Permute(channels_first_dims(rank)[1:], name=self._name(f"{name}_channels_first"),
                                 dtype=self.dtype)
        record = self._layer(permute, record, record.shape)
        return self._layer(layer, record, shape)

    def _torch_order(self, record):
        """A flat tensor still in Keras's flatten order, re-flattened in PyTorch's order."""
        if record.flat_from is None:
            return record
        raise AssertionError("a pending flatten order reached a consumer that is not a Linear")

    def _reshape(self, node, record, shape):
        """``view``/``reshape``/``flatten`` that keep the batch axis."""
        if self.values[node].shape[0] != 2:
            raise self._unsupported(node, "a reshape that changes the batch axis")
        if len(shape) == 1:
            return self._flatten(node, node.name, record, shape)
        record = self._torch_order(record)
        L, rank = self.L, len(record.shape)
        if rank > 1:
            permute = L.Permute(channels_first_dims(rank)[1:], name=self._name(f"{node.name}_channels_first"),
                                dtype=self.dtype)
            record = self._layer(permute, record, record.shape)
        record = self._layer(L.Reshape(shape, name=self._name(node.name), dtype=self.dtype), record, shape)
        out_rank = len(shape)
        return self._layer(L.Permute(channels_last_dims(out_rank)[1:], name=self._name(f"{node.name}_channels_last"),
                                     dtype=self.dtype), record, shape)

    def _global_pool(self, node, name, kind, record):
        """An adaptive pool to size 1 (keepdims); folded into a following ``flatten``, its only user."""
        n = len(record.shape) - 1
        users = list(node.users)
        flatten = users[0] if len(users) == 1 and _is_flatten(users[0], self.modules) else None
        layer = getattr(self.L, f"Global{kind}Pooling{n}D")(keepdims=flatten is None, name=self._name(name),
                                                            dtype=self.dtype)
        result = self._layer(layer, record, (record.shape[0], *[1] * n) if flatten is None else (record.shape[0],))
        if flatten is not None:
            self.folded[flatten] = result
        return result

    def _mean(self, node, args, kwargs, shape):
        record = self._single(node, args, "mean")
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        rank = len(record.shape)
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        if sorted(d % (rank + 1) for d in dims) != list(range(2, rank + 1)) or "dtype" in kwargs:
            raise self._unsupported(node, "mean over other axes than all spatial ones")
        n = rank - 1
        layer = getattr(self.L, f"GlobalAveragePooling{n}D")(keepdims=bool(keepdim), name=self._name(node.name),
                                                             dtype=self.dtype)
        return self._layer(layer, record, shape)

    def _concatenate(self, node, args, kwargs, shape):
        tensors = args[0] if args else kwargs.get("tensors")
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if not isinstance(tensors, (list, tuple)) or not all(isinstance(t, _Record) and t.kind == "tensor"
                                                             for t in tensors):
            raise self._unsupported(node, "concatenation with constants")
        tensors = [self._torch_order(t) for t in tensors]
        rank = len(tensors[0].shape)
        dim = dim % (rank + 1)
        if dim == 0:
            raise self._unsupported(node, "concatenation along the batch axis")
        axis = 1 + keras_axis(dim - 1, rank)
        layer = self.L.Concatenate(axis=axis, name=self._name(node.name), dtype=self.dtype)
        return self._step(layer, [t.ref for t in tensors], shape, multi=True)

    def _arithmetic(self, node, kind, args, kwargs, shape):
        if set(kwargs) - {"out"} or kwargs.get("out") is not None or len(args) != 2:
            raise self._unsupported(node, f"{kind} with extra arguments")
        tensors = [a for a in args if isinstance(a, _Record) and a.kind == "tensor"]
        L = self.L
        if len(tensors) == 2:
            a, b = args
            if len(a.shape) != len(b.shape):
                raise self._unsupported(node, f"{kind} of tensors of different ranks {a.shape} and {b.shape}")
            if a.flat_from != b.flat_from:
                raise self._unsupported(node, f"{kind} of flat tensors in different orders")
            if kind == "div":
                return self._step(lambda x, y: self.keras.ops.divide(x, y), [a.ref, b.ref], shape, a.flat_from,
                                  name=node.name)
            cls = {"add": L.Add, "sub": L.Subtract, "mul": L.Multiply}[kind]
            layer = cls(name=self._name(node.name), dtype=self.dtype)
            return self._step(layer, [a.ref, b.ref], shape, a.flat_from, multi=True)
        (t,) = tensors
        other = args[1] if args[0] is t else args[0]
        if isinstance(other, _Record) and other.kind == "aux":
            raise self._unsupported(node, f"{kind} with a shape value")
        value = other.value if isinstance(other, _Record) else other
        constant = self._keras_constant(value, t)
        if isinstance(constant, np.ndarray) and t.flat_from is not None:
            raise self._unsupported(node, f"{kind} of a flattened tensor and an array")
        function = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}[kind]
        left = args[0] is t
        return self._step((lambda x, c=constant, f=function: f(x, c)) if left else
                          (lambda x, c=constant, f=function: f(c, x)), [t.ref], shape, t.flat_from, name=node.name)


def _flat(values):
    out = []
    for v in values:
        if isinstance(v, (list, tuple)):
            out += _flat(v)
        else:
            out.append(v)
    return out


def _is_flatten(node, modules):
    if node.op == "call_module":
        module = modules[node.target]
        return isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1
    if node.op == "call_function" and node.target is torch.flatten:
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return start == 1 and end == -1 and len(node.args) <= 3
    if node.op == "call_method" and node.target == "flatten":
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        return start == 1 and (node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)) == -1
    return False


def _feeds_only_linear(node, modules):
    """Whether every consumer of ``node``, through elementwise modules, is a ``Linear``."""
    if not node.users:
        return False
    for user in node.users:
        if user.op != "call_module":
            return False
        module = modules[user.target]
        if isinstance(module, nn.Linear):
            continue
        if not isinstance(module, _ELEMENTWISE) or isinstance(module, (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)) \
                or not _feeds_only_linear(user, modules):
            return False
    return True


def _conv(keras, name, unique, leaf, in_shape, dtype):
    """Keras conv (plus a ``<name>_pad`` ZeroPadding when PyTorch's padding is not Keras's 'same')."""
    L = keras.layers
    n = len(leaf.kernel_size)
    if leaf.padding_mode != "zeros":
        raise ValueError(f"module {name!r} ({type(leaf).__name__}): only padding_mode='zeros' is supported")
    layers = []
    if leaf.padding == "same":
        padding = "same"
    else:
        pad = (0,) * n if leaf.padding == "valid" else tuple(leaf.padding)
        if not any(pad):
            padding = "valid"
        elif is_keras_same(pad, in_shape[1:], leaf.kernel_size, leaf.stride, leaf.dilation):
            padding = "same"
        else:
            padding = "valid"
            layers.append((_padding_layer(L, "ZeroPadding", [(p, p) for p in pad], unique(f"{name}_pad"), dtype), []))
    weight = _numpy(leaf.weight)
    bias = [_numpy(leaf.bias)] if leaf.bias is not None else []
    in_channels = in_shape[0]
    common = dict(strides=leaf.stride, padding=padding, dilation_rate=leaf.dilation, use_bias=leaf.bias is not None,
                  name=unique(name), dtype=dtype)
    if leaf.groups == in_channels > 1 and n < 3:  # depthwise: (C·M, 1, k...) → (k..., C, M)
        multiplier = leaf.out_channels // in_channels
        kernel = depthwise_kernel_to_keras(weight, in_channels)
        layer = getattr(L, f"DepthwiseConv{n}D")(leaf.kernel_size, depth_multiplier=multiplier, **common)
    else:
        kernel = conv_kernel_to_keras(weight)
        layer = getattr(L, f"Conv{n}D")(leaf.out_channels, leaf.kernel_size, groups=leaf.groups, **common)
    layers.append((layer, [kernel] + bias))
    return layers


def _pool(keras, name, unique, leaf, in_shape, out_shape, dtype):
    """Keras pooling layer(s) for a PyTorch pool (see the module docstring for padding)."""
    L = keras.layers
    n = len(in_shape) - 1
    average = isinstance(leaf, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d))
    kernel, stride, pad = as_tuple(leaf.kernel_size, n), as_tuple(leaf.stride, n), as_tuple(leaf.padding, n)
    dilation = (1,) * n if average else as_tuple(leaf.dilation, n)
    if leaf.ceil_mode or any(d != 1 for d in dilation) or (average and leaf.divisor_override is not None):
        raise ValueError(f"module {name!r} ({type(leaf).__name__}): ceil_mode, dilation and divisor_override are "
                         f"not supported")
    cls = getattr(L, f"{'Average' if average else 'Max'}Pooling{n}D")
    if not any(pad):
        return [(cls(kernel, strides=stride, padding="valid", name=unique(name), dtype=dtype), [])]
    if average and leaf.count_include_pad:  # the padded zeros count: an explicit zero pad
        return [(_padding_layer(L, "ZeroPadding", [(p, p) for p in pad], unique(f"{name}_pad"), dtype), []),
                (cls(kernel, strides=stride, padding="valid", name=unique(name), dtype=dtype), [])]
    # −∞ padding (max) / padding left out of the count (average): TensorFlow's 'same' with `p` in front, on the input
    # extended by `extra` trailing zeros that no kept window reads; the surplus outputs are cropped
    extras, crops = [], []
    for size, k, s, p, m in zip(in_shape[1:], kernel, stride, pad, out_shape[1:]):
        for extra in range(s + k + 1):
            padded = size + extra
            windows = -(-padded // s)
            last_end = s * (m - 1) - p + k - 1  # the last kept window's end (input coordinates)
            if same_padding(padded, k, s)[0] == p and windows >= m and (extra == 0 or last_end < size):
                extras.append(extra)
                crops.append(windows - m)
                break
        else:
            raise ValueError(f"module {name!r} ({type(leaf).__name__}): padding {pad} has no Keras form")
    layers = []
    if any(extras):
        layers.append((_padding_layer(L, "ZeroPadding", [(0, e) for e in extras], unique(f"{name}_pad"), dtype), []))
    layers.append((cls(kernel, strides=stride, padding="same", name=unique(name), dtype=dtype), []))
    if any(crops):
        layers.append((_padding_layer(L, "Cropping", [(0, c) for c in crops], unique(f"{name}_crop"), dtype), []))
    return layers


def _padding_layer(L, kind, pairs, name, dtype):
    """A Keras ``ZeroPadding<n>D`` or ``Cropping<n>D`` (``kind``) layer for per-axis ``(before, after)`` pairs."""
    n = len(pairs)
    return getattr(L, f"{kind}{n}D")(pairs if n > 1 else pairs[0], name=name, dtype=dtype)
