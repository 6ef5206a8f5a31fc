import numpy as np
import pytest

from signxai.demo import load_demo
from twins import spec_twin

# A tiny two-channel classifier with a closed form (softmax of a linear map) for independent NumPy checks.
LINEAR_SPEC = {"input_shape": [3, 3, 2], "layers": [{"kind": "flatten"}, {"kind": "dense", "units": 3}]}


@pytest.fixture(scope="session")
def digits():
    """The built-in digits CNN twins (conv, max pooling, flatten, dense) with 64 held-out samples."""
    return load_demo("digits")


@pytest.fixture(scope="session")
def linear_twin():
    twin = spec_twin("linear", LINEAR_SPEC, n=3, seed=3)
    twin.x[:] = np.random.RandomState(4).uniform(-1, 2, size=twin.x.shape).astype(np.float32)
    return twin
