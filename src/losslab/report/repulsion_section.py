"""The report section of ``repulsion_cost``: epoch time against the number of checkpoints.

Source: P. N. von Bachmann, Bachelor thesis on checkpoint repulsion ("distance function"),
Wilhelm-Schickard-Institut für Informatik, University of Tübingen, 2020 ("the thesis").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from losslab.report.figures import LineFigure, Series
from losslab.report.sections import Section, register_section

__all__ = ["repulsion_cost_section"]


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{1000 * x:.1f}"


@register_section("repulsion_cost")
def repulsion_cost_section(records, data: dict[str, Any]) -> Section:
    if "per_count" not in data:  # a result written before the interleaved measurement
        return Section(title="Repulsion: cost per checkpoint",
                       html="<p>This result predates the interleaved timing; rerun the analysis "
                            "(<code>losslab analyze</code>) to measure it.</p>")
    series = []
    for on, label in ((False, "epoch, no gradient logging"), (True, "epoch, gradient logging")):
        cells = [c for c in data["per_count"] if c["log_gradients"] == on]
        if cells:
            series.append(Series(label, np.array([c["checkpoints"] for c in cells], dtype=float),
                                 np.array([c["epoch_time_median"] for c in cells], dtype=float)))
    figure = LineFigure("Epoch time against the number of checkpoints (interleaved, median)",
                        "checkpoints", "epoch time (s)", series)
    base = next(c["epoch_time_median"] for c in data["per_count"]
                if c["checkpoints"] == 0 and not c["log_gradients"])
    steps = data["steps_per_epoch"]
    counts = []
    for c in data["per_count"]:
        counts.append({
            "checkpoints": c["checkpoints"],
            "gradient logging": "on" if c["log_gradients"] else "off",
            "epoch ms (median)": _ms(c["epoch_time_median"]),
            "epoch ms (min–max)": f"{_ms(c['epoch_time_min'])}–{_ms(c['epoch_time_max'])}",
            "vs 0 checkpoints": f"{100 * (c['epoch_time_median'] / base - 1):+.1f}%",
            "penalty alone, ms per epoch": _ms(c["penalty_step_time_median"] * steps),
            "runs": c["runs"]})
    runs = pd.DataFrame(data["per_run"])
    keep = [k for k in ("run_id", "share_per_checkpoint", "penalty_share_per_checkpoint",
                        "linearity", "logging_share") if k in runs]
    thesis = data["thesis"]
    html = (f"<p>Measured by the analysis itself, not read from the runs' epoch times: for each "
            f"of {len(data['per_run'])} runs, its model, data and optimizer rebuilt and one "
            f"training epoch ({steps} steps, no evaluation) timed with 0–{max(data['checkpoints'])}"
            f" checkpoints, without and with the gradient logging, interleaved over "
            f"{data['repeats']} rounds ({data['threads']} torch thread(s)); the penalty alone "
            f"timed over {data['calls']} calls per round. The thesis's number is from another "
            f"setting: {thesis['setting']}: {thesis['epoch_time']:.0f} s an epoch, "
            f"+{thesis['seconds_per_checkpoint']:.0f} s "
            f"({100 * thesis['share_per_checkpoint']:+.0f}%) per checkpoint.</p>")
    return Section(title="Repulsion: cost per checkpoint", html=html, figures=[figure],
                   tables=[pd.DataFrame(counts), runs[keep]])
