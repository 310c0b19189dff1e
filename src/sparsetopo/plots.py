"""Figures for papers: NNSTD heatmaps, curves, scatter plots.

Everything draws on a ``matplotlib.figure.Figure`` with the Agg canvas --
never through ``pyplot`` -- so plotting changes no global state, needs no
display and is safe from worker threads. For the same reason a figure needs
no closing: pyplot's registry never holds it, so it is freed with its last
reference.

Every public plot function returns its :class:`~matplotlib.figure.Figure`
and saves it only when given a ``path`` (see :func:`save_figure`).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from .errors import SparsetopoError
from .fileio import atomic_write

CMAP = "gnuplot"  # the colour map of the paper's Figure 4


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _fit(text: str, width: float, fontsize: float) -> str:
    """``text`` wrapped onto lines that fit ``width`` inches at ``fontsize`` points.

    A title longer than its figure is cut off at the figure's edge (constrained
    layout moves axes, never text); an average character is taken as 0.6 em wide.
    """
    chars = max(int(width * 72 / (0.6 * fontsize)), 10)
    return "\n".join(textwrap.wrap(text, chars)) or text


def _done(fig: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 150) -> Path:
    """Save to ``path`` atomically; the format follows the suffix (png, pdf, svg)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    with atomic_write(path) as f:
        fig.savefig(f, format=fmt, dpi=dpi)
    return path


def _heatmap_panel(fig: Figure, ax, matrix: np.ndarray, labels: Sequence[str], title: str,
                   vmin: float, vmax: float):
    im = ax.imshow(matrix, cmap=CMAP, vmin=vmin, vmax=vmax, interpolation="none")
    n = len(labels)
    ax.set_xticks(range(n), labels=labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels=labels, fontsize=7)
    ax.set_title(_fit(title, ax.get_position().width * fig.get_figwidth(), 9), fontsize=9)
    return im


def heatmap_grid(matrices: Sequence[np.ndarray], titles: Sequence[str], labels: Sequence[str],
                 path: str | os.PathLike | None = None, *, suptitle: str | None = None, vmin: float = 0.0,
                 vmax: float = 1.0, ncols: int | None = None) -> Figure:
    """A row (or grid) of NNSTD heatmaps sharing one colour scale fixed to ``[vmin, vmax]``.

    Parameters
    ----------
    matrices : sequence of (n, n) arrays
        One heatmap each.
    titles : sequence of str
        The panels' titles.
    labels : sequence of str
        The n row and column labels.
    path : path-like, optional
        Where to save it (format from the suffix: png, pdf, svg); ``None``: not saved.
    suptitle : str, optional
    vmin, vmax : float
        The colour scale, the same for every panel.
    ncols : int, optional
        Panels per row (default: up to 5).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per matrix, then the colour bar's.
    """
    k = len(matrices)
    if k == 0:
        raise SparsetopoError("heatmap_grid needs at least one matrix; got 0")
    ncols = ncols or min(k, 5)
    nrows = -(-k // ncols)
    side = 2.4 + 0.08 * len(labels)
    fig = _new_figure(side * ncols + 0.8, side * nrows + (0.4 if suptitle else 0))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    im = None
    for ax, m, t in zip(axes, matrices, titles):
        im = _heatmap_panel(fig, ax, np.asarray(m), labels, t, vmin, vmax)
    for ax in axes[k:]:
        fig.delaxes(ax)
    fig.colorbar(im, ax=axes[:k].tolist(), label="NNSTD", shrink=0.8)
    if suptitle:
        fig.suptitle(_fit(suptitle, fig.get_figwidth(), 12))
    return _done(fig, path)


def line_plot(x: Sequence[float], series: Mapping[str, Sequence[float]], path: str | os.PathLike | None = None,
              *, xlabel: str, ylabel: str, title: str | None = None,
              errors: Mapping[str, Sequence[float]] | None = None, ylim: tuple[float, float] | None = None,
              styles: Mapping[str, str] | None = None) -> Figure:
    """One line per series over a shared x axis, with optional error bands.

    Parameters
    ----------
    x : sequence of float
    series : mapping of label to y values
    path : path-like, optional
        Where to save it (format from the suffix: png, pdf, svg); ``None``: not saved.
    xlabel, ylabel : str
    title : str, optional
        Wrapped onto as many lines as the figure's width needs.
    errors : mapping of label to half-widths, optional
        A band of +- these around the series of the same label.
    ylim : (float, float), optional
    styles : mapping of label to a matplotlib format string, optional
        Default ``"-o"``.

    Returns
    -------
    matplotlib.figure.Figure
        One axes.
    """
    fig = _new_figure(5.0, 3.6)
    ax = fig.add_subplot()
    for label, ys in series.items():
        ys = np.asarray(ys, dtype=float)
        style = (styles or {}).get(label, "-o")
        ax.plot(x, ys, style, label=label, markersize=4)
        if errors and label in errors:
            e = np.asarray(errors[label], dtype=float)
            ax.fill_between(x, ys - e, ys + e, alpha=0.2)
    _label(fig, ax, xlabel, ylabel, title)
    if ylim:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=8)
    return _done(fig, path)


