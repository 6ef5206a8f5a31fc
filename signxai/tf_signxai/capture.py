"""Keras graph capture: Functional, Sequential and nested models become a :class:`signxai.core.graph.Graph`
(docs/layers.md), each layer classified by the layer table of ``layer_table.py``."""
from __future__ import annotations

import copy
import functools
import math

import numpy as np
import tensorflow as tf
import keras
from keras import layers as L

from signxai._keras_torch import replay_keras_graph
from signxai.core import graph as g
from signxai.core.inputs import fixed_value
from signxai.core.layers import arithmetic_kind, constant_shift, registered, scalar_affine
from signxai.core.rules import identity
from signxai.tf_signxai.recurrent import is_recurrent, unroll_layer
from signxai.tf_signxai.recurrent import refusal as recurrent_refusal
from signxai.tf_signxai.layer_table import (ARITHMETIC, LAYER_TABLE, OPERATION_RANGES, OPERATIONS, SCALED_SUMS,
                                            SEPARABLE, SOFTMAX_FUNCTIONS, SOFTMAX_OPERATIONS, VALUE_RANGES)


def functional(model):
    return model._functional if isinstance(model, keras.Sequential) else model


class CaptureError(ValueError):
    """The model's layer graph cannot be captured for the rule-based methods (the gradient family still works: it
    runs on the model itself)."""


def is_graph_model(model):
    """Functional and Sequential models (keras_hub's backbones included) carry their layer graph."""
    from keras.src.models.functional import Functional
    return isinstance(model, (Functional, keras.Sequential))


def functional_view(model):
    """The model as a Functional graph over its own layers (docs/layers.md#keras-subclassed): the model itself for
    Functional and Sequential models; for a subclassed model (``class Net(keras.Model)`` with ``call``), its ``call``
    run once on a symbolic ``keras.Input`` of the shape it was built with, which records the layers and Keras ops it
    calls. The layers' own node lists are restored afterwards (the caller's model is left as it was). Raises
    :class:`CaptureError` where ``call`` cannot run symbolically (Python control flow on tensor values, TensorFlow
    ops on symbolic tensors)."""
    if is_graph_model(model):
        return model
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    if not model.built or len(shapes) != 1:
        raise CaptureError(f"the subclassed Keras model {model.name!r} has {len(shapes)} recorded input shapes; "
                           f"the rule-based methods capture subclassed models with one input that were called once")
    (shape,) = shapes.values()

    def record():
        inputs = keras.Input(shape=tuple(shape)[1:])
        takes_training = "training" in getattr(model, "_call_signature_parameters", ())
        outputs = model.call(inputs, training=False) if takes_training else model.call(inputs)
        return keras.Model(inputs, outputs, name=f"{model.name}_graph")
    try:
        view = _symbolic(list(model._flatten_layers(include_self=False, recursive=True)), record)
    except Exception as error:  # symbolic execution reports unsupported code with many exception types
        raise CaptureError(f"the subclassed Keras model {model.name!r} could not be captured by running its call "
                           f"on a symbolic keras.Input ({type(error).__name__}: {str(error)[:300]}); the "
                           f"rule-based methods need its layer graph, the gradient family works on the model "
                           f"itself") from error
    return view


def activation_kind(fn):
    """The node kind of a (fused or ``Activation``) activation function; None for linear and softmax."""
    if fn is keras.activations.linear or fn in SOFTMAX_FUNCTIONS:
        return None
    return LAYER_TABLE.function_kind(fn) or g.ACTIVATION


