"""The study analysis ``ensemble``: ensembles made from a study's runs, with their analytics.

Options (in the study file, beside ``name: ensemble``):

* ``members``: which checkpoints of a run are members: ``final`` (default), ``best``,
  ``snapshot`` (snapshot ensembles), ``fge`` (fast geometric ensembling), ``epoch``, or
  ``auto``: each run's collected members (fge, else snapshot) and its final model otherwise;
  roles joined by ``+`` take several, e.g. ``snapshot+final`` (the repulsion thesis's ensemble:
  a snapshot before each checkpoint, plus the final model). A checkpoint whose weights equal
  an earlier member's (the snapshot of a cycle that ends with the run *is* the final model) is
  counted once (:func:`~losslab.ensembles.members.distinct_checkpoints`); the group's
  ``duplicates`` lists what was left out.
* ``group``: how members form ensembles:
  ``run`` — each run's own members (snapshot / FGE ensembles; summarised per variant over seeds);
  ``variant`` — the members of each variant's seeds (independent ensembles);
  ``seed`` — for each seed, the members of the listed variants (diverse ensembles, e.g. G + A-F);
  ``with_first`` — for each seed, the first listed variant with each other one in turn (the
  "each variant ensembled with G" of Garipov et al.);
  ``study`` — all listed runs' members in one ensemble.
* ``variants``: restrict to these variants, in this order (the first is the base net G).
* ``split`` (``test``), ``combine`` (``probs``: average probabilities; ``logits``), ``swa``.

For groups with a variant and a seed (``run``, ``with_first``) the result has ``per_run`` rows
that study findings read as ``<analysis id>.<key>``: ``ensemble_acc``; ``mean_member_acc``;
``final_acc`` (the last member, for ``snapshot+final`` the model trained to the end);
``ensemble_gain`` = ensemble_acc − mean_member_acc; ``gain_over_final`` = ensemble_acc −
final_acc; ``agreement``, the share of examples on which all members predict the same class;
``mean_disagreement``, the mean over member pairs of the share predicted differently;
``ensemble_nll`` and ``n_members``.

The repulsion thesis: P. N. von Bachmann, Bachelor thesis, University of Tübingen, 2020.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from losslab.ensembles.analyze import analyze_ensemble
from losslab.ensembles.members import distinct_checkpoints
from losslab.errors import InputError
from losslab.runs.checkpoint_set import CheckpointSet
from losslab.studies.analyses import register_analysis
from losslab.studies.records import StudyRecords

__all__ = ["ensemble_analysis"]

log = logging.getLogger(__name__)
GROUPS = ("run", "variant", "seed", "with_first", "study")
ROLES = ("final", "best", "snapshot", "fge", "epoch", "auto")


def _groups(records: StudyRecords, group: str, variants: list[str]) -> list[dict[str, Any]]:
    runs = records.runs[(records.runs["status"] == "finished") & records.runs["variant"].isin(variants)]
    order = {v: i for i, v in enumerate(variants)}
    runs = runs.assign(_order=runs["variant"].map(order)).sort_values(["_order", "seed"])
    if group == "run":
        return [{"name": r.run_id, "variant": r.variant, "seed": int(r.seed), "runs": [r.run_dir]}
                for r in runs.itertuples()]
    if group == "variant":
        return [{"name": v, "variant": v, "runs": list(rows["run_dir"])}
                for v, rows in runs.groupby("variant", sort=False)]
    if group == "with_first":
        pairs = []
        for s, rows in runs.groupby("seed", sort=True):
            first = rows[rows["variant"] == variants[0]]
            for r in rows[rows["variant"] != variants[0]].itertuples():
                pairs.append({"name": f"{variants[0]} + {r.variant} (seed {s})", "variant": r.variant,
                              "seed": int(s), "runs": [*first["run_dir"], r.run_dir]})
        return pairs
    if group == "seed":
        return [{"name": f"seed {s}", "seed": int(s), "runs": list(rows["run_dir"])}
                for s, rows in runs.groupby("seed", sort=True)]
    return [{"name": "all", "runs": list(runs["run_dir"])}]


def _summary(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant (for ``group: run``), mean and std over seeds of the headline numbers."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for g in groups:
        if "result" in g:
            by_variant.setdefault(g.get("variant", g["name"]), []).append(g["result"])
    rows = []
    for variant, results in by_variant.items():
        row: dict[str, Any] = {"variant": variant, "n": len(results),
                               "members": results[0]["n_members"]}
        columns = {"ensemble_acc": lambda r: r["ensemble"]["acc"],
                   "ensemble_nll": lambda r: r["ensemble"]["nll"],
                   "ensemble_ece": lambda r: r["ensemble"]["ece"],
                   "mean_member_acc": lambda r: r["mean_member_acc"],
                   "swa_acc": lambda r: r["swa"]["acc"] if "swa" in r else None,
                   "all_agree": lambda r: r["diversity"]["agreement"]["all_agree_frac"]}
        for key, get in columns.items():
            values = [v for v in map(get, results) if v is not None]
            mean = sum(values) / len(values) if values else None
            row[f"{key}_mean"] = mean
            row[f"{key}_std"] = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
                                 if len(values) > 1 else None)
        rows.append(row)
    return rows


def _per_run(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per ensemble that has a variant and a seed: the numbers findings compare."""
    rows = []
    for g in groups:
        r = g.get("result")
        if r is None or "variant" not in g or "seed" not in g:
            continue
        ensemble_acc, mean_acc = r["ensemble"]["acc"], r["mean_member_acc"]
        final_acc = r["member_metrics"][-1]["acc"]
        rows.append({"run_id": g["name"], "variant": g["variant"], "seed": g["seed"],
                     "n_members": r["n_members"], "ensemble_acc": ensemble_acc,
                     "ensemble_nll": r["ensemble"]["nll"], "mean_member_acc": mean_acc,
                     "final_acc": final_acc, "ensemble_gain": ensemble_acc - mean_acc,
                     "gain_over_final": ensemble_acc - final_acc,
                     "agreement": r["diversity"]["agreement"]["all_agree_frac"],
                     "mean_disagreement": r["diversity"].get("mean_disagreement")})
    return rows


