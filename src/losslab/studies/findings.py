"""Findings: the claims a study exists to test, each with a machine-checkable form and a verdict.

A recipe reproduces a paper's finding only if it says which one and how to check it. A study
file lists them under ``findings``::

    findings:
      - id: distance_grows
        claim: "the distance to the checkpoint grows faster than without the penalty"
        source: "von Bachmann 2020 (Tübingen), sec. 3.1, Fig. 3.2"
        metric: dist_ckpt_0          # a per-epoch metric, or "<analysis id>.<key>"
        at: final                    # how one run's epochs reduce to one number
        a: repulsion                 # a variant, or {variant:, metric:, at:} ...
        b: baseline                  # ... or {value: 0.0}, a constant
        expect: greater              # greater | less | similar
        margin: 0.01                 # the smallest effect that matters (metric units)
        paired: true                 # the variants of a seed are one run until the treatment
        published: {value: 89.0, setting: "ResNet32, CIFAR-10, 600 epochs"}

``ours`` is mean(a) − mean(b) over seeds with its 95% interval (:mod:`losslab.studies.stats`:
Welch between two variants, paired by seed when both sides are the same variant or the finding
says ``paired: true``, one-sample against a constant). ``paired: true`` is for designs with
common random numbers: the variants of one seed start from the same initialization and data
order and are the same run until the treatment begins (a repulsion term switched on at the
first checkpoint), so the seed is a block and the paired t-interval of the per-seed
differences removes the seed-to-seed spread that both variants share (common random numbers;
Law & Kelton, "Simulation Modeling and Analysis", the chapter on variance reduction). It is a property of the design, declared in the
study file before any run, never chosen from the results. The verdict (:func:`verdict`) reads only the interval:

* ``greater``: interval above 0 → *reproduced*; below 0 → *contradicted*; entirely inside
  (−margin, margin) → *contradicted* (resolved: no effect of the claimed size); otherwise
  *not resolved*. ``less`` is the mirror image.
* ``similar`` (margin required): inside (−margin, margin) → *reproduced*; entirely outside →
  *contradicted*; otherwise *not resolved*.

Reductions (``at``) of one run's epochs: ``final``, ``best`` (max for accuracies, min
otherwise), ``max``, ``min``, ``mean``, ``drop`` (the largest fall below the running maximum,
max_t (max_{s≤t} x_s − x_t)), ``epoch:N``, ``first:K`` and ``last:K`` (means over the first or
last K epochs). An analysis metric ``<id>.<key>`` reads the ``per_run`` rows of the analysis's
result (``{"variant", "seed", key: value}``) and ignores ``at``.

Names are checked when the study file is loaded (:func:`check_findings`), before any run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from losslab.errors import InputError
from losslab.studies.stats import difference, mean_ci

__all__ = ["FindingSpec", "SideSpec", "PublishedSpec", "check_findings", "evaluate_findings",
           "verdict", "reduce_series", "VERDICTS", "is_known_metric"]

VERDICTS = ("reproduced", "not resolved", "contradicted")

# Per-epoch metrics the trainer and its callbacks log (metrics.jsonl). A finding naming any
# other metric is a typo, reported when the study is loaded rather than after training.
_KNOWN_METRICS = (
    r"(train|val|test)_(loss|acc)", r"lr", r"epoch_time", r"step", r"best_epoch",
    # checkpoint repulsion
    r"dist_ckpt_\d+", r"active_checkpoints", r"repulsion_penalty", r"task_grad_norm",
    r"penalty_grad_norm", r"grad_cosine",
    # cold restarts
    r"loss_estimate", r"restarted", r"restarts",
    # simulated annealing (SSA, SGD-SA)
    r"steps", r"improving_moves", r"neutral_moves", r"worsening_accepted", r"worsening_rejected",
    r"worsening_moves", r"mean_acceptance_prob", r"improving_share", r"temperature", r"eps",
    r"eps_drops", r"mean_lr", r"accepted_share",
    # sharpness during training
    r"sharpness", r"sharpness_products", r"sharpness_converged",
    r"sharpness_ggn", r"sharpness_ggn_products", r"sharpness_ggn_converged",
)
_KNOWN = re.compile("|".join(f"(?:{p})" for p in _KNOWN_METRICS))
_AT = re.compile(r"final|best|max|min|mean|drop|epoch:\d+|first:\d+|last:\d+")


def is_known_metric(name: str) -> bool:
    """Whether ``name`` is a per-epoch metric some losslab run logs."""
    return _KNOWN.fullmatch(name) is not None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SideSpec(_Strict):
    """One side of a comparison: a variant (with an optional other metric or reduction), or
    a constant ``value``."""

    variant: str | None = None
    metric: str | None = None
    at: str | None = None
    value: float | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> SideSpec:
        if (self.variant is None) == (self.value is None):
            raise InputError("a side is either {variant: ...} or {value: ...}")
        return self


class PublishedSpec(_Strict):
    """The source's own number, shown beside ours with the setting it was measured in."""

    value: float | str
    setting: str = Field(min_length=1)


