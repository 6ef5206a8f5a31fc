"""signxai 1.x module path of the TensorFlow/Keras entry point, kept for scripts written against it::

    from signxai.tf_signxai.methods.wrappers import calculate_relevancemap
    R = calculate_relevancemap("lrp_epsilon_0_1", x, keras_model, neuron_selection=3)

The functions are those of :mod:`signxai.tf_signxai` (1.x argument order ``(method, x, model)``); they give the same
results as ``signxai.calculate_relevancemap(model, x, method, ...)``. ``neuron_selection_mode`` is accepted as an
alias of ``target`` (docs/api.md#arguments).
"""
from signxai.tf_signxai import calculate_relevancemap, calculate_relevancemaps

__all__ = ["calculate_relevancemap", "calculate_relevancemaps"]
