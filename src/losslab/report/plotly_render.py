"""Interactive backend: figure descriptions -> plotly figures -> HTML fragments.

A fragment is an empty ``<div>`` plus the figure as JSON in a ``<script
type="application/json">``; the page's driver script (see :mod:`losslab.report.template`)
draws them all with ``Plotly.newPlot`` and, once every plot's promise has settled, writes
the status element the browser test reads. Drawing from one driver, rather than plotly's
own ``to_html`` with one inline script per figure, is what lets the page know when all
plots are done. plotly.js itself is embedded once by the page, never per figure.
"""

from __future__ import annotations

from functools import singledispatch
from typing import Any

import numpy as np
import plotly.graph_objects as go
from markupsafe import Markup, escape
from plotly.io.json import to_json_plotly

from losslab.report.figures import (
    BarFigure,
    HeatmapFigure,
    LineFigure,
    ScatterFigure,
    SurfaceFigure,
    title_lines,
)
from losslab.report.palette import Palette

__all__ = ["render", "to_plotly", "to_div", "PLOT_CONFIG"]

PLOT_CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "responsive": True,
    "toImageButtonOptions": {"format": "png", "scale": 2},
}
BAND_ALPHA = 0.18
TITLE_WIDTH = 55  # characters per title line: a figure is ~450 px wide at 15 px type
MODEBAR_PX = 30  # the tool bar's strip at the top of every plot, kept clear of the title
LINE_PX = 20


@singledispatch
def render(fig: Any, palette: Palette) -> go.Figure:
    """The plotly figure of one kind of description, before the common layout: one function
    per figure type, added with ``@render.register(FigureType)``; a subclass is drawn by its
    nearest registered base class. An unregistered type is a TypeError naming it."""
    known = ", ".join(sorted(k.__name__ for k in render.registry if k is not object))
    raise TypeError(f"no plotly renderer for {type(fig).__name__}; registered: {known}")


def to_plotly(fig: Any, palette: Palette | None = None) -> go.Figure:
    """The plotly figure for a description (dispatching on its type)."""
    palette = palette if palette is not None else Palette()
    out: go.Figure = render(fig, palette)
    lines = title_lines(fig.title, TITLE_WIDTH)
    out.update_layout(
        # Left-aligned just above the plot area, under a top margin that leaves the tool bar
        # (top right) its own strip: a long title never runs under it, and wraps, not clips.
        title={"text": "<br>".join(map(_plotly_text, lines)), "font": {"size": 15},
               "x": 0, "xref": "paper", "xanchor": "left",
               "y": 1, "yref": "paper", "yanchor": "bottom", "pad": {"b": 8}},
        template="plotly_white",
        height=400 + LINE_PX * (len(lines) - 1),
        margin={"l": 60, "r": 20, "t": MODEBAR_PX + 12 + LINE_PX * len(lines), "b": 40},
        # Below the plot, not beside it: long variant names would squeeze the axes.
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0,
                "itemclick": "toggle", "itemdoubleclick": "toggleothers"},
    )
    return out


def _plotly_text(text: str) -> str:
    """``text`` shown literally by plotly, which reads a few HTML tags (``<b>``, ``<br>``) in
    titles: ``&``, ``<`` and ``>`` as entities, which it decodes back."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _script_json(fig: go.Figure) -> str:
    """The figure and its config as JSON that is safe inside a ``<script>`` element.

    plotly's encoder writes numpy arrays compactly (base64 typed arrays) and already
    escapes ``<``, ``>`` and ``/`` in strings; escaping again costs nothing and keeps a
    variant named ``</script>`` from ever ending the element early.
    """
    spec = fig.to_plotly_json()
    # The config travels with the figure so the driver needs no per-figure arguments.
    text = to_json_plotly({"data": spec["data"], "layout": spec["layout"], "config": PLOT_CONFIG})
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def to_div(fig: Any, palette: Palette | None, div_id: str) -> Markup:
    """An HTML fragment that the page's driver script draws as an interactive plot."""
    spec = _script_json(to_plotly(fig, palette))
    safe_id = escape(div_id)
    return Markup(
        f'<div class="losslab-plot" id="{safe_id}"></div>'
        f'<script type="application/json" class="losslab-figure" data-target="{safe_id}">'
        f"{spec}</script>"
    )


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    """Customdata goes out as plain lists; JSON has no NaN, so missing values become null."""
    return [None if not np.isfinite(v) else float(v) for v in values]


