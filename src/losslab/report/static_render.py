"""Static backend: figure descriptions -> matplotlib -> PNG (150 dpi) and PDF, for papers.

Figures are drawn on a bare ``matplotlib.figure.Figure`` with an Agg canvas rather than
through ``pyplot``: pyplot keeps global state and ``matplotlib.use`` would switch the
backend of a user's notebook; a canvas per figure touches neither and is freed with it.

Readable on paper: the layout is constrained (nothing spills off the canvas), long titles
wrap, the legend sits below the axes rather than over the data, x tick labels that would
run into each other are turned, and the point labels of a scatter are placed one by one
where they touch no other label, no point and no edge, or left out (the interactive figure
shows every label on hover).
"""

from __future__ import annotations

import hashlib
import json
import pickle
from functools import singledispatch
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.text import Annotation
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox

from losslab.report.figures import (
    BarFigure,
    HeatmapFigure,
    LineFigure,
    ScatterFigure,
    SurfaceFigure,
    title_lines,
)
from losslab.report.palette import Palette
from losslab.runs.atomic import atomic_write, atomic_write_text

__all__ = ["render", "annotate", "to_matplotlib", "save_static", "DPI", "FORMATS"]

DPI = 150
FORMATS = ("png", "pdf")
BAND_ALPHA = 0.2
TITLE_WIDTH = 60  # characters per title line on a 6.4 in wide figure
MAX_ANNOTATED_POINTS = 40  # candidates for a label; the placement keeps those that fit
MARKER_SIZE = 24  # scatter marker area, pt²
LABEL_SIZE = 6  # pt
# Where a label may sit, tried in turn: (dx, dy) in points from its point, and its alignment.
LABEL_OFFSETS = ((4, 4, "left", "bottom"), (-4, 4, "right", "bottom"),
                 (4, -4, "left", "top"), (-4, -4, "right", "top"),
                 (0, 6, "center", "bottom"), (0, -6, "center", "top"),
                 (6, 0, "left", "center"), (-6, 0, "right", "center"))


def _text(s: str) -> str:
    """Text with ``$`` escaped: matplotlib would parse ``$...$`` in a name as mathtext
    and raise on an unbalanced one."""
    return str(s).replace("$", r"\$")


MAX_LEGEND = 16


