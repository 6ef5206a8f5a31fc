"""The Keras 3 / TensorFlow backend: graph capture of Functional, Sequential and nested models, tensor ops, VJPs."""
from __future__ import annotations

import math
import weakref

import numpy as np
import tensorflow as tf
import keras
from keras import layers as L

from signxai.core import graph as g
from signxai.core.backend import Backend, freeze
from signxai.core.engine import propagate, record
from signxai.core.layers import registered
from signxai.core.rules import identity
from signxai.core.targets import Targets

_ACT = keras.activations
_RELU_FAMILY = {_ACT.relu, _ACT.relu6, _ACT.leaky_relu}
_SOFTMAX = {_ACT.softmax, _ACT.log_softmax}
_KERNEL_TYPES = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D,
                 L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_CONV_TYPES = _KERNEL_TYPES[1:]
_PASS_TYPES = (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianNoise,
               L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization, L.Identity, L.InputLayer,
               L.LayerNormalization, L.GroupNormalization, L.Rescaling, L.Normalization)
_AVGPOOL_TYPES = (L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D, L.GlobalAveragePooling1D,
                  L.GlobalAveragePooling2D, L.GlobalAveragePooling3D)
_SEPARABLE_TYPES = (L.SeparableConv1D, L.SeparableConv2D)
# Output bounds of bounded activations (for gate detection at products, docs/layers.md); ReLU's (0, inf) lets
# rules skip work on inputs known to be nonnegative (docs/lrp.md#kernel-rules).
_ACTIVATION_RANGES = {_ACT.sigmoid: (0.0, 1.0), _ACT.hard_sigmoid: (0.0, 1.0), _ACT.relu6: (0.0, 6.0),
                      _ACT.tanh: (-1.0, 1.0), _ACT.relu: (0.0, math.inf)}
# Keras operation layers created by arithmetic on KerasTensors (``x + 3.0``, ``x * y``, ``keras.ops.multiply``).
_OP_ARITHMETIC = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply", "Divide": "divide",
                  "TrueDivide": "divide"}
_GRADIENT_TYPES = (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D,
                   L.GlobalMaxPooling3D, L.Flatten, L.Reshape, L.Permute, L.ZeroPadding1D, L.ZeroPadding2D,
                   L.ZeroPadding3D, L.Cropping1D, L.Cropping2D, L.Cropping3D, L.UpSampling1D, L.UpSampling2D,
                   L.UpSampling3D, L.Concatenate)


class TensorOps:
    """The tensor operations the framework-neutral rules need, for TensorFlow."""

    @staticmethod
    def vjp(fn, inputs, cotangent):
        with tf.GradientTape() as tape:
            for t in inputs:
                tape.watch(t)
            out = fn(*inputs)
        grads = tape.gradient(out, list(inputs), output_gradients=cotangent)
        return [tf.zeros_like(t) if grad is None else grad for t, grad in zip(inputs, grads)]

    @staticmethod
    def as_float(condition, like):
        return tf.cast(condition, like.dtype)

    ones_like = staticmethod(tf.ones_like)
    zeros_like = staticmethod(tf.zeros_like)

    @staticmethod
    def positive(t):
        return tf.maximum(t, tf.zeros((), t.dtype))

    @staticmethod
    def negative(t):
        return tf.minimum(t, tf.zeros((), t.dtype))

    @staticmethod
    def all_nonnegative(t):
        return tf.reduce_all(t >= 0)

    @staticmethod
    def all_zero(t):
        return bool(tf.reduce_all(tf.equal(t, 0)))

    cond = staticmethod(tf.cond)

    @staticmethod
    def constant(value, like):
        return tf.constant(np.asarray(value), dtype=like.dtype)

    @staticmethod
    def std_per_sample(a, like):
        axes = list(range(1, len(a.shape)))
        std = tf.math.reduce_std(tf.cast(a, tf.float64), axis=axes, keepdims=True)
        return tf.reshape(tf.cast(std, like.dtype), [-1] + [1] * (len(like.shape) - 1))


OPS = TensorOps()


def _activation_kind(fn):
    if fn in _SOFTMAX:
        return None
    if fn in _RELU_FAMILY:
        return g.RELU
    return None if fn is _ACT.linear else g.ACTIVATION


def _is_softmax_layer(layer):
    return isinstance(layer, L.Softmax) or getattr(layer, "activation", None) in _SOFTMAX


