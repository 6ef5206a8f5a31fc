"""Token flipping: pixel flipping for token-id inputs (docs/transformers.md#text-faithfulness)."""
from __future__ import annotations

import numbers

import numpy as np

from signxai.metrics._common import ModelHandle, check_int, check_seed, maps_for, softmax
from signxai.metrics.pixel_flipping import PixelFlippingResult, area_over_curve, removal_counts


def token_flipping(model, ids, R, *, target=None, steps: int | None = None, replacement=0, vocabulary=None,
                   seed: int = 0, random_baseline: bool = True, batch_size: int = 256,
                   explain_kwargs=None) -> PixelFlippingResult:
    """Token flipping (MoRF): the tokens of each sequence replaced in order of decreasing relevance, and the area over
    the softmax curve of the explained class — :func:`pixel_flipping` for a model that takes token ids.

    ``model``: a PyTorch or Keras 3 classifier that takes a batch of token ids ``(N, T)`` and outputs logits.
    ``ids``: that batch (non-negative integers). ``R``: one relevance per token ``(N, T)``, as
    ``calculate_relevancemaps`` returns it for ids (docs/transformers.md#text), or a method name (computed here for
    ``target`` with ``explain_kwargs``). ``target``: as in ``calculate_relevancemaps`` (default: the predicted class).

    Every sequence is perturbed in ``min(steps, T)`` equal steps (``steps=None``: one token per step) in the order of
    decreasing relevance, ties keeping the lower position first. A replaced token becomes ``replacement``: a token id
    (e.g. the padding token: every sequence is perturbed towards the same neutral sequence), or ``"random"``: one id
    per position drawn uniformly from ``vocabulary`` (an int V for ids 0…V−1, or a sequence of ids) by
    ``numpy.random.RandomState(seed)``, the same replacement sequence for every sequence of the batch (as the noise
    image of :func:`pixel_flipping`). The random-order baseline's permutation comes from the same stream. Nothing
    global is touched; the result of a sequence does not depend on the rest of the batch.
    """
    batch_size = check_int(batch_size, "batch_size", 1)
    seed = check_seed(seed)
    handle = ModelHandle(model)
    x = _token_ids(ids)
    n, length = x.shape
    steps = length if steps is None else check_int(steps, "steps", 1)
    if isinstance(replacement, str) and replacement == "random":
        choices = _vocabulary(vocabulary)
    elif isinstance(replacement, numbers.Integral) and not isinstance(replacement, (bool, np.bool_)) \
            and int(replacement) >= 0:
        if vocabulary is not None:
            raise ValueError("vocabulary applies only to replacement='random'; a constant replacement is one id")
        choices = None
    else:
        raise ValueError(f"replacement must be a non-negative token id (e.g. the padding token) or 'random', got "
                         f"{replacement!r}")
    logits = handle.classifier_logits(x, batch_size)
    targets = handle.targets(target, logits)
    relevance = maps_for(handle, x, R, targets, explain_kwargs)

    stream = np.random.RandomState(seed)
    fill = np.full(length, replacement, dtype=np.int64) if choices is None else choices[
        stream.randint(0, len(choices), size=length)]
    random_order = stream.permutation(length)
    counts = removal_counts(length, steps)
    fractions = counts / length

    def ranks_of(order):
        ranks = np.empty(length, dtype=np.int64)
        ranks[order] = np.arange(length)
        return ranks

    orders = [np.argsort(-relevance[i], kind="stable") for i in range(n)]
    curves = _curves(handle, x, fill, [ranks_of(o) for o in orders], counts, targets, batch_size)
    result = dict(fractions=fractions, curves=curves, aoc=area_over_curve(curves, fractions), targets=targets)
    if random_baseline:
        random_ranks = ranks_of(random_order)
        random_curves = _curves(handle, x, fill, [random_ranks] * n, counts, targets, batch_size)
        result.update(random_curves=random_curves, random_aoc=area_over_curve(random_curves, fractions))
    return PixelFlippingResult(**result)


def _token_ids(ids) -> np.ndarray:
    """``ids`` as a fresh int64 ``(N, T)`` array, checked."""
    if hasattr(ids, "detach"):
        ids = ids.detach().cpu().numpy()
    elif hasattr(ids, "numpy") and not isinstance(ids, np.ndarray):
        ids = ids.numpy()
    array = np.asarray(ids)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"ids must be integer token ids, got dtype {array.dtype} (for real-valued inputs use "
                         f"signxai.metrics.pixel_flipping)")
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"ids must be a non-empty batch of sequences of shape (N, T), got shape {array.shape}")
    if (array < 0).any():
        raise ValueError("ids contains negative values; token ids are non-negative")
    return np.array(array, dtype=np.int64, copy=True)


def _vocabulary(vocabulary) -> np.ndarray:
    if isinstance(vocabulary, numbers.Integral) and not isinstance(vocabulary, (bool, np.bool_)):
        if vocabulary < 1:
            raise ValueError(f"vocabulary must be a size >= 1 or a sequence of token ids, got {vocabulary}")
        return np.arange(int(vocabulary), dtype=np.int64)
    if vocabulary is None:
        raise ValueError("replacement='random' needs vocabulary: the number of token ids V (ids 0…V−1 are drawn) "
                         "or the sequence of ids to draw from")
    choices = np.asarray(vocabulary)
    if choices.ndim != 1 or len(choices) == 0 or not np.issubdtype(choices.dtype, np.integer) or (choices < 0).any():
        raise ValueError("vocabulary must be a size >= 1 or a non-empty 1-D sequence of non-negative token ids")
    return choices.astype(np.int64)


def _curves(handle, x, fill, ranks, counts, targets, batch_size):
    """Softmax probability of each sequence's target after each step, for per-sequence replacement ranks."""
    n, steps = len(x), len(counts)
    per_chunk = max(1, batch_size // steps)
    curves = np.empty((n, steps))
    for start in range(0, n, per_chunk):
        block = range(start, min(n, start + per_chunk))
        batch = np.concatenate([np.where(ranks[i][None, :] < counts[:, None], fill[None], x[i][None])
                                for i in block])
        probabilities = softmax(handle.logits(batch, batch_size)).reshape(len(block), steps, -1)
        curves[start:start + len(block)] = probabilities[np.arange(len(block)), :, targets[block.start:block.stop]]
    return curves
