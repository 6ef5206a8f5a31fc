"""Keras 3 → ONNX (tf2onnx) → PyTorch (onnx2torch), then restructured so that an explainer sees kernel layers.

onnx2torch is numerically exact but not structurally faithful (NOTES.md): Dense becomes ``MatMul`` + ``Add``, a
convolution's bias may be a separate ``Add``, and Flatten/Squeeze/Transpose become onnx2torch modules or
Shape/Gather/Concat/Reshape chains that ``torch.fx.symbolic_trace`` cannot trace. The post-processing here rewrites
the ``fx.GraphModule``:

* ``MatMul(x, W)`` [+ ``Add(b)``] with constant ``W``, ``b`` → ``nn.Linear``;
* ``nn.Conv*d`` [→ squeeze/reshape keeping batch and channel axes] → ``Add(b)`` with a per-channel constant → the
  conv with that bias;
* Reshape/Flatten/Squeeze/Unsqueeze keeping the batch axis → ``reshape``/``torch.flatten`` (the shape chains feeding
  them disappear), Transpose → ``permute``, GlobalAveragePool → ``nn.AdaptiveAvgPool*d(1)``, ``Add``/``Concat`` of
  model tensors → ``+``/``torch.cat``;
* a ``Conv2d`` over a height-1 axis (tf2onnx's form of a Keras Conv1D) → ``nn.Conv1d``.

``convert_tf_to_torch_via_onnx`` returns a module in the PyTorch layout (channels-first), like the direct converter.

Ops without such a rewrite stay onnx2torch modules (the model still runs; rule-based explainers reject them).
Import torch (or onnx2torch) before TensorFlow where the CUDA build's ``triton`` is installed (NOTES.md).
"""
from __future__ import annotations

import copy
import functools
import operator

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from signxai._keras_torch import channels_last_dims, dense_kernel_to_torch, unique_name

__all__ = ["convert_tf_to_torch_via_onnx", "convert_onnx_to_torch"]

_BATCH = 3  # batch size of the shape-propagation run (the rewrites check that this axis is kept)


def convert_tf_to_torch_via_onnx(keras_model, input_shape=None, opset: int = 17,
                                 channels_first: bool = True) -> fx.GraphModule:
    """An ``fx.GraphModule`` computing ``keras_model`` via ONNX, with ``nn.Linear``/``nn.Conv*d`` kernel layers.

    **Layout.** With ``channels_first=True`` (default) the module takes the PyTorch layout, like every PyTorch model
    in signxai (docs/decisions.md): the Keras input with its channel axis moved to position 1 (``(N, C, H, W)`` for a
    Keras ``(N, H, W, C)``; a per-sample rank-1 input keeps its shape), as the twin from ``convert_tf_to_torch_direct``
    does. A ``permute`` to the Keras layout goes in front of the graph; where tf2onnx's own NHWC → NCHW transpose
    follows it, the two cancel and both disappear. ``channels_first=False`` gives a module taking the Keras layout
    (explanations then come out channels-last, but the noise of SmoothGrad/VarGrad/``random_uniform`` is then drawn
    in a non-canonical layout and differs from the Keras model's). The output is the Keras output either way.

    ``input_shape``: the per-sample Keras input shape; needed only where the model's input shape has unknown axes.
    The Keras model is not modified.
    """
    import tensorflow as tf
    import tf2onnx

    shape = tuple(input_shape or keras_model.input_shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"input shape {shape} has unknown axes; pass input_shape")
    dtype = keras_model.inputs[0].dtype
    signature = (tf.TensorSpec((None, *shape), dtype, name="input"),)
    proto, _ = tf2onnx.convert.from_function(tf.function(lambda x: keras_model(x, training=False)),
                                             input_signature=signature, opset=opset)
    module = convert_onnx_to_torch(proto, shape, dtype=getattr(torch, str(dtype)))
    return _take_channels_first(module, len(shape) + 1) if channels_first else module


def convert_onnx_to_torch(onnx_model, input_shape, dtype=torch.float32) -> fx.GraphModule:
    """onnx2torch's conversion of ``onnx_model`` (a ``ModelProto`` or a file path), restructured as described in the
    module docstring. It takes the ONNX model's own input layout; ``input_shape`` is the per-sample input shape."""
    import onnx2torch

    example = torch.zeros((_BATCH, *input_shape), dtype=dtype)
    module = _restructure(onnx2torch.convert(onnx_model), example)
    return (_conv1d(module, example) if example.dim() == 3 else module).eval()


def _take_channels_first(gm: fx.GraphModule, rank: int) -> fx.GraphModule:
    """Put a permute (channels-first → channels-last) in front of ``gm``'s input; drop it together with a directly
    following inverse permute."""
    if rank < 3:
        return gm
    graph = gm.graph
    (placeholder,) = [n for n in graph.nodes if n.op == "placeholder"]
    to_last = channels_last_dims(rank - 1)
    with graph.inserting_after(placeholder):
        permute = graph.call_method("permute", (placeholder, *to_last))
    placeholder.replace_all_uses_with(permute, delete_user_cb=lambda user: user is not permute)
    (user, *others) = permute.users
    if not others and user.op == "call_method" and user.target == "permute" \
            and [to_last[d] for d in user.args[1:]] == list(range(rank)):
        user.replace_all_uses_with(placeholder)
        graph.erase_node(user)
        graph.erase_node(permute)
    graph.lint()
    gm.recompile()
    return gm


