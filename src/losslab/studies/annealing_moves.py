"""The study analysis ``annealing_moves``: what the annealing optimizers did, move by move.

The simulated-annealing thesis shows three pictures of a run: the worsening moves accepted and
rejected in every epoch as stacked bars, with the epochs where ε dropped marked (its Fig. 3.4;
Fig. 4.2 for SGD-SA), and the acceptance probability exp(−Δ/T) of every worsening move against
the training step (Figs 3.3 and 4.1: the "probability decay"). This analysis gathers them for
every SSA / SGD-SA variant of a study, for one seed (``seed``, default the smallest), from the
runs' ``metrics.jsonl`` and ``annealing_moves.jsonl``; and, per run (``per_run``), the numbers
that say whether annealing acted:

    worse_total      worsening moves over the run
    both_share       share of epochs with at least one accepted AND one rejected worsening move
    eps_drops        times ε was divided (SSA; 0 for SGD-SA)
    prob_first, prob_last   mean acceptance probability over the first / last ``k`` epochs

Source: M. Stringher, "Unconventional Training of Deep Neural Networks", Master's thesis,
University of Padova, 2019 ("the thesis").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from losslab.errors import InputError
from losslab.studies.analyses import register_analysis
from losslab.studies.records import StudyRecords
from losslab.train.annealing_log import read_moves

__all__ = ["annealing_moves", "MAX_POINTS"]

MAX_POINTS = 3000  # per-move points per variant in the scatter (evenly thinned beyond)


def _finite_mean(values: Any) -> float:
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def _drop_epochs(eps: list[float], epochs: list[int]) -> list[int]:
    """Epochs at whose end ε dropped: ε of the next epoch is smaller."""
    return [e for e, a, b in zip(epochs, eps, eps[1:], strict=False) if b < a]


def _moves_series(run_dir: str) -> dict[str, Any]:
    """The run's worsening moves as (step of the run, probability, accepted), thinned evenly
    to at most ``MAX_POINTS``."""
    x, prob, kept = [], [], []
    offset = 0
    for rec in read_moves(run_dir):
        for s, p, a in zip(rec["step"], rec["prob"], rec["accepted"], strict=True):
            if p is not None:
                x.append(offset + s + 1)
                prob.append(p)
                kept.append(int(a))
        offset += int(rec.get("steps") or 0)
    total = len(x)
    if total > MAX_POINTS:
        pick = np.unique(np.linspace(0, total - 1, MAX_POINTS).round().astype(int))
        x, prob, kept = ([v[i] for i in pick] for v in (x, prob, kept))
    return {"step": x, "prob": prob, "accepted": kept, "total": total}


def _run_figures(run: Any, rows: Any) -> dict[str, Any]:
    """One run's per-epoch bars, ε drops and per-move probabilities."""
    eps = rows["eps"].astype(float).tolist() if "eps" in rows else []
    epochs = rows["epoch"].astype(int).tolist()
    return {"seed": int(run.seed), "run_id": run.run_id, "epochs": epochs,
            "accepted": rows["worsening_accepted"].fillna(0).astype(int).tolist(),
            "rejected": rows["worsening_rejected"].fillna(0).astype(int).tolist(),
            "mean_acceptance_prob": rows["mean_acceptance_prob"].astype(float).tolist(),
            "temperature": rows["temperature"].astype(float).tolist(),
            "eps": eps, "eps_drop_epochs": _drop_epochs(eps, epochs),
            "moves": _moves_series(run.run_dir)}


@register_analysis("annealing_moves")
def annealing_moves(records: StudyRecords, *, seed: int | None = None,
                    k: int = 2) -> dict[str, Any]:
    """Worsening moves per epoch, ε drops and per-move acceptance probabilities (SSA, SGD-SA)."""
    results = records.results
    if "worsening_accepted" not in results:
        raise InputError("annealing_moves: no run logged worsening moves (optimizer.name ssa "
                         "or sgdsa)")
    if k < 1:
        raise InputError(f"annealing_moves: k must be >= 1, got {k}")
    finished = records.runs[records.runs["status"] == "finished"]
    per_run: list[dict[str, Any]] = []
    shown: dict[str, tuple[Any, Any]] = {}
    for run in finished.itertuples(index=False):
        rows = results[results["run_id"] == run.run_id].sort_values("epoch")
        if rows.empty or rows["worsening_accepted"].isna().all():
            continue  # not an annealing run (an SGD baseline)
        acc = rows["worsening_accepted"].fillna(0).to_numpy(dtype=float)
        rej = rows["worsening_rejected"].fillna(0).to_numpy(dtype=float)
        prob = rows["mean_acceptance_prob"].to_numpy(dtype=float)
        eps = rows["eps"].astype(float).tolist() if "eps" in rows else []
        per_run.append({
            "run_id": run.run_id, "variant": run.variant, "seed": int(run.seed),
            "worse_total": float(acc.sum() + rej.sum()),
            "both_share": float(np.mean((acc > 0) & (rej > 0))),
            "eps_drops": float(len(_drop_epochs(eps, rows["epoch"].astype(int).tolist()))),
            "prob_first": _finite_mean(prob[:k]), "prob_last": _finite_mean(prob[-k:])})
        current = shown.get(run.variant)
        wanted = int(run.seed) == seed if seed is not None else (
            current is None or int(run.seed) < int(current[0].seed))
        if wanted:
            shown[run.variant] = (run, rows)
    if not per_run:
        raise InputError("annealing_moves: no finished SSA or SGD-SA run")
    order = [v for v in records.variants if v in shown] or sorted(shown)
    return {"k": k, "variants": {v: _run_figures(*shown[v]) for v in order},
            "per_run": per_run}