class FindingSpec(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    claim: str = Field(min_length=1)
    source: str = Field(min_length=1)
    metric: str
    at: str = "final"
    a: str | SideSpec
    b: str | SideSpec
    expect: Literal["greater", "less", "similar"]
    margin: float | None = Field(None, ge=0)
    scale: float = 1.0
    published: PublishedSpec | None = None
    note: str | None = None
    paired: bool = False

    @model_validator(mode="after")
    def _margin_for_similar(self) -> FindingSpec:
        if self.expect == "similar" and not self.margin:
            raise InputError("expect: similar needs a margin > 0 (what counts as the same)")
        if self.paired and self.side("b").value is not None:
            raise InputError("paired: true pairs two variants by seed; side b is a constant")
        return self

    def is_paired(self) -> bool:
        """Paired by seed: declared, or both sides the same variant (two epochs of one run)."""
        a, b = self.side("a"), self.side("b")
        return b.value is None and (self.paired or a.variant == b.variant)

    def side(self, which: str) -> SideSpec:
        """Side ``a`` or ``b`` with the finding's metric and reduction filled in."""
        s = getattr(self, which)
        s = SideSpec(variant=s) if isinstance(s, str) else s
        if s.value is not None:
            return s
        return SideSpec(variant=s.variant, metric=s.metric or self.metric, at=s.at or self.at)


def check_findings(findings: Iterable[FindingSpec], variants: Iterable[str],
                   analyses: Iterable[str]) -> list[str]:
    """Problems with the findings of a study (empty when all are well-formed).

    Each names the finding and the bad variant, metric, reduction or analysis, with what is
    allowed.
    """
    variants, analyses = list(variants), list(analyses)
    problems, seen = [], set()
    for f in findings:
        if f.id in seen:
            problems.append(f"finding {f.id!r} is listed twice")
        seen.add(f.id)
        for which in ("a", "b"):
            s = f.side(which)
            if s.value is not None:
                continue
            where = f"finding {f.id!r}, side {which}"
            if s.variant not in variants:
                problems.append(f"{where}: no variant {s.variant!r}; variants: {variants}")
            if "." in s.metric:
                analysis = s.metric.split(".", 1)[0]
                if analysis not in analyses:
                    problems.append(f"{where}: metric {s.metric!r} names no analysis of the "
                                    f"study {analysis!r}; analyses: {analyses}")
            elif not is_known_metric(s.metric):
                problems.append(f"{where}: unknown metric {s.metric!r}; expected a per-epoch "
                                "metric (train_loss, val_acc, test_acc, dist_ckpt_0, "
                                "worsening_accepted, ...) or '<analysis id>.<key>'")
            if _AT.fullmatch(s.at) is None:
                problems.append(f"{where}: at {s.at!r} is not one of final, best, max, min, "
                                "mean, drop, epoch:N, first:K, last:K")
    return problems


def reduce_series(values: pd.Series | list[float], at: str, metric: str = "") -> float:
    """One run's epochs of a metric (in epoch order) reduced to one number (module docstring)."""
    x = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)
    if at.startswith("epoch:"):
        raise InputError("epoch:N needs the epochs; use reduce_run")
    finite = x[np.isfinite(x)]
    if not len(finite):
        return math.nan
    kind, _, k = at.partition(":")
    if kind == "final":
        return float(finite[-1])
    if kind == "best":
        kind = "max" if metric.endswith("acc") else "min"
    if kind == "max":
        return float(finite.max())
    if kind == "min":
        return float(finite.min())
    if kind == "mean":
        return float(finite.mean())
    if kind == "drop":
        return float((np.maximum.accumulate(finite) - finite).max())
    if kind == "first":
        return float(finite[: int(k)].mean())
    if kind == "last":
        return float(finite[-int(k):].mean())
    raise InputError(f"unknown reduction {at!r}")


def reduce_run(rows: pd.DataFrame, metric: str, at: str) -> float:
    """The reduction of ``metric`` over one run's rows (any order)."""
    rows = rows.sort_values("epoch")
    if metric not in rows:
        return math.nan
    if at.startswith("epoch:"):
        hit = rows.loc[rows["epoch"] == int(at.split(":")[1]), metric]
        return float(pd.to_numeric(hit, errors="coerce").iloc[0]) if len(hit) else math.nan
    return reduce_series(rows[metric], at, metric)


