"""The Findings section: each claim of a study's sources, our numbers, and the verdict.

One row per finding (``findings.json``, written by the study runner): the claim and where it
comes from, both compared sides as mean ± half-width of the 95% t-interval with the number of
seeds, the difference a − b with its interval, the source's own number with the setting it was
measured in, and the verdict. The suite table (``losslab findings``) is the same rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
from markupsafe import escape

from losslab.report.sections import Section
from losslab.report.tables import MISSING

if TYPE_CHECKING:
    from losslab.studies.records import StudyRecords

__all__ = ["findings_rows", "findings_section", "format_side"]


def _num(x: Any, scale: float = 1.0) -> str:
    if x is None:
        return MISSING
    v = float(x) * scale
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def format_side(side: dict[str, Any] | None, scale: float = 1.0) -> str:
    """``mean ± half (n)`` of one side; a constant prints as itself."""
    if not side:
        return MISSING
    if "value" in side:
        return _num(side["value"], scale)
    text = _num(side.get("mean"), scale)
    if side.get("half") is not None:
        text += f" ± {_num(side['half'], scale)}"
    return f"{text} (n={side.get('n', 0)})"


def _difference(d: dict[str, Any] | None, scale: float) -> str:
    if not d:
        return MISSING
    text = _num(d.get("diff"), scale)
    if d.get("low") is not None:
        text += f" [{_num(d['low'], scale)}, {_num(d['high'], scale)}]"
    if d.get("test") == "paired":
        text += f" (paired, {d['n_a']} seeds)"
    return text


def _published(p: dict[str, Any] | None) -> str:
    if not p:
        return MISSING
    value = p["value"]
    return f"{value:g} ({p['setting']})" if isinstance(value, (int, float)) else \
        f"{value} ({p['setting']})"


def _expected(f: dict[str, Any]) -> str:
    rel = {"greater": ">", "less": "<", "similar": "≈"}[f["expect"]]
    margin = f" (margin {_num(f['margin'], f.get('scale', 1.0))})" if f.get("margin") else ""
    return f"{f['a_label']} {rel} {f['b_label']}{margin}"


def findings_rows(findings: list[dict[str, Any]], *, with_study: bool = False) -> pd.DataFrame:
    """The findings as display rows (strings), one per finding."""
    rows = []
    for f in findings:
        scale = f.get("scale", 1.0)
        row = {"study": f.get("study", "")} if with_study else {}
        row.update({
            "finding": f["id"], "claim": f["claim"], "source": f["source"],
            "metric": f"{f['metric']} ({f['at']})" if "." not in f["metric"] else f["metric"],
            "expected": _expected(f),
            "a": format_side(f.get("a"), scale), "b": format_side(f.get("b"), scale),
            "a − b [95% CI]": _difference(f.get("difference"), scale),
            "published": _published(f.get("published")),
            "verdict": f["verdict"], "why": f.get("reason", ""),
        })
        rows.append(row)
    return pd.DataFrame(rows)


def findings_section(records: StudyRecords) -> Section | None:
    """The section, or None when the study declares no findings."""
    if not records.findings:
        return None
    counts = pd.Series([f["verdict"] for f in records.findings]).value_counts()
    tally = ", ".join(f"{int(counts[v])} {v}" for v in ("reproduced", "not resolved",
                                                         "contradicted") if v in counts)
    html = (f"<p><b>{escape(tally)}</b>. Each finding compares a with b over seeds: mean ± "
            "half-width of the 95% t-interval, and a − b with its 95% interval (Welch between "
            "variants; paired by seed within one variant). <i>Reproduced</i>: the interval lies "
            "on the claimed side of 0; <i>contradicted</i>: on the other side, or inside the "
            "margin of no practical effect; <i>not resolved</i>: neither. Published numbers come "
            "from the source's own setting, named beside them, not ours.</p>")
    return Section(title="Findings", anchor="findings", html=html,
                   tables=[findings_rows(records.findings)])
