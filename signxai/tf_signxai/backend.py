"""The Keras 3 / TensorFlow backend (docs/extending.md#backend-contract): model checks, the float64 copy, the
compiled-pass executor and the tensor primitives the shared passes of :class:`signxai.core.backend.Backend` use.

The package is laid out like ``signxai/torch_signxai``: ``ops.py`` (tensor ops and tape), ``layer_table.py`` (layer
classes → node kinds, as data), ``capture.py`` (graph capture), ``backend.py`` (this module).
"""
from __future__ import annotations

import functools
import weakref

import numpy as np
import tensorflow as tf
import keras

from signxai.core.backend import Backend
from signxai.core.engine import record
from signxai.core.inputs import RECURRENT_MULTI_INPUT, Bound, current_fixed, unbound
from signxai.core.keys import Parameterised
from signxai.core.targets import Targets
from signxai.tf_signxai.capture import Capture, CaptureError, functional, functional_view, is_graph_model
from signxai.tf_signxai.layer_table import SOFTMAX_FUNCTIONS, SOFTMAX_LAYERS
from signxai.tf_signxai.ops import OPS, Tape, TensorOps  # noqa: F401  (TensorOps: re-exported)

_Capture, _functional = Capture, functional  # their earlier names
_ACT = keras.activations


def _is_softmax_layer(layer):
    return isinstance(layer, SOFTMAX_LAYERS) or getattr(layer, "activation", None) in SOFTMAX_FUNCTIONS


#: a sigmoid output: refused like a softmax, the logits explained after ``remove_sigmoid`` (D22, docs/api.md#targets)
_SIGMOID_FUNCTIONS = (_ACT.sigmoid, _ACT.log_sigmoid)
_SIGMOID_OPERATIONS = ("Sigmoid", "LogSigmoid")


def _is_sigmoid_layer(layer):
    return (getattr(layer, "activation", None) in _SIGMOID_FUNCTIONS
            or (not isinstance(layer, keras.layers.Layer) and type(layer).__name__ in _SIGMOID_OPERATIONS))


def sigmoid_output_layer(model):
    """The layer whose sigmoid produces the model's output (through nested models and Reshape/Flatten layers after
    it), or None."""
    layer = _output_layer(model)
    while isinstance(layer, (keras.layers.Reshape, keras.layers.Flatten)):
        layer = _output_layer_of(layer.input)
    return layer if _is_sigmoid_layer(layer) else None


def check_model(model, view=None, multi=False):
    """Built, one output, no softmax or sigmoid at the output (docs/api.md#model-requirements). ``view`` is the
    model's Functional graph (the model itself, or the view of a subclassed model; None where a subclassed model's
    graph cannot be captured: then only the gradient family runs, on the model itself). ``multi``: several inputs are
    allowed (docs/api.md#multi-input)."""
    if not model.built:
        raise ValueError(f"the Keras model {model.name!r} has not been built: give it a keras.Input or call it "
                         f"once on data before explaining it")
    if view is None:
        return
    if (len(view.inputs) != 1 and not multi) or len(view.outputs) != 1:
        raise ValueError(f"the model has {len(view.inputs)} inputs and {len(view.outputs)} outputs; "
                         f"signxai explains single-input, single-output models")
    layer = _output_layer(view)
    if _is_softmax_layer(layer):  # only a softmax *output*: softmax inside (attention) is no reason to refuse
        raise ValueError(f"layer {layer.name!r} applies a softmax: explanations need logits. Remove it with "
                         f"signxai.utils.utils.remove_softmax(model), which returns a copy")
    sigmoid = sigmoid_output_layer(view)
    if sigmoid is not None:  # a gate inside (squeeze-excitation) is no reason to refuse
        raise ValueError(f"layer {sigmoid.name!r} applies a sigmoid to the model's output: explanations need logits "
                         f"(D22). Remove it with signxai.utils.utils.remove_sigmoid(model), which returns a copy "
                         f"whose output is the logit; explain a probability with a callable target on that copy "
                         f"(docs/api.md#targets)")


def _output_layer(model):
    """The layer that produces a Functional model's output (through nested models)."""
    return _output_layer_of(model.outputs[0])


