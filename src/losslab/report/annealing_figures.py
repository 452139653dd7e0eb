"""A figure kind for the annealing report: stacked bars per epoch with marked epochs.

The simulated-annealing thesis draws the worsening moves of every epoch as a stacked bar,
accepted below and rejected on top, with a red line where ε was divided by 10 (its Figs 3.4
and 4.2). :class:`StackedBarFigure` describes that plot neutrally; :func:`register_renderers`
adds its plotly and matplotlib renderers to the two backends. It is called by the section
builder, when a report is drawn, so importing this module imports no plotting library.

Source: M. Stringher, "Unconventional Training of Deep Neural Networks", Master's thesis,
University of Padova, 2019 ("the thesis").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from losslab.errors import InputError
from losslab.report.figures import BarSeries, _vector

__all__ = ["StackedBarFigure", "register_renderers"]


@dataclass
class StackedBarFigure:
    """Bars at numeric positions ``x``, the ``stacks`` piled bottom-up in their order, and
    dashed vertical lines at ``markers`` (labelled ``marker_label`` in the legend)."""

    title: str
    xlabel: str
    ylabel: str
    x: np.ndarray
    stacks: list[BarSeries] = field(default_factory=list)
    markers: list[float] = field(default_factory=list)
    marker_label: str = ""

    def __post_init__(self) -> None:
        self.x = _vector(self.x, "stacked bar x")
        for s in self.stacks:
            if len(s.values) != len(self.x):
                raise InputError(f"stack {s.name!r} has {len(s.values)} values for "
                                 f"{len(self.x)} bars")
        self.markers = [float(m) for m in self.markers]


_REGISTERED = False


def register_renderers() -> None:
    """Teach both backends to draw :class:`StackedBarFigure` (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from losslab.report import plotly_render, static_render

    plotly_render.render.register(StackedBarFigure)(_plotly)
    static_render.render.register(StackedBarFigure)(_matplotlib)
    _REGISTERED = True


def _plotly(fig: StackedBarFigure, palette: Any) -> Any:
    import plotly.graph_objects as go

    out = go.Figure()
    for s in fig.stacks:
        out.add_trace(go.Bar(x=fig.x, y=s.values, name=s.name, marker_color=palette[s.name]))
    top = max((float(np.nansum([s.values[i] for s in fig.stacks])) for i in range(len(fig.x))),
              default=1.0) or 1.0
    for k, m in enumerate(fig.markers):
        # A line trace rather than a layout shape: it has a legend entry and a hover.
        out.add_trace(go.Scatter(x=[m, m], y=[0, top], mode="lines", name=fig.marker_label,
                                 line={"color": "red", "dash": "dash", "width": 2},
                                 showlegend=k == 0, legendgroup="markers",
                                 hovertemplate=f"{fig.marker_label} after epoch {m - 0.5:g}"
                                               "<extra></extra>"))
    out.update_layout(barmode="stack", hovermode="x unified")
    out.update_xaxes(title_text=fig.xlabel)
    out.update_yaxes(title_text=fig.ylabel)
    return out


def _matplotlib(fig: StackedBarFigure, ax: Any, palette: Any) -> None:
    bottom = np.zeros(len(fig.x))
    for s in fig.stacks:
        values = np.nan_to_num(s.values)
        ax.bar(fig.x, values, 0.85, bottom=bottom, color=palette[s.name], label=s.name)
        bottom += values
    for k, m in enumerate(fig.markers):
        ax.axvline(m, color="red", linestyle="--", linewidth=1.5,
                   label=fig.marker_label if k == 0 else None)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: no 2.5, 7.5
    ax.set_xlabel(fig.xlabel)
    ax.set_ylabel(fig.ylabel)
    ax.grid(True, axis="y", alpha=0.3)