class Capture:
    """Builds a :class:`signxai.core.graph.Graph` by walking the Keras graph, inlining nested models."""

    def __init__(self, model, explained=None, steps=None):
        self.nodes = [g.Node("input", g.INPUT, (), None, "InputLayer")]
        self.names = {}
        # recurrent layers on an input of free length (docs/layers.md#recurrent): ``steps`` is the input's T, valid
        # for the tensors in ``timed`` (the model input and recurrent sequences computed from it)
        self.steps, self.per_shape = steps, False
        # id(node) -> (node, its arguments with the recording's batch size marked); the node is held, so its id
        # is not reused while the capture runs
        self.batch_arguments: dict = {}
        self.timed = {id(t) for t in getattr(model, "inputs", None) or []}
        outputs = self.inline(model, [0] if explained is None else self.fixed_inputs(model, explained))
        self.graph = g.Graph(self.nodes, output=outputs[0], names=self.names)
        self.graph.per_shape = self.per_shape  # type: ignore[attr-defined]

    def fixed_inputs(self, model, explained):
        """A bound multi-input view (docs/api.md#multi-input): the graph's input nodes in the model's input order,
        node 0 for input ``explained``, AUX nodes reading the pass's fixed values for the others."""
        indices, j = [], 0
        for i, tensor in enumerate(functional(model).inputs):
            if i == explained:
                indices.append(0)
                continue
            name = tensor._keras_history.operation.name
            self.nodes.append(g.Node(name, g.AUX, (), functools.partial(fixed_value, j), "fixed input"))
            indices.append(len(self.nodes) - 1)
            j += 1
        return indices

    def add(self, node, layer_name=None):
        self.nodes.append(node)
        index = len(self.nodes) - 1
        if layer_name is not None:
            self.names.setdefault(layer_name, index)
        return index

    def inline(self, model, input_indices):
        """The graph of ``model`` (nested models and custom layers inlined) on the nodes ``input_indices``; the
        output indices."""
        def visit(node, parents):
            index = self.layer_node(node.operation, node, parents)
            return index if isinstance(index, list) else [index]
        return replay_keras_graph(model, input_indices, visit)

    def kernel_node(self, name, type_name, parents, kernel, layer_name=None):
        return self.add(g.Node(name, g.KERNEL, tuple(parents), kernel.apply, type_name, kernel=kernel), layer_name)

    def layer_node(self, op, node, parents):
        name, type_name = op.name, type(op).__name__
        # recorded on a concrete batch (docs/transformers.md#keras-hub): its batch-sized arguments follow x's batch
        recorded = self.batch_arguments.get(id(node))
        template = recorded[1] if recorded is not None and recorded[0] is node else None
        if parents and all(self.nodes[p].kind == g.AUX for p in parents):  # computed from fixed inputs alone
            return self.add(g.Node(name, g.AUX, tuple(parents), _layer_forward(op, node, template), type_name),
                            name)
        attention = self.attention_node(op, node, parents)  # docs/transformers.md#capture
        if attention is not None:
            return attention
        if is_recurrent(op) and registered(op) is None:
            return self.recurrent_node(op, node, parents)
        table_kind = LAYER_TABLE.layer_kind(op)
        if table_kind == g.KERNEL:
            if isinstance(op, SEPARABLE):  # a depthwise kernel layer, then a pointwise one (docs/layers.md)
                depthwise = self.kernel_node(f"{name}/depthwise", type_name, parents, _kernel(op, "depthwise"))
                self.kernel_node(name, type_name, [depthwise], _kernel(op, "pointwise"), name)
            else:
                self.kernel_node(name, type_name, parents, _kernel(op), name)
            kind = activation_kind(op.activation)
            if kind is not None:  # a fused activation is a node of its own
                self.add(g.Node(f"{name}/activation", kind, (len(self.nodes) - 1,), op.activation,
                                op.activation.__name__, value_range=VALUE_RANGES.get(op.activation)))
            # the layer's own call on the layer's inputs: the capture check's reference for its last node
            self.nodes[-1].reference, self.nodes[-1].reference_parents = _layer_forward(op, node), tuple(parents)
            return len(self.nodes) - 1
        forward = _layer_forward(op, node, template)
        if table_kind == g.BATCHNORM:
            kind, extra = g.BATCHNORM, {"batchnorm": _bn_stats(op, node)}
        else:
            held = sum(self.nodes[p].kind == g.AUX for p in parents)  # held-fixed operands: constants
            kind, extra = _classify(op, node, table_kind, held)
        if kind == g.UNSUPPORTED and "reason" not in extra and _is_custom(op):
            inner = _layer_graph(op, node)  # a user's or keras_hub's layer: descend into its call
            if isinstance(inner, Exception):  # shapes read from the batch axis: record on concrete batches
                batched = _batched_layer_graph(op, node)
                if batched is CONSTANT:  # its output is computed from shapes and weights alone: a constant source
                    return self.add(g.Node(name, g.AUX, tuple(parents), forward, type_name), name)
                if batched is not None:
                    inner, substitutions = batched
                    self.batch_arguments.update(substitutions)
            if not isinstance(inner, Exception):
                outputs = self.inline(inner, parents)
                if len(outputs) == 1:
                    self.names.setdefault(name, outputs[0])
                return outputs
            extra["reason"] = (f"a custom layer without a rule, and its call could not be recorded on symbolic "
                               f"inputs to descend into it ({type(inner).__name__}: {str(inner)[:200]}); declare it "
                               f"with signxai.register_layer")
        extra.setdefault("reason", "" if kind != g.UNSUPPORTED else _no_rule(op))
        if "forward" in extra:  # a registered identity: the layer's own call is the capture check's reference
            forward, extra["reference"] = extra.pop("forward"), forward
        return self.add(g.Node(name, kind, tuple(parents), forward, type_name, **extra), name)


    def recurrent_node(self, op, node, parents):
        """A recurrent layer unrolled per time step (docs/layers.md#recurrent), or one unsupported node naming why
        not; its output indices."""
        steps = node.input_tensors[0].shape[1] if len(node.input_tensors[0].shape) == 3 else None
        if steps is None and id(node.input_tensors[0]) in self.timed:  # a free length: the explained input's
            steps = self.steps
            self.per_shape = self.per_shape or steps is None
        reason = recurrent_refusal(op, node, steps)
        if reason:
            index = self.add(g.Node(op.name, g.UNSUPPORTED, tuple(parents), _layer_forward(op, node),
                                    type(op).__name__, reason=reason), op.name)
            return [index] * len(node.output_tensors)
        outputs = unroll_layer(self.nodes, op, parents[0], steps)
        if op.return_sequences and id(node.input_tensors[0]) in self.timed:
            self.timed.add(id(node.output_tensors[0]))
        self.nodes[outputs[0]].reference = _first(_layer_forward(op, node)) if len(outputs) > 1 else \
            _layer_forward(op, node)
        self.nodes[outputs[0]].reference_parents = tuple(parents)
        self.names.setdefault(op.name, outputs[0])
        return outputs

    def attention_node(self, op, node, parents):
        """The transformer layers and operations (docs/transformers.md#capture), or None for the others:
        EinsumDense is a kernel layer; MultiHeadAttention is descended into; LayerNormalization is a NORM node;
        ``ops.einsum``/``ops.matmul`` of two input-dependent tensors are BILINEAR; ``ops.dot_product_attention`` is
        decomposed into its nodes."""
        name, type_name = op.name, type(op).__name__
        if isinstance(op, L.EinsumDense) and registered(op) is None:
            self.kernel_node(name, type_name, parents, _einsum_kernel(op), name)
            kind = activation_kind(op.activation) if op.activation is not None else None
            if kind is not None:
                self.add(g.Node(f"{name}/activation", kind, (len(self.nodes) - 1,), op.activation,
                                op.activation.__name__, value_range=VALUE_RANGES.get(op.activation)))
            self.nodes[-1].reference, self.nodes[-1].reference_parents = _layer_forward(op, node), tuple(parents)
            return len(self.nodes) - 1
        if isinstance(op, L.MultiHeadAttention) and registered(op) is None:
            inner = _layer_graph(op, node)
            if isinstance(inner, Exception):
                return self.add(g.Node(name, g.UNSUPPORTED, tuple(parents), _layer_forward(op, node), type_name,
                                       reason=f"its call could not be recorded on symbolic inputs "
                                              f"({type(inner).__name__}: {str(inner)[:200]})"), name)
            outputs = self.inline(inner, parents)
            if len(outputs) >= 1:
                self.names.setdefault(name, outputs[0])
            return outputs
        if isinstance(op, L.LayerNormalization) and registered(op) is None:
            forward = _layer_forward(op, node)
            if getattr(op, "rms_scaling", False):  # RMS normalisation: the identity rule (PASS)
                return self.add(g.Node(name, g.PASS, tuple(parents), forward, type_name), name)
            return self.add(g.Node(name, g.NORM, tuple(parents), forward, type_name,
                                   normalization=_layer_normalization(op)), name)
        if not type(op).__module__.startswith("keras.src.ops"):
            return None
        op_name = type(op).__name__
        if op_name in ("Einsum", "Matmul") and len(parents) == 2:
            return self.add(g.Node(name, g.BILINEAR, tuple(parents), _layer_forward(op, node), op_name), name)
        if op_name == "DotProductAttention":
            return self.dot_product_attention(op, node, parents)
        return None

    def dot_product_attention(self, op, node, parents):
        """``ops.dot_product_attention(q, k, v, bias, mask, scale)`` (layout BTNH) as its nodes: BILINEAR
        ``scale·einsum(BTNH,BSNH→BNTS)``, the constant mask (a re-indexing), SOFTMAX over the last axis, BILINEAR
        ``einsum(BNTS,BSNH→BTNH)`` (Keras's own TensorFlow implementation, step by step)."""
        name = op.name
        names = ("query", "key", "value", "bias", "mask", "scale")
        bound = dict(zip(names, node.arguments.args))
        bound.update({k: v for k, v in node.arguments.kwargs.items() if k in names})
        position = {id(t): p for t, p in zip(node.input_tensors, parents)}
        tensors = [bound.get(n) for n in names[:3]]
        mask = bound.get("mask")
        # a mask computed from held-fixed inputs alone (a padding mask, docs/transformers.md#softmax): a constant
        held_mask = mask is not None and id(mask) in position and self.nodes[position[id(mask)]].kind == g.AUX
        if not all(id(t) in position for t in tensors) or bound.get("bias") is not None or \
                (mask is not None and not held_mask) or getattr(op, "attn_logits_soft_cap", None) is not None:
            return self.add(g.Node(name, g.UNSUPPORTED, tuple(parents), _layer_forward(op, node), type(op).__name__,
                                   reason="dot-product attention with a bias, an input-dependent mask tensor or a "
                                          "logit soft cap has no rule"), name)
        scale, causal = bound.get("scale"), bool(getattr(op, "is_causal", False))

        def scores(query, key):
            logits = tf.einsum("BTNH,BSNH->BNTS", query, key)
            factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
            return logits * tf.cast(factor, logits.dtype)

        def masked(logits, *held):  # Keras's _apply_masks: the held mask and/or the causal mask
            keep = tf.ones_like(logits, dtype="bool")
            if held:
                keep = tf.logical_and(keep, tf.cast(held[0], "bool"))
            if causal:
                t, s = tf.shape(logits)[2], tf.shape(logits)[3]
                keep = tf.logical_and(keep, tf.linalg.band_part(tf.ones((t, s), "bool"), -1, 0)[None, None])
            return tf.where(keep, logits, tf.constant(-0.7 * 3.38953e38, logits.dtype))

        def node_(kind, suffix, parents_, forward, layer_type, **extra):
            return self.add(g.Node(f"{name}/{suffix}" if suffix else name, kind, tuple(parents_), forward, layer_type,
                                   **extra))
        i_q, i_k, i_v = (position[id(t)] for t in tensors)
        at = node_(g.BILINEAR, "scores", (i_q, i_k), scores, "einsum")
        if causal or held_mask:
            at = node_(g.REINDEX, "mask", (at, position[id(mask)]) if held_mask else (at,), masked, "where")
        at = node_(g.SOFTMAX, "softmax", (at,), lambda t: tf.nn.softmax(t, axis=-1), "softmax",
                   value_range=(0.0, 1.0), axis=-1)
        at = node_(g.BILINEAR, "", (at, i_v), lambda a, v: tf.einsum("BNTS,BSNH->BTNH", a, v), "einsum",
                   reference=_layer_forward(op, node), reference_parents=tuple(parents))
        self.names.setdefault(name, at)
        return at


