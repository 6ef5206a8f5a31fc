"""The token view of a Keras model (docs/transformers.md#text, signxai/core/tokens.py): the model's layer graph
replayed on new symbolic inputs — the embedding vectors in place of the output of the ``Embedding`` layer that reads
the explained input, and the model's other inputs (a padding mask, segment ids: held fixed) — with the same layers
and weights. Nested models (a keras_hub backbone called inside a head model) are replayed through; the caller's
layers keep their node lists (the replay's nodes are removed from them afterwards)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import keras

from signxai._keras_torch import replay_keras_graph
from signxai.core.tokens import TokenView
from signxai.tf_signxai.capture import _symbolic


class _Ids:
    """Stands for the explained input (the ids) while the graph is replayed."""


def _fail(model, message):
    return ValueError(f"x holds integers (token ids), but {message} in the Keras model {model.name!r}; token ids "
                      f"are explained where exactly one keras.layers.Embedding reads them (docs/transformers.md#text)")


def token_view(model, position: int = 0, length: Optional[int] = None) -> Optional[TokenView]:
    """The token view of a Functional ``model`` for its input ``position``: a Functional model taking the embedding
    vectors ``(N, T, H)`` and then the model's other inputs in order. None where no ``Embedding`` reads the input
    (integers that are values); ValueError where one does but not alone, or through ``mask_zero``. ``length``: the
    sequence length T where the model leaves it free (keras_hub's backbones): the view is built on it, and so are
    the other inputs declared with the ids' shape (a padding mask, segment ids), so that layers which read T (a
    position table sliced to T) can be recorded."""
    inputs = list(getattr(model, "inputs", None) or [])
    if not inputs or position >= len(inputs):
        return None
    ids = _Ids()
    found: dict = {}
    declared = tuple(inputs[position].shape)

    def shape_of(t):
        shape = tuple(t.shape)
        if length is not None and shape == declared and len(shape) == 2 and shape[1] is None:
            return shape[0], length
        return shape
    others = [keras.Input(batch_shape=shape_of(t), dtype=t.dtype, name=t._keras_history.operation.name)
              for i, t in enumerate(inputs) if i != position]
    values = list(others)
    values.insert(position, ids)

    def visit(node, parents):
        op = node.operation
        if any(p is ids for p in parents):
            if not isinstance(op, keras.layers.Embedding) or len(parents) != 1 or "embedding" in found:
                raise _fail(model, f"its ids are read by {op.name!r} ({type(op).__name__})"
                            if "embedding" not in found else "its ids are read by more than one layer")
            if getattr(op, "mask_zero", False):
                raise ValueError(f"Embedding {op.name!r} has mask_zero=True: its padding mask is computed from the "
                                 f"ids, which the view on the embedding output does not see; build the model "
                                 f"without mask_zero (or pass an explicit mask input) to explain its tokens")
            output = node.outputs[0]
            shape = tuple(output.shape)
            if length is not None and len(shape) == 3 and shape[1] is None:
                shape = (shape[0], length, shape[2])
            found["embedding"] = op
            found["vectors"] = keras.Input(batch_shape=shape, dtype=output.dtype, name="embeddings")
            return [found["vectors"]]
        args, kwargs = node.arguments.fill_in({id(t): v for t, v in zip(node.input_tensors, parents)})
        if getattr(op, "_call_has_training_arg", False):
            kwargs["training"] = False
        return keras.tree.flatten(op(*args, **kwargs))

    def record():
        outputs = replay_keras_graph(model, values, visit)
        if "embedding" not in found:
            return None
        if any(o is ids for o in outputs):
            raise _fail(model, "its ids are also an output")
        return keras.Model([found["vectors"], *others] if others else found["vectors"],
                           outputs if len(outputs) > 1 else outputs[0],
                           name=f"{model.name}_tokens")
    if not _reads_embedding(model, position):
        return None  # integers that are values (an 8-bit image), not token ids
    try:
        view = _symbolic(list(model._flatten_layers(include_self=False, recursive=True)), record)
    except ValueError:
        raise
    except Exception as error:  # symbolic execution reports unsupported code with many exception types
        raise ValueError(f"the token view of {model.name!r} could not be built by replaying its graph on the "
                         f"embedding vectors ({type(error).__name__}: {str(error)[:300]})") from error
    if view is None:
        return None
    layer = found["embedding"]

    def lookup(batch: np.ndarray) -> np.ndarray:
        return keras.ops.convert_to_numpy(layer(batch.astype("int32"))).astype(np.float32)
    return TokenView(view, lookup, False, layer.name)


def _reads_embedding(model, position: int) -> bool:
    """Whether an ``Embedding`` reads input ``position`` of ``model``, directly or inside a nested model."""
    tensor = model.inputs[position]
    for layer in model.layers:
        for node in getattr(layer, "_inbound_nodes", []):
            if not any(t is tensor for t in node.input_tensors):
                continue
            if isinstance(layer, keras.layers.Embedding):
                return True
            if isinstance(layer, keras.Model) and getattr(layer, "inputs", None):
                inner = [i for i, t in enumerate(node.input_tensors) if t is tensor]
                if any(i < len(layer.inputs) and _reads_embedding(layer, i) for i in inner):
                    return True
    return False
