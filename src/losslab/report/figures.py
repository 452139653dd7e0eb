"""Neutral figure descriptions: what to draw, not how.

Compute code and report sections describe a plot with these small dataclasses; the two
backends (:mod:`losslab.report.plotly_render` for the interactive report and
:mod:`losslab.report.static_render` for PNG/PDF) each turn them into pixels. Keeping the
description neutral means an analysis never imports a plotting library and both outputs
always show the same data.

Colours are not part of a description: the renderers take them from one shared
:class:`~losslab.report.palette.Palette`, keyed by series name, so a variant has the same
colour in every figure and in both backends.

Adding a new kind of figure: define a dataclass here (or anywhere) and register one
renderer for it with each backend's ``render.register(MyFigure)`` decorator
(``functools.singledispatch``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from losslab.errors import InputError

__all__ = [
    "loss_levels",
    "accuracy_bounds",
    "bounded_range",
    "title_lines",
    "Series",
    "LineFigure",
    "ScatterSeries",
    "ScatterFigure",
    "BarSeries",
    "BarFigure",
    "HeatmapFigure",
    "Figure",
]


def _vector(values: Sequence[float] | np.ndarray | None, what: str) -> np.ndarray:
    """A 1-D float array; None and non-numbers become NaN so both backends draw gaps."""
    if isinstance(values, (list, tuple)):
        values = [np.nan if v is None else v for v in values]
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise InputError(f"{what} must be one-dimensional, got shape {arr.shape}")
    return arr


def _same_length(name: str, **arrays: np.ndarray | None) -> None:
    lengths = {k: len(v) for k, v in arrays.items() if v is not None}
    if len(set(lengths.values())) > 1:
        raise InputError(f"series {name!r}: lengths differ: {lengths}")


@dataclass
class Series:
    """One line: ``y`` against ``x``; with ``std``, a shaded band ``y ± std`` around it.

    ``count`` (optional) is the number of samples behind each point (e.g. seeds); the
    interactive backend shows it on hover.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    std: np.ndarray | None = None
    count: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.x = _vector(self.x, f"{self.name}.x")
        self.y = _vector(self.y, f"{self.name}.y")
        if self.std is not None:
            self.std = _vector(self.std, f"{self.name}.std")
        if self.count is not None:
            self.count = _vector(self.count, f"{self.name}.count")
        _same_length(self.name, x=self.x, y=self.y, std=self.std, count=self.count)


@dataclass
class LineFigure:
    """Lines sharing one pair of axes (e.g. a metric per epoch, one line per variant).

    ``y_bounds``: limits the y axis never goes past (an accuracy's ``(0, 1)``, see
    :func:`accuracy_bounds`); inside them the axis still fits the data, so accuracies of
    0.95 to 0.97 are not flattened into a line, and a ± std band cannot stretch it to 1.02.
    """

    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    log_y: bool = False
    y_bounds: tuple[float, float] | None = None

    def y_range(self) -> tuple[float, float] | None:
        """The y axis limits both backends draw, or None for their own autoscaling."""
        if self.y_bounds is None or self.log_y:
            return None
        values = [s.y for s in self.series]
        values += [s.y + sign * s.std for s in self.series if s.std is not None
                   for sign in (-1, 1)]
        return bounded_range(np.concatenate(values) if values else np.array([]), self.y_bounds)


