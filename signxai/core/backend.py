"""What both backends share (docs/extending.md#backend-contract): the passes themselves — gradients, the graph
backward pass of LRP/guided backprop/DeconvNet, Grad-CAM's activations and gradients, target selection by one-hot
rows — written once against a few primitives, plus the per-model caches (captured graph, private float64 copy,
compiled passes, activation sizes) and the chunk size of many-point methods."""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import threading
import weakref
from collections.abc import Mapping
from typing import Any, Callable, ContextManager, Hashable, Optional, Union

import numpy as np

from signxai.core.engine import propagate, record
from signxai.core.graph import Graph
from signxai.core.inputs import Bound, holding, rows
from signxai.core.keys import Parameterised
from signxai.core.ops import Tape, Tensor, TensorOps
from signxai.core.targets import Targets
from signxai.core.verify import differs, first_differing_node, mismatch_error

#: ``make_body(model_ref) -> body``: builds the function of one pass from a weak reference to the model; ``body(x,
#: requested)`` returns ``(*outputs, chosen classes)`` as tensors (``body(x)`` returns the logits for "logits")
MakeBody = Callable[[Callable[[], Any]], Callable[..., Any]]
#: a value key of a pass (hashable), or a function computing it (evaluated only by backends that compile)
PassKey = Union[Hashable, Callable[[], Hashable], None]


