"""Pixel flipping: the documented protocol re-computed independently, twins, direction, batch invariance."""
import numpy as np
import pytest
import torch

from signxai import calculate_relevancemaps
from signxai.metrics import area_over_curve, pixel_flipping, removal_counts
from twins import to_channels_last, torch_input


def _independent_curves(W, b, x, R, target, steps, seed, by_position, value_range=None):
    """The protocol of ``pixel_flipping``'s docstring, written out sample by sample with loops, for a model whose
    logits are ``flatten(x) @ W + b`` (channels-last)."""
    sample = x.shape
    channels = sample[-1]
    cells = [(i, j) for i in range(sample[0]) for j in range(sample[1])]
    if by_position:
        features = [[(i, j, c) for c in range(channels)] for i, j in cells]
        relevance = [sum(float(R[i, j, c]) for c in range(channels)) for i, j in cells]
    else:
        features = [[(i, j, c)] for i, j in cells for c in range(channels)]
        relevance = [float(R[i, j, c]) for i, j in cells for c in range(channels)]
    if value_range is None:
        low = [x[..., c].min() for c in range(channels)]
        high = [x[..., c].max() for c in range(channels)]
    else:
        low, high = [value_range[0]] * channels, [value_range[1]] * channels
    stream = np.random.RandomState(seed)
    u = stream.random_sample(sample)
    noise = np.empty(sample)
    for i, j in cells:
        for c in range(channels):
            noise[i, j, c] = low[c] + (high[c] - low[c]) * u[i, j, c]
    noise = noise.astype(np.float32)
    random_order = list(stream.permutation(len(features)))
    morf_order = sorted(range(len(features)), key=lambda f: (-relevance[f], f))
    s = min(steps, len(features))
    counts = [int(np.floor(k * len(features) / s + 0.5)) for k in range(s + 1)]

    def curve(order):
        values = []
        for count in counts:
            perturbed = x.astype(np.float64).copy()
            for f in order[:count]:
                for i, j, c in features[f]:
                    perturbed[i, j, c] = noise[i, j, c]
            z = perturbed.ravel() @ W + b
            p = np.exp(z - z.max())
            values.append(p[target] / p.sum())
        return np.array(values)

    fractions = np.array(counts) / len(features)
    return fractions, curve(morf_order), curve(random_order)


