"""The PyTorch backend (docs/extending.md#backend-contract): model checks, the float64 copy, eval-mode handling
for untraceable models and the tensor primitives the shared passes of :class:`signxai.core.backend.Backend` use.

The package is laid out like ``signxai/tf_signxai``: ``ops.py`` (tensor ops and tape), ``layer_table.py`` (modules,
functions and tensor methods → node kinds, as data), ``capture.py`` (graph capture with ``torch.fx``),
``backend.py`` (this module). The pure-gradient methods on models that cannot be traced switch the model to eval mode
under a per-model reference count and restore every flag.
"""
from __future__ import annotations

import contextlib
import copy
import threading
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from signxai.core import graph as g
from signxai.core.backend import Backend
from signxai.core.inputs import RECURRENT_MULTI_INPUT, Bound, current_fixed, unbound
from signxai.core.outputs import select_output
from signxai.torch_signxai.capture import (Capture, CaptureError, TraceError, _softmax_error,  # noqa: F401
                                          required_inputs, trace)
from signxai.torch_signxai.layer_table import BATCHNORM, CONV, SOFTMAX_LAYERS
from signxai.torch_signxai.ops import OPS, RecordedOps, Tape, TensorOps, _is_float_tensor  # noqa: F401

_Capture, _RecordedOps = Capture, RecordedOps  # their earlier names
# The node kinds whose own forward the default LRP rules differentiate (re-indexing layers, average pooling).
_VJP_KINDS = (g.REINDEX, g.AVGPOOL)


