"""Every public plot function returns its Figure, saves only when given a path, and fits its titles."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from sparsetopo.errors import SparsetopoError
from sparsetopo.plots import comparison_panels, heatmap_grid, line_plot, scatter_panels, scatter_plot

LONG = "Each network ends 0.43 from its start (mean over hidden layers), a title longer than its figure"


def _heatmaps(path=None):
    rng = np.random.default_rng(0)
    mats = [rng.random((4, 4)) for _ in range(3)]
    return heatmap_grid(mats, ["epoch 0", "epoch 1", "epoch 2"], list("abcd"), path, suptitle=LONG)


def _line(path=None):
    return line_plot([0, 1, 2], {"a": [0.1, 0.5, 0.4], "b": [0.2, 0.3, 0.6]}, path, xlabel="epoch", ylabel="y",
                     title=LONG, errors={"a": [0.01, 0.02, 0.03]}, ylim=(0, 1))


def _scatter(path=None):
    return scatter_plot({"set": ([1, 2, 3], [0.5, 0.6, 0.7]), "static": ([1, 2], [0.4, 0.5])}, path,
                        xlabel="width", ylabel="accuracy", title=LONG, logx=True, connect=True, annotate_first=True)


PANELS = [("mean NNSTD, layer 0", "NNSTD", {"ours": ([0, 1, 2], [0.0, 0.1, 0.3]), "published": ([2], [0.32])}),
          ("accuracy", "accuracy", {"ours": ([1, 2], [0.1, 0.3]), "published": ([1, 2], [0.19, 0.39])}),
          ("shared", "fraction", {"ours": ([0, 2], [1.0, 0.8])}),
          ("correlation", "correlation", {"ours": ([0, 2], [1.0, 0.9])})]


def _comparison(path=None):
    return comparison_panels(PANELS, path, suptitle=LONG)


def _scatter_panels(path=None):
    return scatter_panels([(t, "x", {k: v for k, v in s.items() if k == "ours"}) for t, _, s in PANELS[:3]], path,
                          ylabel="accuracy", suptitle=LONG)


# (maker, axes it draws: data panels, plus a colour bar for heatmaps; a 4-panel comparison uses 4 of 2x3)
CASES = [(_heatmaps, 4), (_line, 1), (_scatter, 1), (_comparison, 4), (_scatter_panels, 3)]


@pytest.mark.parametrize("make, n_axes", CASES, ids=[c[0].__name__.strip("_") for c in CASES])
def test_returns_a_figure_without_saving(make, n_axes, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fig = make()
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n_axes
    assert list(tmp_path.iterdir()) == []  # no path: nothing written anywhere


@pytest.mark.parametrize("make, n_axes", CASES, ids=[c[0].__name__.strip("_") for c in CASES])
def test_saves_when_given_a_path(make, n_axes, tmp_path):
    path = tmp_path / "sub" / "fig.png"
    fig = make(path)
    assert isinstance(fig, Figure) and len(fig.axes) == n_axes
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["fig.png"]  # written atomically: no temporary left


@pytest.mark.parametrize("make", [c[0] for c in CASES], ids=[c[0].__name__.strip("_") for c in CASES])
def test_titles_fit_inside_the_figure(make):
    fig = make()
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    box = fig.bbox
    texts = [ax.title for ax in fig.axes if ax.get_title()] + ([fig._suptitle] if fig._suptitle else [])
    assert texts
    for t in texts:
        ext = t.get_window_extent(renderer)
        assert ext.x0 >= box.x0 - 1 and ext.x1 <= box.x1 + 1, f"title {t.get_text()!r} is clipped"
        assert ext.y1 <= box.y1 + 1


def test_titles_say_what_they_were_given():
    fig = _comparison()
    assert [ax.get_title() for ax in fig.axes] == [p[0] for p in PANELS]
    assert fig._suptitle.get_text().replace("\n", " ") == LONG
    assert _line().axes[0].get_title().replace("\n", " ") == LONG


def test_published_reference_is_markers_only():
    """The paper's points are drawn where they exist and never joined by a line."""
    ax = _comparison().axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["published"].get_linestyle() == "None" and lines["published"].get_marker() == "o"
    assert lines["ours"].get_linestyle() == "-"
    np.testing.assert_array_equal(lines["published"].get_xdata(), [2])


def test_plots_leave_pyplot_alone():
    """Figures are made without pyplot, so none is left open in its registry (nothing to close)."""
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    for make, _ in CASES:
        make()
    assert plt.get_fignums() == before


@pytest.mark.parametrize("call, name", [
    (lambda: heatmap_grid([], [], []), "heatmap_grid"),
    (lambda: comparison_panels([]), "comparison_panels"),
    (lambda: scatter_panels([], ylabel="y"), "scatter_panels"),
])
def test_empty_input_is_named(call, name):
    with pytest.raises(SparsetopoError, match=f"{name} needs at least one .*; got 0"):
        call()