def check_model(model):
    """Single input/output of shape (N, K), built, no softmax (docs/api.md#model-requirements)."""
    if not model.built or not hasattr(model, "inputs") or model.inputs is None:
        raise ValueError(f"the Keras model {model.name!r} has not been built: give it a keras.Input or call it "
                         f"once on data before explaining it")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                         f"signxai explains single-input, single-output models")
    if len(model.outputs[0].shape) != 2:
        raise ValueError(f"the model output has shape {tuple(model.outputs[0].shape)}; it must be (N, K) logits")
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if _is_softmax_layer(layer):
            raise ValueError(f"layer {layer.name!r} applies a softmax: explanations need logits. Remove it with "
                             f"signxai.utils.utils.remove_softmax(model), which returns a copy")


def _functional(model):
    return model._functional if isinstance(model, keras.Sequential) else model


class _Capture:
    """Builds a :class:`signxai.core.graph.Graph` by walking the Keras graph, inlining nested models."""

    def __init__(self, model):
        self.nodes = [g.Node("input", g.INPUT, (), None, "InputLayer")]
        self.names = {}
        outputs = self.inline(_functional(model), [0])
        self.graph = g.Graph(self.nodes, output=outputs[0], names=self.names)

    def add(self, node, layer_name=None):
        self.nodes.append(node)
        index = len(self.nodes) - 1
        if layer_name is not None:
            self.names.setdefault(layer_name, index)
        return index

    def inline(self, functional, input_indices):
        tensor_index = {id(t): i for t, i in zip(functional.inputs, input_indices)}
        for depth in sorted(functional._nodes_by_depth, reverse=True):
            for node in functional._nodes_by_depth[depth]:
                if node.is_input or not node.operation:
                    continue
                parents = [tensor_index[id(t)] for t in node.input_tensors]
                op = node.operation
                if isinstance(op, keras.Model):
                    outs = self.inline(_functional(op), parents)
                else:
                    outs = [self.layer_node(op, node, parents)]
                for t, i in zip(node.output_tensors, outs):
                    tensor_index[id(t)] = i
        return [tensor_index[id(t)] for t in functional.outputs]

    def kernel_node(self, name, type_name, parents, kernel, layer_name=None):
        return self.add(g.Node(name, g.KERNEL, tuple(parents), kernel.apply, type_name, kernel=kernel), layer_name)

    def layer_node(self, op, node, parents):
        name, type_name = op.name, type(op).__name__
        if isinstance(op, _SEPARABLE_TYPES):  # a depthwise kernel layer, then a pointwise one (docs/layers.md)
            depthwise = self.kernel_node(f"{name}/depthwise", type_name, parents, _kernel(op, "depthwise"))
            index = self.kernel_node(name, type_name, [depthwise], _kernel(op, "pointwise"), name)
        elif isinstance(op, _KERNEL_TYPES):
            index = self.kernel_node(name, type_name, parents, _kernel(op), name)
        else:
            index = None
        if index is not None:
            kind = _activation_kind(op.activation)
            if kind is not None:
                self.add(g.Node(f"{name}/activation", kind, (index,), op.activation, op.activation.__name__,
                                value_range=_ACTIVATION_RANGES.get(op.activation)))
            return len(self.nodes) - 1
        forward = _layer_forward(op, node)
        if isinstance(op, L.BatchNormalization):
            kind, extra = g.BATCHNORM, {"batchnorm": _bn_stats(op, node)}
        else:
            kind, extra = _classify(op, node)
        return self.add(g.Node(name, kind, tuple(parents), forward, type_name,
                               reason="" if kind != g.UNSUPPORTED else "no LRP rule for this layer type", **extra),
                        name)


def _pass_types():
    """Layers that are constant scalings or identities at inference: the table above plus keras.applications'
    own (ConvNeXt's per-channel ``LayerScale`` and ``StochasticDepth``), where this Keras version has them."""
    extra = []
    try:
        from keras.src.applications import convnext
        extra += [getattr(convnext, name) for name in ("LayerScale", "StochasticDepth") if hasattr(convnext, name)]
    except ImportError:
        pass
    return _PASS_TYPES + tuple(extra)


_ALL_PASS_TYPES = _pass_types()