def _output_layer_of(tensor):
    layer = tensor._keras_history.operation
    while isinstance(layer, keras.Model) and is_graph_model(layer):
        layer = layer.outputs[0]._keras_history.operation
    return layer


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
        config = _wrapped_float64(_deterministic_config(layer, dtype="float64"))
        activation = getattr(layer, "activation", None)
        if getattr(activation, "__name__", None) in _FLOAT64_ACTIVATIONS and activation is getattr(
                _ACT, activation.__name__, None):
            config["activation"] = _FLOAT64_ACTIVATIONS[activation.__name__]
        return _from_config(layer.__class__, config)

    copy = keras.models.clone_model(model, input_tensors=_float64_inputs(model), clone_function=clone_layer)
    for layer in copy._flatten_layers(include_self=False, recursive=True):  # sublayers a custom layer built itself
        activation = getattr(layer, "activation", None)
        name = getattr(activation, "__name__", None)
        if name in _FLOAT64_ACTIVATIONS and activation is getattr(_ACT, name, None):
            layer.activation = _FLOAT64_ACTIVATIONS[name]
    return copy


_LAYER_KEYWORDS = ("name", "trainable", "dtype", "autocast", "activity_regularizer", "input_shape", "input_dim",
                   "batch_input_shape", "batch_size")


