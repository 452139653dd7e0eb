"""The report section of the ``curve`` analysis: loss and error along t, the planes (train
loss + l2 and test error, as DMC draws them), the table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from markupsafe import escape

from losslab.report.figures import HeatmapFigure, LineFigure, ScatterSeries, Series, loss_levels
from losslab.report.sections import Section, register_section

__all__ = ["curve_section", "plane_figures"]


def _error_range(acc: list[float]) -> str:
    err = 100 * (1 - np.asarray(acc))
    return f"{err.min():.2f}-{err.max():.2f}"


def _table(data: dict[str, Any]) -> pd.DataFrame:
    e = data["evaluation"]
    ends = [e["curve"]["test_acc"][0], e["curve"]["test_acc"][-1]]
    rows = [{"path": "endpoints", "test error (%) min-max": _error_range(ends)}]
    for name in ("curve", "line"):
        rows.append({"path": f"{data['kind']} ({data['bends']} bend)" if name == "curve"
                     else "straight line",
                     "test error (%) min-max": _error_range(e[name]["test_acc"]),
                     "barrier (train loss)": f"{e['barrier'][name]:.4f}",
                     "length-weighted mean train loss": f"{e['mean_loss'][name]:.4f}",
                     "length": f"{e['length'][name]:.4g}"})
    published = data.get("published") or {}
    for row, key in zip(rows, ("endpoints", data["kind"], "line"), strict=True):
        if key in published:
            lo, hi = published[key]
            row[f"published test error (%), {data.get('published_setting') or 'setting unstated'}"] \
                = f"{lo}-{hi}"
    return pd.DataFrame(rows)


def _plane_paths(p: dict[str, Any]) -> list[ScatterSeries]:
    """The curve's projection, the straight segment ŵ1–ŵ2 and the control points."""
    curve, line, control = (np.asarray(p[k]) for k in ("curve_xy", "line_xy", "control_xy"))
    return [ScatterSeries("curve", curve[:, 0], curve[:, 1]),
            ScatterSeries("straight line", line[:, 0], line[:, 1]),
            ScatterSeries("endpoints and bends", control[:, 0], control[:, 1],
                          labels=["ŵ1", *[f"θ{i}" for i in range(1, len(control) - 1)], "ŵ2"],
                          connected=False)]


def _plane_heatmap(title: str, p: dict[str, Any], z: Any, zlabel: str, levels: list[float],
                   zmax: float) -> HeatmapFigure:
    return HeatmapFigure(title, np.asarray(p["x"]), np.asarray(p["y"]), np.asarray(z),
                         "along ŵ2 − ŵ1", "towards the bend", contour=True, zlabel=zlabel,
                         paths=_plane_paths(p), equal_aspect=True,  # both axes: distance
                         levels=levels, zmax=zmax)


def _error_scale(err: np.ndarray) -> tuple[list[float], float]:
    """Contour levels and clip for a test-error plane: DMC's plot clips at 40 % (levels every
    2.5 %), which would hide everything of a plane whose best point is already above 20 %;
    then the whole 0-100 % range, every 5 %."""
    if float(np.nanmin(err)) < 20.0:
        return [float(v) for v in np.arange(0.0, 40.0, 2.5)], 40.0
    return [float(v) for v in np.arange(0.0, 100.0, 5.0)], 100.0


def plane_figures(pair: str, p: dict[str, Any]) -> list[HeatmapFigure]:
    """DMC's two planes (train loss + l2, test error) when the analysis computed them; an
    older analysis (one loss grid) as it was drawn before."""
    where = "on the plane through ŵ1, θ, ŵ2"
    if "train_loss_l2" not in p or "test_error" not in p:
        return [_plane_heatmap(f"{pair}: {p.get('split', 'train')} loss {where}", p, p["loss"],
                               "loss", loss_levels(), 10.0)]
    wd = p.get("weight_decay", p.get("metadata", {}).get("weight_decay", 0.0))
    err = np.asarray(p["test_error"], dtype=float)
    levels, top = _error_scale(err)
    return [_plane_heatmap(f"{pair}: train loss + l2 (wd={wd:g}) {where}", p, p["train_loss_l2"],
                           "train loss + ½·wd·‖w‖²", loss_levels(), 10.0),
            _plane_heatmap(f"{pair}: test error (%) {where}", p, err, "test error (%)", levels,
                           top)]


@register_section("curve")
def curve_section(records, data: dict[str, Any]) -> Section:
    e = data["evaluation"]
    pair = f"{data['pair']} ({data['kind']})"
    ts = np.asarray(e["ts"])
    figures: list = [
        LineFigure(f"{pair}: train loss along t", "t", "train loss",
                   [Series(n, ts, np.asarray(e[n]["train_loss"])) for n in ("curve", "line")]),
        LineFigure(f"{pair}: test error along t", "t", "test error (%)",
                   [Series(n, ts, 100 * (1 - np.asarray(e[n]["test_acc"])))
                    for n in ("curve", "line")])]
    html = (f"<p>A {escape(data['kind'])} curve with {data['bends']} trainable bend(s) between "
            f"the final models of {escape(data['pair'])} (Garipov et al. 2018), trained as the run "
            f"<code>{escape(data['run'])}</code>; BatchNorm statistics are recomputed at every t. "
            "The barrier is the largest train loss along the path minus the endpoints' mean.</p>")
    plane = data.get("plane")
    if plane and "error" not in plane:
        figures.extend(plane_figures(pair, plane))
        if "train_loss_l2" in plane:
            wd = plane.get("weight_decay", plane.get("metadata", {}).get("weight_decay", 0.0))
            html += ("<p>The planes through the endpoints and the middle bend, as the reference "
                     "code draws them: the train loss plus ½·wd·‖w‖² "
                     f"(wd = {wd:g}, the curve run's weight decay; w every trainable parameter "
                     "of the network at the grid point, buffers not) and the test error (%), "
                     "each with the curve and the straight segment ŵ1–ŵ2.</p>")
    elif plane:
        html += f"<p>No plane: {escape(plane['error'])}</p>"
    tables = [_table(data)]
    if len(data.get("per_run") or []) > 1:  # several pairs of endpoints: one row each
        tables.append(pd.DataFrame(
            [{"pair": r["pair"], "curve barrier": f"{r['curve_barrier']:.4f}",
              "line barrier": f"{r['line_barrier']:.4f}",
              "curve max test error − endpoints (pts)": f"{r['curve_error_rise']:.2f}",
              "line max test error − endpoints (pts)": f"{r['line_error_rise']:.2f}"}
             for r in data["per_run"]]))
    ens = data.get("ensemble")
    if ens:
        tables.append(pd.DataFrame(
            [{"t": t, "member test acc": f"{a:.4f}", "first members together": f"{c:.4f}"}
             for t, a, c in zip(ens["ts"], ens["member_acc"], ens["cumulative_acc"],
                                strict=True)]))
        html += (f"<p>Ensemble of {len(ens['ts'])} points along the curve "
                 f"({escape(ens['combination'])}): test accuracy {ens['ensemble_acc']:.4f} "
                 f"against {ens['mean_member_acc']:.4f} for the mean member; all members agree "
                 f"on {ens['all_agree']} of {ens['n_examples']} test examples.</p>")
    return Section(title=f"Curve: {pair}", html=html, figures=figures, tables=tables)
