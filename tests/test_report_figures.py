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


# --- readability: accuracy axes, log density, titles, tool bar, labels ------------------------

from losslab.report import LineFigure, ScatterFigure, Series  # noqa: E402
from losslab.report.figures import accuracy_bounds  # noqa: E402
from losslab.report.landscape_sections import DENSITY_FLOOR, landscape_section  # noqa: E402
from losslab.report.plotly_render import MODEBAR_PX  # noqa: E402
from losslab.report.static_render import DPI, to_matplotlib  # noqa: E402


def test_accuracy_axis_stays_within_its_bounds_in_both_backends():
    x = np.arange(1, 6)
    near_one = Series("a", x, [0.9, 0.95, 0.97, 0.98, 0.99], std=[0.05] * 5)  # band past 1
    fig = LineFigure("acc", "epoch", "accuracy", [near_one], y_bounds=accuracy_bounds(near_one.y))
    low, high = to_plotly(fig).layout.yaxis.range
    assert high == 1 and 0.8 < low < 0.9  # clipped at 1, still zoomed on the data
    assert to_matplotlib(fig).axes[0].get_ylim() == pytest.approx((low, high))
    percent = Series("b", x, [50, 80, 90, 95, 99.5], std=[3] * 5)
    assert accuracy_bounds(percent.y) == (0, 100)
    fig = LineFigure("acc %", "epoch", "accuracy (%)", [percent], y_bounds=(0, 100))
    low, high = to_plotly(fig).layout.yaxis.range
    assert high == 100 and 40 < low < 50
    free = LineFigure("loss", "epoch", "loss", [near_one])  # no bounds: each backend's own
    assert to_plotly(free).layout.yaxis.range is None


def _hessian_data() -> dict:
    grid = np.linspace(-1, 12, 200)
    bulk = np.exp(-((grid - 0.0) ** 2) / 0.01)
    outlier = 1e-4 * np.exp(-((grid - 10.0) ** 2) / 0.01)
    density = bulk + outlier
    density[density < 1e-30] = 0.0  # SLQ's density: exact zeros between the peaks
    result = {"grid": grid.tolist(), "density": density.tolist(),
              "eigenvalues": [-0.1, 0.0, 0.1, 9.0, 10.0], "converged": True, "trace": 12.0,
              "trace_std_error": 0.5, "total_products": 300, "split": "train", "examples": 256}
    return {"kind": "hessian", "split": "train", "examples": 256, "results": {"cosine": result}}


def test_hessian_density_on_a_floored_log_axis():
    data = _hessian_data()
    section = landscape_section(None, data)
    fig = section.figures[0]
    assert fig.log_y
    y = fig.series[0].y
    top = max(data["results"]["cosine"]["density"])
    assert y.min() == pytest.approx(top * DENSITY_FLOOR) and y.max() == pytest.approx(top)
    assert (y > 0).all()  # every point drawable on a log axis, the outlier's bump included
    axis = to_plotly(fig).layout.yaxis
    assert axis.type == "log" and axis.dtick == 1  # eight decades: one label each, not 1-2-5
    assert to_matplotlib(fig).axes[0].get_yscale() == "log"
    assert "floored at 1e-08 of its maximum" in section.html and "log axis" in section.html


LONG = ("Does distance in weight space mean different predictions, for every ensemble and "
        "every pair of its members?")


def test_long_titles_wrap_and_clear_the_tool_bar():
    fig = LineFigure(LONG, "x", "y", [Series("a", [0, 1], [0, 1])])
    layout = to_plotly(fig).layout
    lines = layout.title.text.split("<br>")
    assert len(lines) >= 2 and all(len(line) <= 55 for line in lines)
    # The title sits on the plot area, under a margin that leaves the tool bar its strip.
    assert (layout.title.yref, layout.title.y, layout.title.yanchor) == ("paper", 1, "bottom")
    assert layout.margin.t >= MODEBAR_PX + 20 * len(lines)
    from matplotlib.text import Text

    mfig = to_matplotlib(fig)
    mfig.canvas.draw()
    ax = mfig.axes[0]
    assert "\n" in ax.get_title(loc="left")
    title = next(t for t in ax.get_children()
                 if isinstance(t, Text) and t.get_text() == ax.get_title(loc="left"))
    box, canvas = title.get_window_extent(), mfig.bbox
    assert canvas.x0 <= box.x0 and box.x1 <= canvas.x1 and box.y1 <= canvas.y1  # not cut off


