"""The report's Run status: the counts in one line, every failed run with its error, all runs
folded away; and the run table and status line the Results section shares."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from markupsafe import escape

from losslab.report.sections import Section
from losslab.report.tables import table_html

if TYPE_CHECKING:
    from losslab.studies.records import StudyRecords

__all__ = ["status_section", "status_counts", "status_line", "run_table", "STATUSES"]

STATUSES = ("finished", "failed", "interrupted", "running", "pending")
RUN_COLUMNS = ("run_id", "variant", "seed", "status", "error", "run_dir")


def status_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Number of runs per status: the five known ones, then any other seen."""
    seen = runs["status"].astype(str).value_counts() if "status" in runs.columns else {}
    names = list(STATUSES) + sorted(set(seen.keys()) - set(STATUSES))
    total = int(sum(seen.values)) if len(seen) else 0
    return pd.DataFrame([{"status": s, "runs": int(seen.get(s, 0))} for s in names]
                        + [{"status": "total", "runs": total}])


def _has_error(value: Any) -> bool:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    return str(value).strip() != ""


def run_table(records: StudyRecords) -> pd.DataFrame:
    # A study with no runs yet may hand over a bare DataFrame: give it the columns.
    runs = records.runs[[c for c in RUN_COLUMNS if c in records.runs.columns]]
    return runs.reindex(columns=list(RUN_COLUMNS))


def status_line(runs: pd.DataFrame) -> str:
    """``"13 runs: 11 finished, 1 failed, 1 pending"``: the counts that are not zero."""
    counts = status_counts(runs)
    total = int(counts["runs"].iloc[-1])
    parts = [f"{n} {s}" for s, n in zip(counts["status"][:-1], counts["runs"][:-1], strict=True)
             if n]
    return f"{total} run{'s' if total != 1 else ''}" + (f": {', '.join(parts)}" if parts else "")


def status_section(records: StudyRecords) -> Section:
    """The counts in one line, every failed run with its error, all runs folded away."""
    runs = run_table(records)
    parts = [f"<p>{escape(status_line(runs))}.</p>"]
    errors = runs["error"].map(_has_error).astype(bool)
    problems = runs[(runs["status"].astype(str) == "failed") | errors]
    if len(problems):
        parts.append(f"<h3>Runs with errors ({len(problems)})</h3>")
        for row in problems.itertuples(index=False):
            error = getattr(row, "error", None)
            text = str(error) if _has_error(error) else "(no error text recorded)"
            parts.append(
                f'<div class="failed"><p><b>{escape(row.run_id)}</b> — variant '
                f"<code>{escape(row.variant)}</code>, seed {escape(row.seed)}, "
                f"{escape(row.status)}</p><pre>{escape(text)}</pre></div>")
    else:
        parts.append('<p class="ok">No run reported an error.</p>')
    if len(runs):
        table = table_html(runs.drop(columns="error"))
        parts.append(f"<details><summary>All runs ({len(runs)})</summary>{table}</details>")
    return Section(title="Run status", anchor="status", html="\n".join(parts))
