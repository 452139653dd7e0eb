"""The study analysis ``ensemble_budgets``: independent vs snapshot vs fast geometric ensembles
at equal training budgets, the comparison of Garipov et al. 2018, Table 1.

A budget B is the number of epochs one network is trained for. At kB:

* **Ind**: k independently trained networks (the final models of the first k seeds of the
  ``ind`` variant, each trained for B epochs);
* **SSE**: one run of kB epochs with the snapshot schedule; its snapshots are the members;
* **FGE**: one run of kB epochs (pre-training, then cycles); its FGE members are the members.

Test error (%) of each ensemble, mean ± std over the SSE/FGE runs' seeds, beside the published
numbers when the study gives them (``published: {Ind: [...], SSE: [...], FGE: [...]}``), which
need ``published_setting`` (the model, data set and budget they were measured with: the
report labels them with it, and a paper's numbers belong only beside a run of its setting).
"""

from __future__ import annotations

import math
from typing import Any

from losslab.ensembles.analyze import analyze_ensemble
from losslab.runs.checkpoint_set import CheckpointSet
from losslab.studies.analyses import register_analysis
from losslab.studies.published import check_published_setting
from losslab.studies.records import StudyRecords

__all__ = ["ensemble_budgets"]


def _finished(records: StudyRecords, variant: str) -> list[str]:
    runs = records.runs[(records.runs["variant"] == variant) & (records.runs["status"] == "finished")]
    if variant not in records.variants:
        raise ValueError(f"ensemble_budgets: no variant {variant!r}; the study has "
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
    rows = []
    ind_runs = _finished(records, ind)
    budgets = sorted({int(k) for k in (*sse, *fge)})
    if ind_runs:
        result = analyze_ensemble(CheckpointSet.from_runs(ind_runs, role="final"), split=split,
                                  combine=combine, swa=False)
        for k in budgets:
            if k <= len(result["cumulative"]):
                rows.append(_row("Ind", k, [100 * (1 - result["cumulative"][k - 1]["acc"])], [k],
                                 published))
    for method, role, variants in (("SSE", "snapshot", sse), ("FGE", "fge", fge)):
        for k, variant in sorted((int(k), v) for k, v in variants.items()):
            errors, members = [], []
            for run_dir in _finished(records, variant):
                ckpts = CheckpointSet.from_run(run_dir, role=role)
                if not len(ckpts):
                    raise ValueError(f"ensemble_budgets: run {run_dir} has no {role!r} members; "
                                     f"is its schedule {'snapshot' if role == 'snapshot' else 'fge'}?")
                r = analyze_ensemble(ckpts, split=split, combine=combine, swa=False)
                errors.append(100 * (1 - r["ensemble"]["acc"]))
                members.append(r["n_members"])
            rows.append(_row(method, k, errors, members, published))
    return {"split": split, "combine": combine, "ind": ind, "sse": sse, "fge": fge,
            "published": published, "published_setting": published_setting, "rows": rows}

