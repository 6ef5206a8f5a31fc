from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from signxai.utils import aggregate_and_normalize_relevancemap_rgb, load_image, normalize_heatmap

GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def test_load_image_caffe_preprocessing():
    img, x = load_image(GRACE_HOPPER)
    assert isinstance(img, Image.Image) and img.size == (224, 224) and img.mode == "RGB"
    assert x.shape == (224, 224, 3) and x.dtype == np.float32
    with Image.open(GRACE_HOPPER) as original:
        expected_img = original.convert("RGB").resize((224, 224), Image.NEAREST)
    for row, col in [(0, 0), (100, 37), (223, 223)]:
        r, g, b = expected_img.getpixel((col, row))
        expected = np.float32([b, g, r]) - np.float32([103.939, 116.779, 123.68])
        np.testing.assert_array_equal(x[row, col], expected)
    assert -124 < x.min() and x.max() < 152  # unscaled, mean-centred


def test_load_image_target_size_and_batch_axis():
    img, x = load_image(GRACE_HOPPER, target_size=(32, 48), expand_dims=True)
    assert img.size == (48, 32)
    assert x.shape == (1, 32, 48, 3)


def test_load_image_keeps_size_without_target():
    img, x = load_image(GRACE_HOPPER, target_size=None)
    with Image.open(GRACE_HOPPER) as original:
        assert img.size == original.size
    assert x.shape == (original.size[1], original.size[0], 3)


def test_normalize_heatmap():
    h = normalize_heatmap(np.array([[2.0, -8.0], [4.0, 0.0]]))
    np.testing.assert_allclose(h, [[0.25, -1], [0.5, 0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_normalize_heatmap_zero_map(dtype):
    h = normalize_heatmap(np.zeros((3, 3), dtype=dtype))
    assert np.all(h == 0) and not np.isnan(h).any()


def test_aggregate_and_normalize_rgb():
    R = np.random.RandomState(0).normal(size=(8, 8, 3))
    a = aggregate_and_normalize_relevancemap_rgb(R)
    assert a.shape == (8, 8)
    np.testing.assert_allclose(a, R.sum(axis=-1) / np.abs(R.sum(axis=-1)).max())
    assert np.abs(a).max() == pytest.approx(1)
