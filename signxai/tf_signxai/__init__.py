"""Seed-compatible TensorFlow/Keras entry point: ``calculate_relevancemap(method, x, model, neuron_selection)``."""
from signxai.api import calculate_relevancemap as _calculate_relevancemap


def calculate_relevancemap(method, x, model, neuron_selection=None, **kwargs):
    """signxai 1.x argument order; same results as ``signxai.calculate_relevancemap(model, x, method, ...)``."""
    return _calculate_relevancemap(model, x, method, neuron_selection=neuron_selection, **kwargs)


def calculate_relevancemaps(method, X, model, neuron_selection=None, **kwargs):
    return _calculate_relevancemap(model, X, method, neuron_selection=neuron_selection, batched=True, **kwargs)
