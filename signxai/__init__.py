"""signxai: SIGN, LRP and gradient explanations with identical results on Keras 3 (TensorFlow) and PyTorch."""
from importlib.util import find_spec

from signxai._version import __version__  # noqa: F401  (its own module: dataset/explain.py reads it too)
from signxai.api import calculate_relevancemap, calculate_relevancemaps
from signxai.core.layers import register_layer, unregister_layer
from signxai.dataset import explain_dataset  # noqa: F401  (light: zarr, Ray and frameworks load on use)
from signxai.methods import list_methods

# Frameworks importable here; a backend is imported only when a model of its type is explained.
_AVAILABLE_BACKENDS = tuple(name for name, module in (("tensorflow", "tensorflow"), ("pytorch", "torch"))
                            if find_spec(module) is not None)

__all__ = ["calculate_relevancemap", "calculate_relevancemaps", "list_methods", "register_layer", "unregister_layer",
           "_AVAILABLE_BACKENDS"]