def _scaled_sum_types():
    """keras.applications' Inception-ResNet ``CustomScaleLayer``: ``inputs[0] + inputs[1] * scale``."""
    try:
        from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
    except ImportError:
        return ()
    return (CustomScaleLayer,)


_SCALED_SUM_TYPES = _scaled_sum_types()


def _classify(op, node):
    """The node kind of a non-kernel layer and extra Node fields (value bounds, scalar affine form)."""
    custom = registered(op)  # signxai.register_layer: before the built-in table
    if custom is not None:
        return custom
    if isinstance(op, _SCALED_SUM_TYPES) and len(node.input_tensors) == 2:
        return g.ADD, {"coefficients": (1.0, float(op.scale))}
    if isinstance(op, L.ReLU):
        plain = not op.negative_slope and not op.threshold
        high = math.inf if op.max_value is None else float(op.max_value)
        return g.RELU, ({"value_range": (0.0, high)} if plain else {})
    if isinstance(op, (L.LeakyReLU, L.PReLU)):
        return g.RELU, {}
    if isinstance(op, L.ELU):
        return g.ACTIVATION, {}
    if isinstance(op, L.Activation):
        kind = _activation_kind(op.activation) or g.PASS
        bounds = _ACTIVATION_RANGES.get(op.activation)
        return kind, ({"value_range": bounds} if bounds is not None else {})
    if isinstance(op, _ALL_PASS_TYPES):
        return g.PASS, {}
    if isinstance(op, _AVGPOOL_TYPES):
        return g.AVGPOOL, {}
    tensors = len(node.input_tensors)
    if isinstance(op, L.Add):
        return g.ADD, {}
    if isinstance(op, L.Multiply) and tensors == 2:
        return g.PRODUCT, {}
    arithmetic = _OP_ARITHMETIC.get(type(op).__name__) if type(op).__module__.startswith("keras.src.ops") else None
    if arithmetic is not None:
        if tensors == 1:  # one operand is a constant: a constant shift or scaling
            affine = _scalar_affine(arithmetic, node)
            return g.PASS, ({"affine": affine} if affine is not None else {})
        if arithmetic == "add" and tensors == 2:
            return g.ADD, {}
        if arithmetic == "multiply" and tensors == 2:
            return g.PRODUCT, {}
    if isinstance(op, _GRADIENT_TYPES):
        return g.GRADIENT, {}
    return g.UNSUPPORTED, {}


def _scalar_affine(arithmetic, node):
    """``(scale, shift)`` of an operation layer ``x ∘ c`` with a scalar constant ``c``, else None."""
    args = node.arguments.args
    if len(args) != 2:
        return None
    left = isinstance(args[0], keras.KerasTensor)
    other = args[1] if left else args[0]
    if isinstance(other, (np.ndarray, np.generic)) and np.size(other) == 1:
        other = float(np.asarray(other).reshape(()))
    if not isinstance(other, (int, float)) or isinstance(other, bool):
        return None
    other = float(other)
    if arithmetic == "add":
        return 1.0, other
    if arithmetic == "subtract":
        return (1.0, -other) if left else (-1.0, other)
    if arithmetic == "multiply":
        return other, 0.0
    return (1.0 / other, 0.0) if left and other != 0 else None


def _layer_forward(op, node):
    keras_inputs = node.input_tensors
    takes_training = getattr(op, "_call_has_training_arg", False)

    def forward(*values):
        args, kwargs = node.arguments.fill_in({id(t): v for t, v in zip(keras_inputs, values)})
        if takes_training:
            kwargs["training"] = False
        return op(*args, **kwargs)
    return forward


