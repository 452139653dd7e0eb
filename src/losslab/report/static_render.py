"""Static backend: figure descriptions -> matplotlib -> PNG (150 dpi) and PDF, for papers.

Figures are drawn on a bare ``matplotlib.figure.Figure`` with an Agg canvas rather than
through ``pyplot``: pyplot keeps global state and ``matplotlib.use`` would switch the
backend of a user's notebook; a canvas per figure touches neither and is freed with it.
"""

from __future__ import annotations

from functools import singledispatch
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator

from losslab.report.figures import (
    BarFigure,
    HeatmapFigure,
    LineFigure,
    ScatterFigure,
    SurfaceFigure,
)
from losslab.report.palette import Palette
from losslab.runs.atomic import atomic_write

__all__ = ["render", "to_matplotlib", "save_static", "DPI", "FORMATS"]

DPI = 150
FORMATS = ("png", "pdf")
BAND_ALPHA = 0.2
MAX_ANNOTATED_POINTS = 20  # more labels than this overlap into an unreadable blot


def _text(s: str) -> str:
    """Text with ``$`` escaped: matplotlib would parse ``$...$`` in a name as mathtext
    and raise on an unbalanced one."""
    return str(s).replace("$", r"\$")


MAX_LEGEND = 16


@singledispatch
def render(fig: Any, ax: Axes, palette: Palette) -> None:
    """Draw one kind of description on ``ax``: one function per figure type, added with
    ``@render.register(FigureType)``; a subclass is drawn by its nearest registered base
    class. An unregistered type is a TypeError naming it."""
    known = ", ".join(sorted(k.__name__ for k in render.registry if k is not object))
    raise TypeError(f"no matplotlib renderer for {type(fig).__name__}; registered: {known}")


def to_matplotlib(fig: Any, palette: Palette | None = None) -> MplFigure:
    """The matplotlib figure for a description (dispatching on its type)."""
    palette = palette if palette is not None else Palette()
    mfig = MplFigure(figsize=(6.4, 4.0), layout="constrained")
    FigureCanvasAgg(mfig)
    ax = mfig.add_subplot(projection="3d" if isinstance(fig, SurfaceFigure) else None)
    render(fig, ax, palette)
    ax.set_title(_text(fig.title), loc="left")
    # A legend of more entries than this would squeeze the axes to nothing; the interactive
    # figure names every series on hover.
    if 0 < len(ax.get_legend_handles_labels()[0]) <= MAX_LEGEND:
        ax.legend(fontsize="small", frameon=False)
    return mfig


