"""Per-epoch metric curves: one :class:`LineFigure` per metric, variants overlaid.

Each line is the mean over a variant's seeds at each epoch, with a band of ± one standard
deviation over seeds (sample std, ``ddof=1``, as pandas computes it). A variant with a
single seed gets no band; an epoch that only one seed reached gets a gap in the band.

Grouping: one figure per metric (``train_loss``, ``val_loss``...), ordered so the splits of
one quantity sit together (train, val, test), losses first, then accuracies, then other
per-split quantities, then unsplit metrics (``lr``, ``grad_norm``, extras added by later
capabilities). The report shows each quantity as its own section with its figures side by
side. Separate figures, rather than subplots, keep one neutral description per plot, one
PNG/PDF per metric for papers, and independent y-scales (a test loss may sit far above
the training loss).

Every numeric per-epoch column counts as a metric except the identifiers (``run_id``,
``variant``, ``seed``), the time axis (``epoch``, ``step``), ``best_epoch`` and the variant
keys, so metrics added later appear without changes here. Rows of every run are used,
finished or not: a failed run's epochs are still measurements.

A metric with one value throughout the study (``steps`` per epoch, ``neutral_moves`` that
stay 0) gets no figure: a flat line says less than the number, which
:func:`constant_metrics` gives for the page to list. Accuracy axes stay within [0, 1] (or
[0, 100] for percentages). The ``lr`` of an SGD-SA run is the step size it took, ``lr`` times
the mean η drawn that epoch (its ``mean_lr``): its nominal ``lr`` (1 by default) only scales
the drawn η (:func:`step_size_lr`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from losslab.report.figures import LineFigure, Series, accuracy_bounds

if TYPE_CHECKING:
    from losslab.studies.records import StudyRecords

__all__ = [
    "NON_METRIC_COLUMNS",
    "numeric_metrics",
    "metric_columns",
    "split_metric",
    "quantity_title",
    "metric_sort_key",
    "curve_stats",
    "curve_figure",
    "curve_figures",
    "constant_metrics",
    "step_size_lr",
    "variant_order",
]

NON_METRIC_COLUMNS = frozenset({"run_id", "variant", "seed", "epoch", "step", "best_epoch"})
SPLITS = ("train", "val", "test")
# Quantities listed first, in this order; the rest follow alphabetically.
QUANTITY_ORDER = ("loss", "acc")
QUANTITY_TITLES = {"loss": "Loss", "acc": "Accuracy", "other": "Other metrics"}
# SGD-SA logs the mean η it drew from its set H in an epoch; the step is lr·η.
DRAWN_LR = "mean_lr"
STEP_LR_LABEL = "lr (SGD-SA: lr × mean η, the step)"


def split_metric(name: str) -> tuple[str, str]:
    """``"val_loss"`` -> ``("loss", "val")``; a metric without a split prefix -> ``(name, "")``."""
    head, _, rest = name.partition("_")
    if head in SPLITS and rest:
        return rest, head
    return name, ""


def quantity_title(quantity: str) -> str:
    return QUANTITY_TITLES.get(quantity, quantity)


def metric_sort_key(name: str) -> tuple[int, int, str, int]:
    quantity, split = split_metric(name)
    if quantity in QUANTITY_ORDER:
        group, rank = 0, QUANTITY_ORDER.index(quantity)
    elif split:
        group, rank = 1, 0  # other per-split quantities, e.g. train_penalty/val_penalty
    else:
        group, rank = 2, 0  # unsplit: lr, epoch_time, grad_norm, dist_ckpt_1...
    split_rank = SPLITS.index(split) if split else -1
    return group, rank, quantity, split_rank


def _as_numeric(column: pd.Series) -> pd.Series | None:
    """The column as numbers, or None if it is not a metric.

    Metrics logged as ``"nan"``/``"inf"`` strings (JSON has no NaN) arrive as object
    columns; they are numbers all the same. A column with genuine text is not a metric.
    """
    if is_bool_dtype(column):
        return None
    if is_numeric_dtype(column):
        return column
    try:
        return column.map(_to_float).astype(float)
    except (ValueError, TypeError):
        return None


def _to_float(value: object) -> float:
    """A number or its text (``"nan"``, ``"inf"``, ``"0.5"``); raises on anything else.

    Python's ``float`` is used because ``pd.to_numeric`` rejects ``"nan"`` strings.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number, str)):
        raise TypeError(f"not a number: {value!r}")
    return float(value)


def numeric_metrics(results: pd.DataFrame, variant_keys: list[str] = ()) -> pd.DataFrame:
    """``results`` with its metric columns as numbers and non-metric columns dropped.

    Keeps ``variant``, ``seed`` and ``epoch`` and every per-epoch metric that holds at least
    one value, ordered as described in the module docstring.
    """
    skip = NON_METRIC_COLUMNS | set(variant_keys)
    metrics = {}
    for col in results.columns:
        if col in skip:
            continue
        values = _as_numeric(results[col])
        if values is not None and values.notna().any():
            metrics[col] = values.astype(float)
    ordered = sorted(metrics, key=metric_sort_key)
    keep = [c for c in ("variant", "seed", "epoch") if c in results.columns]
    return pd.concat([results[keep], pd.DataFrame({c: metrics[c] for c in ordered},
                                                  index=results.index)], axis=1)


