"""The report section of the ``compare`` analysis: each variant against the baseline."""

from __future__ import annotations

from typing import Any

import pandas as pd
from markupsafe import escape

from losslab.report.figures import BarFigure, BarSeries
from losslab.report.sections import Section, register_section

__all__ = ["compare_section"]


def _fmt(x: Any, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}g}"


@register_section("compare")
def compare_section(records, data: dict[str, Any]) -> Section:
    metric, at, baseline = data["metric"], data["at"], data["baseline"]
    rows = []
    for r in data["rows"]:
        std = r.get("std")
        rows.append({
            "variant": r["variant"], "seeds": r["n"],
            metric: _fmt(r["mean"]) + ("" if std is None else f" ± {_fmt(std, 2)}"),
            "difference": "baseline" if r["variant"] == baseline else _fmt(r.get("diff")),
            "95% CI": ("–" if r.get("ci_low") is None
                       else f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"),
            "p (Welch)": _fmt(r.get("p_value"), 3),
        })
    figure = BarFigure(
        title=f"{at} {metric} by variant (mean ± std over seeds)", xlabel="variant",
        ylabel=metric, categories=[metric],
        bars=[BarSeries(r["variant"], [r["mean"]], [r.get("std") or 0.0]) for r in data["rows"]])
    intro = (f"<p>{escape(at).capitalize()} <code>{escape(metric)}</code> of each variant against "
             f"<b>{escape(baseline)}</b>: the difference of means with Welch's 95% confidence "
             "interval and two-sided p-value, seeds as replicates.</p>")
    return Section(title=f"Compare: {at} {metric}", html=intro, figures=[figure],
                   tables=[pd.DataFrame(rows)])
