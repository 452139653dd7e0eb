"""The report's first section, Results: one row per variant with its finished seeds, the key
metrics at the final epoch as mean ± half-width of the 95% t-interval, the best marked, and
what the variant changes, in one column; what a reader opens the report for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from markupsafe import escape

from losslab.report.epoch_curves import variant_order
from losslab.report.sections import Section
from losslab.report.status_section import run_table, status_line
from losslab.report.tables import MISSING, Marked, format_mean_std, format_value, table_html
from losslab.studies.stats import mean_ci

if TYPE_CHECKING:
    from losslab.studies.records import StudyRecords

__all__ = ["results_section", "results_table", "config_value", "KEY_METRICS"]

# The Results table's metrics, in this order, where a study logged them: how well it
# generalizes (accuracy and loss on held-out data) and how well it optimized (training loss).
# Four, so the table fits a screen beside the variant and its config; the rest are in the
# full summary.
KEY_METRICS = ("test_acc", "val_acc", "test_loss", "train_loss")
BEST = "★"


def config_value(config: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted key of a config tree, or MISSING."""
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
                   if config_value(records.base_config, k) != v]
        out[name] = ", ".join(changed) or "(base config)"
    return out


def final_values(records: StudyRecords, metrics: list[str]) -> pd.DataFrame:
    """One row per finished run: its variant and each metric at its last epoch (as the
    summary's ``final``); failed or unfinished runs never reached the end, so are left out."""
    runs, results = run_table(records), records.results
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
    runs = run_table(records)
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


def results_section(records: StudyRecords) -> Section:
    runs = run_table(records)
    failed = int((runs["status"].astype(str) == "failed").sum())
    see = (f' <b class="error">{failed} run{"s" if failed != 1 else ""} failed</b>: see '
           '<a href="#status">Run status</a>.') if failed else ""
    note = (f'<p class="note">{escape(status_line(runs))}.{see} Each metric at the final epoch of '
            "the finished seeds: mean ± half-width of its 95% t-interval (the mean alone with "
            f"one seed); {BEST} marks the best mean (highest accuracy, lowest loss). "
            "<i>config</i>: what the variant sets unlike the base config.</p>")
    table = table_html(results_table(records), wrap=("config",), css="results")
    return Section(title="Results", anchor="results", html=note + str(table))