def _from_config(cls, config):
    """``cls.from_config(config)``; for a layer whose config does not round-trip (keras_hub's
    ViTPatchingAndEmbedding writes derived values its constructor refuses), again with only the keywords its
    constructor and Keras's Layer take."""
    try:
        return cls.from_config(config)
    except TypeError:
        import inspect
        try:
            parameters = inspect.signature(cls.__init__).parameters
        except (TypeError, ValueError):
            raise
        accepted = {k for k, p in parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        trimmed = {k: v for k, v in config.items() if k in accepted or k in _LAYER_KEYWORDS}
        if trimmed == config:
            raise
        return cls.from_config(trimmed)


def _wrapped_float64(config):
    """A wrapper layer's config (``Bidirectional``, ``TimeDistributed``) with its wrapped layers' configs in float64
    too: they keep their own dtype otherwise, and a float32 inner layer rounds the float64 copy's signal (measured:
    bidirectional LSTM/GRU twins' float64 gradients 1e-7 of the peak apart)."""
    for key in ("layer", "backward_layer"):
        inner = config.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
            inner = dict(inner, config=dict(inner["config"], dtype="float64"))
            for name, value in inner["config"].items():
                if name.endswith("_initializer") and value is not None:
                    inner["config"][name] = "zeros"
            inner["config"] = _wrapped_float64(inner["config"])
            config[key] = inner
    return config


def _float64_inputs(model):
    struct = getattr(model, "_inputs_struct", None)
    if len(model.inputs) > 1 and isinstance(struct, dict):  # built on a dict of Inputs (docs/api.md#multi-input)
        keys = keras.tree.flatten({k: k for k in struct})
        return keras.tree.pack_sequence_as(struct, [keras.Input(shape=t.shape[1:], dtype="float64", name=str(k))
                                                    for t, k in zip(model.inputs, keys)])
    inputs = [keras.Input(shape=t.shape[1:], dtype="float64") for t in model.inputs]
    return inputs[0] if len(inputs) == 1 else inputs


# Every pass runs as a tf.function compiled once per (model, pass, method key, sample shape, dtype) with a dynamic
# batch axis (docs/api.md#compiled-passes); an LRP method key is its rule structure, the numeric rule parameters (ε,
# α, β, μ, std-x factor, Z^B bounds) are a tensor input, so every value of them shares one trace. Measured on the
# VGG16 twin (224×224, batch 1, 2 cores): a compiled LRP-ε pass takes 1.05× the framework's own compiled gradient,
# eagerly 2.8×; the first call (tracing included) is 1.6-2.1× a steady-state call. Setting this to False runs every
# pass eagerly (no tracing; slower steady state).
COMPILE_PASSES = True
# At most this many compiled passes are kept per model (least recently used dropped first): a traced LRP pass holds
# a few MB, and a session of many rule structures (rule maps, catalog names) must not grow without bound.
COMPILED_PER_MODEL = 16


class KerasBackend(Backend):
    """Explains ``keras.Model``s. Results are NumPy arrays in the caller's (channels-last) layout."""

    name = "tensorflow"
    channels_first = False
    ops = OPS
    refuses_before_pass = True

    # --- model handling ---------------------------------------------------------------------------------------
    def __init__(self):
        super().__init__()
        self._views = weakref.WeakKeyDictionary()  # model -> its Functional view, or the CaptureError it raised
        self._unrolled = weakref.WeakKeyDictionary()  # model -> {time steps: graph} (docs/layers.md#recurrent)

    def check(self, model):
        """docs/api.md#model-requirements checks, run once per model (like the captured graph and compiled passes, they
        are cached)."""
        self._cached(self._checked, model, lambda m: check_model(m, self._try_view(m)) or True)

    def check_multi(self, model):
        """The checks of :meth:`check` for a model with several inputs (docs/api.md#multi-input)."""
        check_model(model, self.view(model), multi=True)

    def input_names(self, model):
        """The names of the model's inputs in its input order: the keys of a model built on a dict of inputs, else
        its Input layers' names (docs/api.md#multi-input)."""
        if not model.built:
            return ["input"]  # the single-input checks say what is wrong
        try:
            view = self.view(model)
        except CaptureError:
            shapes = getattr(model, "_build_shapes_dict", None) or {}
            if len(shapes) > 1:
                raise ValueError(f"the subclassed Keras model {model.name!r} takes {len(shapes)} inputs; multi-input "
                                 f"explanations need its layer graph: build it as a Functional model "
                                 f"(docs/api.md#multi-input)") from None
            return list(shapes) or ["input"]
        struct = getattr(view, "_inputs_struct", None)
        if isinstance(struct, dict):
            return [str(k) for k in keras.tree.flatten({k: k for k in struct})]
        return [t._keras_history.operation.name for t in view.inputs]

    def input_ranks(self, model):
        """Per input (in input order), the rank of one sample as the model declares it."""
        return [len(t.shape) - 1 for t in self.view(model).inputs]

    #: token ids are explained also as one input of several (docs/transformers.md#text)
    multi_input_tokens = True
    #: a model whose sequence length is free gets one token view per length (tf_signxai/tokens.py)
    token_views_per_length = True

    def token_view(self, model, ids, position=0):
        """docs/transformers.md#text (signxai/tf_signxai/tokens.py): the view for the model's input ``position``."""
        from signxai.tf_signxai.tokens import token_view
        try:
            functional_model = self.view(model)
        except CaptureError as error:
            if not any(isinstance(layer, keras.layers.Embedding) for layer in unbound(model)._flatten_layers()):
                return None  # integers that are values, not token ids
            raise ValueError(f"x holds integers (token ids); their token view needs the model's layer graph: "
                             f"{error}") from error
        free = len(functional_model.inputs[position].shape) == 2 and functional_model.inputs[position].shape[1] is None
        return token_view(functional_model, position, ids.shape[1] if free else None)

    def capture_bound(self, model):
        return Capture(self.view(model.model), explained=model.position).graph

    def view(self, model):
        """The model's Functional graph (:func:`functional_view`); raises the capture's error where there is none."""
        model = unbound(model)
        if is_graph_model(model):
            return model  # (not cached: a weak cache must not hold its own key)
        view = self._cached(self._views, model, _view_or_error)
        if isinstance(view, CaptureError):
            raise view
        return view

    def _try_view(self, model):
        try:
            return self.view(model)
        except CaptureError:
            return None

    def sample_rank(self, model):
        view = self._try_view(model)
        if view is not None:
            return len(view.inputs[0].shape) - 1
        shapes = list((getattr(model, "_build_shapes_dict", None) or {}).values())
        return len(shapes[0]) - 1 if len(shapes) == 1 else None

    def capture(self, model):
        return Capture(self.view(model)).graph

    def graph_for(self, model, x):
        """The captured graph; for recurrent layers on an input of free length, captured per number of time steps
        of ``x`` (docs/layers.md#recurrent)."""
        graph = self.graph(model)
        if not getattr(graph, "per_shape", False) or len(x.shape) != 3 or x.shape[1] is None:
            return graph
        if isinstance(model, Bound):
            raise ValueError(RECURRENT_MULTI_INPUT)
        steps = int(x.shape[1])
        return self._per_model(self._unrolled, model, steps, lambda: Capture(self.view(model), steps=steps).graph,
                               limit=4)

    def float64_copy(self, model):
        try:
            view = self.view(model)
        except CaptureError as error:
            raise ValueError(f"dtype='float64' needs a float64 copy of the model, built from its layer graph: "
                             f"{error}") from error
        return _float64_copy(view)

    def sync_weights(self, model, copy):
        """The model's current weights, cast exactly, into its float64 copy (one variable at a time; a subclassed
        model's weights in the order of its Functional view, which the copy was cloned from)."""
        for target, source in zip(copy.weights, self.view(model).weights):
            target.assign(tf.cast(source, target.dtype))

    def activation_bytes_per_sample(self, model, sample):
        """Twice the layer outputs of one sample (the tape keeps about each op's input and output), from the
        declared shapes; shapes left open are measured on the captured graph's values for this sample. A subclassed
        model without a Functional view: its input size times its number of layers (an estimate)."""
        view = self._try_view(model)
        if view is None:
            layers = len(list(model._flatten_layers(include_self=False, recursive=True)))
            return 2 * max(1, layers) * int(np.prod(sample.shape[1:])) * sample.dtype.itemsize
        elements = _declared_activation_elements(view)
        if elements is None:
            values = record(self.graph(model), tf.constant(sample))
            elements = sum(int(np.prod(v.shape[1:])) for v in values if isinstance(v, tf.Tensor))
        return 2 * elements * sample.dtype.itemsize

    # --- tensor primitives -------------------------------------------------------------------------------------
    def to_tensor(self, model, x):
        return tf.constant(x)

    def to_numpy(self, t):
        return t.numpy()

    def forward(self, model, x):
        if isinstance(model, Bound):  # the other inputs held fixed (docs/api.md#multi-input)
            base = model.model
            inputs = keras.tree.pack_sequence_as(self.view(base)._inputs_struct,
                                                 model.arguments(x, current_fixed()))
            return base(inputs, training=False)
        return model(x, training=False)

    def tape(self):
        return Tape()

    def record_for_backward(self, graph, x, lrp_head, forward=None):
        return OPS, record(graph, x, forward=None if forward is None else
                           lambda index, node, inputs: forward(OPS, index, node, inputs))

    def one_hot(self, classes, logits, dtype):
        return tf.one_hot(classes, _width(logits), dtype=dtype)

    reduce_sum = staticmethod(tf.reduce_sum)

    def layer_name(self, model, layer):
        return layer if layer is None or isinstance(layer, str) else layer.name

    # --- execution: compiled passes, targets chosen inside them ------------------------------------------------
    # With COMPILE_PASSES on, every pass runs as a tf.function compiled once per (model, pass, method key, sample
    # shape, dtype) with a dynamic batch axis, and always through that function: a traced graph (grappler's fused
    # kernels) differs from eager execution by float32 rounding, so one path for everything keeps repeated calls
    # bit-identical (docs/api.md#model-requirements) whatever the batch size. The functions hold the model only
    # weakly; variables are read at each call, so new weights are used. Targets are resolved inside the pass from
    # its own logits (argmax: lowest index on ties), so no separate logits pass runs. Only a mapping without a
    # value key (the vanished-relevance diagnosis, which inspects tensors in Python) runs eagerly. A Parameterised
    # key (LRP: signxai.core.composite.lrp_key) is cached by its structure; its values enter the pass as one float64
    # vector, split into one tensor per rule parameter and cast to the pass's dtype inside the trace.
    def pass_function(self, model, x, name, key, make_body, takes_targets=True, requested=None):
        if not COMPILE_PASSES:
            key = None
        key = key() if callable(key) else key
        ref = weakref.ref(model)
        make_body = self.bind_body(model, make_body)  # a bound view's body takes its fixed inputs after x
        if key is None:
            return make_body(ref)
        values = ()
        if isinstance(key, Parameterised):  # numeric rule parameters: one tensor input (docs/api.md#compiled-passes)
            key, values = key.structure, key.values
        sample, dtype = tuple(x.shape[1:]), tf.as_dtype(x.dtype)
        fixed = [tf.TensorSpec((None,) + f.shape[1:], tf.as_dtype(f.dtype)) for f in model.fixed] if isinstance(
            model, Bound) else []
        # one compiled pass per kind of target (docs/api.md#targets): its tensors' structure, not their values
        specs = None if requested is None else tuple(
            tf.TensorSpec((None,) + tuple(t.shape[1:]), t.dtype) for t in requested)
        kind = None if specs is None else tuple((tuple(spec.shape[1:]), spec.dtype.name) for spec in specs)
        signature = [tf.TensorSpec((None,) + sample, dtype)] + fixed + ([specs] if specs is not None else [])
        shapes = tuple(np.shape(value) for value in values)
        if values:
            signature.append(tf.TensorSpec((sum(int(np.prod(s)) for s in shapes),), tf.float64))
        # each function is traced once; wrapping the body in its own partial gives it its own retracing counter
        # (TensorFlow keys the counter by code object, and every pass shares make_body's code), so a session of
        # many methods does not log "triggered tf.function retracing" warnings for traces that are not retraces
        function = self._per_model(self._compiled, model, (name, key, sample, dtype.name, kind), lambda: tf.function(
            functools.partial(_split_parameters(make_body(ref), shapes, dtype) if values else make_body(ref)),
            input_signature=signature, autograph=False), limit=COMPILED_PER_MODEL)
        if not values:
            return function
        vector = tf.constant(np.concatenate([np.ravel(value) for value in values]).astype(np.float64))
        return lambda *args: function(*args, vector)

    def requested(self, model, x, targets):
        """The targets as tensors, one structure per kind (docs/api.md#targets): ``(indices, signs)`` with
        :data:`Targets.ARGMAX` where the pass takes the argmax itself, or ``(coefficients,)`` for a callable target
        (differentiated on the outputs of a logits pass)."""
        shape = self.output_shape(model)
        if not targets.resolved and (targets.is_callable or shape is None):
            targets.resolve(self.logits(model, x), self.differentiate_target)  # validated on real outputs
        if targets.is_callable:
            return (tf.constant(targets.weights(len(x), 0), dtype=tf.as_dtype(x.dtype)),)
        indices = targets.requested(len(x), shape)
        return tf.constant(indices), tf.constant(targets.signs, dtype=tf.as_dtype(x.dtype))

    def select(self, outputs, requested):
        """``(C, chosen)`` computed in the pass itself: for a class, signed one-hot rows over the flattened
        outputs, where :data:`Targets.ARGMAX` asks for the argmax (lowest index on ties and the first NaN where
        there is one, ``np.argmax``'s choice); for a callable target its coefficients."""
        shape = tf.shape(outputs)
        flat = tf.reshape(outputs, tf.stack([shape[0], -1]))
        if len(requested) == 1:  # coefficients
            return (tf.reshape(tf.cast(requested[0], outputs.dtype), shape),
                    tf.fill(tf.shape(flat)[:1], tf.constant(-1, tf.int64)))
        indices, signs = requested
        logits = tf.stop_gradient(flat)
        width = tf.shape(logits, out_type=tf.int64)[-1]
        index = tf.range(width, dtype=tf.int64)
        nan = tf.math.is_nan(logits)
        peak = tf.reduce_max(tf.where(nan, tf.constant(-np.inf, logits.dtype), logits), axis=-1, keepdims=True)
        hit = tf.where(tf.reduce_any(nan, axis=-1, keepdims=True), nan, tf.equal(logits, peak))
        argmax = tf.reduce_min(tf.where(hit, index, width), axis=-1)
        chosen = tf.where(indices < 0, argmax, indices)
        weights = tf.one_hot(chosen, _width(flat), dtype=outputs.dtype) * tf.cast(signs, outputs.dtype)[:, None]
        return tf.reshape(weights, shape), chosen

    def differentiate_target(self, function, outputs, like=None):
        y = tf.constant(outputs)
        with tf.GradientTape() as tape:
            tape.watch(y)
            values = function(y)
            if values is None or not hasattr(values, "shape"):
                raise ValueError(f"the target callable returned {type(values).__name__}: it must return a tensor "
                                 f"of one value per sample (docs/api.md#targets)")
            values = tf.convert_to_tensor(values)
            total = tf.reduce_sum(values) if values.dtype.is_floating else None
        gradient = None if total is None else tape.gradient(total, y)
        return values.numpy(), None if gradient is None else tf.convert_to_tensor(gradient).numpy()

    def model_name(self, model):
        return f"the Keras model {unbound(model).name!r}"

    def output_shape(self, model):
        view = self._try_view(model)
        shape = None if view is None else tuple(view.outputs[0].shape[1:])
        return None if shape is None or any(d is None for d in shape) else tuple(int(d) for d in shape)

    def resolved_targets(self, model, x, targets):
        """As the base class, but an argmax comes from the compiled gradient pass that IG/SmoothGrad/VarGrad run
        anyway (a gradient of ``x`` costs a forward and a backward of its samples, and saves tracing a logits
        pass)."""
        targets = Targets.of(targets)
        if not targets.resolved:
            shape = self.output_shape(model)
            if targets.is_callable or shape is None:
                targets.resolve(self.logits(model, x), self.differentiate_target)
            elif targets.is_argmax:
                self.gradients(model, x, targets)
            else:
                targets.requested(len(x), shape)
        return targets


def _split_parameters(body, shapes, dtype):
    """``body`` of a pass whose rule parameters arrive as one float64 vector (its last argument): the body receives
    them as one tensor per slot, shaped ``shapes`` and cast to the pass's dtype (the rounding of a Python number
    converted to that dtype), after its other arguments (docs/api.md#compiled-passes)."""
    sizes = [int(np.prod(shape)) for shape in shapes]

    def run(*args):
        *args, vector = args
        parts = tf.split(tf.cast(vector, dtype), sizes) if len(sizes) > 1 else [tf.cast(vector, dtype)]
        return body(*args, [tf.reshape(part, shape) for part, shape in zip(parts, shapes)])
    return run


def _view_or_error(model):
    try:
        return functional_view(model)
    except CaptureError as error:
        return error


def _width(y):
    return y.shape[-1] if y.shape[-1] is not None else tf.shape(y)[-1]


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
