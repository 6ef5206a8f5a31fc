"""The token view of a Keras model (docs/transformers.md#text, signxai/core/tokens.py): the Functional graph from
the output of the ``Embedding`` layer that reads the model's input to the model's output (the same layers and
weights; the caller's model is not touched)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import keras

from signxai.core.tokens import TokenView


def _reads_input(layer, tensor) -> bool:
    return any(any(t is tensor for t in node.input_tensors) for node in getattr(layer, "_inbound_nodes", []))


def token_view(model) -> Optional[TokenView]:
    """The token view of a Functional ``model``; None where no ``Embedding`` reads its input, ValueError where one
    does but not alone."""
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        return None
    readers = [layer for layer in model.layers if _reads_input(layer, inputs[0])
               and not isinstance(layer, keras.layers.InputLayer)]
    embeddings = [layer for layer in readers if isinstance(layer, keras.layers.Embedding)]
    if not embeddings:
        return None  # integers that are values (an 8-bit image), not token ids
    if len(embeddings) != 1 or len(readers) != 1:
        raise ValueError(f"x holds integers (token ids), but the input of the Keras model {model.name!r} is read "
                         f"by {[layer.name for layer in readers]}; token ids are explained where exactly one "
                         f"keras.layers.Embedding reads them (docs/transformers.md#text)")
    layer = embeddings[0]
    if getattr(layer, "mask_zero", False):
        raise ValueError(f"Embedding {layer.name!r} has mask_zero=True: its padding mask is computed from the ids, "
                         f"which the view on the embedding output does not see; build the model without "
                         f"mask_zero (or pass an explicit mask input) to explain its tokens")
    try:
        view = keras.Model(layer.output, model.outputs if len(model.outputs) > 1 else model.outputs[0],
                           name=f"{model.name}_tokens")
    except ValueError as error:
        raise ValueError(f"the token view of {model.name!r} from the output of Embedding {layer.name!r} could not "
                         f"be built ({error})") from error

    def lookup(batch: np.ndarray) -> np.ndarray:
        return keras.ops.convert_to_numpy(layer(batch.astype("int32"))).astype(np.float32)
    return TokenView(view, lookup, False, layer.name)