def _side_values(records, s: SideSpec) -> dict[int, float]:
    """Seed -> value of one side over the variant's finished runs."""
    if "." in s.metric:
        analysis, key = s.metric.split(".", 1)
        result = records.analyses.get(analysis)
        if not isinstance(result, dict) or "per_run" not in result:
            why = result.get("error") if isinstance(result, dict) else "it has no result"
            raise LookupError(f"analysis {analysis!r} gave no per_run rows ({why})")
        rows = [r for r in result["per_run"] if r.get("variant") == s.variant]
        if rows and key not in rows[0]:
            raise LookupError(f"analysis {analysis!r} has no per-run {key!r}; has "
                              f"{sorted(k for k in rows[0] if k not in ('run_id', 'variant'))}")
        return {int(r["seed"]): float(r[key]) for r in rows if r.get(key) is not None}
    finished = records.runs[(records.runs["status"] == "finished")
                            & (records.runs["variant"] == s.variant)]
    results = records.results
    if len(finished) and s.metric not in results:
        raise LookupError(f"no run logged the metric {s.metric!r}")
    out = {}
    for run_id, seed in zip(finished["run_id"], finished["seed"], strict=True):
        out[int(seed)] = reduce_run(results[results["run_id"] == run_id], s.metric, s.at)
    return out


def verdict(low: float | None, high: float | None, expect: str,
            margin: float | None = None, scale: float = 1.0) -> tuple[str, str]:
    """The verdict and its reason from the 95% interval [low, high] of a − b (``scale`` only
    sets the units the reason names the margin in, as the table shows the numbers)."""
    if low is None or high is None:
        return "not resolved", "no interval (fewer than two seeds a side)"
    m = margin or 0.0
    inside = m > 0 and -m < low and high < m
    shown = m * scale
    if expect == "similar":
        if inside:
            return "reproduced", f"the interval lies inside ±{shown:g}"
        if low >= m or high <= -m:
            return "contradicted", f"the interval lies outside ±{shown:g}"
        return "not resolved", f"the interval crosses ±{shown:g}"
    sign = 1.0 if expect == "greater" else -1.0
    lo, hi = sorted((sign * low, sign * high))
    word = "above" if expect == "greater" else "below"
    if lo > 0:
        return "reproduced", f"the interval lies {word} 0"
    if hi < 0:
        return "contradicted", "the interval lies on the opposite side of 0"
    if inside:
        return "contradicted", f"no effect of the claimed size: the interval lies inside ±{shown:g}"
    return "not resolved", "the interval contains 0" + (f" and reaches past ±{shown:g}" if m else "")


def _label(s: SideSpec, f: FindingSpec, other: SideSpec) -> str:
    """The variant, with its metric and reduction where they are not the finding's own, or
    always when both sides are the same variant (then only they tell the sides apart)."""
    if s.value is not None:
        return f"{s.value:g}"
    same = s.variant == other.variant
    extra = [x for x, default in ((s.metric, f.metric), (s.at, f.at)) if x != default or same]
    if "." in s.metric:  # an analysis's per-run value has no reduction
        extra = [x for x in extra if x != s.at]
    return s.variant + (f" ({', '.join(extra)})" if extra else "")


def evaluate_finding(records, f: FindingSpec) -> dict[str, Any]:
    """One finding against a study's records: both sides, the difference, the verdict."""
    out: dict[str, Any] = {"id": f.id, "claim": f.claim, "source": f.source, "metric": f.metric,
                           "at": f.at, "expect": f.expect, "margin": f.margin, "scale": f.scale,
                           "published": f.published.model_dump() if f.published else None,
                           "note": f.note, "study": records.name}
    a, b = f.side("a"), f.side("b")
    out["a_label"], out["b_label"] = _label(a, f, b), _label(b, f, a)
    try:
        va = _side_values(records, a)
        vb = b.value if b.value is not None else _side_values(records, b)
    except LookupError as e:
        return {**out, "verdict": "not resolved", "reason": f"not evaluated: {e}"}
    if f.is_paired():
        seeds = sorted(set(va) & set(vb))
        d = difference([va[s] for s in seeds], [vb[s] for s in seeds], paired=True)
    else:
        d = difference(list(va.values()), vb if b.value is not None else list(vb.values()))
    out["a"] = {**mean_ci(list(va.values())).to_dict(), "values": va}
    out["b"] = ({"mean": b.value, "value": b.value} if b.value is not None
                else {**mean_ci(list(vb.values())).to_dict(), "values": vb})
    out["difference"] = d.to_dict()
    out["verdict"], out["reason"] = verdict(d.low, d.high, f.expect, f.margin, f.scale)
    return out


def evaluate_findings(records, findings: Iterable[FindingSpec]) -> list[dict[str, Any]]:
    return [evaluate_finding(records, f) for f in findings]