@pytest.mark.parametrize("features, steps", [("position", 4), ("position", 250), ("element", 7)])
def test_matches_an_independent_computation_on_both_twins(linear_twin, features, steps):
    W = np.asarray(linear_twin.keras_model.layers[-1].kernel.numpy(), dtype=np.float64)
    b = np.asarray(linear_twin.keras_model.layers[-1].bias.numpy(), dtype=np.float64)
    x = linear_twin.x
    R = np.random.RandomState(5).normal(size=x.shape).astype(np.float32)
    targets = np.array([0, 2, 1])
    keras_result = pixel_flipping(linear_twin.keras_model, x, R, target=targets, steps=steps, features=features,
                                  seed=7)
    torch_result = pixel_flipping(linear_twin.torch_model, torch_input(x), torch_input(R), target=targets,
                                  steps=steps, features=features, seed=7)
    for n in range(len(x)):
        fractions, morf, random = _independent_curves(W, b, x[n], R[n], targets[n], steps, 7,
                                                      features == "position")
        for result in (keras_result, torch_result):
            np.testing.assert_array_equal(result.fractions, fractions)
            np.testing.assert_allclose(result.curves[n], morf, rtol=0, atol=1e-6)
            np.testing.assert_allclose(result.random_curves[n], random, rtol=0, atol=1e-6)
    expected_aoc = 1 - np.trapezoid(keras_result.curves, keras_result.fractions, axis=1)
    np.testing.assert_allclose(keras_result.aoc, expected_aoc, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(keras_result.targets, targets)


def test_value_range_sets_the_noise_interval(linear_twin):
    W = np.asarray(linear_twin.keras_model.layers[-1].kernel.numpy(), dtype=np.float64)
    b = np.asarray(linear_twin.keras_model.layers[-1].bias.numpy(), dtype=np.float64)
    R = np.random.RandomState(6).normal(size=linear_twin.x.shape)
    result = pixel_flipping(linear_twin.keras_model, linear_twin.x, R, target=1, steps=9, value_range=(-3, 5),
                            random_baseline=False)
    assert result.random_curves is None and result.random_score is None
    for n, x in enumerate(linear_twin.x):
        _, morf, _ = _independent_curves(W, b, x, R[n], 1, 9, 0, True, value_range=(-3, 5))
        np.testing.assert_allclose(result.curves[n], morf, rtol=0, atol=1e-6)


def test_removal_counts():
    np.testing.assert_array_equal(removal_counts(9, 4), [0, 2, 5, 7, 9])  # 2.25, 4.5 (half up), 6.75
    np.testing.assert_array_equal(removal_counts(64, 250), np.arange(65))  # at most one feature per step
    np.testing.assert_array_equal(removal_counts(784, 250)[[0, 1, 2, -1]], [0, 3, 6, 784])
    assert removal_counts(5, 1).tolist() == [0, 5]


def test_area_over_curve():
    fractions = np.array([0, 0.5, 1.0])
    np.testing.assert_allclose(area_over_curve([[1, 1, 1], [1, 0, 0], [0, 0, 0]], fractions), [0, 0.75, 1])


def test_twins_agree_on_their_own_maps(digits):
    x = digits.x[:8]
    for method in ("lrpsign_epsilon_0_1", "gradient_x_input"):
        keras_result = pixel_flipping(digits.keras_model, x, method, steps=64)
        torch_result = pixel_flipping(digits.torch_model, digits.x_channels_first[:8], method, steps=64)
        np.testing.assert_array_equal(keras_result.targets, torch_result.targets)
        np.testing.assert_allclose(torch_result.curves, keras_result.curves, rtol=0, atol=1e-5)
        np.testing.assert_allclose(torch_result.random_curves, keras_result.random_curves, rtol=0, atol=1e-5)
        assert abs(torch_result.score - keras_result.score) < 1e-5


def test_the_same_map_gives_the_same_curve_in_both_layouts(digits):
    R = calculate_relevancemaps(digits.keras_model, digits.x[:4], "gradient")
    keras_result = pixel_flipping(digits.keras_model, digits.x[:4], R, steps=20, seed=3)
    torch_result = pixel_flipping(digits.torch_model, torch_input(digits.x[:4]), torch_input(R), steps=20, seed=3)
    np.testing.assert_allclose(torch_result.curves, keras_result.curves, rtol=0, atol=1e-6)


def test_an_occlusion_oracle_beats_its_reverse_and_random_order(digits):
    """Relevance = how much the class probability drops when a pixel alone is replaced by its noise value (known to
    be decisive): removing those pixels first must bring the curve down faster than removing them last."""
    model, x = digits.torch_model, digits.x_channels_first[:6]
    with torch.no_grad():
        base = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    targets = base.argmax(axis=1)
    noise = np.random.RandomState(0).random_sample((8, 8, 1)).astype(np.float32)  # the metric's noise (seed 0)
    oracle = np.zeros((6, 8, 8, 1), dtype=np.float32)
    for n in range(6):
        low, high = digits.x[n].min(), digits.x[n].max()
        for i in range(8):
            for j in range(8):
                occluded = digits.x[n].copy()
                occluded[i, j] = low + (high - low) * noise[i, j]
                with torch.no_grad():
                    p = torch.softmax(model(torch.from_numpy(torch_input(occluded[None]))), dim=1)[0]
                oracle[n, i, j] = base[n, targets[n]] - float(p[targets[n]])
    best = pixel_flipping(model, x, torch_input(oracle), steps=64)
    worst = pixel_flipping(model, x, torch_input(-oracle), steps=64, random_baseline=False)
    assert best.score > best.random_score > worst.score
    assert np.all(best.aoc > worst.aoc)


def test_batch_invariance_and_no_mutation(digits):
    x = digits.x[:5].copy()
    R = calculate_relevancemaps(digits.keras_model, x, "lrp_z")
    x_before, R_before = x.copy(), R.copy()
    weights = [w.copy() for w in digits.keras_model.get_weights()]
    batch = pixel_flipping(digits.keras_model, x, R, steps=16)
    for n in range(5):
        single = pixel_flipping(digits.keras_model, x[n:n + 1], R[n:n + 1], steps=16)
        np.testing.assert_allclose(single.curves[0], batch.curves[n], rtol=0, atol=1e-5)  # float32 batch rounding
        np.testing.assert_allclose(single.random_curves[0], batch.random_curves[n], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(R, R_before)
    for w, w0 in zip(digits.keras_model.get_weights(), weights):
        np.testing.assert_array_equal(w, w0)


def test_batch_size_does_not_change_the_result(digits):
    x = digits.x_channels_first[:3]
    a = pixel_flipping(digits.torch_model, x, "gradient", steps=10, batch_size=1)
    b = pixel_flipping(digits.torch_model, x, "gradient", steps=10, batch_size=1000)
    # the same inputs in batches of other sizes: float32 kernels round differently (~1e-6 of the logits)
    np.testing.assert_allclose(a.curves, b.curves, rtol=0, atol=1e-5)


def test_tensor_inputs_and_method_kwargs(digits):
    x = torch.from_numpy(digits.x_channels_first[:3])
    by_name = pixel_flipping(digits.torch_model, x, "gradient_x_sign_mu", steps=8, explain_kwargs={"mu": 0.5})
    maps = calculate_relevancemaps(digits.torch_model, x, "gradient_x_sign_mu", mu=0.5)
    by_maps = pixel_flipping(digits.torch_model, x, torch.from_numpy(maps), steps=8)
    np.testing.assert_array_equal(by_name.curves, by_maps.curves)
    assert to_channels_last(maps).shape == (3, 8, 8, 1)