def _label(fig: Figure, ax, xlabel: str | None, ylabel: str | None, title: str | None, fontsize: float = 12) -> None:
    xs = np.concatenate([np.asarray(line.get_xdata(), dtype=float) for line in ax.get_lines()] or [np.zeros(0)])
    if len(xs) and np.all(xs == np.round(xs)) and ax.get_xscale() == "linear":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs, counts: no tick at 0.5
    if ax.get_xscale() == "log":
        ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap on a narrow panel
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        # the axes' share of the figure (before layout, a little more than it will get)
        ax.set_title(_fit(title, ax.get_position().width * fig.get_figwidth(), fontsize), fontsize=fontsize)
    ax.grid(alpha=0.3)


def scatter_plot(points: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                 path: str | os.PathLike | None = None, *, xlabel: str, ylabel: str, title: str | None = None,
                 logx: bool = False, connect: bool = False, annotate_first: bool = False) -> Figure:
    """Labelled point clouds; ``connect`` joins each group's points in order (trajectories).

    Parameters
    ----------
    points : mapping of label to (xs, ys)
    path : path-like, optional
        Where to save it (format from the suffix: png, pdf, svg); ``None``: not saved.
    xlabel, ylabel : str
    title : str, optional
    logx : bool
        Log-scale x axis.
    connect : bool
        Join each group's points in the order given.
    annotate_first : bool
        With ``connect``: mark each group's first point with a square.

    Returns
    -------
    matplotlib.figure.Figure
        One axes.
    """
    fig = _new_figure(5.4, 4.2)
    ax = fig.add_subplot()
    for label, (xs, ys) in points.items():
        xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        if connect:
            line, = ax.plot(xs, ys, "-", alpha=0.6, linewidth=1)
            ax.scatter(xs, ys, s=14, color=line.get_color(), label=label)
            if annotate_first and len(xs):
                ax.scatter(xs[:1], ys[:1], s=40, marker="s", color=line.get_color())
        else:
            ax.scatter(xs, ys, s=18, label=label)
    if logx:
        ax.set_xscale("log")
    _label(fig, ax, xlabel, ylabel, title)
    ax.legend(fontsize=7, ncols=2)
    return _done(fig, path)


def comparison_panels(panels: Sequence[tuple[str, str, Mapping[str, tuple[Sequence[float], Sequence[float]]]]],
                      path: str | os.PathLike | None = None, *, xlabel: str = "epoch", suptitle: str | None = None,
                      reference: str = "published") -> Figure:
    """Side-by-side panels of overlaid series, each on its own x values.

    Measured series are lines through their points. A series whose label
    contains ``reference`` (the paper's numbers) is drawn as open markers
    only: a reference exists at its own x values, and a line would invent
    values between them.

    Parameters
    ----------
    panels : sequence of (title, ylabel, {label: (xs, ys)})
        One panel each, up to three per row.
    path : path-like, optional
        Where to save it (format from the suffix: png, pdf, svg); ``None``: not saved.
    xlabel : str
        Every panel's x label.
    suptitle : str, optional
    reference : str
        What marks a reference series' label.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per panel.
    """
    n = len(panels)
    if n == 0:
        raise SparsetopoError("comparison_panels needs at least one panel; got 0")
    ncols = min(n, 3)
    nrows = -(-n // ncols)
    fig = _new_figure(4.4 * ncols, 3.4 * nrows + (0.4 if suptitle else 0))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[n:]:
        fig.delaxes(ax)
    for ax, (title, ylabel, series) in zip(axes, panels):
        for label, (xs, ys) in series.items():
            ref = reference in label
            ax.plot(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float), linestyle="none" if ref else "-",
                    marker="o", markersize=6 if ref else 3, markerfacecolor="none" if ref else None, label=label)
        _label(fig, ax, xlabel, ylabel, title, fontsize=9)
        ax.legend(fontsize=7)
    if suptitle:
        fig.suptitle(_fit(suptitle, fig.get_figwidth(), 12))
    return _done(fig, path)