def _restructure(gm: fx.GraphModule, example: torch.Tensor) -> fx.GraphModule:
    """Rewrite onnx2torch's graph as described in the module docstring (numerically identical)."""
    ShapeProp(gm).propagate(example)
    rewriter = _Rewriter(gm)
    for node in gm.graph.nodes:
        if node not in rewriter.env:
            rewriter.env[node] = rewriter.rewrite(node)
    result = fx.GraphModule(gm, rewriter.graph, class_name="OnnxConvertedModel")
    result.graph.eliminate_dead_code()
    result.graph.lint()
    result.recompile()
    result.delete_all_unused_submodules()
    return result


def _conv1d(gm: fx.GraphModule, example: torch.Tensor) -> fx.GraphModule:
    """tf2onnx writes a Keras Conv1D as a ``Conv2d`` over a height-1 axis. Make each such conv an ``nn.Conv1d``
    between ``squeeze(2)`` and ``unsqueeze(2)`` (dropped where tf2onnx's squeeze back follows), so that the module
    reads as the 1-D network it is: the explainer infers the per-sample input rank from the first convolution
    (docs/api.md#batch-axis), and Grad-CAM folds the activation that follows the last conv
    (docs/decisions.md#normalisations). Only for 3-D inputs."""
    ShapeProp(gm).propagate(example)
    graph = gm.graph
    for node in list(graph.nodes):
        conv = gm.get_submodule(node.target) if node.op == "call_module" else None
        if type(conv) is not nn.Conv2d or isinstance(conv.padding, str) or conv.padding_mode != "zeros" \
                or (conv.kernel_size[0], conv.stride[0], conv.dilation[0], conv.padding[0]) != (1, 1, 1, 0) \
                or node.args[0].meta["tensor_meta"].shape[2] != 1:
            continue
        conv1d = nn.Conv1d(conv.in_channels, conv.out_channels, conv.kernel_size[1], conv.stride[1], conv.padding[1],
                           conv.dilation[1], conv.groups, conv.bias is not None, dtype=conv.weight.dtype)
        conv1d.weight = nn.Parameter(conv.weight.detach()[:, :, 0].clone())
        if conv.bias is not None:
            conv1d.bias = nn.Parameter(conv.bias.detach().clone())
        gm.add_submodule(node.target, conv1d)
        with graph.inserting_before(node):
            node.args = (graph.call_method("squeeze", (node.args[0], 2)),)
        squeezed_shape = torch.Size(s for i, s in enumerate(node.meta["tensor_meta"].shape) if i != 2)
        (user, *others) = node.users
        if not others and user.op == "call_method" and user.target in ("reshape", "view", "squeeze") \
                and user.meta.get("tensor_meta") and user.meta["tensor_meta"].shape == squeezed_shape:
            user.replace_all_uses_with(node)  # tf2onnx's squeeze back to 1-D: gone (keeps activation folding)
            graph.erase_node(user)
            continue
        with graph.inserting_after(node):
            unsqueezed = graph.call_method("unsqueeze", (node, 2))
        node.replace_all_uses_with(unsqueezed, delete_user_cb=lambda user, new=unsqueezed: user is not new)
    graph.lint()
    gm.recompile()
    return gm


def _scope(onnx_name):
    """``model/layer/Op`` → ``model/layer``: the Keras layer an ONNX node came from."""
    return onnx_name.rsplit("/", 1)[0]


