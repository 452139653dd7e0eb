"""The landscape figure types render in both backends, with the axis convention kept."""

import numpy as np
import plotly.graph_objects as go
import pytest

from losslab.report import HeatmapFigure, ScatterSeries, SurfaceFigure
from losslab.report.figures import loss_levels
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


def test_loss_levels_clipping_log_scale_and_equal_aspect(tmp_path):
    # loss-landscape's plot_2D_contour defaults: levels np.arange(0.1, 10, 0.5)
    assert loss_levels() == pytest.approx(list(np.arange(0.1, 10, 0.5)))
    x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 5)
    z = np.add.outer(y**2, x**2) * 20 + 0.05  # 0.05 at the centre, 40.05 in the corners
    fig = HeatmapFigure("plane", x, y, z, contour=True, zlabel="loss", levels=loss_levels(),
                        zmax=10.0, equal_aspect=True)
    assert fig.shown().max() == 10.0 and fig.shown().min() == pytest.approx(0.05)
    assert fig.colour_label() == "loss (clipped at 10)"
    out = to_plotly(fig)
    contour = out.data[0]
    assert (contour.contours.start, contour.contours.end) == pytest.approx((0.1, 9.6))
    assert contour.contours.size == pytest.approx(0.5) and contour.autocontour is False
    assert out.layout.yaxis.scaleanchor == "x" and out.layout.yaxis.scaleratio == 1
    assert contour.colorbar.title.text == "loss (clipped at 10)"
    assert all(p.stat().st_size > 1000 for p in save_static(fig, None, tmp_path / "clipped"))
    logged = HeatmapFigure("plane", x, y, z, contour=True, zlabel="loss", log=True)
    assert logged.shown()[2, 2] == pytest.approx(np.log10(0.05))
    assert logged.colour_label() == "log10 loss"
    surface = SurfaceFigure("3-D", x, y, z, "α", "β", "loss", zmax=10.0)
    assert to_plotly(surface).data[0].z.max() == 10.0  # no corner spike over a flat sheet
    with pytest.raises(ValueError, match="increasing evenly"):
        HeatmapFigure("plane", x, y, z, levels=[0.1, 0.2, 0.5])
    with pytest.raises(ValueError, match="loss levels"):
        loss_levels(1.0, 0.5, 0.1)


def test_a_log_scale_draws_its_own_levels():
    x = y = np.linspace(-1, 1, 5)
    z = np.add.outer(y**2, x**2) * 20 + 0.05
    fig = HeatmapFigure("plane", x, y, z, contour=True, levels=loss_levels(), log=True)
    assert to_plotly(fig).data[0].autocontour is not False  # evenly spaced in loss, not in log
