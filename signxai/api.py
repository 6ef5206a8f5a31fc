"""``calculate_relevancemap``: argument handling shared by both backends (docs/api.md)."""
from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np

from signxai.core.explain import explain
from signxai.core.inputs import Bound
from signxai.core.targets import Targets
from signxai.core.tokens import explain_token_input, explain_tokens, is_token_ids
from signxai.methods import resolve_method

_ALIASES = {"neuron_selection": "target", "neuron_selection_mode": "target", "batchmode": "batched",
            "last_conv_layer_name": "layer"}
_DTYPES = ("float32", "float64")


def _backend_for(model):
    """The backend module for a model's type: Keras 3 or PyTorch (imported only when such a model is given)."""
    module = type(model).__module__
    import sys

    if "torch" in sys.modules:
        import torch

        if isinstance(model, torch.nn.Module):
            from signxai.torch_signxai.backend import BACKEND
            return BACKEND
    if "keras" in sys.modules:
        import keras

        if isinstance(model, keras.Model):
            from signxai.tf_signxai.backend import BACKEND
            return BACKEND
    raise TypeError(f"model of type {module}.{type(model).__name__} is neither a keras.Model (Keras 3) nor a "
                    f"torch.nn.Module")


def _to_numpy(x, backend):
    """The caller's input as a fresh float32 array (never a view of the caller's memory)."""
    if hasattr(x, "detach"):  # torch tensor on any device
        x = x.detach().cpu()
        x = (x.float() if x.is_floating_point() else x).numpy()  # float32 first: NumPy has no bfloat16
    elif hasattr(x, "numpy") and not isinstance(x, np.ndarray):  # tf tensor
        if getattr(x.dtype, "is_floating", False):
            import tensorflow as tf
            x = tf.cast(x, tf.float32)
        x = x.numpy()
    if isinstance(x, (list, tuple)) and x and all(hasattr(v, "shape") for v in x) and len(
            {tuple(v.shape) for v in x}) > 1:
        raise ValueError(f"x is a {type(x).__name__} of {len(x)} arrays of different shapes; signxai explains one "
                         f"input array (a batch or one sample), not several model inputs at once")
    array = np.asarray(x)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(f"x must be a numeric array or tensor, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise ValueError("x must be real-valued, got a complex array")
    array = np.array(array, dtype=np.float32, copy=True)
    if not np.isfinite(array).all():
        raise ValueError(f"x contains {int((~np.isfinite(array)).sum())} non-finite value(s) (NaN or inf); "
                         f"explanations need finite inputs")
    return array


def _merge_aliases(kwargs):
    """Aliases → primary names; a name left at None does not count as given."""
    for alias, primary in _ALIASES.items():
        if alias in kwargs:
            if kwargs[alias] is None:
                del kwargs[alias]
                continue
            if kwargs.get(primary) is not None:
                raise ValueError(f"give either {primary}= or its alias {alias}=, not both")
            kwargs[primary] = kwargs.pop(alias)
    return kwargs


def _is_batched(backend, model, x, batched):
    rank = backend.sample_rank(model)
    if rank is None:  # PyTorch model without a leading convolution: batched unless x is 1-D
        if x.ndim == 0:
            raise ValueError("x is a scalar with 0 axes: give one sample of rank >= 1 or a batch of samples")
        inferred = x.ndim != 1
    elif x.ndim == rank + 1:
        inferred = True
    elif x.ndim == rank:
        inferred = False
    else:
        raise ValueError(f"x has {x.ndim} axes, but the model takes samples with {rank} axes: give one sample "
                         f"of rank {rank} or a batch of rank {rank + 1}")
    if batched is None:
        return inferred
    if not isinstance(batched, (bool, np.bool_)):
        raise ValueError(f"batched must be True, False or None, got {batched!r}")
    if rank is not None and bool(batched) != inferred:
        raise ValueError(f"batched={batched} contradicts the model: it takes samples with {rank} axes and x has "
                         f"{x.ndim}")
    if rank is None and batched and x.ndim < 2:
        raise ValueError(f"batched=True needs x with a batch axis, but x has shape {x.shape}")
    return bool(batched)


def calculate_relevancemap(model, x, method, *, target=None, batched=None, inputs=None, **params):
    """The relevance map of ``method`` for input ``x``: a NumPy array with exactly the shape and layout of ``x``.

    ``model`` is a Keras 3 ``keras.Model`` or a ``torch.nn.Module`` that outputs logits. ``target`` is None /
    ``'max_activation'`` (argmax per sample), a class index, or one index per sample; ``'negative'`` for a
    single-logit head, a ``(t, k)`` position (or one per sample) for per-timestep outputs, or a callable
    ``f(outputs) -> (N,)`` (docs/api.md#targets). ``dtype='float64'`` computes
    the whole explanation in float64 on a private copy of the model. ``batch_size=`` (IG, SmoothGrad, VarGrad
    only) sets how many points one framework pass evaluates; by default as many as fit a 1 GiB activation budget
    (``signxai.core.explain.MEMORY_BUDGET``), measured per sample on the model's first pass. Further parameters as
    in docs/methods.md#parameters.

    A model with several inputs (docs/api.md#multi-input) takes ``x`` as a list/tuple (the inputs in order) or a dict
    (by input name); ``inputs=`` selects the explained input(s) by position or name (default: every input), each
    explained with the others held fixed at their values per sample. One explained input gives one array; several
    give a list (a dict when ``x`` is a dict) of maps.
    """
    kwargs = _merge_aliases(dict(params, target=target, batched=batched))
    target, batched = kwargs.pop("target"), kwargs.pop("batched")
    dtype = kwargs.pop("dtype", "float32")
    if dtype not in _DTYPES and getattr(dtype, "__name__", None) not in _DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    dtype = dtype if isinstance(dtype, str) else dtype.__name__
    batch_size = kwargs.pop("batch_size", None)
    resolved = resolve_method(method, **kwargs)
    batch_size = _batch_size(method, kwargs, resolved, batch_size)
    backend = _backend_for(model)
    names = backend.input_names(model)
    if len(names) > 1 or isinstance(x, Mapping):
        return _explain_inputs(backend, model, x, names, resolved, target, batched, dtype, batch_size, inputs)
    if inputs is not None and not (inputs in (0, [0]) or (names and inputs in (names[0], [names[0]]))):
        raise ValueError(f"inputs={inputs!r}: the model has one input; leave inputs= out")
    if is_token_ids(x):  # token ids: explained at the embedding output (docs/transformers.md#text)
        backend.check(model)
        tokens = explain_tokens(backend, model, x, resolved, target, batched, dtype, batch_size)
        if tokens is not None:
            return tokens
    array = _to_numpy(x, backend)
    backend.check(model)
    is_batched = _is_batched(backend, model, array, batched)
    batch = array if is_batched else array[None]
    if len(batch) == 0:
        raise ValueError("x is an empty batch; give at least one sample")
    work_model = backend.model_for(model, dtype)
    batch = batch.astype(dtype)
    # The explanation's own first forward pass gives the logits the targets are resolved from (docs/api.md#targets).
    targets = Targets(target, unbatched=not is_batched)
    with backend.computation():
        result = explain(backend, work_model, batch, resolved, targets, batch_size=batch_size)
    return result if is_batched else result[0]


def _input_arrays(x, names):
    """The arrays of a multi-input ``x`` (a list/tuple in input order or a dict by name) in the model's input
    order."""
    hint = f"give x as a list of {len(names)} arrays in this order, or a dict with these keys"
    if isinstance(x, Mapping):
        unknown = [k for k in x if k not in names]
        missing = [n for n in names if n not in x]
        if unknown or missing:
            raise ValueError(f"x is a dict with keys {list(x)}, but the model's inputs are {names}"
                             + (f"; unknown: {unknown}" if unknown else "") + (f"; missing: {missing}" if missing
                                                                               else ""))
        return [x[n] for n in names]
    if isinstance(x, (list, tuple)):
        if len(x) != len(names):
            raise ValueError(f"x is a {type(x).__name__} of {len(x)} arrays, but the model takes {len(names)} "
                             f"inputs {names}; {hint}")
        return list(x)
    raise ValueError(f"the model takes {len(names)} inputs {names}, but x is one array; {hint} "
                     f"(docs/api.md#multi-input)")


def _fixed_array(value, backend, dtype):
    """A held-fixed input as a fresh array: integer and boolean inputs (indices) as int64, others in ``dtype``."""
    if hasattr(value, "detach"):  # torch tensor
        integral = not value.is_floating_point()
        value = value.detach().cpu() if integral else value
    elif hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # tf tensor
        integral = bool(getattr(value.dtype, "is_integer", False) or getattr(value.dtype, "is_bool", False))
    else:
        probe = np.asarray(value)
        integral = np.issubdtype(probe.dtype, np.integer) or probe.dtype == np.bool_
    if integral:
        return np.array(value.numpy() if not isinstance(value, np.ndarray) and hasattr(value, "numpy") else value,
                        dtype=np.int64, copy=True)
    return _to_numpy(value, backend).astype(dtype)


def _selected_inputs(inputs, names):
    """``inputs=`` as positions, and whether one input (not a list) was selected."""
    def position(item):
        if isinstance(item, str):
            if item not in names:
                raise ValueError(f"inputs={item!r} is not an input of the model; its inputs are {names}")
            return names.index(item)
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Integral) or not (
                -len(names) <= item < len(names)):
            raise ValueError(f"inputs={item!r}: give an input position 0..{len(names) - 1} or a name of {names}")
        return int(item) % len(names)
    if inputs is None:
        return list(range(len(names))), False
    if isinstance(inputs, (list, tuple)):
        if not inputs:
            raise ValueError("inputs= is empty: name at least one input to explain (default: every input)")
        positions = [position(i) for i in inputs]
        if len(set(positions)) != len(positions):
            raise ValueError(f"inputs={inputs!r} names an input twice")
        return positions, False
    return [position(inputs)], True