def _einsum_kernel(layer):
    """``einsum(equation, a, W') + b'`` of an EinsumDense layer (docs/transformers.md#capture): a dense kernel."""
    def bias_term(bias_map):
        return None if layer.bias is None else bias_map(tf.convert_to_tensor(layer.bias))

    def apply(a, kernel_map=identity, bias_map=identity):
        out = keras.ops.einsum(layer.equation, a, kernel_map(tf.convert_to_tensor(layer.kernel)))
        bias = None if bias_map is None else bias_term(bias_map)
        return out if bias is None else out + bias
    return g.Kernel(apply, True, 0, bias_term)


def _layer_normalization(layer):
    """``a ↦ (t ↦ γ ⊙ (t − mean(t)) / σ(a) + β)`` of a LayerNormalization layer: σ computed from ``a`` and held
    constant (docs/transformers.md#layer-norm)."""
    def normalization(a):
        axes = [layer.axis] if isinstance(layer.axis, int) else list(layer.axis)
        _, variance = tf.nn.moments(tf.stop_gradient(a), axes=axes, keepdims=True)
        sigma = tf.sqrt(variance + tf.cast(layer.epsilon, a.dtype))
        shape = [1] * len(a.shape)
        for axis in axes:
            shape[axis % len(a.shape)] = a.shape[axis]

        def linear(t):
            y = (t - tf.reduce_mean(t, axis=axes, keepdims=True)) / sigma
            if layer.scale:
                y = y * tf.reshape(tf.cast(layer.gamma, t.dtype), shape)
            if layer.center:
                y = y + tf.reshape(tf.cast(layer.beta, t.dtype), shape)
            return y
        return linear
    return normalization


