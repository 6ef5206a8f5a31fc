import numpy as np
import pytest
from PIL import Image

from signxai.common.visualization import (
    normalize_relevance_map,
    overlay_heatmap,
    plot_timeseries_relevance,
    relevance_to_heatmap,
    visualize_comparison,
)

RNG = np.random.RandomState(0)


def test_normalize_symmetric_peak_is_one():
    R = np.array([[-4.0, 1.0], [2.0, 0.0]])
    n = normalize_relevance_map(R)
    np.testing.assert_allclose(n, R / 4)
    assert n.min() == -1


def test_normalize_min_max():
    n = normalize_relevance_map(np.array([-2.0, 0.0, 6.0]), symmetric=False)
    np.testing.assert_allclose(n, [0, 0.25, 1])


@pytest.mark.parametrize("symmetric", [True, False])
def test_normalize_zero_map_stays_zero(symmetric):
    n = normalize_relevance_map(np.zeros((4, 4)), symmetric=symmetric)
    assert np.all(n == 0) and not np.isnan(n).any()


@pytest.mark.parametrize("cmap", ["seismic", "red_white"])
def test_heatmap_sums_channels_and_stays_in_unit_range(cmap):
    R = RNG.normal(size=(5, 7, 3))
    h = relevance_to_heatmap(R, cmap=cmap)
    assert h.shape == (5, 7, 3)
    assert h.min() >= 0 and h.max() <= 1
    np.testing.assert_array_equal(h, relevance_to_heatmap(R.sum(axis=-1), cmap=cmap))


def test_heatmap_channel_first_axis():
    R = RNG.normal(size=(3, 5, 7))
    np.testing.assert_array_equal(relevance_to_heatmap(R, channel_axis=0), relevance_to_heatmap(R.sum(axis=0)))


def test_red_white_colours():
    R = np.array([[0.0, -3.0], [1.0, 2.0]])
    h = relevance_to_heatmap(R, cmap="red_white")
    np.testing.assert_allclose(h[1, 1], [1, 0, 0])  # largest positive: red
    np.testing.assert_allclose(h[0, 0], [1, 1, 1])  # zero: white
    np.testing.assert_allclose(h[0, 1], [1, 1, 1])  # negative: white
    np.testing.assert_allclose(h[1, 0], [1, 0.5, 0.5])


def test_seismic_colours():
    h = relevance_to_heatmap(np.array([[0.0, -1.0, 1.0]]))
    assert np.all(h[0, 0] > 0.95)  # zero is (near) white
    assert h[0, 1, 2] > h[0, 1, 0]  # negative is blue
    assert h[0, 2, 0] > h[0, 2, 2]  # positive is red


@pytest.mark.parametrize("cmap", ["seismic", "red_white"])
def test_zero_map_has_no_nan(cmap):
    h = relevance_to_heatmap(np.zeros((4, 4, 3)), cmap=cmap)
    assert not np.isnan(h).any()


def test_heatmap_rejects_1d_maps():
    with pytest.raises(ValueError):
        relevance_to_heatmap(np.zeros(5))


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_overlay_detects_image_range(scale):
    image = np.full((4, 4, 3), 0.4) * scale
    heat = np.ones((4, 4, 3))
    out = overlay_heatmap(image, heat, alpha=0.25)
    np.testing.assert_allclose(out, 0.75 * 0.4 + 0.25)


def test_overlay_grayscale_image():
    out = overlay_heatmap(np.zeros((4, 4)), np.ones((4, 4, 3)), alpha=0.5)
    assert out.shape == (4, 4, 3)
    np.testing.assert_allclose(out, 0.5)