def _boxes_overlap(boxes) -> list[tuple[int, int]]:
    return [(i, j) for i, a in enumerate(boxes) for j, b in enumerate(boxes[i + 1:], i + 1)
            if a.overlaps(b)]


def test_static_pair_scatter_labels_do_not_overlap():
    """The ensemble section's pair scatter: four runs, six member pairs each, close together
    with long labels, as in the demo. Drawn at the saved resolution, no label overlaps
    another label or any point, and every label lies inside the axes."""
    from test_report import _ensemble_data  # the ensemble analysis's output, shared

    from losslab.report.ensemble_sections import ensemble_section

    data = _ensemble_data(["snapshot-s0", "snapshot-s1", "fge-s0", "fge-s1"])
    fig = next(f for f in ensemble_section(None, data).figures if isinstance(f, ScatterFigure))
    assert sum(len(s.labels) for s in fig.points) == 24
    assert fig.points[0].labels[0] == "snapshot@5 vs snapshot@10"  # the run is the series
    mfig = to_matplotlib(fig)
    assert mfig.dpi == DPI  # measured as the PNG is written
    mfig.canvas.draw()
    ax = mfig.axes[0]
    labels = [t for t in ax.texts if t.get_text()]
    assert labels, "no point got a label"
    boxes = [t.get_window_extent() for t in labels]
    assert _boxes_overlap(boxes) == []
    frame = ax.get_window_extent()
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1
               for b in boxes)
    radius = np.sqrt(24) / 2 * mfig.dpi / 72
    points = ax.transData.transform(np.concatenate(
        [np.column_stack([s.x, s.y]) for s in fig.points]))
    for b in boxes:
        assert not any(b.x0 - radius < px < b.x1 + radius and b.y0 - radius < py < b.y1 + radius
                       for px, py in points), "a label covers a point"
    legend = mfig.legends[0].get_window_extent()
    assert not legend.overlaps(frame)  # the legend is beside the data, not on it


def test_crowded_bar_ticks_are_turned():
    from losslab.report import BarFigure, BarSeries

    cats = [f"a rather long category {i}" for i in range(6)]
    fig = BarFigure("bars", "c", "v", cats, [BarSeries("s", np.arange(6.0))])
    mfig = to_matplotlib(fig)
    mfig.canvas.draw()
    ticks = [t for t in mfig.axes[0].get_xticklabels() if t.get_text()]
    angle = ticks[0].get_rotation()
    assert angle in (30, 90) and all(t.get_rotation() == angle for t in ticks)
    # Turned labels are parallel strips: apart when the ticks' spacing across the strips
    # exceeds a line's height (their axis-aligned boxes overlap even then).
    xs = [t.get_window_extent().x1 for t in ticks]
    height = max(t.get_fontsize() for t in ticks) * mfig.dpi / 72
    assert min(np.diff(xs)) * np.sin(np.radians(angle)) > height
    short = to_matplotlib(BarFigure("bars", "c", "v", ["a", "b"], [BarSeries("s", [1, 2])]))
    assert all(t.get_rotation() == 0 for t in short.axes[0].get_xticklabels())


def test_static_figures_are_redrawn_only_when_their_numbers_change(tmp_path):
    import numpy as np

    from losslab.report import LineFigure, Palette, Section, Series
    from losslab.report.html import render_page

    def page(ys):
        fig = LineFigure("a line", "x", "y", [Series("s", np.arange(3.0), np.asarray(ys))])
        other = LineFigure("another", "x", "y", [Series("t", np.arange(3.0), np.ones(3))])
        render_page(tmp_path / "p.html", "p", [Section(title="S", figures=[fig, other])],
                    Palette(), static=True)
        return {p.name: p.stat().st_mtime_ns for p in (tmp_path / "figures").glob("*.p*")}

    first = page([1.0, 2.0, 3.0])
    assert len(first) == 4
    assert page([1.0, 2.0, 3.0]) == first  # the same numbers: nothing drawn again
    changed = page([1.0, 2.0, 4.0])
    redrawn = {n for n in first if changed[n] != first[n]}
    assert redrawn == {n for n in first if n.startswith("s-a-line")}
    (tmp_path / "figures" / next(iter(redrawn))).unlink()  # a deleted file is drawn again
    assert len(page([1.0, 2.0, 4.0])) == 4
