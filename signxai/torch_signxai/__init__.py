"""Seed-compatible PyTorch entry point: ``calculate_relevancemap(model, x, method, target_class=None)``."""
from signxai.api import calculate_relevancemap as _calculate_relevancemap


def calculate_relevancemap(model, x, method, target_class=None, **kwargs):
    """Same results as ``signxai.calculate_relevancemap(model, x, method, target=target_class, ...)``."""
    return _calculate_relevancemap(model, x, method, target=target_class, **kwargs)


def calculate_relevancemaps(model, X, method, target_class=None, **kwargs):
    return _calculate_relevancemap(model, X, method, target=target_class, batched=True, **kwargs)