class Backend:
    """The shared half of a backend; ``KerasBackend`` and ``TorchBackend`` supply the framework half.

    **Model handling**: ``capture(model) -> Graph``, ``check(model)``, ``sample_rank(model)``,
    ``float64_copy(model)``, ``sync_weights(model, copy)``, ``activation_bytes_per_sample(model, sample)``.

    **Tensor primitives**: ``ops`` (a :class:`signxai.core.ops.TensorOps` for the rules), ``to_tensor(model, x)``
    and ``to_numpy(t)`` (NumPy in and out), ``forward(model, x)`` (the logits), ``tape()`` (a
    :class:`signxai.core.ops.Tape`), ``no_grad()``, ``record_for_backward(graph, x, lrp_head, forward)``,
    ``one_hot(classes, logits, dtype)``, ``reduce_sum(t)``, ``layer_name(model, layer)``, ``array_tensor(array, like)``
    and ``differentiate_target(f, outputs)`` (a callable target's derivative).

    **Execution and targets**: ``pass_function(model, x, name, key, make_body, takes_targets)`` gives the function
    that runs a pass (here: the body itself, run eagerly; TensorFlow compiles it); ``requested(model, x, targets)``
    is what the pass receives about the targets and ``select(outputs, requested)`` the coefficients ``C`` of the
    explained quantity ``q = Σ C ⊙ y`` it takes from its own outputs (here: resolved on the host from those outputs,
    with ``logits_to_numpy``, ``classes_tensor`` and ``array_tensor``).

    Every cache is keyed by the model object itself (never by ``id()``) in a weak dictionary: whatever is cached
    for a model — its captured graph, its float64 copy (and, through the copy, the copy's own caches), its compiled
    passes — is released together with the model. Cached values must therefore not hold the model strongly.
    """

    name = ""
    channels_first = False
    ops: TensorOps
    #: whether :meth:`graph_backward` refuses an unsupported graph before anything runs (a compiling backend, whose
    #: classes are validated before its pass); otherwise after the pass's forward has resolved and validated the
    #: targets on its logits, so that a model whose output is not (N, K) logits says so first
    refuses_before_pass = False

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._graphs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._bound_graphs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {view key: graph}
        self._checked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # models that passed ``check``
        self._float64: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {key: compiled pass}
        self._shapes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {key: node shapes}
        # model -> {(sample shape, dtype): bytes}
        self._activation_bytes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _cached(self, store, model, build):
        with self._lock:
            value = store.get(model)
            if value is None:
                value = store[model] = build(model)
        return value

    def _per_model(self, store, model, key, build, limit: int | None = None):
        """``store[model][key]``, built once (under the lock) by ``build()``; with ``limit``, only the ``limit``
        most recently used keys of a model are kept (the least recently used entry is dropped first). A bound view
        (docs/api.md#multi-input) is stored under its model, its key extended by the view's key."""
        if isinstance(model, Bound):
            model, key = model.model, (model.key, key)
        with self._lock:
            table = store.get(model)
            if table is None:
                table = store[model] = collections.OrderedDict()
            if key in table:
                table.move_to_end(key)
            else:
                table[key] = build()
                if limit is not None and len(table) > limit:
                    table.popitem(last=False)
            return table[key]

    # --- model handling (supplied by the backend) ----------------------------------------------------------------
    def capture(self, model) -> Graph:
        raise NotImplementedError

    def float64_copy(self, model):
        raise NotImplementedError

    def sync_weights(self, model, copy) -> None:
        raise NotImplementedError

    def activation_bytes_per_sample(self, model, sample: np.ndarray) -> int:
        raise NotImplementedError

    def computation(self) -> ContextManager:
        """The context every framework computation runs in."""
        return contextlib.nullcontext()

    def capture_bound(self, model: Bound) -> Graph:
        """The graph of a bound view: node 0 the explained input, the fixed inputs AUX nodes that read
        :func:`signxai.core.inputs.fixed_value` (docs/api.md#multi-input)."""
        raise NotImplementedError

    def graph(self, model) -> Graph:
        if isinstance(model, Bound):
            graph = self._per_model(self._bound_graphs, model, "graph", lambda: _captured_or_error(
                self.capture_bound, model))
            if isinstance(graph, Exception):  # remembered: a model that cannot be captured is not traced again
                raise type(graph)(str(graph))
            return graph
        return self._cached(self._graphs, model, self.capture)

    # --- bound multi-input views (docs/api.md#multi-input) ---------------------------------------------------------
    def fixed_tensors(self, model, index=None) -> list:
        """The fixed inputs of a bound view (rows ``index``, default all) as tensors; none for a model."""
        if not isinstance(model, Bound):
            return []
        return [self.to_tensor(model.model, f if index is None else f[index]) for f in model.fixed]

    def holding(self, model, index=None) -> ContextManager:
        """The context in which an eager computation of a bound view sees its fixed inputs (rows ``index``)."""
        return holding(self.fixed_tensors(model, index)) if isinstance(model, Bound) else contextlib.nullcontext()

    @staticmethod
    def bind_body(model, make_body: MakeBody) -> MakeBody:
        """For a bound view: ``make_body`` whose body takes the fixed tensors after ``x`` and holds them while it
        runs; the body sees the view without values (a cached compiled pass must not keep one call's arrays)."""
        if not isinstance(model, Bound):
            return make_body
        count, canonical = len(model.fixed), model.canonical()

        def make(ref):
            body = make_body(lambda: canonical)

            def bound(x, *args):
                with holding(args[:count]):
                    return body(x, *args[count:])
            return bound
        return make

    def token_view(self, model, ids: np.ndarray):
        """The model's token view (signxai/core/tokens.py, docs/transformers.md#text): a
        :class:`signxai.core.tokens.TokenView`; ValueError where the model does not look its ids up in an
        embedding table. ``ids``: an example int64 batch."""
        raise NotImplementedError

    def graph_for(self, model, x) -> Graph:
        """The captured graph to explain ``x`` (a batch) with; a backend may capture per sample shape."""
        return self.graph(model)

    def model_for(self, model, dtype: str):
        """The model itself for float32; for float64 a private copy carrying the model's current weights."""
        if dtype == "float32":
            return model
        copy = self._cached(self._float64, model, self.float64_copy)
        self.sync_weights(model, copy)
        return copy

    # --- tensor primitives (supplied by the backend) -------------------------------------------------------------
    def to_tensor(self, model, x: np.ndarray) -> Tensor:
        """A NumPy batch as a tensor where the model computes (its device)."""
        raise NotImplementedError

    def to_numpy(self, t: Tensor) -> np.ndarray:
        raise NotImplementedError

    def forward(self, model, x: Tensor) -> Tensor:
        """The model's logits for ``x``, in inference mode."""
        raise NotImplementedError

    def tape(self) -> ContextManager[Tape]:
        raise NotImplementedError

    def no_grad(self) -> ContextManager:
        """A context in which the framework records nothing for autodiff (VJPs inside it still work)."""
        return contextlib.nullcontext()

    def record_for_backward(self, graph: Graph, x: Tensor, lrp_head: bool,
                            forward: Optional[Callable[..., Any]] = None) -> tuple:
        """``(ops, values)``: the tensor ops of one backward pass and the recorded forward values of every node
        (:func:`signxai.core.engine.record`; a backend may record what the pass's VJPs will reuse). ``forward(ops,
        index, node, inputs)``, if given, computes the nodes' values instead of their own forwards."""
        raise NotImplementedError

    def one_hot(self, classes: Tensor, logits: Tensor, dtype: Any) -> Tensor:
        """One-hot rows ``(N, K)`` of the classes, ``K`` the width of ``logits``, in ``dtype``."""
        raise NotImplementedError

    def reduce_sum(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def layer_name(self, model, layer) -> Optional[str]:
        """Grad-CAM's ``layer=`` as a layer name of the captured graph (None: the last convolution)."""
        return layer

    # --- execution and targets ---------------------------------------------------------------------------------
    def pass_function(self, model, x: np.ndarray, name: str, key: PassKey, make_body: MakeBody,
                      takes_targets: bool = True, requested: Any = None) -> Callable[..., Any]:
        """The function that runs pass ``name`` on batches shaped like ``x``. Eager backends run the body itself
        and never evaluate ``key``; a compiling backend caches one compiled function per model, ``name``, ``key``
        (None: run eagerly), sample shape, dtype and kind of target (the structure of ``requested``)."""
        return self.bind_body(model, make_body)(weakref.ref(model))

    def requested(self, model, x: np.ndarray, targets: Targets) -> Any:
        """What a pass receives about the targets: here the :class:`Targets` itself, resolved by :meth:`select`."""
        return targets

    def select(self, outputs: Tensor, requested: Any) -> tuple:
        """``(C, chosen)``: the coefficients ``C`` shaped like the pass's own ``outputs`` (one-hot rows, signed, or a
        callable target's derivative; docs/api.md#targets) and the index chosen per sample, from the outputs of the
        pass's own forward (no separate logits pass). Here resolved on the host (argmax: ``np.argmax``, lowest
        index on ties)."""
        if not requested.resolved:
            requested.resolve(self.logits_to_numpy(outputs), functools.partial(self.differentiate_target,
                                                                                like=outputs))
        n = len(requested)
        weights = requested.weights(n, int(np.prod(tuple(outputs.shape[1:])))).reshape(tuple(outputs.shape))
        return self.array_tensor(weights, outputs), self.classes_tensor(requested.values, outputs)

    def differentiate_target(self, function: Callable[..., Any], outputs: np.ndarray, like: Any = None) -> tuple:
        """``(f(y), ∂Σ_n f(y)_n/∂y)`` as NumPy arrays for a callable target, by the framework's autodiff on a tensor
        of ``outputs`` placed like the tensor ``like`` (the derivative None where ``f`` does not use ``y``)."""
        raise NotImplementedError

    def logits_to_numpy(self, logits: Tensor) -> np.ndarray:
        raise NotImplementedError

    def classes_tensor(self, classes: np.ndarray, like: Tensor) -> Tensor:
        raise NotImplementedError

    def array_tensor(self, array: np.ndarray, like: Tensor) -> Tensor:
        """A NumPy array as a tensor with the dtype and device of ``like``."""
        raise NotImplementedError

    def run_pass(self, model, x: np.ndarray, targets, name: str, key: PassKey, make_body: MakeBody) -> list:
        """Runs ``make_body(model_ref)(x, requested)`` through :meth:`pass_function`, records the classes the pass
        chose in ``targets`` and returns its other outputs as NumPy arrays."""
        targets = Targets.of(targets)
        requested = self.requested(model, x, targets)
        function = self.pass_function(model, x, name, key, make_body, requested=requested)
        *outputs, chosen = function(self.to_tensor(model, x), *self.fixed_tensors(model), requested)
        targets.set(self.to_numpy(chosen))
        return [self.to_numpy(output) for output in outputs]

    def _selected(self, outputs: Tensor, requested: Any) -> tuple:
        """``(q, chosen)``: the explained quantity ``q = Σ_n Σ C_n ⊙ y_n`` (for a class: the sum of each sample's
        target logit) and the indices chosen."""
        weights, chosen = self.select(outputs, requested)
        return self.reduce_sum(outputs * weights), chosen

    # --- the passes ----------------------------------------------------------------------------------------------
    def logits(self, model, x: np.ndarray) -> np.ndarray:
        return self._logits_pass(model, x)

    def _logits_pass(self, model, x: np.ndarray) -> np.ndarray:
        def make_body(ref):
            def logits(x):
                with self.no_grad():
                    return self.forward(ref(), x)
            return logits
        function = self.pass_function(model, x, "logits", (), make_body, takes_targets=False)
        return self.to_numpy(function(self.to_tensor(model, x), *self.fixed_tensors(model)))

    def gradients(self, model, x: np.ndarray, targets) -> np.ndarray:
        """``∂y_c/∂x`` per sample (docs/methods.md#gradient-family)."""
        def make_body(ref):
            def gradients(x, requested):
                with self.tape() as tape:
                    x = tape.watch(x)
                    selected, chosen = self._selected(self.forward(ref(), x), requested)
                return tape.gradient(selected, x), chosen
            return gradients
        return self.run_pass(model, x, targets, "gradients", (), make_body)[0]

    def graph_backward(self, model, x: np.ndarray, targets, mapping_factory, lrp_head: bool,
                       key: PassKey = None) -> np.ndarray:
        """A signal sent from the output through the captured graph with the per-node mapping
        ``mapping_factory(graph)`` (docs/lrp.md#engine): the LRP head ``C ⊙ z`` if ``lrp_head``, else ``C``, with ``C``
        the target's coefficients (``e_c`` for a class, docs/api.md#targets).

        ``key`` identifies the mapping by value (e.g. the parsed method), or is a function returning such a key
        (evaluated only by backends that compile: the others never pay for it); None runs uncached. A
        :class:`~signxai.core.keys.Parameterised` key identifies the mapping by its structure: a compiling backend
        passes its values into the pass as tensors and calls ``mapping_factory(graph, parameters=…)`` with them
        (docs/api.md#compiled-passes)."""
        graph = self.graph_for(model, x)
        if self.refuses_before_pass:
            graph.check_supported(graph.output)

        def pass_key():
            value = key() if callable(key) else key
            if isinstance(value, Parameterised):  # numeric parameters as tensor inputs (docs/api.md#compiled-passes)
                frozen = freeze(value.structure)
                return None if frozen is None else Parameterised((frozen, lrp_head), value.values)
            frozen = None if value is None else freeze(value)
            return None if frozen is None else (frozen, lrp_head)

        def make_body(ref):
            def backward(x, requested, parameters=None):
                graph = self.graph_for(ref(), x)
                # the mapping of a pass compiled with its rule parameters as tensors (Parameterised key) reads them
                factory = mapping_factory if parameters is None else functools.partial(mapping_factory,
                                                                                       parameters=parameters)
                # a mapping may compute some layers' outputs itself (Rule.forward): built before the forward where
                # the graph is supported, else after the checks below, which then raise first as before
                mapping = factory(graph) if graph.is_supported(graph.output) else None
                ops, values = self.record_for_backward(graph, x, lrp_head, getattr(mapping, "forward", None))
                y = values[graph.output]
                weights, chosen = self.select(y, requested)  # C = ∂q/∂y (docs/api.md#targets)
                graph.check_supported(graph.output)  # before any relevance is computed
                mapping = factory(graph) if mapping is None else mapping
                start = graph.strip_trailing_activations(graph.output) if lrp_head else graph.output
                signal = values[start] * weights if lrp_head else weights  # the head: C ⊙ z, or C
                with self.no_grad():
                    relevance = propagate(ops, graph, values, start, signal, mapping)
                return relevance, y, chosen
            return backward
        targets = Targets.of(targets)
        relevance, captured = self.run_pass(model, x, targets, "graph_backward", pass_key, make_body)
        if lrp_head:
            targets.check_linear(x.dtype)  # a callable target's LRP head C ⊙ z needs a linear f
        self.verify_capture(model, x, captured)
        return relevance

    def cam_activations(self, model, x: np.ndarray, targets, layer) -> tuple:
        """Grad-CAM's layer output ``A`` and ``∂y_c/∂A``, both channels-last (docs/methods.md#grad-cam)."""
        graph = self.graph_for(model, x)
        name = self.layer_name(model, layer)
        index = graph.cam_node(name, None if name is not None else self.node_shapes(model, graph, x))

        def make_body(ref):
            def cam(x, requested):
                graph = self.graph_for(ref(), x)
                with self.tape() as tape:
                    values = record(graph, x, on_value=lambda i, v: tape.watch(v) if i == index else v)
                    selected, chosen = self._selected(values[graph.output], requested)
                return values[index], tape.gradient(selected, values[index]), values[graph.output], chosen
            return cam
        activation, gradient, captured = self.run_pass(model, x, targets, "cam_activations", index, make_body)
        self.verify_capture(model, x, captured)
        if self.channels_first:
            activation, gradient = np.moveaxis(activation, 1, -1), np.moveaxis(gradient, 1, -1)
        return activation, gradient

    def node_shapes(self, model, graph: Graph, x: np.ndarray) -> list:
        """The per-sample output shape of every node of ``graph`` for samples shaped like ``x``, channels-last (one
        sample recorded once per model, graph and sample shape)."""
        key = (id(graph), tuple(x.shape[1:]), str(x.dtype))

        def build():
            with self.computation(), self.no_grad(), self.holding(model, slice(0, 1)):
                values = record(graph, self.to_tensor(model, x[:1]))
            shapes = [tuple(v.shape[1:]) if hasattr(v, "shape") else None for v in values]
            if self.channels_first:
                shapes = [s[1:] + s[:1] if s is not None and len(s) > 1 else s for s in shapes]
            return shapes
        return self._per_model(self._shapes, model, key, build, limit=8)

    # --- the capture is the model (docs/api.md#verified-capture) -----------------------------------------------
    def verify_capture(self, model, x: np.ndarray, captured: np.ndarray) -> None:
        """Raises :class:`signxai.core.verify.CaptureMismatch` unless the captured graph's logits ``captured`` (from
        the pass that computed the maps) equal the model's own logits on every sample of ``x`` (SPEC §9 gate 4)."""
        real = self.model_output(model, x)
        bad = np.flatnonzero(differs(captured, real, x.dtype))
        if len(bad) == 0:
            return
        node = self.first_differing_node(rows(model, bad[:1]), x[bad[:1]])
        raise mismatch_error(self.model_name(model), bad.tolist(), node, np.asarray(captured)[bad[0]],
                             np.asarray(real)[bad[0]])

    def model_output(self, model, x: np.ndarray) -> np.ndarray:
        """The model's own logits for gate 4 (the same pass as :meth:`logits`; targets never come from it)."""
        return self._logits_pass(model, x)

    def first_differing_node(self, model, x: np.ndarray):
        """The first captured node whose replay differs from the framework's own layer on the same inputs."""
        graph = self.graph_for(model, x)
        with self.computation(), self.reference_mode(model), self.no_grad(), self.holding(model):
            values = record(graph, self.to_tensor(model, x))
            return first_differing_node(graph, values, self.to_numpy, x.dtype)

    def reference_mode(self, model) -> ContextManager:
        """The context in which the framework's own layers compute their inference form."""
        return contextlib.nullcontext()

    def model_name(self, model) -> str:
        return type(model).__name__

    # --- targets -----------------------------------------------------------------------------------------------
    def output_shape(self, model) -> Optional[tuple]:
        """The per-sample shape of the model's output, when the model declares it without a forward pass (else
        None)."""
        return None

    def resolved_targets(self, model, x: np.ndarray, targets) -> Targets:
        """The targets of ``x`` resolved; a logits pass runs only for the argmax, a callable target, or where the
        output shape is not declared. For the methods whose own passes run on other points than ``x`` (IG,
        SmoothGrad, VarGrad: the targets are fixed at ``x``, D4)."""
        targets = Targets.of(targets)
        if not targets.resolved:
            shape = None if targets.is_argmax or targets.is_callable else self.output_shape(model)
            if shape is not None:
                targets.requested(len(x), shape)
            else:
                targets.resolve(self.logits(model, x), functools.partial(
                    self.differentiate_target, like=self.to_tensor(model, x[:1])))
        return targets

    # --- chunking ------------------------------------------------------------------------------------------------
    def activation_bytes(self, model, x: np.ndarray) -> int:
        """Bytes a gradient pass needs per sample of ``x``'s shape, estimated by the backend from the activations of
        one sample (measured once per model and sample shape)."""
        key = (tuple(x.shape[1:]), str(x.dtype))
        with self._lock:
            owner, stored = (model.model, (model.key, key)) if isinstance(model, Bound) else (model, key)
            cached = self._activation_bytes.get(owner, {}).get(stored)
        if cached is None:
            with self.holding(model, slice(0, 1)):
                cached = max(1, int(self.activation_bytes_per_sample(rows(model, slice(0, 1)), x[:1])))
            self._per_model(self._activation_bytes, model, key, lambda: cached)
        return cached

    def chunk_size(self, model, x: np.ndarray, budget: int) -> int:
        """Samples per gradient pass so that the pass's activations stay within ``budget`` bytes (at least 1)."""
        return max(1, int(budget // self.activation_bytes(model, x)))


def _captured_or_error(capture, model):
    """``capture(model)``, or a copy of its ValueError without traceback (whose frames would hold the model)."""
    try:
        return capture(model)
    except ValueError as error:
        try:
            return type(error)(str(error))
        except Exception:
            raise error from None


def freeze(value: Any) -> Optional[tuple]:
    """A hashable key that identifies ``value`` (a parsed method, its parameters) by value, or None when some part
    has no value identity (then the caller must not cache by it)."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return (type(value).__name__, value)
    if isinstance(value, np.generic):
        return ("np", value.dtype.str, value.item())
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        parts = [(f.name, freeze(getattr(value, f.name))) for f in dataclasses.fields(value)]
        return None if any(p is None for _, p in parts) else (type(value).__qualname__, tuple(parts))
    if isinstance(value, Mapping):
        items = [(freeze(k), freeze(v)) for k, v in value.items()]
        if any(k is None or v is None for k, v in items):
            return None
        return ("map", tuple(sorted(items, key=repr)))
    if isinstance(value, (tuple, list)):
        elements = [freeze(v) for v in value]
        return None if any(p is None for p in elements) else (type(value).__name__, tuple(elements))
    return None
