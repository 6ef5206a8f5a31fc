"""Shared fixtures of the dataset tests: the EEG demo twins and a 100-sample dataset in both layouts."""
import numpy as np
import pytest

from signxai.demo import load_demo


@pytest.fixture(scope="session")
def eeg():
    return load_demo("eeg")


@pytest.fixture(scope="session")
def eeg_x(eeg):
    """100 EEG windows (64, 4), channels-last (the demo's 64 held-out samples, then reversed copies, scaled)."""
    return np.concatenate([eeg.x, 0.9 * eeg.x[::-1]])[:100].astype(np.float32)


@pytest.fixture(scope="session")
def eeg_x_cf(eeg_x):
    return np.ascontiguousarray(np.moveaxis(eeg_x, -1, 1))

