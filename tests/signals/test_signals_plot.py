"""signxai.signals.plot_ecg: the colours drawn on each lead are the normalised relevance of that lead."""
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure

from signxai.loading import InputError
from signxai.signals import STANDARD_LEADS, Record, plot_ecg, relevance_colormap
from signxai.signals.plot import segment_values

FS = 100.0
T = 1000


@pytest.fixture(scope="module")
def ecg():
    rng = np.random.default_rng(0)
    t = np.arange(T) / FS
    signal = np.sin(2 * np.pi * 1.2 * t)[:, None] * np.linspace(0.5, 1.5, 12) + 0.01 * rng.standard_normal((T, 12))
    relevance = rng.normal(0, 1, (T, 12)) * np.linspace(0.1, 3.0, 12)  # leads with different scales
    relevance[500:502, 7] = 30.0  # the global maximum, two samples wide (one segment carries it exactly)
    relevance[300:302, 2] = -30.0
    return signal, relevance


def _panels(figure):
    """Data axes (those holding a line collection or a line) in drawing order, colour bar excluded."""
    return [ax for ax in figure.axes if ax.get_label() != "<colorbar>"]


def _drawn_colours(figure, collection):
    """The RGBA colours a collection was drawn with (the figure is drawn once, with Agg)."""
    if not getattr(figure, "_drawn_in_test", False):
        FigureCanvasAgg(figure).draw()
        figure._drawn_in_test = True
    return collection.get_edgecolors() if isinstance(collection, LineCollection) else collection.get_facecolors()


