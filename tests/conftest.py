"""Test configuration. torch is imported before TensorFlow (see NOTES: triton + TF import order)."""
import torch  # noqa: F401  (import order matters)
import tensorflow  # noqa: F401
