"""Test configuration.

torch is imported before TensorFlow (the triton + TF import-order trap, see the README). Tests alternate PyTorch and
TensorFlow calls in one process; on small CPU machines torch's worker threads then contend with TensorFlow's
spinning thread pools and calls get 10-30x slower, so the suite runs torch single-threaded.
"""
import torch
import tensorflow  # noqa: F401  (imported after torch on purpose)

torch.set_num_threads(1)