def _kernel(layer, part=None):
    """``W' a + b'`` of a Dense/Conv layer with a transformed kernel and bias, without the fused activation.

    ``part`` selects one factor of a separable convolution: its bias-free depthwise kernel or its pointwise one.
    """
    kernel_of, has_bias = (lambda: layer.kernel), True
    if part == "depthwise":
        kernel_of, has_bias = (lambda: layer.depthwise_kernel), False

        def linear(a, w):
            return keras.ops.depthwise_conv(a, w, strides=layer.strides, padding=layer.padding,
                                            data_format=layer.data_format, dilation_rate=layer.dilation_rate)
        spatial_rank = layer.rank
    elif part == "pointwise":
        kernel_of = lambda: layer.pointwise_kernel  # noqa: E731

        def linear(a, w):
            return keras.ops.conv(a, w, strides=1, padding="valid", data_format=layer.data_format)
        spatial_rank = layer.rank
    elif isinstance(layer, L.Dense):
        def linear(a, w):
            return keras.ops.matmul(a, w)
        spatial_rank = 0
    elif isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        def linear(a, w):
            return keras.ops.depthwise_conv(a, w, strides=layer.strides, padding=layer.padding,
                                            data_format=layer.data_format, dilation_rate=layer.dilation_rate)
        spatial_rank = layer.rank
    elif isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        def linear(a, w):
            return keras.ops.conv_transpose(a, w, strides=layer.strides, padding=layer.padding,
                                            output_padding=layer.output_padding, data_format=layer.data_format,
                                            dilation_rate=layer.dilation_rate)
        spatial_rank = layer.rank
    else:
        linear = layer.convolution_op
        spatial_rank = layer.rank
    channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"

    def bias_term(bias_map):
        if not has_bias or getattr(layer, "bias", None) is None:
            return None
        bias = bias_map(tf.convert_to_tensor(layer.bias))
        return tf.reshape(bias, [-1] + [1] * spatial_rank) if channels_first else bias

    def apply(a, kernel_map=identity, bias_map=identity):
        out = linear(a, kernel_map(kernel_of()))
        bias = None if bias_map is None else bias_term(bias_map)
        return out if bias is None else out + bias
    return g.Kernel(apply, part is None and isinstance(layer, L.Dense), spatial_rank, bias_term)


def _bn_stats(layer, node):
    rank = len(node.input_tensors[0].shape)
    axes = [layer.axis] if isinstance(layer.axis, int) else list(layer.axis)
    shape = [1] * rank
    for axis in axes:
        shape[axis % rank] = node.input_tensors[0].shape[axis]

    def statistics(a):  # read at every call: the weights may have changed since the graph was captured
        mean = tf.reshape(tf.convert_to_tensor(layer.moving_mean), shape)
        beta = tf.reshape(tf.convert_to_tensor(layer.beta), shape) if layer.center else tf.zeros(shape, mean.dtype)
        return mean, beta
    return statistics


def _deterministic_config(layer, **changes):
    """A layer config whose initializers and seeds draw no random numbers (weights are copied in afterwards)."""
    config = dict(layer.get_config(), **changes)
    for key, value in config.items():
        if key.endswith("_initializer") and value is not None:
            config[key] = "zeros"
    if config.get("seed", None) is not None or "seed" in config:
        config["seed"] = 0
    return config


def _gelu_float64(x):
    """The exact GELU ``x·Φ(x)``. TensorFlow's ``tf.nn.gelu`` in float64 is accurate to only ~5e-9 (its constants
    are float32), which alone would break the float64 agreement gate of docs/equivalence.md; float64 copies use this."""
    x = tf.convert_to_tensor(x)
    return 0.5 * x * (1.0 + tf.math.erf(x / tf.constant(np.sqrt(2.0), x.dtype)))


_FLOAT64_ACTIVATIONS = {"gelu": _gelu_float64}


def _float64_copy(model):
    """A float64 clone (layers and Input) with the model's weights; nested models are cloned too."""
    def clone_layer(layer):
        if isinstance(layer, keras.Model):  # its own float64 Input: else its input cast rounds to float32
            return keras.models.clone_model(layer, input_tensors=_float64_inputs(layer), clone_function=clone_layer)
        if not isinstance(layer, keras.layers.Layer):  # an operation layer (``x + 3.0``) has no dtype of its own
            return layer.__class__.from_config(layer.get_config())
        config = _deterministic_config(layer, dtype="float64")
        activation = getattr(layer, "activation", None)
        if getattr(activation, "__name__", None) in _FLOAT64_ACTIVATIONS and activation is getattr(
                _ACT, activation.__name__, None):
            config["activation"] = _FLOAT64_ACTIVATIONS[activation.__name__]
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, input_tensors=_float64_inputs(model), clone_function=clone_layer)


def _float64_inputs(model):
    inputs = [keras.Input(shape=t.shape[1:], dtype="float64") for t in model.inputs]
    return inputs[0] if len(inputs) == 1 else inputs


