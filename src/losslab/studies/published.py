"""The study analysis ``published``: our numbers beside a paper's, variant by variant.

Options: ``metric`` (e.g. ``test_acc``), ``at`` (``final`` or ``best``), ``scale`` (multiply
ours, e.g. 100 for percent), ``published`` (variant -> the paper's value), ``source`` (where
the published numbers come from, shown in the report).
"""

from __future__ import annotations

import math
from typing import Any

from losslab.errors import InputError
from losslab.studies.analyses import register_analysis
from losslab.studies.records import StudyRecords

__all__ = ["published", "check_published_setting"]


@register_analysis("published")
def published(records: StudyRecords, *, published: dict[str, float], metric: str = "test_acc",
              at: str = "final", scale: float = 1.0, source: str = "") -> dict[str, Any]:
    """Ours (mean ± std and the 95% CI half-width over seeds) beside the published value."""
    if at not in ("final", "best"):
        raise InputError(f"published: at must be 'final' or 'best', got {at!r}")
    summary = records.summary.set_index("variant")
    column = f"{at}_{metric}_mean"
    if column not in summary:
        raise InputError(f"published: the summary has no {column!r}; metrics: test_acc, "
                         "val_acc, train_acc and their losses")
    rows = []
    for variant, value in published.items():
        if variant not in summary.index:
            raise InputError(f"published: no variant {variant!r}; have {list(summary.index)}")
        mean = summary.loc[variant, column]
        std = summary.loc[variant, f"{at}_{metric}_std"]
        half = summary.loc[variant, f"{at}_{metric}_ci95"] if f"{at}_{metric}_ci95" in summary \
            else math.nan
        rows.append({"variant": variant,
                     "ours": None if math.isnan(mean) else float(mean) * scale,
                     "ours_std": None if math.isnan(std) else float(std) * scale,
                     "ours_ci95": None if math.isnan(half) else float(half) * scale,
                     "published": value})
    return {"metric": metric, "at": at, "scale": scale, "source": source, "rows": rows}


def check_published_setting(analysis: str, published: Any, setting: str | None) -> None:
    """A paper's numbers come with the setting they were measured in, or not at all."""
    if published and not (isinstance(setting, str) and setting.strip()):
        raise InputError(f"{analysis}: published numbers need published_setting, the model, "
                         "data set and budget they were measured with (e.g. 'VGG16, CIFAR-10, "
                         "200 epochs')")