def test_comparison_figure_written_as_png(tmp_path):
    image = (RNG.uniform(size=(16, 16, 3)) * 255).astype(np.uint8)
    panels = [("input", image), ("gradient", RNG.normal(size=(16, 16, 3))), ("zero", np.zeros((16, 16)))]
    path = tmp_path / "comparison.png"
    fig = visualize_comparison(panels, path=path, cmap="red_white")
    assert [ax.get_title() for ax in fig.axes] == ["input", "gradient", "zero"]
    width, height = (fig.get_size_inches() * fig.dpi).round().astype(int)
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert png.size == (width, height)
    assert width == 3 * height


def test_comparison_explicit_kind_shows_relevance_as_heatmap():
    R = np.zeros((6, 6, 3))
    R[0, 0] = 1.0
    fig = visualize_comparison([("R", R, "relevance")], cmap="red_white")
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(shown[0, 0], [1, 0, 0])
    np.testing.assert_allclose(shown[5, 5], [1, 1, 1])


def test_comparison_seed_form_image_maps_titles(tmp_path):
    """signxai 1.x: visualize_comparison(original_image, [m1, m2, m3], ["Method 1", "Method 2", "Method 3"])."""
    image = RNG.uniform(size=(16, 16, 3))
    maps = [RNG.normal(size=(16, 16, 3)) for _ in range(3)]
    path = tmp_path / "seed.png"
    fig = visualize_comparison(image, maps, ["Method 1", "Method 2", "Method 3"], path=path)
    assert [ax.get_title() for ax in fig.axes] == ["Input", "Method 1", "Method 2", "Method 3"]
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), image)
    for ax, R in zip(fig.axes[1:], maps):
        np.testing.assert_allclose(ax.images[0].get_array(), relevance_to_heatmap(R, "seismic"))
    # the same figure as the panel form
    panels = [("Input", image, "image")] + [(f"Method {i}", R, "relevance") for i, R in enumerate(maps, 1)]
    reference = visualize_comparison(panels)
    for ax, ref in zip(fig.axes, reference.axes):
        np.testing.assert_array_equal(ax.images[0].get_array(), ref.images[0].get_array())
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size[0] == 4 * png.size[1]
    # default titles, cmap, and a channels-first batch of one (PyTorch) shown channels-last
    chw = np.moveaxis(maps[0], -1, 0)[None]
    fig = visualize_comparison(image, [chw, maps[1]], cmap="red_white")
    assert [ax.get_title() for ax in fig.axes] == ["Input", "Method 1", "Method 2"]
    np.testing.assert_allclose(fig.axes[1].images[0].get_array(), relevance_to_heatmap(maps[0], "red_white"))


def test_comparison_seed_form_scales_a_negative_image_and_checks_titles():
    image = np.linspace(-1, 1, 16 * 16).reshape(16, 16, 1)  # e.g. a [-1, 1] model input
    fig = visualize_comparison(image, [np.ones((16, 16, 1))], ["only"])
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (16, 16, 3)
    np.testing.assert_allclose(shown[..., 0], ((image[..., 0] + 1) / 2))
    with pytest.raises(ValueError, match="2 maps but 1 titles"):
        visualize_comparison(image, [image, image], ["one"])
    with pytest.raises(TypeError, match="maps must be a list of relevance maps"):
        visualize_comparison(image, "out.png")


def test_timeseries_figure_has_one_axis_per_channel(tmp_path):
    signal = np.sin(np.linspace(0, 6, 50))[:, None] * np.ones((1, 4))
    relevance = RNG.normal(size=(50, 4))
    path = tmp_path / "series.png"
    fig = plot_timeseries_relevance(signal, relevance, path=path, channel_names=list("abcd"))
    assert len(fig.axes) == 4
    assert [ax.get_ylabel() for ax in fig.axes] == list("abcd")
    colours = fig.axes[0].collections[0].get_array()
    assert len(colours) == 49 and np.abs(colours).max() <= 1
    assert path.stat().st_size > 0


def test_timeseries_zero_relevance_has_no_nan():
    fig = plot_timeseries_relevance(np.zeros((10, 2)), np.zeros((10, 2)))
    assert not np.isnan(fig.axes[1].collections[0].get_array()).any()

