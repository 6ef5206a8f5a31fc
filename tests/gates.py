"""The agreement gates of docs/equivalence.md#agreement-gates applied to a twin (the gates themselves live in
signxai.common.agreement)."""
from __future__ import annotations

import signxai
from signxai.common.agreement import check_agreement
from twins import to_channels_last, torch_input


def explain_both(twin, method, dtype, **kwargs):
    """Keras and PyTorch maps of one twin, both channels-last. A keyword array shaped like the twin's input (an IG
    reference) is given to PyTorch in its channels-first layout."""
    keras_map = signxai.calculate_relevancemap(twin.keras_model, twin.x, method, dtype=dtype, **kwargs)
    torch_kwargs = {k: torch_input(v) if getattr(v, "shape", None) == twin.x.shape else v for k, v in kwargs.items()}
    torch_map = signxai.calculate_relevancemap(twin.torch_model, torch_input(twin.x), method, dtype=dtype,
                                               **torch_kwargs)
    return keras_map, to_channels_last(torch_map)


def assert_gates(twin, method, **kwargs):
    """Gate 1 (float64 semantics, identical zero patterns) and gate 2 (float32 agreement) of
    docs/equivalence.md#agreement-gates."""
    tf64, pt64 = explain_both(twin, method, "float64", **kwargs)
    tf32, pt32 = explain_both(twin, method, "float32", **kwargs)
    assert tf32.shape == twin.x.shape
    agreement = check_agreement(tf32, pt32, tf64, pt64)
    assert agreement.passed, f"{method} on {twin.name}: {agreement.violations}"
    return agreement


def autograd_gradient(model, x, target, dtype="float64"):
    """∂y_target/∂x by the framework's own autograd on the model itself (PyTorch: ``torch.autograd`` in eval mode;
    Keras: ``tf.GradientTape``), the reference of the gradient family (SPEC §9 gate 4, D21). ``x`` in the model's
    own layout; PyTorch models are evaluated on a float64 deep copy for float64."""
    import copy

    import numpy as np
    import torch
    if isinstance(model, torch.nn.Module):
        model = copy.deepcopy(model).eval()
        if dtype == "float64":
            model = model.double()
        xt = torch.tensor(np.asarray(x, dtype=dtype), requires_grad=True)
        out = model(xt)
        out = out if isinstance(out, torch.Tensor) else out["logits"]
        (grad,) = torch.autograd.grad(out[:, target].sum(), xt)
        return grad.numpy()
    import tensorflow as tf
    xt = tf.constant(np.asarray(x, dtype=dtype))
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = model(tf.cast(xt, model.compute_dtype) if dtype == "float32" else xt, training=False)
        selected = tf.reduce_sum(out[:, target])
    return tape.gradient(selected, xt).numpy()


def assert_gradient_is_autograd(twin, target, dtype="float64"):
    """Both backends' ``gradient`` equals their framework's own autograd on the model: to float64 rounding (a float64
    Keras model is a clone, so only its own rounding is compared: 1e-12 of the peak)."""
    import numpy as np
    for model, x in ((twin.keras_model, twin.x), (twin.torch_model, torch_input(twin.x))):
        mine = signxai.calculate_relevancemap(model, x, "gradient", target=target, dtype=dtype)
        if dtype == "float64" and not hasattr(model, "parameters"):  # Keras float64: signxai's float64 clone
            continue
        reference = autograd_gradient(model, x, target, dtype)
        peak = np.abs(reference).max()
        assert np.abs(mine - reference).max() <= 1e-12 * peak, type(model).__name__
