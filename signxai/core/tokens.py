"""Token-id inputs (docs/transformers.md#text): token ids in, one relevance per token out.

An integer ``x`` given to a model whose first operation on it is an embedding lookup is explained through the
model's **token view**: the same model with the lookup replaced by the identity on precomputed embedding vectors.
The backend supplies the view (:meth:`token_view`: the view model, which takes the vectors ``(N, T, H)``, and the
lookup that computes them from the ids); the explained input of every method is the embedding output, so the
captured graph's input is the embedding output and the gradient family differentiates the model itself with
respect to it. The map at the embedding output ``(N, T, H)`` is summed over the hidden axis: one value per token,
shape ``(N, T)`` (docs/transformers.md#token-maps). A view whose model still reads the ids (a padding mask, position
ids computed from them) takes them as a second input, held fixed per sample (docs/api.md#multi-input).
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, NamedTuple, Optional

import numpy as np

from signxai.core.explain import explain
from signxai.core.inputs import Bound
from signxai.core.layout import from_canonical, to_canonical
from signxai.core.targets import Targets


class TokenView(NamedTuple):
    """``model`` takes the embedding vectors in the backend's layout (``(N, T, H)`` channels-last; ``(N, H, T)`` for a
    channels-first backend) (and, with ``takes_ids``, the ids after them); ``lookup(ids)`` gives the
    vectors of an int64 batch ``(N, T)`` as a float array ``(N, T, H)``; ``embedding`` names the lookup."""
    model: Any
    lookup: Callable[[np.ndarray], np.ndarray]
    takes_ids: bool
    embedding: str


_VIEWS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def is_token_ids(x) -> bool:
    """Whether ``x`` (a NumPy array, a torch or TensorFlow tensor, a nested list) holds integers (not booleans)."""
    dtype = getattr(x, "dtype", None)
    if dtype is not None and hasattr(x, "detach"):  # torch
        return not x.is_floating_point() and not x.is_complex() and str(dtype) != "torch.bool"
    if dtype is not None and not isinstance(x, np.ndarray) and hasattr(dtype, "is_integer"):  # tf
        return bool(dtype.is_integer)
    try:
        array = np.asarray(x)
    except (ValueError, TypeError):
        return False
    return bool(np.issubdtype(array.dtype, np.integer))


def _ids_array(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    elif hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    return np.array(x, dtype=np.int64, copy=True)


def explain_tokens(backend, model, x, resolved, target, batched: Optional[bool], dtype: str,
                   batch_size: Optional[int]) -> Optional[np.ndarray]:
    """One relevance per token of the integer ``x`` ``(T,)`` or ``(N, T)``: the method's map at the embedding output
    summed over the hidden axis (docs/transformers.md#token-maps). None where the model does not look ``x`` up in
    an embedding table: integers are then values like any others (an 8-bit image)."""
    ids = _ids_array(x)
    if ids.ndim not in (1, 2) or ids.size == 0:
        return None  # not a sequence of ids: the ordinary input path decides (and says what is wrong)
    batch = ids if ids.ndim == 2 else ids[None]
    view = token_view(backend, model, batch)
    if view is None:
        return None  # the model does not look the integers up in an embedding: they are values (an image)
    if batched is not None and not isinstance(batched, (bool, np.bool_)):
        raise ValueError(f"batched must be True, False or None, got {batched!r}")
    is_batched = ids.ndim == 2
    if batched is not None and bool(batched) != is_batched:
        raise ValueError(f"batched={batched} contradicts token ids of shape {tuple(ids.shape)}: a batch of "
                         f"sequences is (N, T), one sequence is (T,)")
    tokens = _explain_view(backend, view, batch, (), (), resolved, Targets(target, unbatched=not is_batched),
                           dtype, batch_size)
    return tokens if is_batched else tokens[0]


def explain_token_input(backend, model, position: int, names, arrays, resolved, targets: Targets, dtype: str,
                        batch_size: Optional[int]) -> Optional[np.ndarray]:
    """One relevance per token of input ``position`` of a multi-input model (docs/transformers.md#multi-input-text):
    its integer batch ``arrays[position]`` ``(N, T)`` explained at the embedding output, the model's other inputs
    (``arrays`` in input order: a padding mask, segment ids) held fixed per sample. None where the backend or the
    model gives that input no token view (its integers are then values)."""
    ids = _ids_array(arrays[position])
    if ids.ndim != 2 or ids.size == 0 or not getattr(backend, "multi_input_tokens", False):
        return None
    view = token_view(backend, model, ids, position)
    if view is None:
        return None
    others = [a for i, a in enumerate(arrays) if i != position]
    other_names = [n for i, n in enumerate(names) if i != position]
    return _explain_view(backend, view, ids, others, other_names, resolved, targets, dtype, batch_size)


def _explain_view(backend, view: TokenView, batch: np.ndarray, others, other_names, resolved, targets: Targets,
                  dtype: str, batch_size: Optional[int]) -> np.ndarray:
    """The token map ``(N, T)`` of the id batch ``batch`` through ``view``; ``others``: the model's other inputs,
    held fixed after the vectors (and the ids, where the view takes them)."""
    for method in (resolved, *(getattr(resolved, "chain", ()) or ())):
        reference = dict(getattr(method, "params", {}) or {}).get("reference")
        if reference is not None and np.ndim(reference) > 0:
            raise ValueError("a reference array has no meaning for token ids: the reference lies in embedding "
                             "space (one vector per token); give a scalar (default 0: the zero vector) "
                             "(docs/transformers.md#token-maps)")
    if (batch < 0).any():
        raise ValueError(f"token ids must be >= 0; x holds {int((batch < 0).sum())} negative id(s)")
    # the vectors (N, T, H) in the backend's caller layout (PyTorch: channels-first (N, H, T), which its view
    # transposes back), so that layout-dependent draws (SmoothGrad's noise) agree across frameworks
    vectors = from_canonical(np.asarray(view.lookup(batch)).astype(dtype), backend.channels_first)
    work = backend.model_for(view.model, dtype)
    fixed = ([batch] if view.takes_ids else []) + [a if a.dtype == np.int64 else a.astype(dtype) for a in others]
    names = ("embeddings",) + (("ids",) if view.takes_ids else ()) + tuple(other_names)
    explained = Bound(work, 0, names, fixed) if fixed else work
    with backend.computation():
        result = explain(backend, explained, vectors, resolved, targets, batch_size=batch_size)
    return per_token(resolved, to_canonical(np.asarray(result), backend.channels_first))


def is_attribution(resolved) -> bool:
    """Whether a method's map at the embedding output is an attribution (a relevance or a contribution, additive
    over the hidden axis: every LRP name, integrated gradients, a gradient times the input or its sign) rather than
    a sensitivity (gradient, SmoothGrad, VarGrad, guided backprop, DeconvNet). docs/transformers.md#token-maps."""
    chain = getattr(resolved, "chain", ()) or (resolved,)
    return resolved.family.name in ("lrp", "integrated_gradients") or any(
        getattr(m, "product", None) for m in (resolved, *chain))


def per_token(resolved, maps: np.ndarray) -> np.ndarray:
    """The map at the embedding output ``(N, T, H)`` as one value per token ``(N, T)``: an attribution summed over
    the hidden axis (AttnLRP/LXT), a sensitivity as its Euclidean norm there (docs/transformers.md#token-maps)."""
    if is_attribution(resolved):
        return maps.sum(axis=-1)
    return np.sqrt(np.square(maps).sum(axis=-1))


def token_view(backend, model, ids: np.ndarray, position: Optional[int] = None) -> Optional[TokenView]:
    """The model's token view, built once per model (and explained input ``position`` of a multi-input model) by the
    backend (``ids``: an example batch to find the lookup that reads them); None (remembered) for a model that does
    not look that input up in an embedding table."""
    views = _VIEWS.setdefault(model, {})
    key = (position, ids.shape[-1] if getattr(backend, "token_views_per_length", False) else None)
    if key not in views:
        example = np.maximum(ids[:1], 0)
        view = backend.token_view(model, example) if position is None else \
            backend.token_view(model, example, position)
        views[key] = view or False
    return views[key] or None