def save_static(fig: Any, palette: Palette | None, stem: Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` atomically; return their paths."""
    mfig = to_matplotlib(fig, palette)
    paths = []
    for fmt in FORMATS:
        path = stem.parent / f"{stem.name}.{fmt}"
        # The temporary name ends in .tmp, so the format must be given explicitly.
        atomic_write(path, lambda tmp, fmt=fmt: mfig.savefig(tmp, format=fmt, dpi=DPI))
        paths.append(path)
    return paths


def _axes_labels(ax: Axes, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(_text(xlabel))
    ax.set_ylabel(_text(ylabel))
    ax.grid(True, alpha=0.3)


@render.register(LineFigure)
def _line(fig: LineFigure, ax: Axes, palette: Palette) -> None:
    for s in fig.series:
        color = palette[s.name]
        ax.plot(s.x, s.y, color=color, linewidth=1.8, label=_text(s.name))
        if s.std is not None and np.isfinite(s.std).any():
            ax.fill_between(s.x, s.y - s.std, s.y + s.std, color=color, alpha=BAND_ALPHA,
                            linewidth=0)
    if fig.log_y:
        ax.set_yscale("log", nonpositive="clip")
    xs = np.concatenate([s.x for s in fig.series]) if fig.series else np.array([])
    if xs.size and np.all(xs[np.isfinite(xs)] == np.round(xs[np.isfinite(xs)])):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: no 1.5, 2.5
    _axes_labels(ax, fig.xlabel, fig.ylabel)


@render.register(ScatterFigure)
def _scatter(fig: ScatterFigure, ax: Axes, palette: Palette) -> None:
    for s in fig.points:
        ax.scatter(s.x, s.y, color=palette[s.name], s=24, alpha=0.85, label=_text(s.name))
        if s.labels and len(s.labels) <= MAX_ANNOTATED_POINTS:
            for x, y, label in zip(s.x, s.y, s.labels, strict=True):
                ax.annotate(_text(label), (x, y), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
    _axes_labels(ax, fig.xlabel, fig.ylabel)


@render.register(BarFigure)
def _bar(fig: BarFigure, ax: Axes, palette: Palette) -> None:
    positions = np.arange(len(fig.categories))
    n = max(len(fig.bars), 1)
    width = 0.8 / n
    for i, b in enumerate(fig.bars):
        offset = (i - (n - 1) / 2) * width
        ax.bar(positions + offset, b.values, width, yerr=b.errors, capsize=3,
               color=palette[b.name], label=_text(b.name))
    ax.set_xticks(positions, [_text(c) for c in fig.categories],
                  rotation=30 if max(map(len, fig.categories), default=0) > 8 else 0,
                  ha="right" if max(map(len, fig.categories), default=0) > 8 else "center")
    _axes_labels(ax, fig.xlabel, fig.ylabel)
    ax.grid(False, axis="x")


def _levels(fig: HeatmapFigure, default: int) -> Any:
    """The figure's levels, else ``default`` (also on a log scale, where evenly spaced loss
    levels would crowd at the top)."""
    if fig.levels is None or fig.log:
        return default
    return np.asarray(fig.levels, dtype=float)


@render.register(HeatmapFigure)
def _heatmap(fig: HeatmapFigure, ax: Axes, palette: Palette) -> None:
    z = np.ma.masked_invalid(fig.shown())
    if fig.contour and fig.lines_only:
        mappable = ax.contour(fig.x, fig.y, z, levels=_levels(fig, 20), cmap="viridis")
        ax.clabel(mappable, fontsize="x-small")
    elif fig.contour:
        mappable = ax.contourf(fig.x, fig.y, z, levels=_levels(fig, 20), cmap="viridis",
                               extend="max" if fig.zmax is not None else "neither")
        ax.contour(fig.x, fig.y, z, levels=_levels(fig, 10), colors="k", linewidths=0.4,
                   alpha=0.5)
    else:
        mappable = ax.pcolormesh(fig.x, fig.y, z, shading="auto", cmap="viridis")
    if fig.equal_aspect:
        ax.set_aspect("equal", adjustable="box")
    bar = ax.figure.colorbar(mappable, ax=ax)
    bar.set_label(_text(fig.colour_label()))
    for path in fig.paths:
        style = ({"marker": "o", "markersize": 3} if path.connected else
                 {"marker": "*", "markersize": 13, "linestyle": "none",
                  "markeredgecolor": "black", "markeredgewidth": 0.6})
        ax.plot(path.x, path.y, label=_text(path.name), color=palette[path.name], **style)
    _axes_labels(ax, fig.xlabel, fig.ylabel)
    ax.grid(False)


@render.register(SurfaceFigure)
def _surface(fig: SurfaceFigure, ax: Axes, palette: Palette) -> None:
    xx, yy = np.meshgrid(fig.x, fig.y)  # indexing="xy": z[i, j] is at (x[j], y[i])
    ax.plot_surface(xx, yy, np.ma.masked_invalid(fig.shown()), cmap="viridis", linewidth=0)
    ax.set_xlabel(_text(fig.xlabel))
    ax.set_ylabel(_text(fig.ylabel))
    ax.set_zlabel(_text(fig.colour_label()))