class _Rewriter:
    def __init__(self, gm):
        self.gm = gm
        self.graph = fx.Graph()
        self.env = {}  # old node → new node

    # --------------------------------------------------------------------------------------------------- helpers
    def constant(self, node):
        """The value of an input-independent ``get_attr`` node, else None."""
        if isinstance(node, fx.Node) and node.op == "get_attr":
            return functools.reduce(getattr, node.target.split("."), self.gm)
        return None

    def module(self, node):
        return self.gm.get_submodule(node.target) if node.op == "call_module" else None

    @staticmethod
    def shape(node):
        return tuple(node.meta["tensor_meta"].shape)

    def is_add(self, node):
        module = self.module(node)
        return type(module).__name__ == "OnnxBinaryMathOperation" and module.math_op_function is torch.add

    def split_constant(self, node):
        """``(tensor argument, constant)`` of a binary node with exactly one constant operand, else None."""
        first, second = node.args
        if self.constant(second) is not None and self.constant(first) is None:
            return first, self.constant(second)
        if self.constant(first) is not None and self.constant(second) is None:
            return second, self.constant(first)
        return None

    def sole_user(self, node):
        users = list(node.users)
        return users[0] if len(users) == 1 else None

    def keeps_batch(self, node):
        """Whether a reshape-like node maps per sample (keeps the batch axis in front)."""
        arg = node.args[0]
        return (isinstance(arg, fx.Node) and "tensor_meta" in arg.meta and "tensor_meta" in node.meta
                and self.shape(arg)[0] == self.shape(node)[0] == _BATCH)

    def add_module(self, base, module):
        """Register ``module`` under ``base`` made a unique identifier; returns the name."""
        name = unique_name(base, lambda n: hasattr(self.gm, n))
        self.gm.add_module(name, module)
        return name

    def copy(self, node):
        """The node unchanged; a module moves to an identifier name (onnx2torch names contain ``/``)."""
        new = self.graph.node_copy(node, lambda n: self.env[n])
        if node.op == "call_module" and not node.target.isidentifier():
            new.target = self.add_module(node.target, self.module(node))
        return new

    # -------------------------------------------------------------------------------------------------- rewrites
    def rewrite(self, node):
        module = self.module(node)
        kind = type(module).__name__
        if kind == "OnnxMatMul":
            return self.linear(node)
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return self.conv(node, module)
        if kind in ("OnnxReshape", "OnnxFlatten", "OnnxSqueezeStaticAxes", "OnnxSqueezeDynamicAxes",
                    "OnnxUnsqueezeStaticAxes", "OnnxUnsqueezeDynamicAxes") and self.keeps_batch(node):
            return self.reshape(node)
        if kind == "OnnxTranspose":
            perm = module.perm if module.perm is not None else list(reversed(range(len(self.shape(node)))))
            return self.graph.call_method("permute", (self.env[node.args[0]], *perm))
        if kind.startswith("OnnxGlobalAveragePool"):
            pool = getattr(nn, f"AdaptiveAvgPool{len(self.shape(node)) - 2}d")(1)
            return self.graph.call_module(self.add_module(_scope(node.target), pool), (self.env[node.args[0]],))
        if self.is_add(node) and not any(self.constant(a) is not None for a in node.args):
            return self.graph.call_function(operator.add, tuple(self.env[a] for a in node.args))
        if kind == "OnnxConcat" and not any(self.constant(a) is not None for a in node.args):
            return self.graph.call_function(torch.cat, ([self.env[a] for a in node.args],), {"dim": module.axis})
        return self.copy(node)

    def reshape(self, node):
        x = self.env[node.args[0]]
        out = self.shape(node)
        if len(out) == 2:
            return self.graph.call_function(torch.flatten, (x, 1))
        return self.graph.call_method("reshape", (x, -1, *out[1:]))

    def linear(self, node):
        weight = self.constant(node.args[1])
        if weight is None or weight.dim() != 2 or self.constant(node.args[0]) is not None:
            return self.copy(node)
        linear = nn.Linear(weight.shape[0], weight.shape[1], bias=False, dtype=weight.dtype)
        linear.weight = nn.Parameter(dense_kernel_to_torch(weight).clone())  # ONNX MatMul's W is (in, out)
        result = node
        add = self.sole_user(node)
        if add is not None and self.is_add(add):
            split = self.split_constant(add)
            if split is not None and split[0] is node and split[1].numel() == weight.shape[1] \
                    and split[1].shape[-1:] == weight.shape[1:]:
                linear.bias = nn.Parameter(split[1].reshape(-1).clone())
                result = add
        target = self.add_module(_scope(node.target), linear)
        new = self.graph.call_module(target, (self.env[node.args[0]],))
        self.env[result] = new
        return new

    def conv(self, node, conv):
        """The conv, with a following per-channel constant ``Add`` (possibly behind a batch/channel-keeping
        reshape) folded into its bias."""
        channels = conv.out_channels
        between = self.sole_user(node)
        add = between
        if between is not None and not self.is_add(between) and type(self.module(between)).__name__ in (
                "OnnxReshape", "OnnxSqueezeStaticAxes", "OnnxSqueezeDynamicAxes") and self.keeps_batch(between) \
                and self.shape(between)[:2] == self.shape(node)[:2]:
            add = self.sole_user(between)
        else:
            between = None
        split = self.split_constant(add) if add is not None and self.is_add(add) else None
        source = between if between is not None else node
        if split is None or split[0] is not source:
            return self.copy(node)
        bias = split[1]
        rank = len(self.shape(add))
        padded = (1,) * (rank - bias.dim()) + tuple(bias.shape)
        if bias.dim() > rank or padded[1] != channels or any(d != 1 for i, d in enumerate(padded) if i != 1):
            return self.copy(node)
        folded = copy.deepcopy(conv)
        old_bias = conv.bias.detach() if conv.bias is not None else torch.zeros(channels, dtype=bias.dtype)
        folded.bias = nn.Parameter(old_bias + bias.reshape(-1))
        target = self.add_module(_scope(node.target), folded)
        new = self.graph.call_module(target, (self.env[node.args[0]],))
        self.env[node] = new
        if between is not None:
            new = self.reshape(between)
            self.env[between] = new
        self.env[add] = new
        return self.env[node]
