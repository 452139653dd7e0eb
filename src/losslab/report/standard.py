"""The sections every study report has. Results first: before the analyses come the Results
(one row per variant: the key metrics at the final epoch with their 95% intervals, the best
marked, and what the variant changes), the run status, the findings and the per-epoch curves;
after them the full summary table, the variants' overrides and, collapsed, the study file and
the base config (:func:`appendix_sections`)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml
from markupsafe import escape

from losslab.report.epoch_curves import (
    constant_metrics,
    curve_figures,
    metric_sort_key,
    quantity_title,
    variant_order,
)
from losslab.report.findings_section import findings_section
from losslab.report.sections import Section
from losslab.report.tables import (
    MISSING,
    Marked,
    format_mean_std,
    format_value,
    table_html,
)
from losslab.studies.stats import mean_ci

if TYPE_CHECKING:
    from losslab.studies.records import StudyRecords

__all__ = ["standard_sections", "appendix_sections", "to_yaml", "summary_table",
           "variants_table", "status_counts", "status_line"]

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
# The Results table's metrics, in this order, where a study logged them: how well it
# generalizes (accuracy and loss on held-out data) and how well it optimized (training loss).
# Four, so the table fits a screen beside the variant and its config; the rest are in the
# full summary.
KEY_METRICS = ("test_acc", "val_acc", "test_loss", "train_loss")
BEST = "★"


def _runs(records: StudyRecords) -> pd.DataFrame:
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


def _status_section(records: StudyRecords) -> Section:
    """The counts in one line, every failed run with its error, all runs folded away."""
    runs = _runs(records)
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


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def config_differences(records: StudyRecords) -> dict[str, str]:
    """Per variant, what it sets unlike the base config, as ``key=value, key=value``
    (``"(base config)"`` when nothing): the one column the Results table spends on config."""
    out = {}
    for name, overrides in records.variants.items():
        changed = [f"{k}={format_value(v)}" for k, v in overrides.items()
                   if _lookup(records.base_config, k) != v]
        out[name] = ", ".join(changed) or "(base config)"
    return out


def final_values(records: StudyRecords, metrics: list[str]) -> pd.DataFrame:
    """One row per finished run: its variant and each metric at its last epoch (as the
    summary's ``final``); failed or unfinished runs never reached the end, so are left out."""
    runs, results = _runs(records), records.results
    finished = runs.loc[runs["status"].astype(str) == "finished", "run_id"]
    if results is None or results.empty or "epoch" not in results.columns:
        return pd.DataFrame(columns=["run_id", "variant", *metrics])
    mine = results[results["run_id"].isin(finished)].sort_values("epoch")
    last = mine.groupby("run_id", sort=False).tail(1)
    out = last[["run_id", "variant"]].copy()
    for m in metrics:
        out[m] = pd.to_numeric(last[m], errors="coerce")
    return out


def key_metrics(records: StudyRecords) -> list[str]:
    """The :data:`KEY_METRICS` the study logged (a value in some epoch)."""
    results = records.results
    if results is None:
        return []
    return [m for m in KEY_METRICS if m in results.columns
            and pd.to_numeric(results[m], errors="coerce").notna().any()]


def _best(means: dict[str, float], metric: str) -> set[str]:
    """The variants with the best mean (max for accuracies, min for losses); none with
    fewer than two variants to compare."""
    finite = {v: m for v, m in means.items() if np.isfinite(m)}
    if len(finite) < 2:
        return set()
    target = max(finite.values()) if metric.endswith("acc") else min(finite.values())
    return {v for v, m in finite.items() if m == target}


def results_table(records: StudyRecords) -> pd.DataFrame:
    """One row per variant: its finished seeds, each key metric at the final epoch as
    ``mean ± half-width of the 95% t-interval`` (the mean alone with one seed), the best
    variant's cell :class:`Marked` with a ★, and its config differences."""
    metrics = key_metrics(records)
    finals = final_values(records, metrics)
    runs = _runs(records)
    variants = variant_order(records)
    cis = {m: {v: mean_ci(finals.loc[finals["variant"] == v, m].tolist()) for v in variants}
           for m in metrics}
    best = {m: _best({v: ci.mean for v, ci in cis[m].items()}, m) for m in metrics}
    config = config_differences(records)
    rows = []
    for v in variants:
        n_runs = int((runs["variant"] == v).sum())
        n_done = int((finals["variant"] == v).sum())
        row: dict[str, Any] = {"variant": v,
                               "seeds": str(n_done) if n_done == n_runs else f"{n_done} of {n_runs}"}
        for m in metrics:
            ci = cis[m][v]
            text = format_mean_std(ci.mean, ci.half)
            row[m] = Marked(f"{text} {BEST}", "best") if v in best[m] else text
        row["config"] = config.get(v, "")
        rows.append(row)
    # object columns: pandas' string dtype would turn the Marked cells into plain str
    return pd.DataFrame(rows, columns=["variant", "seeds", *metrics, "config"], dtype=object)


def _results_section(records: StudyRecords) -> Section:
    runs = _runs(records)
    failed = int((runs["status"].astype(str) == "failed").sum())
    see = (f' <b class="error">{failed} run{"s" if failed != 1 else ""} failed</b>: see '
           '<a href="#status">Run status</a>.') if failed else ""
    note = (f'<p class="note">{escape(status_line(runs))}.{see} Each metric at the final epoch of '
            "the finished seeds: mean ± half-width of its 95% t-interval (the mean alone with "
            f"one seed); {BEST} marks the best mean (highest accuracy, lowest loss). "
            "<i>config</i>: what the variant sets unlike the base config.</p>")
    table = table_html(results_table(records), wrap=("config",), css="results")
    return Section(title="Results", anchor="results", html=note + str(table))


def _study_section(records: StudyRecords) -> Section:
    html = ("<details><summary>Study file (as run)</summary>"
            f'<pre class="yaml">{escape(to_yaml(records.study))}</pre></details>'
            "<details><summary>Base run config (resolved)</summary>"
            f'<pre class="yaml">{escape(to_yaml(records.base_config))}</pre></details>')
    return Section(title="Study file and base config", anchor="study", html=html)


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
    note = ('<p class="note">Every variant key and every metric, final and best: mean ± '
            "half-width of the 95% t-interval over seeds where the summary has it, else ± the "
            "standard deviation (a single seed has neither); <i>final</i> is the last epoch, "
            "<i>best</i> the best epoch of each run (max for accuracies, min for losses). "
            "Click a column header to sort.</p>")
    tables = [summary_table(records.summary, records.variant_keys)] \
        if len(records.summary) else []
    return Section(title="Summary (all metrics)", anchor="summary", html=note, tables=tables)


def _constant_text(value: float) -> str:
    """A whole number as one (``21`` steps), anything else as the tables print it."""
    if float(value).is_integer():
        return str(int(value))
    return format_mean_std(value, None)  # a lone mean: the precision its magnitude calls for


def _constants_note(records: StudyRecords) -> str:
    """The metrics that never changed, with their value, in a line (they get no figure)."""
    constant = constant_metrics(records)
    if not constant:
        return ""
    listed = "; ".join(f"{m} = {_constant_text(v)}" for m, v in constant.items())
    return (f'<p class="note">Constant throughout the study, so not plotted: '
            f"{escape(listed)}.</p>")


def _curve_sections(records: StudyRecords) -> list[Section]:
    sections = []
    for quantity, figures in curve_figures(records).items():
        n_variants = max(len(f.series) for f in figures)
        note = (f'<p class="note">Mean over seeds per epoch ({n_variants} variants), shaded '
                "± one std over seeds. Click a legend entry to hide a variant, double-click "
                "to show it alone.</p>")
        sections.append(Section(title=f"Curves: {quantity_title(quantity)}",
                                anchor=f"curves-{quantity}", html=note, figures=figures))
    constants = _constants_note(records)
    if constants and sections:
        sections[0].html = constants + sections[0].html
    elif constants:
        sections.append(Section(title="Curves", anchor="curves", html=constants))
    return sections


def standard_sections(records: StudyRecords) -> list[Section]:
    """What the page opens with, before the analyses: results, run status, findings, then
    one curves section per quantity."""
    sections = [_results_section(records), _status_section(records)]
    findings = findings_section(records)
    if findings is not None:
        sections.append(findings)
    return sections + _curve_sections(records)


def appendix_sections(records: StudyRecords) -> list[Section]:
    """What the page ends with, after the analyses: the full summary, the variants'
    overrides and the study file with the base config (collapsed)."""
    return [_summary_section(records),
            Section(title="Variants", anchor="variants", tables=[variants_table(records)]),
            _study_section(records)]