def test_line_segments_carry_the_globally_normalised_relevance(ecg):
    signal, relevance = ecg
    figure = plot_ecg(signal, relevance, FS)
    assert isinstance(figure, Figure)
    panels = _panels(figure)
    assert len(panels) == 12 and [ax.get_ylabel() for ax in panels] == list(STANDARD_LEADS)
    scale = np.abs(relevance).max()
    cmap = relevance_colormap(signed=True)
    for lead, ax in enumerate(panels):
        (collection,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        expected = segment_values(relevance[:, lead] / scale)
        np.testing.assert_allclose(collection.get_array(), expected, rtol=1e-12)
        assert (collection.norm.vmin, collection.norm.vmax) == (-1.0, 1.0)  # signed: symmetric around 0
        segments = collection.get_segments()
        np.testing.assert_allclose(segments[0], [[0.0, signal[0, lead]], [1 / FS, signal[1, lead]]])
        assert len(segments) == T - 1
        colours = _drawn_colours(figure, collection)
        np.testing.assert_allclose(colours, cmap((expected + 1) / 2), atol=1e-6)
    # the maximum is pure red, the minimum pure blue (the colormap's ends), zero relevance grey
    v8 = panels[7].collections[0]
    assert np.abs(relevance).max() == 30.0 and v8.get_array()[500] == 1.0
    assert np.allclose(_drawn_colours(figure, v8)[500], cmap(1.0))
    assert np.allclose(cmap(1.0)[:3], (1, 31 / 255, 31 / 255)) and np.allclose(cmap(0.0)[:3], (31 / 255, 75 / 255, 1))
    assert np.allclose(_drawn_colours(figure, panels[2].collections[0])[300], cmap(0.0))
    assert np.allclose(cmap(0.5)[:3], 180 / 255, atol=0.005)  # 0 is grey (up to the 256-entry lookup table)
    assert len(figure.axes) == 13  # 12 leads + the colour bar
    assert figure.axes[-1].get_ylabel() == "relevance (normalised globally)"


def test_per_lead_normalisation_fills_each_lead(ecg):
    signal, relevance = ecg
    figure = plot_ecg(signal, relevance, FS, normalize="lead", colorbar=False)
    assert len(figure.axes) == 12
    for lead, ax in enumerate(_panels(figure)):
        array = ax.collections[0].get_array()
        np.testing.assert_allclose(array, segment_values(relevance[:, lead] / np.abs(relevance[:, lead]).max()))
        assert np.abs(array).max() <= 1.0


def test_channels_first_map_and_record_input(ecg):
    signal, relevance = ecg
    record = Record(signal, FS, STANDARD_LEADS)
    a = plot_ecg(record, relevance.T[None], relevance_layout="channels_first")  # PyTorch layout with a batch axis
    b = plot_ecg(signal, relevance, FS, relevance_layout="channels_last")
    c = plot_ecg(signal.T, relevance.T, FS)  # auto: both (leads, T)
    for x, y, z in zip(_panels(a), _panels(b), _panels(c)):
        np.testing.assert_array_equal(x.collections[0].get_array(), y.collections[0].get_array())
        np.testing.assert_array_equal(z.collections[0].get_array(), y.collections[0].get_array())


def test_non_negative_relevance_uses_zero_to_one(ecg):
    signal, relevance = ecg
    figure = plot_ecg(signal, np.abs(relevance), FS)
    collection = _panels(figure)[0].collections[0]
    assert (collection.norm.vmin, collection.norm.vmax) == (0.0, 1.0)
    colours = _drawn_colours(figure, collection)
    np.testing.assert_allclose(colours, relevance_colormap(False)(collection.get_array()), atol=1e-6)


def test_clinical_4x3_layout(ecg):
    signal, relevance = ecg
    figure = plot_ecg(signal, relevance, FS, layout="4x3", rhythm_lead="II")
    panels = _panels(figure)
    assert len(panels) == 13  # 12 panels + the rhythm strip
    scale = np.abs(relevance).max()
    columns = [("I", "II", "III"), ("aVR", "aVL", "aVF"), ("V1", "V2", "V3"), ("V4", "V5", "V6")]
    for ax in panels[:12]:
        (name,) = [text.get_text() for text in ax.texts]
        column = next(c for c, names in enumerate(columns) if name in names)
        lead = STANDARD_LEADS.index(name)
        start, stop = 250 * column, min(250 * (column + 1) + 1, T)
        assert ax.get_xlim() == pytest.approx((start / FS, (stop - 1) / FS))  # 2.5 s per column
        np.testing.assert_allclose(ax.collections[0].get_array(),
                                   segment_values(relevance[start:stop, lead] / scale))
    rhythm = panels[12]
    assert rhythm.texts[0].get_text() == "II" and rhythm.get_xlim() == pytest.approx((0, (T - 1) / FS))
    # leads found by name, in any order
    order = np.random.default_rng(1).permutation(12)
    shuffled = plot_ecg(signal[:, order], relevance[:, order], FS, [STANDARD_LEADS[i] for i in order], layout="4x3")
    for x, y in zip(_panels(shuffled), panels[:12]):
        assert x.texts[0].get_text() == y.texts[0].get_text()
        np.testing.assert_array_equal(x.collections[0].get_array(), y.collections[0].get_array())


def test_markers_style(ecg):
    signal, relevance = ecg
    figure = plot_ecg(signal, relevance, FS, style="markers", marker_size=40.0)
    ax = _panels(figure)[7]
    (markers,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    shown = relevance[:, 7] / np.abs(relevance).max()
    np.testing.assert_allclose(markers.get_array(), shown)
    np.testing.assert_allclose(markers.get_offsets(), np.column_stack([np.arange(T) / FS, signal[:, 7]]))
    np.testing.assert_allclose(markers.get_sizes(), 40.0 * np.abs(shown))
    np.testing.assert_allclose(_drawn_colours(figure, markers), relevance_colormap(True)((shown + 1) / 2), atol=1e-6)


def test_plain_record_and_saving(ecg, tmp_path):
    signal, _ = ecg
    figure = plot_ecg(signal[:, :3], None, FS, ["I", "II", "V1"], save=tmp_path / "plain.png")
    assert [ax.get_ylabel() for ax in figure.axes] == ["I", "II", "V1"]
    np.testing.assert_allclose(figure.axes[1].lines[0].get_ydata(), signal[:, 1])
    assert (tmp_path / "plain.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kwargs, message", [
    (dict(layout="4x3", leads=[f"L{i}" for i in range(12)]), "needs the 12 standard leads"),
    (dict(layout="6x2"), "layout must be"),
    (dict(style="bars"), "style must be"),
    (dict(fs=None), "needs the sampling rate"),
    (dict(relevance=np.zeros((T, 11))), "fits neither"),
    (dict(layout="4x3", rhythm_lead="V7"), "rhythm_lead 'V7'"),
    (dict(rhythm_lead="II"), "belongs to the 4x3 layout"),
    (dict(layout="4x3", column_seconds=0), "column_seconds must be positive"),
])
def test_bad_arguments(ecg, kwargs, message):
    signal, relevance = ecg
    arguments = dict(relevance=relevance, fs=FS) | kwargs
    with pytest.raises(InputError, match=message):
        plot_ecg(signal, **arguments)
