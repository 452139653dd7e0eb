"""The sections every report has, before the analyses: status, study, variants, summary,
and the per-epoch curves."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml
from markupsafe import escape

from losslab.report.epoch_curves import curve_figures, metric_sort_key, quantity_title
from losslab.report.findings_section import findings_section
from losslab.report.sections import Section
from losslab.report.tables import MISSING, format_mean_std, format_value, table_html

if TYPE_CHECKING:
    from losslab.studies.records import StudyRecords

__all__ = ["standard_sections", "to_yaml", "summary_table", "variants_table", "status_counts"]

STATUSES = ("finished", "failed", "interrupted", "running", "pending")


def _plain(obj: Any) -> Any:
    """A structure of dicts, lists and scalars that YAML can dump (numpy, Paths -> plain)."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    return json.loads(json.dumps(obj, default=default))


def to_yaml(obj: Any) -> str:
    """``obj`` as block-style YAML, keys in their written order."""
    return yaml.safe_dump(_plain(obj), sort_keys=False, allow_unicode=True,
                          default_flow_style=False)


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


RUN_COLUMNS = ("run_id", "variant", "seed", "status", "error", "run_dir")


def _status_section(records: StudyRecords) -> Section:
    # A study with no runs yet may hand over a bare DataFrame: give it the columns.
    runs = records.runs[[c for c in RUN_COLUMNS if c in records.runs.columns]]
    runs = runs.reindex(columns=list(RUN_COLUMNS))
    parts = []
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
    # Counts first: they answer "did the study work?" before any detail does.
    parts.insert(0, str(table_html(status_counts(runs), sortable=False)))
    return Section(title="Run status", anchor="status", html="\n".join(parts))


def _study_section(records: StudyRecords) -> Section:
    html = ("<h3>Study file</h3>"
            f'<pre class="yaml">{escape(to_yaml(records.study))}</pre>'
            "<details><summary>Base run config (resolved)</summary>"
            f'<pre class="yaml">{escape(to_yaml(records.base_config))}</pre></details>')
    return Section(title="Study", anchor="study", html=html)


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def _override_cell(value: Any) -> str:
    """A variant-key cell: empty where the variant keeps the base value (None/NaN)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return format_value(value)


def variants_table(records: StudyRecords) -> pd.DataFrame:
    """One row per variant with its overrides; a first row gives the base values."""
    keys = list(records.variant_keys)
    rows = [{"variant": "(base)",
             **{k: format_value(_lookup(records.base_config, k)) for k in keys}}]
    for name, overrides in records.variants.items():
        rows.append({"variant": name,
                     **{k: format_value(overrides[k]) if k in overrides else "" for k in keys}})
    return pd.DataFrame(rows, columns=["variant", *keys])


def summary_table(summary: pd.DataFrame, variant_keys: list[str]) -> pd.DataFrame:
    """The summary with each metric's mean and spread merged into ``mean ± x`` cells.

    ``x`` is the half-width of the 95% t-interval over seeds (``*_ci95``) where the summary
    has it, else the standard deviation. Columns: variant, the variant keys, runs, finished,
    then ``final M`` and ``best M`` side by side for every metric M, in curve order.
    """
    metrics: dict[str, None] = {}
    for col in summary.columns:
        match = re.fullmatch(r"(?:final|best)_(.+)_mean", col)
        if match:
            metrics[match.group(1)] = None
    out = pd.DataFrame({"variant": summary["variant"].astype(str)})
    for key in variant_keys:
        if key in summary:
            out[key] = summary[key].map(_override_cell)
    for src, dst in (("n_runs", "runs"), ("n_finished", "finished")):
        if src in summary:
            out[dst] = summary[src]
    for metric in sorted(metrics, key=metric_sort_key):
        for stat in ("final", "best"):
            mean, std = f"{stat}_{metric}_mean", f"{stat}_{metric}_ci95"
            if std not in summary:
                std = f"{stat}_{metric}_std"
            if mean in summary:
                stds = summary[std] if std in summary else [None] * len(summary)
                out[f"{stat} {metric}"] = [format_mean_std(m, s)
                                           for m, s in zip(summary[mean], stds, strict=True)]
    return out


def _summary_section(records: StudyRecords) -> Section:
    note = ('<p class="note">Mean ± half-width of the 95% t-interval over seeds (a single '
            "seed has none); <i>final</i> is the last epoch, <i>best</i> the best epoch of each run (max for accuracies, min for "
            "losses). Click a column header to sort.</p>")
    tables = [summary_table(records.summary, records.variant_keys)] \
        if len(records.summary) else []
    return Section(title="Summary", anchor="summary", html=note, tables=tables)


def standard_sections(records: StudyRecords) -> list[Section]:
    """Status, study, variants, summary, findings, then one curves section per quantity."""
    sections = [
        _status_section(records),
        _study_section(records),
        Section(title="Variants", anchor="variants", tables=[variants_table(records)]),
        _summary_section(records),
    ]
    findings = findings_section(records)
    if findings is not None:
        sections.append(findings)
    for quantity, figures in curve_figures(records).items():
        n_variants = max(len(f.series) for f in figures)
        note = (f'<p class="note">Mean over seeds per epoch ({n_variants} variants), shaded '
                "± one std over seeds. Click a legend entry to hide a variant, double-click "
                "to show it alone.</p>")
        sections.append(Section(title=f"Curves: {quantity_title(quantity)}",
                                anchor=f"curves-{quantity}", html=note, figures=figures))
    return sections