def _first(forward):
    return lambda *values: forward(*values)[0]


def _is_custom(op):
    """A layer defined outside Keras itself (a user's, keras_hub's) whose ``call`` signxai may descend into."""
    module = type(op).__module__
    subclass_of_known = any(cls in LAYER_TABLE.layer_classes() for cls in type(op).__mro__)
    return (isinstance(op, keras.layers.Layer) and not module.startswith("keras.") and registered(op) is None
            and not subclass_of_known)  # a subclass of a known layer that computes otherwise: refused by name


def _symbolic(layers, record):
    """``record()`` with the node lists of ``layers`` restored afterwards: recording a graph by calling layers on
    symbolic tensors leaves the caller's layers as they were."""
    saved = [(layer, list(layer._inbound_nodes), list(layer._outbound_nodes)) for layer in layers]
    specs = [layer for layer in layers if _narrow_output_spec(layer)]
    for layer in specs:  # traced by the generic Layer.compute_output_spec while recording (removed afterwards)
        layer.__dict__["compute_output_spec"] = functools.partial(keras.layers.Layer.compute_output_spec, layer)
    try:
        return record()
    finally:
        for layer in specs:
            layer.__dict__.pop("compute_output_spec", None)
        for layer, inbound, outbound in saved:
            layer._inbound_nodes[:], layer._outbound_nodes[:] = inbound, outbound


