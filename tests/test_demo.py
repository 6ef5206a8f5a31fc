import numpy as np
import pytest
import torch

from signxai.demo import DEMOS, load_demo

MIN_ACCURACY = 0.9


@pytest.fixture(scope="module", params=DEMOS)
def demo(request):
    return load_demo(request.param, framework="both")


def test_twins_give_the_same_logits(demo):
    keras_logits = np.asarray(demo.keras_model(demo.x, training=False))
    with torch.no_grad():
        torch_logits = demo.torch_model(torch.from_numpy(demo.x_channels_first)).numpy()
    assert keras_logits.shape == (len(demo.x), len(demo.class_names))
    np.testing.assert_allclose(torch_logits, keras_logits, rtol=0, atol=1e-5)


def test_stored_samples_are_classified_correctly(demo):
    predicted = np.argmax(np.asarray(demo.keras_model(demo.x, training=False)), axis=-1)
    assert len(demo.y) == 64 and set(np.unique(demo.y)) == set(range(len(demo.class_names)))
    assert np.mean(predicted == demo.y) >= MIN_ACCURACY
    assert demo.accuracy >= MIN_ACCURACY


def test_samples_match_the_spec(demo):
    assert demo.x.dtype == np.float32
    assert demo.x.shape[1:] == tuple(demo.spec["input_shape"])
    assert demo.spec["layers"][-1] == {"kind": "dense", "units": len(demo.class_names)}  # logits, no softmax


def test_single_framework():
    demo = load_demo("eeg", framework="torch")
    assert demo.keras_model is None and isinstance(demo.torch_model, torch.nn.Module)
    assert demo.x_channels_first.shape == (64, 4, 64)


@pytest.mark.parametrize("kwargs", [{"name": "mnist"}, {"framework": "jax"}])
def test_unknown_names_raise(kwargs):
    with pytest.raises(ValueError):
        load_demo(**kwargs)
