"""The per-sample similarity measures against SciPy and scikit-image (independent implementations)."""
import numpy as np
import pytest
from scipy import stats

from signxai.metrics import pearson, spearman, ssim
from signxai.metrics.similarity import rankdata


def _with_ties(rng, shape):
    return rng.randint(0, 5, size=shape).astype(np.float64) + rng.choice([0.0, 0.5], size=shape)


def test_rankdata_matches_scipy_with_ties():
    rng = np.random.RandomState(0)
    v = _with_ties(rng, 200)
    np.testing.assert_array_equal(rankdata(v), stats.rankdata(v))


def test_pearson_and_spearman_match_scipy_per_sample():
    rng = np.random.RandomState(1)
    a, b = _with_ties(rng, (5, 6, 7, 2)), rng.normal(size=(5, 6, 7, 2))
    b[0] = a[0] ** 2  # a monotone, non-linear relation: Spearman 1, Pearson < 1
    expected_p = [stats.pearsonr(x.ravel(), y.ravel())[0] for x, y in zip(a, b)]
    expected_s = [stats.spearmanr(x.ravel(), y.ravel())[0] for x, y in zip(a, b)]
    np.testing.assert_allclose(pearson(a, b), expected_p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(spearman(a, b), expected_s, rtol=0, atol=1e-12)
    assert spearman(a, b)[0] == pytest.approx(1.0, abs=1e-12) and pearson(a, b)[0] < 0.99


def test_constant_sample_has_no_correlation():
    a = np.stack([np.ones(10), np.arange(10.0)])
    b = np.stack([np.arange(10.0), np.arange(10.0)])
    for measure in (pearson, spearman):
        r = measure(a, b)
        assert np.isnan(r[0]) and r[1] == pytest.approx(1.0)


@pytest.mark.parametrize("shape, win", [((3, 8, 8), 7), ((2, 12, 10), 7), ((2, 5, 6), 5), ((2, 9, 9, 9), 7)])
def test_ssim_matches_scikit_image(shape, win):
    skimage_metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.RandomState(2)
    a = rng.uniform(-1, 1, size=shape)
    b = np.clip(a + rng.normal(0, 0.3, size=shape), -1, 1)
    expected = [skimage_metrics.structural_similarity(x, y, win_size=win, data_range=2.0) for x, y in zip(a, b)]
    np.testing.assert_allclose(ssim(a, b, data_range=2.0), expected, rtol=0, atol=1e-12)
    assert ssim(a, a, data_range=2.0) == pytest.approx(np.ones(len(a)))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="shapes"):
        spearman(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="at least 3 values"):
        ssim(np.zeros((1, 2, 8)), np.zeros((1, 2, 8)), data_range=1.0)
    with pytest.raises(ValueError, match="data_range"):
        ssim(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), data_range=0)
