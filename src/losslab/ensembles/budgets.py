"""The study analysis ``ensemble_budgets``: independent vs snapshot vs fast geometric ensembles
at equal training budgets, the comparison of Garipov et al. 2018, Table 1.

A budget B is the number of epochs one network is trained for. At kB:

* **Ind**: k independently trained networks (the final models of the first k seeds of the
  ``ind`` variant, each trained for B epochs);
* **SSE**: one run of kB epochs with the snapshot schedule; its snapshots are the members;
* **FGE**: one run of kB epochs (pre-training, then cycles); its FGE members are the members.

FGE as the paper ran it pre-trains with the independent networks' own schedule: its runs start
from the ``ind`` run's checkpoint at 0.8B (``init: {run: ind, epoch: ...}``), as Garipov et al.'s
``fge.py`` starts from ``checkpoint-160.pt`` of a 200-epoch ``train.py`` run, and train 0.2B +
(k − 1)B epochs of cycles; the rows give each method's epochs (pre-training included).

``per_run`` rows (for study findings, ``<id>.<key>``): each SSE/FGE run has ``error`` and
``nll`` (test error in %, NLL of the averaged probabilities); the ``ind`` variant's row of seed
s has ``error_1B``, ``nll_1B`` (the network of seed s alone) and, for k ≥ 2, ``error_kB`` and
``nll_kB`` on the first seed of each disjoint block of k seeds (the ensemble of that block), so
that the samples of one budget are independent.

Test error (%) of each ensemble, mean ± std over the SSE/FGE runs' seeds, beside the published
numbers when the study gives them (``published: {Ind: [...], SSE: [...], FGE: [...]}``), which
need ``published_setting`` (the model, data set and budget they were measured with: the
report labels them with it, and a paper's numbers belong only beside a run of its setting).
"""

from __future__ import annotations

import math
from typing import Any

from losslab.ensembles.analyze import analyze_ensemble
from losslab.errors import InputError
from losslab.runs.checkpoint_set import CheckpointSet
from losslab.studies.analyses import register_analysis
from losslab.studies.published import check_published_setting
from losslab.studies.records import StudyRecords

__all__ = ["ensemble_budgets"]


def _finished(records: StudyRecords, variant: str) -> list[str]:
    runs = records.runs[(records.runs["variant"] == variant) & (records.runs["status"] == "finished")]
    if variant not in records.variants:
        raise InputError(f"ensemble_budgets: no variant {variant!r}; the study has "
                         f"{list(records.variants)}")
    return list(runs.sort_values("seed")["run_dir"])


def _row(method: str, budget: int, errors: list[float], members: list[int],
         published: dict[str, list[float]] | None) -> dict[str, Any]:
    mean = sum(errors) / len(errors) if errors else None
    std = (math.sqrt(sum((e - mean) ** 2 for e in errors) / (len(errors) - 1))
           if len(errors) > 1 else None)
    ref = (published or {}).get(method) or []
    return {"method": method, "budget": f"{budget}B", "error": mean, "error_std": std,
            "runs": len(errors), "members": members[0] if members else None,
            "published": ref[budget - 1] if len(ref) >= budget else None}


@register_analysis("ensemble_budgets")
def ensemble_budgets(records: StudyRecords, *, ind: str, sse: dict[int, str],
                     fge: dict[int, str], published: dict[str, list[float]] | None = None,
                     published_setting: str | None = None, split: str = "test",
                     combine: str = "probs") -> dict[str, Any]:
    """Ind vs SSE vs FGE test error (%) at budgets 1B, 2B, 3B, beside the published numbers."""
    check_published_setting("ensemble_budgets", published, published_setting)
    rows, per_run = [], []
    ind_runs = _finished(records, ind)
    budgets = sorted({int(k) for k in (*sse, *fge)})
    if ind_runs:
        result = analyze_ensemble(CheckpointSet.from_runs(ind_runs, role="final"), split=split,
                                  combine=combine, swa=False)
        for k in budgets:
            if k <= len(result["cumulative"]):
                rows.append(_row("Ind", k, [100 * (1 - result["cumulative"][k - 1]["acc"])], [k],
                                 published))
        per_run = _ind_blocks(records, ind, ind_runs, budgets, split, combine)
    for method, role, variants in (("SSE", "snapshot", sse), ("FGE", "fge", fge)):
        for k, variant in sorted((int(k), v) for k, v in variants.items()):
            errors, members = [], []
            for run_dir in _finished(records, variant):
                ckpts = CheckpointSet.from_run(run_dir, role=role)
                if not len(ckpts):
                    raise InputError(f"ensemble_budgets: run {run_dir} has no {role!r} members; "
                                     f"is its schedule {'snapshot' if role == 'snapshot' else 'fge'}?")
                r = analyze_ensemble(ckpts, split=split, combine=combine, swa=False)
                errors.append(100 * (1 - r["ensemble"]["acc"]))
                members.append(r["n_members"])
                per_run.append({"variant": variant, "seed": _seed_of(records, run_dir),
                                "error": errors[-1], "nll": r["ensemble"]["nll"],
                                "n_members": r["n_members"]})
            row = _row(method, k, errors, members, published)
            row["epochs"] = _epochs(records, variant)
            rows.append(row)
    return {"split": split, "combine": combine, "ind": ind, "sse": sse, "fge": fge,
            "published": published, "published_setting": published_setting, "rows": rows,
            "per_run": per_run}


def _seed_of(records: StudyRecords, run_dir: str) -> int:
    runs = records.runs
    return int(runs.loc[runs["run_dir"] == run_dir, "seed"].iloc[0])


def _epochs(records: StudyRecords, variant: str) -> int | None:
    """A variant's training epochs, with the pre-training of the run it starts from (init)."""
    from losslab.runs.rundir import RunDir

    def config_of(name: str) -> dict[str, Any] | None:
        runs = records.run_dirs(variant=name)
        return RunDir(runs[0]).read_config() if runs else None

    config = config_of(variant)
    if config is None:
        return None
    init = config.get("init") or {}
    source = config_of(init["run"]) if init.get("run") in records.variants else None
    before = 0 if source is None else (init["epoch"] if init.get("epoch") is not None
                                       else source["epochs"])
    return int(config["epochs"]) + int(before)


def _ind_blocks(records: StudyRecords, ind: str, ind_runs: list[str], budgets: list[int],
                split: str, combine: str) -> list[dict[str, Any]]:
    """The ``ind`` variant's per-seed rows: one network at 1B, disjoint blocks of k at kB."""
    seeds = [_seed_of(records, d) for d in ind_runs]
    rows = {s: {"variant": ind, "seed": s} for s in seeds}
    for k in sorted({1, *budgets}):
        for start in range(0, len(ind_runs) - k + 1, k):
            block = ind_runs[start:start + k]
            r = analyze_ensemble(CheckpointSet.from_runs(block, role="final"), split=split,
                                 combine=combine, swa=False)
            rows[seeds[start]].update({f"error_{k}B": 100 * (1 - r["ensemble"]["acc"]),
                                       f"nll_{k}B": r["ensemble"]["nll"]})
    keys = {key for row in rows.values() for key in row}
    return [{key: row.get(key) for key in sorted(keys)} for row in rows.values()]