def _narrow_output_spec(layer):
    """Whether a layer's class overrides ``compute_output_spec`` with fewer keyword parameters than its ``call``
    takes (keras_hub's CachedMultiHeadAttention: ``call(…, cache=None)`` on MultiHeadAttention's spec): called on
    symbolic tensors with those keywords it fails, so a recording traces its ``call`` instead."""
    import inspect
    spec = type(layer).compute_output_spec
    if spec is keras.layers.Layer.compute_output_spec or "compute_output_spec" in layer.__dict__:
        return False
    try:
        taken = inspect.signature(spec).parameters
        called = inspect.signature(type(layer).call).parameters
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in taken.values()):
        return False
    return any(name not in taken for name in called if name not in ("self", "args", "kwargs"))


def _layer_graph(op, node):
    """A custom layer's ``call`` as a Functional graph over its own sublayers and Keras ops (run once on symbolic
    inputs shaped like the layer's inputs, docs/layers.md#keras-descend), or None where it cannot run symbolically
    (then the layer stays one unsupported node)."""
    inputs = [keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype) for t in node.input_tensors]

    def record():
        args, kwargs = node.arguments.fill_in({id(t): v for t, v in zip(node.input_tensors, inputs)})
        if getattr(op, "_call_has_training_arg", False):
            kwargs["training"] = False
        outputs = op.call(*args, **kwargs)
        return keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs)
    try:
        return _symbolic(list(op._flatten_layers(include_self=True, recursive=True)), record)
    except Exception as error:  # symbolic execution reports unsupported code with many exception types
        return error


def _no_rule(op):
    base = next((cls for cls in type(op).__mro__[1:] if cls in LAYER_TABLE.layer_classes()), None)
    if base is not None:
        return (f"{type(op).__name__} subclasses {base.__name__} but defines its own computation (docs/layers.md"
                f"#what-runs); declare it with signxai.register_layer or build the model from known layers")
    return "no LRP rule for this layer type"