@render.register(LineFigure)
def _line(fig: LineFigure, palette: Palette) -> go.Figure:
    out = go.Figure()
    for s in fig.series:
        color = palette[s.name]
        has_band = s.std is not None and bool(np.isfinite(s.std).any())
        if has_band:
            upper, lower = s.y + s.std, s.y - s.std
            if fig.log_y:
                # A band reaching below zero cannot be drawn on a log axis: floor it
                # just under the smallest value plotted instead of dropping the band.
                positive = np.concatenate([s.y[s.y > 0], lower[lower > 0]])
                floor = positive.min() / 2 if positive.size else 1e-12
                lower = np.where(np.isnan(lower), lower, np.maximum(lower, floor))
            common = {"x": s.x, "mode": "lines", "line": {"width": 0, "color": color},
                      "legendgroup": s.name, "showlegend": False, "hoverinfo": "skip"}
            out.add_trace(go.Scatter(y=upper, name=f"{s.name} +std", **common))
            out.add_trace(go.Scatter(y=lower, name=f"{s.name} -std", fill="tonexty",
                                     fillcolor=Palette.rgba(color, BAND_ALPHA), **common))
        std = s.std if s.std is not None else np.full(len(s.y), np.nan)
        count = s.count if s.count is not None else np.full(len(s.y), np.nan)
        hover = "%{fullData.name}: %{y:.4g}"
        if has_band:
            hover += " ± %{customdata[0]:.2g}"
        if s.count is not None:
            hover += " (n=%{customdata[1]})"
        out.add_trace(go.Scatter(
            x=s.x, y=s.y, name=s.name, mode="lines+markers", legendgroup=s.name,
            line={"color": color, "width": 2}, marker={"size": 4, "color": color},
            customdata=np.column_stack([_nan_to_none(std), _nan_to_none(count)]).tolist(),
            hovertemplate=hover + "<extra></extra>",
        ))
    out.update_layout(hovermode="x unified")
    out.update_xaxes(title_text=fig.xlabel)
    xs = np.concatenate([s.x for s in fig.series]) if fig.series else np.array([])
    xs = xs[np.isfinite(xs)]
    if xs.size and np.all(xs == np.round(xs)) and xs.max() - xs.min() <= 12:
        out.update_xaxes(dtick=1)  # a few epochs: no ticks at 1.5, 2.5
    if fig.log_y:
        out.update_yaxes(type="log", **_log_ticks(fig))
    out.update_yaxes(title_text=fig.ylabel)
    shown = fig.y_range()
    if shown is not None:
        out.update_yaxes(range=list(shown))
    return out


def _log_ticks(fig: LineFigure) -> dict[str, Any]:
    """Label 1, 2, 5 of each decade over a few decades (plotly's default labels every minor
    tick); over more (a spectral density spans eight), the decades alone, as powers of 10."""
    ys = np.concatenate([s.y for s in fig.series]) if fig.series else np.array([])
    ys = ys[np.isfinite(ys) & (ys > 0)]
    decades = np.log10(ys.max() / ys.min()) if ys.size else 0.0
    return {"dtick": "D2"} if decades <= 3 else {"dtick": 1, "exponentformat": "power"}


@render.register(ScatterFigure)
def _scatter(fig: ScatterFigure, palette: Palette) -> go.Figure:
    out = go.Figure()
    for s in fig.points:
        out.add_trace(go.Scatter(
            x=s.x, y=s.y, name=s.name, mode="markers", text=s.labels,
            marker={"size": 8, "color": palette[s.name], "opacity": 0.85},
            hovertemplate=("%{text}<br>" if s.labels else "%{fullData.name}<br>")
            + "%{x:.4g}, %{y:.4g}<extra></extra>",
        ))
    out.update_layout(hovermode="closest")
    out.update_xaxes(title_text=fig.xlabel)
    out.update_yaxes(title_text=fig.ylabel)
    return out


@render.register(BarFigure)
def _bar(fig: BarFigure, palette: Palette) -> go.Figure:
    out = go.Figure()
    for b in fig.bars:
        error = None if b.errors is None else {"type": "data", "array": b.errors, "visible": True}
        out.add_trace(go.Bar(x=fig.categories, y=b.values, name=b.name, error_y=error,
                             marker_color=palette[b.name]))
    out.update_layout(barmode="group")
    out.update_xaxes(title_text=fig.xlabel)
    out.update_yaxes(title_text=fig.ylabel)
    return out


def _colour_bar(label: str) -> dict[str, Any]:
    """The colour bar, titled along its side: a long label on top of it runs into the
    figure's title."""
    return {"title": {"text": _plotly_text(label), "side": "right"}}


@render.register(HeatmapFigure)
def _heatmap(fig: HeatmapFigure, palette: Palette) -> go.Figure:
    options: dict[str, Any] = {}
    if fig.contour:
        kind = go.Contour
        options["contours"] = {"coloring": "lines" if fig.lines_only else "fill",
                               "showlabels": fig.lines_only}
        if fig.levels is not None and not fig.log:  # evenly spaced (checked): start, end, size
            levels = fig.levels
            options["contours"].update(start=levels[0], end=levels[-1],
                                       size=levels[1] - levels[0])
            options["autocontour"] = False
    else:
        kind = go.Heatmap
    trace = kind(x=fig.x, y=fig.y, z=fig.shown(), colorscale="Viridis",
                 colorbar=_colour_bar(fig.colour_label()), **options)
    out = go.Figure(trace)
    if fig.equal_aspect:
        out.update_yaxes(scaleanchor="x", scaleratio=1)
    for path in fig.paths:
        style = ({"mode": "lines+markers", "line": {"color": palette[path.name]}}
                 if path.connected else
                 {"mode": "markers", "marker": {"symbol": "star", "size": 14,
                                                "color": palette[path.name],
                                                "line": {"color": "black", "width": 1}}})
        out.add_trace(go.Scatter(x=path.x, y=path.y, name=path.name, text=path.labels, **style))
    out.update_xaxes(title_text=fig.xlabel)
    out.update_yaxes(title_text=fig.ylabel)
    return out


@render.register(SurfaceFigure)
def _surface(fig: SurfaceFigure, palette: Palette) -> go.Figure:
    out = go.Figure(go.Surface(x=fig.x, y=fig.y, z=fig.shown(), colorscale="Viridis",
                               colorbar=_colour_bar(fig.colour_label())))
    out.update_layout(scene={"xaxis_title": fig.xlabel, "yaxis_title": fig.ylabel,
                             "zaxis_title": fig.colour_label()})
    return out