class _EvalMode:
    """Puts a model in eval mode while at least one call uses it; restores every module's flag afterwards."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = weakref.WeakKeyDictionary()

    @contextlib.contextmanager
    def __call__(self, model):
        with self._lock:
            count, flags = self._users.get(model, (0, None))
            if count == 0:
                flags = [(m, m.training) for m in model.modules()]
                model.eval()
            self._users[model] = (count + 1, flags)
        try:
            yield
        finally:
            with self._lock:
                count, flags = self._users[model]
                if count == 1:
                    for module, training in flags:
                        module.training = training
                    del self._users[model]
                else:
                    self._users[model] = (count - 1, flags)


class TorchBackend(Backend):
    """Explains ``torch.nn.Module``s. Results are NumPy arrays in the caller's (channels-first) layout."""

    name = "pytorch"
    channels_first = True
    ops = OPS

    def __init__(self):
        super().__init__()
        self._eval_mode = _EvalMode()
        self._untraceable = weakref.WeakKeyDictionary()
        self._exported = weakref.WeakKeyDictionary()  # model -> {(sample shape, dtype): graph captured by export}

    # --- model handling ---------------------------------------------------------------------------------------
    def check(self, model):
        """docs/api.md#model-requirements checks, run once per model (like the captured graph they go with, they are
        cached)."""
        self._cached(self._checked, model, self._check)

    def _check(self, model):
        required = required_inputs(model)
        if len(required) > 1:
            raise ValueError(f"the model's forward takes {len(required)} required inputs {required}; signxai explains "
                             f"single-input models (parameters with defaults do not count): wrap the model so that "
                             f"the other inputs are held fixed")
        for path, module in model.named_modules():
            if isinstance(module, BATCHNORM) and not module.track_running_stats:
                raise ValueError(f"BatchNorm module {path!r} has track_running_stats=False: it has no running "
                                 f"statistics, so its inference-mode output is undefined")
        graph = self._try_graph(model)
        if graph is not None and graph.nodes[graph.output].layer_type in SOFTMAX_NAMES:
            raise _softmax_error(graph.nodes[graph.output].name)  # only a softmax *output* is refused
        sigmoid = sigmoid_output_node(graph) if graph is not None else None
        if sigmoid is not None:  # a gate inside (squeeze-excitation) is no reason to refuse
            raise _sigmoid_error(graph.nodes[sigmoid].name)
        if graph is None:  # not captured: find a softmax module whose output is the model's output
            _refuse_softmax_output(model, self._eval_mode)
            last = list(model.named_modules())[-1]
            if isinstance(last[1], (nn.Sigmoid, nn.LogSigmoid)):
                raise _sigmoid_error(last[0])  # the last registered module is a sigmoid: a multi-label head
        return True

    def input_names(self, model):
        """The names of the model's inputs: its forward's required parameters (docs/api.md#multi-input)."""
        return required_inputs(model)

    def input_ranks(self, model):
        """Per input, the rank of one sample where the model declares it: PyTorch modules declare none."""
        return [None] * len(self.input_names(model))

    def check_multi(self, model):
        """The checks of :meth:`check` that apply to a model with several inputs (its softmax output is found by
        module; its graph is captured per explained input)."""
        for path, module in model.named_modules():
            if isinstance(module, BATCHNORM) and not module.track_running_stats:
                raise ValueError(f"BatchNorm module {path!r} has track_running_stats=False: it has no running "
                                 f"statistics, so its inference-mode output is undefined")
        _refuse_softmax_output(model, self._eval_mode)

    def token_view(self, model, ids):
        """docs/transformers.md#text (signxai/torch_signxai/tokens.py)."""
        from signxai.torch_signxai.tokens import token_view
        return token_view(model, ids, self._eval_mode)

    def capture_bound(self, model):
        """The torch.fx capture of a multi-input model with input ``model.position`` explained (no torch.export
        fallback: docs/api.md#multi-input)."""
        try:
            return Capture(model.model, self._eval_mode, explained=model.position).graph
        except CaptureError:
            raise
        except Exception as error:
            raise CaptureError(f"the torch.fx capture of the multi-input model failed ({type(error).__name__}: "
                               f"{error}); the rule-based methods need it, the gradient family runs on the model "
                               f"itself") from error

    def computation(self):
        """Autograd stays available even when the caller is inside ``torch.inference_mode()``."""
        return torch.inference_mode(False)

    def _try_graph(self, model):
        """The captured graph, or None for a model that cannot be captured (remembered: it is not captured again;
        the rule-based methods then raise the capture's own error, the gradient family runs on the model)."""
        if model in self._untraceable:
            return None
        try:
            return self.graph(model)
        except (TraceError, CaptureError) as error:
            with self._lock:
                # a copy without traceback or cause: their frames would hold the model (the key) strongly
                self._untraceable[model] = type(error)(str(error))
            return None

    def graph_for(self, model, x):
        """The torch.fx capture where the model can be traced symbolically; else a non-strict torch.export capture
        of the model on ``x`` (per sample shape and dtype, dynamic batch axis; docs/layers.md#export-capture)."""
        if isinstance(model, Bound):
            if not getattr(model.model, "export_capture", False):
                graph = self.graph(model)
            else:
                try:  # a token view (docs/transformers.md#text): torch.fx, else torch.export on (vectors, ids)
                    graph = self.graph(model)
                except TraceError:
                    graph = self._exported_token_view(model, x)
            if getattr(graph, "per_shape", False):
                raise ValueError(RECURRENT_MULTI_INPUT)
            return graph
        graph = self._try_graph(model)
        if graph is not None and getattr(graph, "per_shape", False):  # recurrent modules: unrolled per time steps
            def unrolled():
                example = torch.as_tensor(x[:1], device=self._device(model))
                return Capture(model, self._eval_mode, sample=example.detach()).graph
            key = ("unrolled", tuple(x.shape[1:]), str(x.dtype).replace("torch.", ""))
            return self._per_model(self._exported, model, key, unrolled, limit=4)
        if graph is not None:
            return graph
        error = self._untraceable[model]
        if not isinstance(error, TraceError):  # e.g. several required inputs: torch.export cannot help either
            raise error
        key = (tuple(x.shape[1:]), str(x.dtype).replace("torch.", ""))

        def build():
            example = torch.as_tensor(x, device=self._device(model))
            example = example if len(example) > 1 else torch.cat([example, example])  # export specialises 1
            return Capture(model, self._eval_mode, example=example.detach()).graph
        return self._per_model(self._exported, model, key, build, limit=4)

    def _exported_token_view(self, model, x):
        """The non-strict torch.export capture of a token view on ``x`` and its held-fixed ids (per sample shape and
        dtype, dynamic batch axis; docs/transformers.md#text)."""
        key = ("tokens", tuple(x.shape[1:]), str(x.dtype).replace("torch.", ""))

        def build():
            device = self._device(model)
            examples = [torch.as_tensor(x, device=device)] + [torch.as_tensor(f, device=device) for f in model.fixed]
            examples = [e if len(e) > 1 else torch.cat([e, e]) for e in examples]  # export specialises 1
            return Capture(model.model, self._eval_mode, example=tuple(e.detach() for e in examples),
                           explained=model.position).graph
        return self._per_model(self._exported, model, key, build, limit=4)

    def sample_rank(self, model):
        """k+1 if the first kernel module is a k-d convolution (docs/api.md#batch-axis), else None
        (batched unless 1-D)."""
        graph = self._try_graph(model)
        if graph is not None:
            first = next((n.kernel.spatial_rank for n in graph.nodes if n.kind == g.KERNEL), 0)
        else:
            kernel = next((m for m in model.modules() if isinstance(m, (nn.Linear, *CONV))), None)
            first = len(kernel.kernel_size) if isinstance(kernel, CONV) else 0
        return first + 1 if first else None

    def capture(self, model):
        try:
            return Capture(model, self._eval_mode).graph
        except CaptureError:
            raise
        except Exception as error:  # replaying a traced graph may fail in many ways: torch.export may still succeed
            raise TraceError(f"the torch.fx capture of the model failed ({type(error).__name__}: {error})") from error

    @staticmethod
    def float64_copy(model):
        """A deep copy in float64. Floating parameters and buffers are converted while copying, so no second
        float32 copy of the weights exists even transiently."""
        memo = {}
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point() and id(tensor) not in memo:
                converted = tensor.detach().to(torch.float64)
                if isinstance(tensor, nn.Parameter):
                    converted = nn.Parameter(converted, requires_grad=tensor.requires_grad)
                memo[id(tensor)] = converted
        return copy.deepcopy(model, memo).to(torch.float64)

    @staticmethod
    def sync_weights(model, copy_):
        with torch.no_grad():
            copy_.load_state_dict(model.state_dict())

    def activation_bytes_per_sample(self, model, sample):
        """Twice what autograd saves for the backward pass of one sample (parameters excluded), plus the logits:
        the backward pass's gradient buffers and convolution workspaces are of the same order (measured on VGG16:
        a chunk's peak is about 2.2× its saved tensors in float64)."""
        x = self.to_tensor(model, sample).contiguous().requires_grad_(True)  # user forwards may call .view()
        base = unbound(model)
        weights = {t.untyped_storage().data_ptr() for t in [*base.parameters(), *base.buffers()]}
        saved = {}

        def pack(t):
            storage = t.untyped_storage()
            if storage.data_ptr() not in weights:
                saved[storage.data_ptr()] = storage.nbytes()
            return t
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = self.forward(model, x)
        return 2 * sum(saved.values()) + y.numel() * y.element_size()

    # --- tensor primitives (passes run eagerly; targets are resolved from each pass's own logits) ---------------
    def _device(self, model):
        parameter = next(iter(unbound(model).parameters()), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    def to_tensor(self, model, x):
        return torch.as_tensor(x, device=self._device(model))

    def to_numpy(self, t):
        return t.detach().cpu().numpy()

    def forward(self, model, x):
        """The model itself in eval mode (every module's flag restored afterwards), its logits selected from a
        ``ModelOutput``, tuple or dict (docs/api.md#model-outputs); never a replay of the captured graph (D21)."""
        if isinstance(model, Bound):  # the other inputs held fixed (docs/api.md#multi-input)
            base = model.model
            with self._eval_mode(base):
                return select_output(base(*model.arguments(x, current_fixed())), _is_tensor)
        with self._eval_mode(model):
            return select_output(model(x), _is_tensor)

    def model_name(self, model):
        return f"the PyTorch model {type(unbound(model)).__name__}"

    def reference_mode(self, model):
        return self._eval_mode(unbound(model))

    def tape(self):
        return Tape()

    def no_grad(self):
        return torch.no_grad()

    def record_for_backward(self, graph, x, lrp_head, forward=None):
        """LRP takes VJPs of re-indexing and pooling layers, guided backprop of every layer: their autograd graphs
        are recorded in the forward pass and reused (:class:`RecordedOps`)."""
        ops = RecordedOps()
        with torch.no_grad():
            values = ops.record(graph, x, _VJP_KINDS if lrp_head else None, forward)
        return ops, values

    def one_hot(self, classes, logits, dtype):
        return F.one_hot(classes, logits.shape[-1]).to(dtype)

    @staticmethod
    def reduce_sum(t):
        return t.sum()

    def layer_name(self, model, layer):
        if layer is None or isinstance(layer, str):
            return layer
        name = next((name for name, m in unbound(model).named_modules() if m is layer), None)
        if name is None:
            raise ValueError("the Grad-CAM layer module is not part of the model")
        return name

    def logits_to_numpy(self, logits):
        logits = logits.detach()
        return (logits if logits.dtype in (torch.float32, torch.float64) else logits.float()).cpu().numpy()

    def classes_tensor(self, classes, like):
        return torch.as_tensor(classes, device=like.device)

    def array_tensor(self, array, like):
        return torch.as_tensor(array, dtype=like.dtype, device=like.device)

    def differentiate_target(self, function, outputs, like=None):
        y = torch.tensor(outputs, device=None if like is None else like.device, requires_grad=True)
        with torch.enable_grad():
            values = function(y)
        if not isinstance(values, torch.Tensor):
            raise ValueError(f"the target callable returned {type(values).__name__}: it must return a tensor of one "
                             f"value per sample (docs/api.md#targets)")
        gradient = None
        if values.requires_grad:
            (gradient,) = torch.autograd.grad(values.sum(), y, allow_unused=True)
        return (values.detach().cpu().numpy(),
                None if gradient is None else gradient.detach().cpu().numpy())


def _is_tensor(value):
    return isinstance(value, torch.Tensor)


SOFTMAX_NAMES = tuple(t.__name__ for t in SOFTMAX_LAYERS) + ("softmax", "log_softmax", "softmin", "_softmax",
                                                             "_log_softmax")


#: a sigmoid output: refused like a softmax, the logits explained after ``remove_sigmoid`` (D22, docs/api.md#targets)
SIGMOID_NAMES = ("Sigmoid", "LogSigmoid", "sigmoid", "sigmoid_", "logsigmoid", "log_sigmoid", "log_sigmoid_forward")


def sigmoid_output_node(graph):
    """The index of the sigmoid node that produces the captured graph's output (walking back over re-indexing nodes
    with one tensor parent: ``sigmoid(fc(x)).squeeze(1)``), or None."""
    index = graph.output
    while True:
        node = graph.nodes[index]
        if node.layer_type in SIGMOID_NAMES and node.kind == g.ACTIVATION:
            return index
        parents = [p for p in node.parents if graph.nodes[p].kind != g.AUX]
        if node.kind != g.REINDEX or len(parents) != 1:
            return None
        index = parents[0]


def _sigmoid_error(where):
    return ValueError(f"{where!r} applies a sigmoid to the model's output: explanations need logits (D22). Remove it "
                      f"with signxai.torch_signxai.utils.remove_sigmoid(model), which returns a copy whose output is "
                      f"the logit; explain a probability with a callable target on that copy (docs/api.md#targets)")


def _refuse_softmax_output(model, eval_mode):
    """Raises the softmax error if a softmax module produces the model's output (for models without a capture; the
    check runs the model once on nothing: it only inspects which module returned the output object)."""
    softmax = [(path, m) for path, m in model.named_modules() if isinstance(m, SOFTMAX_LAYERS)]
    if softmax and softmax[-1][0] == list(dict(model.named_modules()))[-1]:
        raise _softmax_error(softmax[-1][0])  # the last registered module is a softmax: a classifier head


BACKEND = TorchBackend()