def _inputs_batched(backend, model, arrays, names, batched):
    """Whether the multi-input ``arrays`` carry a batch axis: from the model's declared input ranks (Keras), else
    ``batched`` (default True: PyTorch declares no ranks)."""
    ranks = backend.input_ranks(model)
    inferred = set()
    for name, array, rank in zip(names, arrays, ranks):
        if rank is None:
            continue
        if array.ndim not in (rank, rank + 1):
            raise ValueError(f"input {name!r} has {array.ndim} axes, but the model takes samples with {rank} axes "
                             f"there: give one sample of rank {rank} or a batch of rank {rank + 1}")
        inferred.add(array.ndim == rank + 1)
    if len(inferred) > 1:
        raise ValueError(f"some inputs have a batch axis and others do not (shapes "
                         f"{[tuple(a.shape) for a in arrays]}); give every input batched or every input unbatched")
    if batched is not None and not isinstance(batched, (bool, np.bool_)):
        raise ValueError(f"batched must be True, False or None, got {batched!r}")
    if inferred and batched is not None and bool(batched) not in inferred:
        raise ValueError(f"batched={batched} contradicts the model's input ranks for shapes "
                         f"{[tuple(a.shape) for a in arrays]}")
    result = inferred.pop() if inferred else (True if batched is None else bool(batched))
    if result and any(a.ndim == 0 for a in arrays):
        raise ValueError("an input is a scalar with 0 axes: batched inputs need a batch axis")
    return result