def scatter_panels(panels: Sequence[tuple[str, str, Mapping[str, tuple[Sequence[float], Sequence[float]]]]],
                   path: str | os.PathLike | None = None, *, ylabel: str, suptitle: str | None = None,
                   logx: bool = True) -> Figure:
    """Side-by-side panels of connected point groups sharing the y axis (accuracy against several costs).

    Parameters
    ----------
    panels : sequence of (title, xlabel, {label: (xs, ys)})
        One panel each; every group's points are joined in the order given.
    path : path-like, optional
        Where to save it (format from the suffix: png, pdf, svg); ``None``: not saved.
    ylabel : str
        The shared y axis' label.
    suptitle : str, optional
    logx : bool
        Log-scale x axes (widths, parameter counts and FLOPs span decades).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per panel.
    """
    n = len(panels)
    if n == 0:
        raise SparsetopoError("scatter_panels needs at least one panel; got 0")
    fig = _new_figure(4.6 * n, 3.8 + (0.4 if suptitle else 0))
    axes = np.atleast_1d(fig.subplots(1, n, squeeze=False, sharey=True)).ravel()
    for ax, (title, xlabel, points) in zip(axes, panels):
        for label, (xs, ys) in points.items():
            ax.plot(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float), "-o", markersize=4, alpha=0.8,
                    label=label)
        if logx:
            ax.set_xscale("log")
        _label(fig, ax, xlabel, None, title, fontsize=9)
        ax.legend(fontsize=7)
    axes[0].set_ylabel(ylabel)
    if suptitle:
        fig.suptitle(_fit(suptitle, fig.get_figwidth(), 12))
    return _done(fig, path)


def layer_matrix_grid(distances: np.ndarray, labels: Sequence[str], layers: Sequence[int], *,
                      path: str | os.PathLike | None = None, suptitle: str | None = None,
                      max_cols: int = 4) -> Figure:
    """Heatmaps of the pairwise NNSTD of ``layers`` and of their mean, in a near-square grid.

    Parameters
    ----------
    distances : array of shape (N, N, n_layers)
        A pairwise NNSTD array (:func:`sparsetopo.nnstd.pairwise_nnstd`).
    labels : sequence of str
        The N networks' names (short ones read best: the command line strips shared path parts).
    layers : sequence of int
        The layers to draw; the last panel is their mean (the command line leaves dense layers out
        of both, their NNSTD being 0 by construction).
    path : path-like, optional
        Where to save the figure (format from the suffix); ``None``: only return it.
    suptitle : str, optional
    max_cols : int
        At most this many panels per row: many layers wrap into rows instead of one wide strip.

    Returns
    -------
    matplotlib.figure.Figure
    """
    d = np.asarray(distances, dtype=np.float64)
    layers = [int(k) for k in layers]
    if d.ndim != 3 or d.shape[0] != d.shape[1] or d.shape[0] != len(labels):
        raise SparsetopoError(f"distances must have shape (N, N, n_layers) for {len(labels)} labels; "
                              f"got shape {d.shape}")
    if not layers or any(not 0 <= k < d.shape[2] for k in layers):
        raise SparsetopoError(f"layers must be a non-empty list of indices in [0, {d.shape[2]}); got {layers}")
    if max_cols < 1:
        raise SparsetopoError(f"max_cols must be >= 1; got {max_cols}")
    mats = [d[:, :, k] for k in layers] + [d[:, :, layers].mean(axis=2)]
    which = "layer" if len(layers) == 1 else "layers"
    titles = [f"layer {k}" for k in layers] + [f"mean of {which} {', '.join(map(str, layers))}"]
    # Columns: close to square, never more than max_cols.
    ncols = min(max_cols, int(np.ceil(np.sqrt(len(mats)))))
    nrows = -(-len(mats) // ncols)
    side = 2.4 + 0.08 * len(labels)
    fig = _new_figure(side * ncols + 0.8, side * nrows + (0.4 if suptitle else 0))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    im = None
    for ax, m, t in zip(axes, mats, titles):
        im = _heatmap_panel(fig, ax, m, labels, t, 0.0, 1.0)
    for ax in axes[len(mats):]:
        ax.set_axis_off()
    fig.colorbar(im, ax=axes[:len(mats)].tolist(), label="NNSTD", shrink=0.8)
    if suptitle:
        fig.suptitle(_fit(suptitle, fig.get_figwidth(), 12))
    return _done(fig, path)
