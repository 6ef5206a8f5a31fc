"""Helpers of the dataset tests (a module of its own: ``conftest`` is an ambiguous module name)."""
import numpy as np

import signxai

METHODS = ["gradient", "lrp_epsilon_0_1", "lrpsign_epsilon_0_25_std_x"]


def chunked_reference(model, x, method, batch_size, **params):
    """What explain_dataset promises: calculate_relevancemaps on each chunk of ``batch_size`` samples."""
    return np.concatenate([signxai.calculate_relevancemaps(model, x[i:i + batch_size], method, **params)
                           for i in range(0, len(x), batch_size)])


def logits_of(model, x):
    import torch

    if isinstance(model, torch.nn.Module):
        with torch.no_grad():
            flags = [m.training for m in model.modules()]
            assert not any(flags), "the demo twin is in eval mode"
            return model(torch.from_numpy(x)).numpy()
    return model(x, training=False).numpy()
