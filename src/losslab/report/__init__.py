"""The report layer: a study's records -> a self-contained HTML report (+ PNG/PDF figures).

This is the only package that imports plotting libraries (plotly, matplotlib), and only
when a report is drawn: compute code elsewhere returns data, and describes plots with the
neutral dataclasses re-exported here.

Public API: :func:`build_report`, :class:`Section` and :func:`register_section` (how an
analysis gets its own section), and the figure descriptions.
"""

from losslab.report.figures import (
    BarFigure,
    BarSeries,
    HeatmapFigure,
    LineFigure,
    ScatterFigure,
    ScatterSeries,
    Series,
    SurfaceFigure,
)
from losslab.report.html import build_report
from losslab.report.palette import Palette
from losslab.report.sections import Section, register_section

__all__ = [
    "build_report",
    "Section",
    "register_section",
    "Palette",
    "Series",
    "LineFigure",
    "ScatterSeries",
    "ScatterFigure",
    "BarSeries",
    "BarFigure",
    "HeatmapFigure",
    "SurfaceFigure",
]
