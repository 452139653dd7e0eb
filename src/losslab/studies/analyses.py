"""Analyses: computations over a study's finished runs, registered by name.

A study lists analyses by name with options; after its runs, each analysis is called with the
study's records and writes a JSON-able result to ``analyses/<name>.json``, from which the report
builds its section (``losslab.report.register_section``). Later capabilities register theirs
(ensembles, landscapes, curves)::

    @register_analysis("my_analysis")
    def my_analysis(records: StudyRecords, *, metric: str = "test_acc") -> dict:
        ...

Options are checked against the function's keyword arguments before any run starts.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from losslab.errors import InputError
from losslab.plugins import ANALYSES, load_plugins
from losslab.studies.records import StudyRecords
from losslab.studies.stats import difference, mean_ci

__all__ = ["register_analysis", "list_analyses", "check_analysis", "run_analysis", "compare"]

Analysis = Callable[..., dict[str, Any]]
_REGISTRY: dict[str, Analysis] = {}


def register_analysis(name: str) -> Callable[[Analysis], Analysis]:
    def decorate(fn: Analysis) -> Analysis:
        if name in _REGISTRY:
            raise InputError(f"analysis {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn
    return decorate


def _load_builtin() -> None:
    """Import the capabilities that register analyses: the ``losslab.analyses`` entry points
    (:mod:`losslab.plugins`; lazily, since they import this module)."""
    load_plugins(ANALYSES)


def list_analyses() -> dict[str, str]:
    _load_builtin()
    return {n: (inspect.getdoc(f) or "").splitlines()[0] for n, f in _REGISTRY.items()}


def _options_of(fn: Analysis) -> dict[str, Any]:
    params = list(inspect.signature(fn).parameters.values())[1:]
    return {p.name: p.default for p in params}


def check_analysis(name: str, options: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming an unknown analysis or option (and the allowed ones)."""
    _load_builtin()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"unknown analysis {name!r}{hint}; allowed: {', '.join(_REGISTRY)}")
    allowed = _options_of(_REGISTRY[name])
    for key in options:
        if key not in allowed:
            raise InputError(f"analysis {name!r} has no option {key!r}; allowed: "
                             f"{', '.join(allowed) or 'none'}")


def run_analysis(name: str, records: StudyRecords, options: dict[str, Any]) -> dict[str, Any]:
    check_analysis(name, options)
    return _REGISTRY[name](records, **options)


def _against(base: list[float], xs: list[float]) -> dict[str, Any]:
    """Difference of means ``xs − base`` with Welch's 95% interval and two-sided p-value;
    ``resolved`` when the interval excludes zero (None without an interval)."""
    d = difference(xs, base)
    resolved = None if d.low is None else bool(d.low > 0 or d.high < 0)
    return {"diff": d.diff, "ci_low": d.low, "ci_high": d.high, "p_value": d.p_value,
            "resolved": resolved}


@register_analysis("compare")
def compare(records: StudyRecords, *, metric: str = "test_acc", baseline: str | None = None,
            at: str = "final") -> dict[str, Any]:
    """Each variant against a baseline: mean ± 95% CI over seeds, difference, Welch 95% CI.

    The difference of means is tested with Welch's t-test (:func:`scipy.stats.ttest_ind`,
    unequal variances); it is *resolved* when its 95% interval excludes zero.

    ``at`` is ``final`` (the last epoch) or ``best`` (the best epoch of each run: max for
    accuracies, min for losses). Seeds are the replicates; with one seed no interval is given.
    """
    if at not in ("final", "best"):
        raise InputError(f"compare: at must be 'final' or 'best', got {at!r}")
    results = records.results
    finished = set(records.runs.loc[records.runs["status"] == "finished", "run_id"])
    if metric not in results:
        raise InputError(f"compare: no metric {metric!r} in the results; have "
                         f"{sorted(c for c in results.columns if c not in ('run_id', 'variant'))}")
    values: dict[str, list[float]] = {}
    for _, rows in results[results["run_id"].isin(finished)].groupby("run_id"):
        series = rows.sort_values("epoch")[metric].astype(float)
        best = series.max() if metric.endswith("acc") else series.min()
        values.setdefault(rows["variant"].iloc[0], []).append(
            float(series.iloc[-1] if at == "final" else best))
    order = [v for v in records.variants if v in values]
    if not order:
        raise InputError("compare: no finished runs to compare")
    baseline = baseline or order[0]
    if baseline not in values:
        raise InputError(f"compare: baseline {baseline!r} has no finished runs; variants: {order}")
    rows_out = []
    for v in order:
        xs = values[v]
        m = mean_ci(xs)
        rows_out.append({"variant": v, "n": m.n, "mean": m.mean, "std": m.std,
                         "mean_ci_low": m.low, "mean_ci_high": m.high, "values": xs,
                         **({} if v == baseline else _against(values[baseline], xs))})
    return {"metric": metric, "at": at, "baseline": baseline, "rows": rows_out}