# Every pass runs as a tf.function compiled once per (model, pass, method key, sample shape, dtype) with a dynamic
# batch axis (docs/api.md#compiled-passes). Measured on the VGG16 twin (224×224, batch 1, 2 cores): a compiled
# LRP-ε pass takes 1.05× the framework's own compiled gradient, eagerly 2.8×; the first call (tracing included) is
# 1.6-2.1× a steady-state call. Setting this to False runs every pass eagerly (no tracing; slower steady state).
COMPILE_PASSES = True


class KerasBackend(Backend):
    """Explains ``keras.Model``s. Results are NumPy arrays in the caller's (channels-last) layout."""

    name = "tensorflow"
    channels_first = False
    ops = OPS

    # --- model handling ---------------------------------------------------------------------------------------
    def check(self, model):
        """docs/api.md#model-requirements checks, run once per model (like the captured graph and compiled passes, they are cached)."""
        self._cached(self._checked, model, lambda m: check_model(m) or True)

    def sample_rank(self, model):
        return len(model.inputs[0].shape) - 1

    def capture(self, model):
        return _Capture(model).graph

    float64_copy = staticmethod(_float64_copy)

    @staticmethod
    def sync_weights(model, copy):
        """The model's current weights, cast exactly, into its float64 copy (one variable at a time)."""
        for target, source in zip(copy.weights, model.weights):
            target.assign(tf.cast(source, target.dtype))

    # --- primitives ----------------------------------------------------------------------------------------
    # With COMPILE_PASSES on, every pass runs as a tf.function compiled once per (model, pass, method key, sample
    # shape, dtype) with a
    # dynamic batch axis, and always through that function: a traced graph (grappler's fused kernels) differs from
    # eager execution by float32 rounding, so one path for everything keeps repeated calls bit-identical
    # (docs/api.md#model-requirements) whatever the batch size. The functions hold the model only weakly; variables are read at each call, so
    # new weights are used. Targets are resolved inside the pass from its own logits (argmax: lowest index on
    # ties), so no separate logits pass runs. Only a mapping without a value key (the vanished-relevance
    # diagnosis, which inspects tensors in Python) runs eagerly.
    def num_classes(self, model):
        classes = model.outputs[0].shape[-1]
        return None if classes is None else int(classes)

    def resolved_targets(self, model, x, targets):
        """As the base class, but an argmax comes from the compiled gradient pass that IG/SmoothGrad/VarGrad run
        anyway (a gradient of ``x`` costs a forward and a backward of its samples, and saves tracing a logits
        pass)."""
        targets = Targets.of(targets)
        if targets.values is None:
            classes = self.num_classes(model)
            if targets.is_argmax or classes is None:
                self.gradients(model, x, targets)
            else:
                targets.requested(len(x), classes)
        return targets.values

    def _function(self, model, x, name, key, make_body, takes_targets=True):
        if not COMPILE_PASSES:
            return make_body(weakref.ref(model))
        sample, dtype = tuple(x.shape[1:]), tf.as_dtype(x.dtype)
        signature = [tf.TensorSpec((None,) + sample, dtype)] + ([tf.TensorSpec((None,), tf.int64)]
                                                               if takes_targets else [])
        ref = weakref.ref(model)
        return self._per_model(self._compiled, model, (name, key, sample, dtype.name), lambda: tf.function(
            make_body(ref), input_signature=signature, autograph=False))

    def _run(self, model, x, targets, name, key, make_body):
        """Runs ``make_body(model_ref)(x, requested)`` (compiled unless ``key`` is None), sets the chosen classes."""
        targets = Targets.of(targets)
        classes = self.num_classes(model)
        if targets.values is None and not targets.is_argmax and classes is None:
            targets.resolve(self.logits(model, x))  # an undeclared number of classes: validate on real logits
        requested = tf.constant(targets.requested(len(x), classes))
        if key is None:
            *outputs, chosen = make_body(weakref.ref(model))(tf.constant(x), requested)
        else:
            *outputs, chosen = self._function(model, x, name, key, make_body)(tf.constant(x), requested)
        targets.set(chosen.numpy())
        return [output.numpy() for output in outputs]

    def logits(self, model, x):
        def make_body(ref):
            return lambda x: ref()(x, training=False)
        return self._function(model, x, "logits", None, make_body, takes_targets=False)(tf.constant(x)).numpy()

    def gradients(self, model, x, targets):
        def make_body(ref):
            def gradients(x, requested):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = ref()(x, training=False)
                    chosen = _choose(y, requested)
                    selected = tf.reduce_sum(y * tf.one_hot(chosen, _width(y), dtype=y.dtype))
                return tape.gradient(selected, x), chosen
            return gradients
        return self._run(model, x, targets, "gradients", (), make_body)[0]

    def graph_backward(self, model, x, targets, mapping_factory, lrp_head, key=None):
        """``key`` identifies the mapping by value (e.g. the parsed method), or is a function returning such a key
        (evaluated only here: backends that compile nothing never pay for it); None runs eagerly (no cache)."""
        graph = self.graph(model)
        graph.check_supported(graph.output)
        key = key() if callable(key) else key
        frozen = None if key is None else freeze(key)

        def make_body(ref):
            def backward(x, requested):
                graph = self.graph(ref())
                values = record(graph, x)
                chosen = _choose(values[graph.output], requested)
                start = graph.strip_trailing_activations(graph.output) if lrp_head else graph.output
                onehot = tf.one_hot(chosen, _width(values[graph.output]), dtype=values[start].dtype)
                signal = values[start] * onehot if lrp_head else onehot
                return propagate(OPS, graph, values, start, signal, mapping_factory(graph)), chosen
            return backward
        return self._run(model, x, targets, "graph_backward", None if frozen is None else (frozen, lrp_head),
                         make_body)[0]

    def cam_activations(self, model, x, targets, layer):
        graph = self.graph(model)
        index = graph.cam_node(layer if layer is None or isinstance(layer, str) else layer.name)

        def make_body(ref):
            def cam(x, requested):
                graph = self.graph(ref())
                with tf.GradientTape() as tape:
                    values = record(graph, x, on_value=lambda i, v: (tape.watch(v), v)[1] if i == index else v)
                    y = values[graph.output]
                    chosen = _choose(y, requested)
                    selected = tf.reduce_sum(y * tf.one_hot(chosen, _width(y), dtype=y.dtype))
                return values[index], tape.gradient(selected, values[index]), chosen
            return cam
        activation, gradient = self._run(model, x, targets, "cam_activations", index, make_body)
        return activation, gradient

    def activation_bytes_per_sample(self, model, sample):
        """Twice the layer outputs of one sample (the tape keeps about each op's input and output), from the
        declared shapes; shapes left open are measured on the captured graph's values for this sample."""
        elements = _declared_activation_elements(model)
        if elements is None:
            values = record(self.graph(model), tf.constant(sample))
            elements = sum(int(np.prod(v.shape[1:])) for v in values if isinstance(v, tf.Tensor))
        return 2 * elements * sample.dtype.itemsize


