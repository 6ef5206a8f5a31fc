"""Keras's ``LSTM``, ``GRU``, ``SimpleRNN`` and ``Bidirectional`` for the capture: weights and configuration read
into :class:`signxai.core.recurrent.Direction` objects, unrolled by :mod:`signxai.core.recurrent`
(docs/layers.md#recurrent)."""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers as L

from signxai.core import graph as g
from signxai.core import recurrent as rec
from signxai.core.rules import identity

#: the layers unrolled (exact classes: a subclass may compute otherwise)
RECURRENT_LAYERS = (L.LSTM, L.GRU, L.SimpleRNN)
_CELLS = {L.LSTM: ("lstm", rec.LSTM_GATES), L.GRU: ("gru", rec.GRU_GATES_KERAS), L.SimpleRNN: ("rnn", rec.RNN_GATES)}


class Primitives:
    """The tensor primitives of :class:`signxai.core.recurrent.Primitives` in TensorFlow/Keras."""

    @staticmethod
    def dense(weight, bias):
        def apply(a, kernel_map=identity, bias_map=identity):
            out = keras.ops.matmul(a, kernel_map(weight()))
            return out if bias is None or bias_map is None else out + bias_map(bias())

        def adjoint(a, s, kernel_map=identity):
            return keras.ops.matmul(s, tf.transpose(kernel_map(weight())))

        def bias_term(bias_map):
            return None if bias is None else bias_map(bias())
        return g.Kernel(apply, True, 0, bias_term, adjoint)

    @staticmethod
    def activation(name):
        return getattr(keras.activations, name)

    @staticmethod
    def stack(axis):
        return lambda *ts: tf.stack(ts, axis)

    @staticmethod
    def concat(axis):
        return lambda *ts: tf.concat(ts, axis)

    @staticmethod
    def zeros(units):
        return lambda a: tf.pad(a[:, 0, :0], [[0, 0], [0, units]])


PRIMITIVES = Primitives()


def is_recurrent(op) -> bool:
    return type(op) in RECURRENT_LAYERS or type(op) is L.Bidirectional


def _activation_name(fn, where):
    name = getattr(fn, "__name__", None)
    if name is None or getattr(keras.activations, name, None) is not fn:
        return f"<custom activation {name or fn!r}>"
    return name


def direction(layer, reverse: bool, suffix: str = "") -> rec.Direction:
    """The :class:`Direction` of one Keras recurrent layer."""
    cell_type, gates = _CELLS[type(layer)]
    cell, H = layer.cell, layer.cell.units
    bias = recurrent_bias = None
    if cell.use_bias:
        if cell_type == "gru" and cell.reset_after:  # bias (2, 3H): the candidate's recurrent bias stays recurrent
            def bias():
                b = tf.convert_to_tensor(cell.bias)
                return b[0] + tf.concat([b[1][:2 * H], tf.zeros_like(b[1][2 * H:])], 0)

            def recurrent_bias():
                b = tf.convert_to_tensor(cell.bias)
                return tf.concat([tf.zeros_like(b[1][:2 * H]), b[1][2 * H:]], 0)
        else:
            def bias():
                return tf.convert_to_tensor(cell.bias)
    where = f"'{layer.name}' ({type(layer).__name__})"
    d = rec.Direction(cell_type, H, gates, lambda: tf.convert_to_tensor(cell.kernel),
                      lambda: tf.convert_to_tensor(cell.recurrent_kernel), bias, recurrent_bias,
                      activation=_activation_name(cell.activation, where),
                      recurrent_activation=_activation_name(getattr(cell, "recurrent_activation", None)
                                                            or keras.activations.sigmoid, where),
                      reset_after=getattr(cell, "reset_after", True), reverse=reverse, suffix=suffix)
    rec.check_activations(d, where)
    return d


def refusal(op, node, steps) -> str:
    """Why a Keras recurrent layer cannot be unrolled on ``steps`` time steps (None: unknown), or ''."""
    layers = [op.forward_layer, op.backward_layer] if type(op) is L.Bidirectional else [op]
    if type(op) is L.Bidirectional and any(type(layer) not in RECURRENT_LAYERS for layer in layers):
        return "Bidirectional wraps a layer that is not a Keras LSTM, GRU or SimpleRNN"
    if type(op) is L.Bidirectional and op.merge_mode not in ("concat", "sum", "ave"):
        return (f"merge_mode {op.merge_mode!r} is not supported ('mul' multiplies two signals, which has no LRP "
                f"rule; None returns two tensors); use 'concat', 'sum' or 'ave'")
    if any(layer.stateful for layer in layers):
        return "a stateful recurrent layer carries states between calls; the rule-based methods need stateless ones"
    if len(node.input_tensors) != 1 or node.arguments.kwargs.get("initial_state") is not None:
        return ("initial states given to a recurrent layer are not supported (the rule-based methods unroll it from "
                "zero initial states)")
    if node.arguments.kwargs.get("mask") is not None or getattr(node.input_tensors[0], "_keras_mask", None) \
            is not None:
        return "masked sequences (Masking, Embedding(mask_zero=True), mask=) are not supported"
    shape = node.input_tensors[0].shape
    if len(shape) != 3:
        return f"its input has shape {tuple(shape)}; a batch of sequences (N, T, features) is needed"
    if steps is None:
        return (f"its input has no fixed number of time steps (shape {tuple(shape)}) and it is not the model's "
                f"input (or a recurrent sequence computed from it), whose length the explained batch gives: build "
                f"the model on keras.Input(shape=(T, features))")
    for layer in layers:
        try:
            direction(layer, False)
        except ValueError as error:
            return str(error)
    return ""


def unroll_layer(nodes: list, op, x: int, steps: int) -> list:
    """Appends the unrolled nodes of a Keras recurrent layer reading node ``x``; the indices of the layer's outputs
    (the output, then the final states where ``return_state``)."""
    name, layer_type = op.name, type(op).__name__
    if type(op) is L.Bidirectional:
        runs, outputs = [], []
        for layer, suffix in ((op.forward_layer, ""), (op.backward_layer, "_reverse")):
            run = rec.unroll(nodes, name, layer_type, x, steps, direction(layer, layer.go_backwards, suffix),
                             PRIMITIVES)
            runs.append(run)
            outputs.append(rec.sequence(nodes, name + suffix, layer_type, run.outputs, PRIMITIVES)
                           if op.return_sequences else run.last_h)
        result = [rec.merge(nodes, name, layer_type, *outputs, op.merge_mode, PRIMITIVES)]
        if op.return_state:
            result += [i for run in runs for i in ([run.last_h] if run.last_c is None else [run.last_h, run.last_c])]
        return result
    run = rec.unroll(nodes, name, layer_type, x, steps, direction(op, op.go_backwards), PRIMITIVES)
    output = (rec.sequence(nodes, name, layer_type, run.outputs, PRIMITIVES, reverse=op.go_backwards)
              if op.return_sequences else run.last_h)
    result = [output]
    if op.return_state:
        result += [run.last_h] if run.last_c is None else [run.last_h, run.last_c]
    return result
