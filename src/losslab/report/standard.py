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
)
from losslab.report.findings_section import findings_section
from losslab.report.results_section import config_value, results_section
from losslab.report.sections import Section
from losslab.report.status_section import status_section
from losslab.report.tables import format_mean_std, format_value

if TYPE_CHECKING:
    from losslab.studies.records import StudyRecords

__all__ = ["standard_sections", "appendix_sections", "to_yaml", "summary_table",
           "variants_table", "curve_sections"]


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
             **{k: format_value(config_value(records.base_config, k)) for k in keys}}]
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


def curve_sections(records: StudyRecords) -> list[Section]:
    """One section per quantity of the per-epoch curves, the constant metrics listed first."""
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
    sections = [results_section(records), status_section(records)]
    findings = findings_section(records)
    if findings is not None:
        sections.append(findings)
    return sections + curve_sections(records)


def appendix_sections(records: StudyRecords) -> list[Section]:
    """What the page ends with, after the analyses: the full summary, the variants'
    overrides and the study file with the base config (collapsed)."""
    return [_summary_section(records),
            Section(title="Variants", anchor="variants", tables=[variants_table(records)]),
            _study_section(records)]