@dataclass
class ScatterSeries:
    """A set of points; ``labels`` are per-point hover texts (in the static figure, placed
    beside their points where they overlap nothing, see ``static_render.place_labels``).
    Drawn over a heat map, a ``connected`` series is a path (a line through its points) and
    any other one marks single points (stars: ensemble members on a trajectory)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    labels: list[str] | None = None
    connected: bool = True

    def __post_init__(self) -> None:
        self.x = _vector(self.x, f"{self.name}.x")
        self.y = _vector(self.y, f"{self.name}.y")
        if self.labels is not None:
            self.labels = [str(label) for label in self.labels]
            if len(self.labels) != len(self.x):
                raise InputError(f"series {self.name!r}: {len(self.labels)} labels for "
                                 f"{len(self.x)} points")
        _same_length(self.name, x=self.x, y=self.y)


@dataclass
class ScatterFigure:
    """Point clouds sharing one pair of axes (e.g. final val vs test accuracy per run)."""

    title: str
    xlabel: str
    ylabel: str
    points: list[ScatterSeries] = field(default_factory=list)


@dataclass
class BarSeries:
    """One member of each bar group: a value (and optional error bar) per category."""

    name: str
    values: np.ndarray
    errors: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.values = _vector(self.values, f"{self.name}.values")
        if self.errors is not None:
            self.errors = _vector(self.errors, f"{self.name}.errors")
        _same_length(self.name, values=self.values, errors=self.errors)


@dataclass
class BarFigure:
    """Grouped bars: one group per category, one bar per series inside each group."""

    title: str
    xlabel: str
    ylabel: str
    categories: list[str]
    bars: list[BarSeries] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.categories = [str(c) for c in self.categories]
        for bar in self.bars:
            if len(bar.values) != len(self.categories):
                raise InputError(f"bar series {bar.name!r} has {len(bar.values)} values for "
                                 f"{len(self.categories)} categories")


@dataclass
class HeatmapFigure:
    """A scalar field ``z[i, j]`` at ``(x[j], y[i])``, e.g. a 2-D loss surface.

    ``contour=True`` draws filled contour levels instead of cells, which reads better for
    smooth surfaces; ``zlabel`` titles the colour bar. ``levels``: explicit, evenly spaced
    contour levels (e.g. :func:`loss_levels`, loss-landscape's 0.1 to 10 by 0.5); ``zmax``:
    values above it are drawn at it (the clipping is named in the colour bar); ``log``: a
    logarithmic colour scale (positive values); ``equal_aspect``: one unit is as long on both
    axes (planes whose axes are distances in the same space).
    """

    title: str
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    xlabel: str = ""
    ylabel: str = ""
    contour: bool = False
    zlabel: str = ""
    lines_only: bool = False  # with contour: contour lines, not filled levels
    paths: list[ScatterSeries] = field(default_factory=list)  # drawn over it (trajectories)
    levels: Sequence[float] | None = None
    zmax: float | None = None
    log: bool = False
    equal_aspect: bool = False

    def __post_init__(self) -> None:
        self.x = _vector(self.x, "heatmap x")
        self.y = _vector(self.y, "heatmap y")
        self.z = np.asarray(self.z, dtype=float)
        if self.z.shape != (len(self.y), len(self.x)):
            raise InputError(f"heatmap z has shape {self.z.shape}, expected "
                             f"(len(y), len(x)) = ({len(self.y)}, {len(self.x)})")
        if self.levels is not None:
            self.levels = [float(v) for v in self.levels]
            steps = np.diff(self.levels)
            if len(self.levels) < 2 or not np.allclose(steps, steps[0]) or steps[0] <= 0:
                raise InputError("heatmap levels must be at least two, increasing evenly")

    def shown(self) -> np.ndarray:
        """``z`` as drawn: clipped at ``zmax``; on a log scale, log10 of the positive values."""
        z = self.z if self.zmax is None else np.minimum(self.z, self.zmax)
        if self.log:
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.where(z > 0, np.log10(np.where(z > 0, z, 1.0)), np.nan)
        return z

    def colour_label(self) -> str:
        label = f"log10 {self.zlabel}" if self.log else self.zlabel
        return label + (f" (clipped at {self.zmax:g})" if self.zmax is not None else "")


@dataclass
class SurfaceFigure:
    """A scalar field ``z[i, j]`` at ``(x[j], y[i])`` drawn as a 3-D surface (interactive in
    the report: rotate, zoom); the static version is a matplotlib 3-D plot."""

    title: str
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    xlabel: str = ""
    ylabel: str = ""
    zlabel: str = ""
    zmax: float | None = None  # drawn at most this high, so one spike cannot flatten the rest
    levels: Sequence[float] | None = None
    log: bool = False

    def __post_init__(self) -> None:
        HeatmapFigure.__post_init__(self)  # the same checks and conversions

    shown = HeatmapFigure.shown
    colour_label = HeatmapFigure.colour_label


def accuracy_bounds(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """``(0, 1)`` for accuracies as fractions, ``(0, 100)`` when they are percentages (a value
    above 1, none above 100): the range an accuracy axis must stay within."""
    arr = np.asarray(values, dtype=float)
    finite = arr[np.isfinite(arr)]
    return (0.0, 100.0) if finite.size and 1 < finite.max() <= 100 else (0.0, 1.0)


def bounded_range(values: np.ndarray, bounds: tuple[float, float],
                  pad: float = 0.05) -> tuple[float, float]:
    """The data's extent plus ``pad`` of its span on each side, clipped to ``bounds``; the
    whole of ``bounds`` without finite data (an empty axis still reads as an accuracy)."""
    low, high = bounds
    finite = values[np.isfinite(values)]
    if not finite.size:
        return low, high
    lo, hi = float(finite.min()), float(finite.max())
    margin = pad * (hi - lo) if hi > lo else pad * (high - low)
    shown = max(low, lo - margin), min(high, hi + margin)
    return shown if shown[0] < shown[1] else (low, high)  # data outside the bounds


def title_lines(title: str, width: int = 60) -> list[str]:
    """A title broken at word boundaries into lines of at most ``width`` characters: figures
    are ~450 px wide in the report and 6.4 in on paper, and a longer line is cut off."""
    return textwrap.wrap(str(title), width, break_long_words=False) or [""]


def loss_levels(vmin: float = 0.1, vmax: float = 10.0, step: float = 0.5) -> list[float]:
    """Contour levels ``vmin, vmin + step, … < vmax``: loss-landscape's ``plot_2D_contour``
    defaults (Li et al. 2018's figures)."""
    if not 0 < step < vmax - vmin:
        raise InputError(f"loss levels need 0 < step < vmax - vmin, got {vmin}, {vmax}, {step}")
    return [float(v) for v in np.arange(vmin, vmax, step)]


# What a section may put in its ``figures`` list: any registered description.
Figure = LineFigure | ScatterFigure | BarFigure | HeatmapFigure