def metric_columns(results: pd.DataFrame, variant_keys: list[str] = ()) -> list[str]:
    """The per-epoch metric columns of ``results`` that hold at least one value, ordered."""
    return _metrics(numeric_metrics(results, variant_keys))


def variant_order(records: StudyRecords) -> list[str]:
    """Variants in study order, then any that only appear in the data (defensive)."""
    names = list(records.variants)
    for frame in (records.runs, records.results):
        if "variant" in frame.columns:
            names.extend(str(v) for v in frame["variant"].dropna().unique())
    return list(dict.fromkeys(names))


def curve_stats(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, std and count over seeds of ``metric`` per (variant, epoch).

    Columns: ``variant, epoch, mean, std, count``; NaN values of the metric are left out
    of the statistics (a missing measurement is not a zero).
    """
    data = results[["variant", "epoch", metric]].dropna(subset=[metric])
    stats = (
        data.groupby(["variant", "epoch"], sort=True)[metric]
        .agg(["mean", "std", "count"])
        .reset_index()
    )
    return stats


def curve_figure(results: pd.DataFrame, metric: str, variants: list[str]) -> LineFigure:
    """The figure of one metric: a line (and band) per variant, in ``variants`` order."""
    stats = curve_stats(results, metric)
    quantity, _ = split_metric(metric)
    series = []
    for variant in variants:
        rows = stats[stats["variant"] == variant]
        if rows.empty:
            continue
        several_seeds = bool((rows["count"] > 1).any())
        series.append(Series(
            name=variant,
            x=rows["epoch"].to_numpy(dtype=float),
            y=rows["mean"].to_numpy(dtype=float),
            std=rows["std"].to_numpy(dtype=float) if several_seeds else None,
            count=rows["count"].to_numpy(dtype=float),
        ))
    values = results[metric].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    # Losses span decades during training; a log axis shows the late epochs. Only when
    # every value is positive, otherwise the axis cannot show them all.
    log_y = quantity == "loss" and finite.size > 0 and bool((finite > 0).all())
    ylabel = STEP_LR_LABEL if metric == "lr" and _has_drawn_lr(results) else metric
    return LineFigure(title=metric, xlabel="epoch", ylabel=ylabel, series=series, log_y=log_y,
                      y_bounds=accuracy_bounds(finite) if quantity == "acc" else None)


def _has_drawn_lr(table: pd.DataFrame) -> bool:
    return DRAWN_LR in table.columns and bool(pd.notna(table[DRAWN_LR]).any())


def step_size_lr(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (numeric metrics) with ``lr`` replaced by ``lr × mean_lr`` on the rows that
    have a ``mean_lr`` (SGD-SA's epochs): the step size actually taken, comparable with
    SGD's lr. Other rows, and tables without both columns, are left as they are."""
    if "lr" not in table.columns or not _has_drawn_lr(table):
        return table
    drawn = table[DRAWN_LR].notna()
    out = table.copy()
    out.loc[drawn, "lr"] = table.loc[drawn, "lr"] * table.loc[drawn, DRAWN_LR]
    return out


def _metric_table(records: StudyRecords) -> pd.DataFrame | None:
    """The numeric metrics of the study's epochs as plotted (SGD-SA's lr as its step size),
    or None before any epoch was logged."""
    results = records.results
    if results is None or results.empty or "epoch" not in results.columns:
        return None
    return step_size_lr(numeric_metrics(results, records.variant_keys))


def _metrics(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in ("variant", "seed", "epoch")]


def constant_metrics(records: StudyRecords) -> dict[str, float]:
    """The metrics with a single value over every epoch of every run that logged them,
    with that value: not worth a figure each."""
    table = _metric_table(records)
    return {} if table is None else _constants(table)


def _constants(table: pd.DataFrame) -> dict[str, float]:
    out = {}
    for metric in _metrics(table):
        values = table[metric].dropna().unique()
        if len(values) == 1:
            out[metric] = float(values[0])
    return out


def curve_figures(records: StudyRecords) -> dict[str, list[LineFigure]]:
    """Every changing metric's figure, grouped by quantity (``{"loss": [train, val, test],
    ...}``); the metrics of :func:`constant_metrics` are left out."""
    table = _metric_table(records)
    if table is None:
        return {}
    variants = variant_order(records)
    constant = _constants(table)
    groups: dict[str, list[LineFigure]] = {}
    for metric in _metrics(table):
        if metric in constant:
            continue
        quantity, split = split_metric(metric)
        key = quantity if split else "other"
        groups.setdefault(key, []).append(curve_figure(table, metric, variants))
    return groups
