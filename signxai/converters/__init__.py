"""Model converters between Keras 3 and PyTorch (imported lazily: ``from signxai.converters import ...``)."""

_EXPORTS = {
    "convert_tf_to_torch_direct": "signxai.converters.direct_tf_to_torch",
    "convert_torch_to_tf_direct": "signxai.converters.torch_to_tf",
    "convert_tf_to_torch_via_onnx": "signxai.converters.onnx_to_torch",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'signxai.converters' has no attribute {name!r}")
