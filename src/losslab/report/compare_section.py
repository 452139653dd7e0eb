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


def _half(row: dict[str, Any]) -> float | None:
    low, high = row.get("mean_ci_low"), row.get("mean_ci_high")
    return None if low is None or high is None else (high - low) / 2


@register_section("compare")
def compare_section(records, data: dict[str, Any]) -> Section:
    metric, at, baseline = data["metric"], data["at"], data["baseline"]
    rows = []
    for r in data["rows"]:
        half = _half(r)
        resolved = r.get("resolved")
        rows.append({
            "variant": r["variant"], "seeds": r["n"],
            metric: _fmt(r["mean"]) + ("" if half is None else f" ± {_fmt(half, 2)}"),
            "difference": "baseline" if r["variant"] == baseline else _fmt(r.get("diff")),
            "95% CI": ("–" if r.get("ci_low") is None
                       else f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"),
            "p (Welch)": _fmt(r.get("p_value"), 3),
            "resolved": "" if r["variant"] == baseline else
                        {True: "yes", False: "no"}.get(resolved, "–"),
        })
    figure = BarFigure(
        title=f"{at} {metric} by variant (mean ± 95% CI over seeds)", xlabel="variant",
        ylabel=metric, categories=[metric],
        bars=[BarSeries(r["variant"], [r["mean"]], [_half(r) or 0.0]) for r in data["rows"]])
    intro = (f"<p>{escape(at).capitalize()} <code>{escape(metric)}</code> of each variant against "
             f"<b>{escape(baseline)}</b>: mean ± half-width of the 95% t-interval over seeds, "
             "the difference of means with Welch's 95% confidence interval and two-sided "
             "p-value; a difference is <i>resolved</i> when its interval excludes zero.</p>")
    return Section(title=f"Compare: {at} {metric}", html=intro, figures=[figure],
                   tables=[pd.DataFrame(rows)])