def _classify(op, node, kind, held=0):
    """The node kind of a non-kernel layer (``kind``: its kind in the layer table, or None) and extra Node fields
    (value bounds, scalar affine form, sum coefficients): the table, refined by the special cases. ``held``: how many
    operands are held-fixed inputs of a multi-input model (docs/api.md#multi-input), constants as in PyTorch's
    capture: a sum or product with one input-dependent operand is a constant shift or scaling."""
    custom = registered(op)  # signxai.register_layer: before the built-in table
    if custom is not None:
        return custom
    tensors = len(node.input_tensors) - held
    if held and tensors == 1 and (kind in (g.ADD, g.PRODUCT) or isinstance(op, (L.Subtract, L.Average))):
        return g.PASS, {}
    is_op = type(op).__module__.startswith("keras.src.ops")
    operation = ARITHMETIC.get(type(op).__name__) if is_op else None
    if operation is not None:  # ``x + y``, ``x * 3.0`` …
        kind = arithmetic_kind(operation, tensors)
        shift = _constant_shift(operation, node) if kind == g.PASS else None
        if shift is not None:  # x + C with a constant tensor C: C absorbs (docs/transformers.md#constant-sources)
            return g.ADD, {"coefficients": shift}
        affine = _scalar_affine(operation, node) if kind == g.PASS else None
        if kind == g.ADD and operation == "subtract":
            return g.ADD, {"coefficients": (1.0, -1.0)}
        return kind, ({"affine": affine} if affine is not None else {})
    if is_op and type(op).__name__ == "Pad" and not _neutral_padding(op, node):
        return g.UNSUPPORTED, {"reason": "padding with a non-zero constant"}
    if is_op and type(op).__name__ == "Power":  # ``x ** c``: an element-wise activation (docs/transformers.md#power)
        args = node.arguments.args
        exponent = node.arguments.kwargs.get("x2", args[1] if len(args) > 1 else None)
        if isinstance(exponent, (np.ndarray, np.generic)) and np.size(exponent) == 1:
            exponent = np.asarray(exponent).reshape(()).item()
        if tensors == 1 and isinstance(args[0], keras.KerasTensor) and isinstance(exponent, (int, float)) \
                and not isinstance(exponent, bool):
            return g.ACTIVATION, {}
        return g.UNSUPPORTED, {"reason": "a power with an input-dependent or tensor exponent has no rule"}
    if is_op and type(op).__name__ in OPERATIONS:  # ``keras.ops.tanh(x)`` … in a custom layer's call
        bounds = OPERATION_RANGES.get(type(op).__name__)
        return OPERATIONS[type(op).__name__], ({"value_range": bounds} if bounds is not None else {})
    if is_op and type(op).__name__ in SOFTMAX_OPERATIONS or isinstance(op, L.Softmax):  # inside: a gate
        if type(op).__name__ == "LogSoftmax":
            return g.UNSUPPORTED, {"reason": "a log-softmax inside the model has no rule"}
        axis = getattr(op, "axis", -1)
        axis = axis[0] if isinstance(axis, (tuple, list)) and len(axis) == 1 else axis
        if not isinstance(axis, int):
            return g.UNSUPPORTED, {"reason": "a softmax over several axes has no rule"}
        return g.SOFTMAX, {"value_range": (0.0, 1.0), "axis": axis}
    if isinstance(op, L.Subtract) and tensors == 2:
        return g.ADD, {"coefficients": (1.0, -1.0)}
    if kind is None:
        return g.UNSUPPORTED, {}
    if isinstance(op, SCALED_SUMS):
        return (g.ADD, {"coefficients": (1.0, float(op.scale))}) if tensors == 2 else (g.UNSUPPORTED, {})
    if kind == g.PRODUCT and tensors != 2:
        return g.UNSUPPORTED, {}
    if isinstance(op, L.ReLU):
        plain = not op.negative_slope and not op.threshold
        high = math.inf if op.max_value is None else float(op.max_value)
        return g.RELU, ({"value_range": (0.0, high)} if plain else {})
    if isinstance(op, L.Activation):
        bounds = VALUE_RANGES.get(op.activation)
        return activation_kind(op.activation) or g.PASS, ({"value_range": bounds} if bounds is not None else {})
    if kind == g.PASS and isinstance(op, INFERENCE_IDENTITIES):  # keeps a gate a gate (docs/transformers.md)
        return kind, {"affine": (1.0, 0.0)}
    return kind, {}


# the identity at inference
INFERENCE_IDENTITIES = (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianNoise,
                        L.GaussianDropout, L.AlphaDropout, L.Identity)


def _neutral_padding(op, node):
    """Zero padding, or −inf padding read only by max pooling (keras_hub's 'same' max pooling): a re-indexing."""
    args = node.arguments.args  # keras.ops.pad(x, pad_width, mode="constant", constant_values=None)
    value = node.arguments.kwargs.get("constant_values", args[3] if len(args) > 3 else 0)
    if value in (None, 0, 0.0):
        return True
    readers = [n.operation for n in op._outbound_nodes]
    return value == -math.inf and bool(readers) and all(
        isinstance(r, (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D)) for r in readers)


def _constant_shift(operation, node):
    """The signal's coefficient of ``x ± C`` / ``C − x`` with a constant table ``C`` (a weight, an array;
    signxai.core.layers.constant_shift), else None."""
    args = node.arguments.args
    if len(args) != 2 or node.arguments.kwargs:
        return None
    left = isinstance(args[0], keras.KerasTensor)
    other = args[1] if left else args[0]
    if isinstance(other, keras.KerasTensor):
        return None
    shape = getattr(other, "shape", None)
    return constant_shift(operation, tuple(shape) if shape is not None else None, left)


