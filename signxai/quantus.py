"""Quantus interoperability: signxai's methods as a Quantus ``explain_func``.

Quantus (https://github.com/understandable-machine-intelligence-lab/Quantus) calls
``explain_func(model=model, inputs=x_batch, targets=y_batch, **explain_func_kwargs)`` and expects a NumPy array of
attributions with the shape of ``x_batch``::

    import quantus
    import signxai.quantus

    metric = quantus.PixelFlipping(features_in_step=1, perturb_baseline="black", disable_warnings=True)
    scores = metric(model=torch_model, x_batch=x, y_batch=y, explain_func=signxai.quantus.explain_func,
                    explain_func_kwargs={"method": "lrpsign_epsilon_0_1"})

Quantus's TensorFlow path still needs Keras 2; for Keras 3 models, use ``explain_func`` with
:mod:`signxai.metrics`, which gives the same numbers for Keras and PyTorch twins. This module does not import
Quantus.
"""
from __future__ import annotations

import numpy as np


def explain_func(model, inputs, targets, method: str | None = None, device=None, **kwargs) -> np.ndarray:
    """Relevance maps of ``method`` for the batch ``inputs`` and classes ``targets``, as a float32 NumPy array with
    the shape and layout of ``inputs`` (``signxai.calculate_relevancemaps``).

    ``model``: a Keras 3 model or ``torch.nn.Module`` that outputs logits. ``inputs``: a batch (NumPy array or
    tensor) in the model's layout. ``targets``: one class index per sample, one index for all, or None (the
    predicted classes). ``method`` and further keyword arguments (``epsilon=``, ``mu=``, ``dtype=`` …) are passed
    to signxai. ``device`` is accepted because Quantus adds it; the maps are computed on the device that holds the
    model's parameters.
    """
    if method is None:
        raise ValueError("explain_func needs method=..., e.g. explain_func_kwargs={'method': 'lrpsign_epsilon_0_1'} "
                         "in Quantus (see signxai.list_methods())")
    if not isinstance(method, str):
        raise ValueError(f"method must be a signxai method name (str), got {type(method).__name__}")
    from signxai.api import calculate_relevancemaps

    if targets is not None and not isinstance(targets, (int, np.integer)):
        if hasattr(targets, "detach"):
            targets = targets.detach().cpu().numpy()
        targets = np.asarray(targets)
        if targets.ndim == 2 and targets.shape[1] > 1:
            raise ValueError(f"targets has shape {targets.shape}: give class indices (one per sample), not one-hot "
                             f"labels; use targets.argmax(axis=1)")
        targets = targets.reshape(-1) if targets.ndim == 2 else targets
    return calculate_relevancemaps(model, inputs, method, target=targets, **kwargs)
