"""The report section of ``repulsion_cost``: epoch time against the number of checkpoints."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from losslab.report.figures import LineFigure, Series
from losslab.report.sections import Section, register_section

__all__ = ["repulsion_cost_section"]


@register_section("repulsion_cost")
def repulsion_cost_section(records, data: dict[str, Any]) -> Section:
    series = [Series(v["variant"], np.array(v["checkpoints"], dtype=float),
                     np.array(v["median_epoch_time"], dtype=float)) for v in data["variants"]]
    figure = LineFigure("Epoch time against the number of active checkpoints",
                        "active checkpoints", "epoch time (s, median)", series)
    rows = []
    for v in data["variants"]:
        share = v.get("share_per_checkpoint")
        rows.append({"variant": v["variant"],
                     "epochs timed": sum(v["epochs"]),
                     "s per checkpoint": (f"{v['seconds_per_checkpoint']:.4f}"
                                          if "seconds_per_checkpoint" in v else "–"),
                     "per checkpoint": f"{100 * share:+.1f}%" if share is not None else "–"})
    thesis = data["thesis"]
    rows.append({"variant": "thesis (ResNet32, GPU)", "epochs timed": None,
                 "s per checkpoint": f"{thesis['seconds_per_checkpoint']:.1f}",
                 "per checkpoint": f"{100 * thesis['share_per_checkpoint']:+.1f}%"})
    html = ("<p>Median epoch time of the epochs with 0, 1, 2, ... active repulsion checkpoints "
            "(the first epoch of each run left out), and the least-squares cost of one more "
            "checkpoint, beside the thesis's measurement.</p>")
    return Section(title="Repulsion: cost per checkpoint", html=html, figures=[figure],
                   tables=[pd.DataFrame(rows)])