def _explain_inputs(backend, model, x, names, resolved, target, batched, dtype, batch_size, inputs):
    """One map per explained input of a multi-input model, the other inputs held fixed (docs/api.md#multi-input)."""
    if len(names) <= 1:
        raise ValueError(f"x is a dict, but the model takes one input {names}: give the array itself")
    raw = _input_arrays(x, names)
    positions, single = _selected_inputs(inputs, names)
    # token ids (integers an embedding reads) stay integers: explained at the embedding output when selected
    tokens = {i for i in positions if is_token_ids(raw[i])}
    arrays = [_to_numpy(v, backend) if i in positions and i not in tokens else _fixed_array(v, backend, dtype)
              for i, v in enumerate(raw)]
    backend.check_multi(model)
    is_batched = _inputs_batched(backend, model, arrays, names, batched)
    if not is_batched:
        arrays = [a[None] for a in arrays]
    sizes = [len(a) for a in arrays]
    if len(set(sizes)) > 1:
        raise ValueError(f"the inputs have different batch sizes {dict(zip(names, sizes))}: every input needs one "
                         f"row per sample")
    if sizes[0] == 0:
        raise ValueError("x is an empty batch; give at least one sample")
    work_model = backend.model_for(model, dtype)
    maps = {}
    for p in positions:
        targets = Targets(target, unbatched=not is_batched)
        try:
            result = explain_token_input(backend, model, p, names, arrays, resolved, targets, dtype, batch_size) \
                if p in tokens else None
            if result is None:  # not token ids: values, explained with the others held fixed
                explained = arrays[p] if p not in tokens else _to_numpy(raw[p], backend)
                if not is_batched and p in tokens:
                    explained = explained[None]
                fixed = [a if a.dtype == np.int64 else a.astype(dtype) for j, a in enumerate(arrays) if j != p]
                bound = Bound(work_model, p, names, fixed)
                with backend.computation():
                    result = explain(backend, bound, explained.astype(dtype), resolved, targets,
                                     batch_size=batch_size)
        except ValueError as error:
            if type(error) is not ValueError or len(positions) == 1:
                raise
            raise ValueError(f"input {names[p]!r}: {error} (explain fewer inputs with inputs=)") from error
        maps[p] = result if is_batched else result[0]
    if single:
        return maps[positions[0]]
    if isinstance(x, Mapping):
        return {names[p]: maps[p] for p in positions}
    return [maps[p] for p in positions]


def _batch_size(name, kwargs, resolved, value):
    """``batch_size=``: the most points per pass of IG/SmoothGrad/VarGrad and the other wrappers (an integer >= 1),
    or None; the families that evaluate many points are ``chunked`` in their records (docs/methods.md#families)."""
    if value is None:
        return None
    if not resolved.family.chunked:
        resolve_method(name, **kwargs, batch_size=value)  # TypeError listing the kwargs this method accepts
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {value!r}")
    return int(value)


def calculate_relevancemaps(model, X, method, **kwargs):
    """``calculate_relevancemap`` for a batch ``X`` (the batch axis is required)."""
    if "batchmode" in kwargs or "batched" in kwargs:
        raise ValueError("calculate_relevancemaps always treats X as a batch; do not pass batched=/batchmode=")
    return calculate_relevancemap(model, X, method, batched=True, **kwargs)