def _scalar_affine(operation, node):
    """``(scale, shift)`` of an operation layer ``x ∘ c`` with a scalar constant ``c``, else None."""
    args = node.arguments.args
    if len(args) != 2:
        return None
    left = isinstance(args[0], keras.KerasTensor)
    other = args[1] if left else args[0]
    if isinstance(other, (np.ndarray, np.generic)) and np.size(other) == 1:
        other = float(np.asarray(other).reshape(()))
    return scalar_affine(operation, other, left)


def _layer_forward(op, node, template=None):
    """The layer's (operation's) own call on the node's input values; ``template``: the node's arguments recorded
    on a concrete batch, with the batch-sized entries marked (:func:`_batched_layer_graph`)."""
    keras_inputs = node.input_tensors
    takes_training = getattr(op, "_call_has_training_arg", False)

    def forward(*values):
        if template is None:
            args, kwargs = node.arguments.fill_in({id(t): v for t, v in zip(keras_inputs, values)})
        else:
            batch = tf.shape(values[0])[0]
            args, kwargs = _fill(template[:2], {id(t): v for t, v in zip(keras_inputs, values)}, batch)
            if template[2]:  # the operation's own batch-sized constants: a copy holding this batch's
                operation = copy.copy(op)
                for key, value in template[2].items():
                    vars(operation)[key] = _fill(([value], {}), {}, batch)[0][0]
                return operation.call(*args, **kwargs)
        if takes_training:
            kwargs["training"] = False
        return op(*args, **kwargs)
    return forward


# --- custom layers that read the batch size (docs/transformers.md#keras-hub) ---------------------------------------

CONSTANT = object()  # a custom layer whose output is computed from its input's shape and its weights alone
_RECORDING_BATCHES = (2, 3)


class _Batch:
    """An integer argument that was the recording's batch size."""


class _Tiled:
    """A constant argument stacked along its leading axis to the recording's batch size (one row, repeated)."""

    def __init__(self, row):
        self.row = row


def _fill(template, values, batch):
    """``template`` with its KerasTensors replaced by ``values`` (by id), :class:`_Batch` by ``batch`` and
    :class:`_Tiled` rows repeated ``batch`` times."""
    def fill(item):
        if isinstance(item, keras.KerasTensor):
            return values[id(item)]
        if isinstance(item, _Batch):
            return batch
        if isinstance(item, _Tiled):
            return tf.repeat(item.row, batch, axis=0)
        if isinstance(item, (list, tuple)):
            return type(item)(fill(i) for i in item)
        if isinstance(item, dict):
            return {k: fill(v) for k, v in item.items()}
        return item
    args, kwargs = template
    return fill(list(args)), fill(dict(kwargs))


def _record_on_batch(op, node, batch):
    """The layer's call recorded on symbolic inputs of a concrete ``batch``: a Functional model, :data:`CONSTANT`
    where no output is a symbolic tensor, or None where only some are."""
    inputs = [keras.Input(batch_shape=(batch,) + tuple(t.shape)[1:], dtype=t.dtype) for t in node.input_tensors]

    def record():
        args, kwargs = node.arguments.fill_in({id(t): v for t, v in zip(node.input_tensors, inputs)})
        if getattr(op, "_call_has_training_arg", False):
            kwargs["training"] = False
        outputs = keras.tree.flatten(op.call(*args, **kwargs))
        symbolic = [isinstance(t, keras.KerasTensor) for t in outputs]
        if not any(symbolic):
            return CONSTANT
        if not all(symbolic):
            return None
        return keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0])
    return _symbolic(list(op._flatten_layers(include_self=True, recursive=True)), record)


def _template(first, second, batches):
    """``first`` (an argument structure of the recording on ``batches[0]``) with its batch-sized entries marked, by
    comparison with ``second`` (the same argument recorded on ``batches[1]``); None where they differ otherwise."""
    if isinstance(first, keras.KerasTensor) and isinstance(second, keras.KerasTensor):
        return first
    if isinstance(first, (bool, np.bool_)) or isinstance(second, (bool, np.bool_)):
        return first if first is second or first == second else None
    if isinstance(first, (int, np.integer)) and isinstance(second, (int, np.integer)):
        if int(first) == int(second):
            return first
        return _Batch() if (int(first), int(second)) == batches else None
    if isinstance(first, (list, tuple)) and isinstance(second, (list, tuple)) and len(first) == len(second):
        items = [_template(a, b, batches) for a, b in zip(first, second)]
        return None if any(i is None and a is not None for i, a in zip(items, first)) else type(first)(items)
    if isinstance(first, dict) and isinstance(second, dict) and first.keys() == second.keys():
        items = {k: _template(first[k], second[k], batches) for k in first}
        return None if any(items[k] is None and first[k] is not None for k in first) else items
    if tf.is_tensor(first) or isinstance(first, (np.ndarray, tf.Variable)):
        a, b = np.asarray(first), np.asarray(second)
        if a.shape == b.shape:
            return first if np.array_equal(a, b) else None
        if a.ndim == b.ndim >= 1 and (a.shape[0], b.shape[0]) == batches and a.shape[1:] == b.shape[1:] and \
                (a == a[:1]).all() and (b == a[:1]).all():
            return _Tiled(tf.constant(a[:1]))
        return None
    return first if first is second or first == second else None


