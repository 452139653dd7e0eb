"""Report sections of ``published`` (ours beside a paper's numbers) and ``loss_estimate_rmse``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from markupsafe import escape

from losslab.report.figures import LineFigure, Series
from losslab.report.sections import Section, register_section

__all__ = ["published_section", "loss_estimate_section"]


@register_section("published")
def published_section(records, data: dict[str, Any]) -> Section:
    rows = [{"variant": r["variant"],
             "ours": "–" if r["ours"] is None else
             f"{r['ours']:.4g}" + ("" if r["ours_std"] is None else f" ± {r['ours_std']:.2g}"),
             "published": r["published"]} for r in data["rows"]]
    source = f" Published: {escape(data['source'])}." if data.get("source") else ""
    scaled = "" if data["scale"] == 1 else f" × {data['scale']:g}"
    html = (f"<p>{escape(data['at']).capitalize()} <code>{escape(data['metric'])}</code>{scaled}"
            f" (mean ± std over seeds) beside the published numbers.{source}</p>")
    return Section(title=f"Beside the published numbers: {data['metric']}", html=html,
                   tables=[pd.DataFrame(rows)])


@register_section("loss_estimate_rmse")
def loss_estimate_section(records, data: dict[str, Any]) -> Section:
    rows = data["rows"]
    k = np.array([r["batches"] for r in rows], dtype=float)
    series = [Series("ours", k, np.array([r["rmse"] for r in rows]))]
    thesis = [r["thesis_rmse"] for r in rows if r["thesis_rmse"] is not None]
    if len(thesis) == len(rows) and data["thesis_loss_scale"]:
        series.append(Series("thesis (VGG16, CIFAR-10)", k, np.array(thesis)))
    figure = LineFigure("Training-loss estimate from k minibatches: RMSE", "minibatches",
                        "RMSE", series, log_y=True)
    scale = "mean loss / batch size (the thesis's)" if data["thesis_loss_scale"] else "mean loss"
    html = (f"<p>RMSE of the training loss estimated on k random minibatches against the full "
            f"training loss, over {data['checkpoints']} checkpoints × {data['repeats']} draws; "
            f"loss scale: {escape(scale)}. The thesis's Table 2.1 beside.</p>")
    return Section(title="Training-loss estimate (Table 2.1)", html=html, figures=[figure],
                   tables=[pd.DataFrame(rows)])