def _members(run_dirs: list[str], members: str) -> tuple[CheckpointSet, list[str]]:
    if members != "auto":
        return distinct_checkpoints(CheckpointSet.from_runs(run_dirs, role=members.split("+")))
    out = CheckpointSet([])
    for d in run_dirs:
        run = CheckpointSet.from_run(d)
        for role in ("fge", "snapshot", "final"):
            if len(run.select(role=role)):
                out = out + run.select(role=role)
                break
    return distinct_checkpoints(out)


@register_analysis("ensemble")
def ensemble_analysis(records: StudyRecords, *, members: str = "final", group: str = "run",
                      variants: list[str] | None = None, split: str = "test",
                      combine: str = "probs", swa: bool = True) -> dict[str, Any]:
    """Ensembles of a study's runs: accuracy as members are added, diversity, weight distances."""
    if group not in GROUPS:
        raise InputError(f"ensemble: group must be one of {GROUPS}, got {group!r}")
    if any(role not in ROLES for role in members.split("+")):
        raise InputError(f"ensemble: members must be one of {ROLES} (or roles joined by '+'), "
                         f"got {members!r}")
    chosen = list(variants) if variants else list(records.variants)
    unknown = [v for v in chosen if v not in records.variants]
    if unknown:
        raise InputError(f"ensemble: unknown variants {unknown}; the study has {list(records.variants)}")
    groups = _groups(records, group, chosen)
    for g in groups:
        checkpoints, duplicates = _members(g.pop("runs"), members)
        if duplicates:
            g["duplicates"] = duplicates
        if not len(checkpoints):
            g["error"] = f"no {members!r} checkpoints"
            continue
        try:
            g["result"] = analyze_ensemble(checkpoints, split=split, combine=combine, swa=swa)
        except Exception as e:  # one bad group does not hide the others
            log.error("ensemble %s failed: %s", g["name"], e)
            g["error"] = f"{type(e).__name__}: {e}"
    return {"members": members, "group": group, "variants": chosen, "split": split,
            "combine": combine, "groups": groups, "summary": _summary(groups),
            "per_run": _per_run(groups)}