def _width(y):
    return y.shape[-1] if y.shape[-1] is not None else tf.shape(y)[-1]


def _choose(logits, requested):
    """The requested class per sample; for ``Targets.ARGMAX`` the argmax of the logits, lowest index on ties and
    the first NaN where there is one (``np.argmax``'s choice), computed in the pass itself."""
    logits = tf.stop_gradient(logits)
    index = tf.range(tf.shape(logits)[-1], dtype=tf.int64)
    nan = tf.math.is_nan(logits)
    peak = tf.reduce_max(tf.where(nan, tf.constant(-np.inf, logits.dtype), logits), axis=-1, keepdims=True)
    hit = tf.where(tf.reduce_any(nan, axis=-1, keepdims=True), nan, tf.equal(logits, peak))
    argmax = tf.reduce_min(tf.where(hit, index, tf.shape(logits, out_type=tf.int64)[-1]), axis=-1)
    return tf.where(requested < 0, argmax, requested)


def _declared_activation_elements(model):
    """Per-sample elements of every layer output (nested models included), or None if a shape is left open."""
    total = 0
    try:
        for nodes in _functional(model)._nodes_by_depth.values():
            for node in nodes:
                if node.is_input or not node.operation:
                    continue
                if isinstance(node.operation, keras.Model):
                    inner = _declared_activation_elements(node.operation)
                    if inner is None:
                        return None
                    total += inner
                    continue
                for tensor in node.output_tensors:
                    dims = tuple(tensor.shape[1:])
                    if any(d is None for d in dims):
                        return None
                    total += int(np.prod(dims))
    except (AttributeError, TypeError):
        return None
    return total


BACKEND = KerasBackend()