def _batched_layer_graph(op, node):
    """A custom layer whose call cannot run on a symbolic batch axis (it reads the batch size: a class token tiled
    to the batch, a table broadcast to the input's shape), recorded on two concrete batch sizes: :data:`CONSTANT`
    where its output is no symbolic tensor (computed from shapes and weights alone: a constant source); else the
    Functional graph of the first recording and, per node whose arguments differ between the recordings, the
    arguments with the batch size and the batch-tiled constants marked; None where the recordings differ otherwise
    or cannot be made."""
    try:
        models = [_record_on_batch(op, node, b) for b in _RECORDING_BATCHES]
    except Exception:  # symbolic execution reports unsupported code with many exception types
        return None
    if models[0] is CONSTANT and models[1] is CONSTANT:
        return CONSTANT
    if not all(isinstance(m, keras.Model) for m in models):
        return None
    from signxai._keras_torch import keras_operation_nodes
    nodes = [keras_operation_nodes(m) for m in models]
    if len(nodes[0]) != len(nodes[1]):
        return None
    substitutions = {}
    for first, second in zip(*nodes):
        if first.operation is not second.operation and type(first.operation) is not type(second.operation):
            return None
        pair = [(n.arguments.args, n.arguments.kwargs) for n in (first, second)]
        template = _template(pair[0], pair[1], _RECORDING_BATCHES)
        attributes = {}
        if first.operation is not second.operation:  # a Keras op holds its constants (Reshape's shape) itself
            a, b = (_op_attributes(n.operation) for n in (first, second))
            if a.keys() != b.keys():
                return None
            attributes = {k: _template(a[k], b[k], _RECORDING_BATCHES) for k in a}
            if any(attributes[k] is None and a[k] is not None for k in a):
                return None
            attributes = {k: v for k, v in attributes.items() if _marked(v)}
        if template is None:
            return None
        if _marked(template) or attributes:
            substitutions[id(first)] = (first, (*template, attributes))
    return models[0], substitutions


def _op_attributes(op):
    """The public attributes of a Keras operation (its constants: a shape, an axis), without its name."""
    return {k: v for k, v in vars(op).items() if not k.startswith("_") and k != "name"
            and not isinstance(v, keras.layers.Layer)}


def _marked(item):
    if isinstance(item, (_Batch, _Tiled)):
        return True
    if isinstance(item, (list, tuple)):
        return any(_marked(i) for i in item)
    if isinstance(item, dict):
        return any(_marked(i) for i in item.values())
    return False


def _kernel(layer, part=None):
    """``W' a + b'`` of a Dense/Conv layer with a transformed kernel and bias, without the fused activation.

    ``part`` selects one factor of a separable convolution: its bias-free depthwise kernel or its pointwise one.
    """
    kernel_of, has_bias = (lambda: layer.kernel), True
    spatial_rank = 0 if part is None and isinstance(layer, L.Dense) else layer.rank
    if part == "depthwise":
        kernel_of, has_bias = (lambda: layer.depthwise_kernel), False
    if part == "pointwise":
        kernel_of = lambda: layer.pointwise_kernel  # noqa: E731

        def linear(a, w):
            return keras.ops.conv(a, w, strides=1, padding="valid", data_format=layer.data_format)
    elif part == "depthwise" or isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        def linear(a, w):
            return keras.ops.depthwise_conv(a, w, strides=layer.strides, padding=layer.padding,
                                            data_format=layer.data_format, dilation_rate=layer.dilation_rate)
    elif isinstance(layer, L.Dense):
        def linear(a, w):
            return keras.ops.matmul(a, w)
    elif isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        def linear(a, w):
            return keras.ops.conv_transpose(a, w, strides=layer.strides, padding=layer.padding,
                                            output_padding=layer.output_padding, data_format=layer.data_format,
                                            dilation_rate=layer.dilation_rate)
    else:
        linear = layer.convolution_op
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
