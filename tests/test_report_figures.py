"""The landscape figure types render in both backends, with the axis convention kept."""

import numpy as np
import plotly.graph_objects as go

from losslab.report import HeatmapFigure, ScatterSeries, SurfaceFigure
from losslab.report.plotly_render import to_plotly
from losslab.report.static_render import save_static


def _field():
    x, y = np.linspace(-1, 1, 5), np.linspace(-2, 2, 7)
    return x, y, np.add.outer(y**2, 3 * x)  # z[i, j] = y[i]² + 3 x[j]: asymmetric in x, y


def test_surface_renders_interactive_and_static(tmp_path):
    x, y, z = _field()
    fig = SurfaceFigure("loss surface", x, y, z, "α", "β", "loss")
    trace = to_plotly(fig).data[0]
    assert isinstance(trace, go.Surface)
    assert np.array_equal(trace.z, z) and np.array_equal(trace.x, x) and np.array_equal(trace.y, y)
    paths = save_static(fig, None, tmp_path / "surface")
    assert all(p.stat().st_size > 1000 for p in paths)


def test_contour_lines_and_paths_over_a_heatmap(tmp_path):
    x, y, z = _field()
    path = ScatterSeries("trajectory", np.array([0.0, 0.5, 0.9]), np.array([0.0, -1.0, 1.5]),
                         labels=["e1", "e2", "e3"])
    fig = HeatmapFigure("plane", x, y, z, contour=True, lines_only=True, paths=[path])
    contour, line = to_plotly(fig).data
    assert isinstance(contour, go.Contour) and contour.contours.coloring == "lines"
    assert list(line.x) == [0.0, 0.5, 0.9] and line.mode == "lines+markers"
    assert all(p.stat().st_size > 1000 for p in save_static(fig, None, tmp_path / "plane"))