@singledispatch
def annotate(fig: Any, ax: Axes) -> None:
    """Add the text that must not overlap anything, once the layout is settled: nothing for
    most kinds of figure; the point labels of a scatter (see :func:`place_labels`)."""


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
    # At the PNG's resolution from the start: labels are placed by measuring them, and text
    # does not scale exactly with the dpi (hinting), so measure as it will be written.
    mfig = MplFigure(figsize=(6.4, 4.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(mfig)
    ax = mfig.add_subplot(projection="3d" if isinstance(fig, SurfaceFigure) else None)
    render(fig, ax, palette)
    ax.set_title("\n".join(title_lines(_text(fig.title), TITLE_WIDTH)), loc="left",
                 fontsize="medium")
    # A legend of more entries than this would squeeze the axes to nothing; the interactive
    # figure names every series on hover. Below the axes, so it never hides data.
    handles, labels = ax.get_legend_handles_labels()
    if 0 < len(handles) <= MAX_LEGEND:
        mfig.legend(handles, labels, loc="outside lower center", fontsize="small",
                    frameon=False, ncols=min(len(handles), 4))
    mfig.draw_without_rendering()  # the constrained layout, before anything is measured
    if _turn_crowded_ticks(ax):
        mfig.draw_without_rendering()
    annotate(fig, ax)
    return mfig


def _overlapping(boxes: list[Bbox]) -> bool:
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def _turn_crowded_ticks(ax: Axes) -> bool:
    """Turn the x tick labels when two of them overlap (long bar categories): by 30° when
    the ticks are far enough apart for slanted labels to clear each other (a line's height
    across them), else upright; True if it did."""
    if ax.name == "3d":
        return False
    renderer = ax.figure.canvas.get_renderer()
    ticks = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
    if not _overlapping([t.get_window_extent(renderer) for t in ticks]):
        return False
    centres = sorted((b.x0 + b.x1) / 2 for b in (t.get_window_extent(renderer) for t in ticks))
    spacing = min(np.diff(centres)) if len(centres) > 1 else np.inf
    height = max(t.get_fontsize() for t in ticks) * ax.figure.dpi / 72
    angle = 30 if spacing * np.sin(np.radians(30)) > 1.3 * height else 90
    for t in ticks:
        t.set_rotation(angle)
        t.set_horizontalalignment("right" if angle < 90 else "center")
        t.set_rotation_mode("anchor" if angle < 90 else "default")
    return True


def place_labels(ax: Axes, points: list[tuple[float, float, str]]) -> list[Annotation]:
    """Label each point at the first of :data:`LABEL_OFFSETS` where the label lies inside
    the axes and overlaps no label already placed and no point's marker; a point where none
    fits is left unlabelled. Greedy, in the points' order, like a simple adjustText.

    Call it once the layout is settled: positions are measured on the canvas. Labels are
    kept out of the layout (``in_layout=False``), so placing them cannot move the axes.
    """
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    radius = np.sqrt(MARKER_SIZE) / 2 * ax.figure.dpi / 72
    xy = ax.transData.transform(np.array([(x, y) for x, y, _ in points], dtype=float))
    taken = [Bbox.from_extents(px - radius, py - radius, px + radius, py + radius)
             for px, py in xy if np.isfinite(px) and np.isfinite(py)]
    placed: list[Annotation] = []
    for x, y, label in points:
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        for dx, dy, ha, va in LABEL_OFFSETS:
            note = ax.annotate(_text(label), (x, y), xytext=(dx, dy), textcoords="offset points",
                               ha=ha, va=va, fontsize=LABEL_SIZE, annotation_clip=True)
            note.set_in_layout(False)
            box = note.get_window_extent(renderer).padded(1)  # a pixel of air
            inside = frame.containsx(box.x0) and frame.containsx(box.x1) \
                and frame.containsy(box.y0) and frame.containsy(box.y1)
            if inside and not any(box.overlaps(other) for other in taken):
                taken.append(box)
                placed.append(note)
                break
            note.remove()
    return placed


def save_static(fig: Any, palette: Palette | None, stem: Path,
                drawn: DrawnFigures | None = None) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` atomically; return their paths. With ``drawn``,
    files already drawn from this very description (and colours) are kept as they are."""
    paths = [stem.parent / f"{stem.name}.{fmt}" for fmt in FORMATS]
    key = drawn.key(fig, palette) if drawn is not None else None
    if key is not None and drawn.holds(stem.name, key) and all(p.exists() for p in paths):
        return paths
    mfig = to_matplotlib(fig, palette)
    for path, fmt in zip(paths, FORMATS, strict=True):
        # The temporary name ends in .tmp, so the format must be given explicitly.
        atomic_write(path, lambda tmp, fmt=fmt: mfig.savefig(tmp, format=fmt, dpi=DPI))
    if key is not None:
        drawn.record(stem.name, key)
    return paths


class DrawnFigures:
    """Which description each static figure of a folder was drawn from, kept in
    ``.drawn.json`` there, so a report built again redraws only the figures whose numbers,
    colours or renderer changed: matplotlib's layout and PDF writing cost about 0.3 s a
    figure, most of rebuilding a report of stored results."""

    NAME = ".drawn.json"

    def __init__(self, folder: Path) -> None:
        self.path = folder / self.NAME
        try:
            self._keys: dict[str, str] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self._keys = {}

    @staticmethod
    def key(fig: Any, palette: Palette | None) -> str | None:
        """The SHA-256 of the description, the colours given so far and the renderer's
        versions; None for a description that cannot be pickled (always drawn)."""
        import matplotlib

        from losslab import __version__

        state = None if palette is None else palette.state()
        try:
            blob = pickle.dumps((type(fig).__name__, fig, state, __version__,
                                 matplotlib.__version__, DPI))
        except Exception:
            return None
        return hashlib.sha256(blob).hexdigest()

    def holds(self, name: str, key: str) -> bool:
        return self._keys.get(name) == key

    def record(self, name: str, key: str) -> None:
        self._keys[name] = key

    def save(self) -> None:
        if self._keys:
            atomic_write_text(self.path, json.dumps(self._keys, indent=0, sort_keys=True))


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
    shown = fig.y_range()
    if shown is not None:
        ax.set_ylim(*shown)
    xs = np.concatenate([s.x for s in fig.series]) if fig.series else np.array([])
    if xs.size and np.all(xs[np.isfinite(xs)] == np.round(xs[np.isfinite(xs)])):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: no 1.5, 2.5
    _axes_labels(ax, fig.xlabel, fig.ylabel)


@render.register(ScatterFigure)
def _scatter(fig: ScatterFigure, ax: Axes, palette: Palette) -> None:
    for s in fig.points:
        ax.scatter(s.x, s.y, color=palette[s.name], s=MARKER_SIZE, alpha=0.85,
                   label=_text(s.name))
    _axes_labels(ax, fig.xlabel, fig.ylabel)


@annotate.register(ScatterFigure)
def _scatter_labels(fig: ScatterFigure, ax: Axes) -> None:
    points = [(x, y, label) for s in fig.points if s.labels
              for x, y, label in zip(s.x, s.y, s.labels, strict=True)]
    if 0 < len(points) <= MAX_ANNOTATED_POINTS:
        place_labels(ax, points)


@render.register(BarFigure)
def _bar(fig: BarFigure, ax: Axes, palette: Palette) -> None:
    positions = np.arange(len(fig.categories))
    n = max(len(fig.bars), 1)
    width = 0.8 / n
    for i, b in enumerate(fig.bars):
        offset = (i - (n - 1) / 2) * width
        ax.bar(positions + offset, b.values, width, yerr=b.errors, capsize=3,
               color=palette[b.name], label=_text(b.name))
    ax.set_xticks(positions, [_text(c) for c in fig.categories])  # turned if they collide
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
