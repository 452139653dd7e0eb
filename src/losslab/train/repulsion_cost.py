"""The study analysis ``repulsion_cost``: what one more repulsion checkpoint costs per epoch.

The checkpoint-repulsion thesis (sec. 2.1.2 "Computational analysis", sec. 3.5, Fig. 3.9)
argues that each checkpoint adds a constant amount of work per step, so the epoch time grows
linearly in the number of checkpoints K, and measures it for MobileNetV2 on CIFAR-10 on its
GPU cluster: 68 s an epoch without the penalty, +21 s with one checkpoint (+31%), "the increase
for each stays constant".

A run's own ``epoch_time`` cannot answer this on a shared CPU: parallel runs and other load move
epoch times by more than the effect, and they drift during a run, so the epochs before and after
a checkpoint are not comparable. So this analysis measures the cost itself, for each finished
run of the chosen ``variants`` (its model, data, optimizer and schedule rebuilt from the run's
config, exactly as training builds them; the run's final weights are not needed, the cost does
not depend on the values):

1. **Epoch time** (the training steps of one epoch plus the callback's end-of-epoch distances;
   no evaluation) with k = 0, 1, ..., K checkpoints, with the gradient logging off and on
   (``log_gradients``: the norms of the task and penalty gradients and their cosine, which cost
   two extra flat copies of the gradient per step). The (k, logging) pairs are *interleaved*:
   each of ``repeats`` rounds times every pair once, in an order rotated from round to round,
   so drifting load hits all alike. Per pair: median, min and max over the rounds.
2. **The penalty alone**: the median over ``calls`` calls of one step's penalty work (the
   callback's ``on_after_backward``: ``add_gradient_`` and, when logging, the flat gradients,
   norms and cosine), per k and logging mode, also interleaved. Times ``steps_per_epoch``, it
   is the penalty's share of an epoch, free of the noise of the rest of the step.

Per k the result's ``per_count`` table gathers both (medians over runs). The ``per_run`` rows
(one per timed run, for study findings ``repulsion_cost.<key>``):

* ``seconds_per_checkpoint``: least-squares slope of the median epoch time (logging off) in k;
  ``share_per_checkpoint``: that over the k = 0 epoch time;
* ``penalty_seconds_per_checkpoint``: slope in k of the penalty-alone time per epoch;
  ``penalty_share_per_checkpoint``: that over the k = 0 epoch time;
* ``linearity``: penalty-alone (t_K − t_1) / ((K − 1)(t_1 − t_0)) with t_0 = 0 (no checkpoint,
  no penalty work): the mean cost of each further checkpoint over that of the first; 1 when
  every checkpoint costs the same (the thesis's linear scaling), below 1 when a fixed part
  (flattening the parameters, one kernel launch) dominates;
* ``logging_share``: the extra epoch time of the gradient logging at k = K, over the k = 0 time;
* ``epoch_time_<k>``: the median epoch times.

The earlier reading from the runs' own ``epoch_time`` (grouped by ``active_checkpoints``) stays
as ``in_run``, labelled as what it is.

Source: P. N. von Bachmann, Bachelor thesis on checkpoint repulsion ("distance function"),
Wilhelm-Schickard-Institut für Informatik, University of Tübingen, 2020 ("the thesis").
"""

from __future__ import annotations

import logging
import statistics
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from losslab.errors import InputError
from losslab.runs.config import TrainConfig, validate_config
from losslab.runs.rundir import RunDir
from losslab.studies.analyses import register_analysis
from losslab.studies.records import StudyRecords

__all__ = ["repulsion_cost", "time_repulsion", "THESIS_COST"]

log = logging.getLogger(__name__)

#: The thesis's measurement, with its setting (sec. 3.5, Fig. 3.9).
THESIS_COST = {"seconds_per_checkpoint": 21.0, "epoch_time": 68.0,
               "share_per_checkpoint": 21.0 / 68.0,
               "setting": "MobileNetV2, CIFAR-10, batch 128, TCML cluster GPU (thesis sec. 3.5, "
                          "Fig. 3.9)"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timing_trainer(config: TrainConfig):
    """The run's trainer (model, optimizer, schedule, loader) without repulsion, restarts or
    a run directory: only the ordinary training step."""
    from losslab.train.run import build_trainer

    repulsion = config.repulsion.model_copy(update={"first": None, "epochs": []})
    plain = config.model_copy(update={"repulsion": repulsion,
                                      "restarts": config.restarts.model_copy(update={"eps": None}),
                                      "log": config.log.model_copy(update={"sharpness_every": 0,
                                                                           "progress": False})})
    return build_trainer(plain)


def _callback(config: TrainConfig, trainer, k: int, logging_on: bool, strength: float):
    from losslab.train.repulsion_callback import RepulsionCallback

    cfg = config.repulsion.model_copy(update={"strength": strength, "log_gradients": logging_on,
                                              "mode": "analytic", "window": None})
    cb = RepulsionCallback(cfg, trainer.epochs)
    cb.epochs = []  # never place checkpoints on its own: the k anchors are placed here
    cb.repulsion.to(trainer.device)
    for _ in range(k):
        cb.repulsion.add_checkpoint(trainer.model)
    return cb


def _summary(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def time_repulsion(config: TrainConfig, *, counts: list[int], repeats: int = 5,
                   calls: int = 100, strength: float | None = None,
                   log_modes: tuple[bool, ...] = (False, True)) -> dict[str, Any]:
    """Interleaved epoch times and penalty-alone times for ``counts`` checkpoints (module
    docstring); ``config`` is a run's config. Returns per (logging, k) the summaries."""
    if repeats < 1 or calls < 1:
        raise InputError(f"repulsion_cost: repeats and calls must be >= 1, got {repeats}, {calls}")
    trainer = _timing_trainer(config)
    s = strength if strength is not None else (config.repulsion.strength or 10.0)
    pairs = [(on, k) for on in log_modes for k in counts]
    callbacks = {pair: _callback(config, trainer, pair[1], pair[0], s) for pair in pairs}
    epoch_times: dict[tuple[bool, int], list[float]] = {p: [] for p in pairs}
    penalty_times: dict[tuple[bool, int], list[float]] = {p: [] for p in pairs}
    device = trainer.device
    epoch = 1
    trainer.callbacks = [callbacks[pairs[0]]]
    callbacks[pairs[0]].on_epoch_start(trainer, epoch)
    trainer.train_epoch(epoch)  # warm-up: allocator, first-call overheads, caches
    # One step's gradients for the penalty-alone timing (re-used: the cost does not depend on them).
    x, y = next(iter(trainer.train_loader))
    x, y = x.to(device), y.to(device)
    for r in range(repeats):
        shift = r % len(pairs)
        for pair in pairs[shift:] + pairs[:shift]:
            cb = callbacks[pair]
            epoch += 1
            trainer.callbacks = [cb]
            _sync(device)
            start = time.perf_counter()
            cb.on_epoch_start(trainer, epoch)
            trainer.train_epoch(epoch)
            cb.on_epoch_end(trainer, epoch, {})
            _sync(device)
            epoch_times[pair].append(time.perf_counter() - start)
        for pair in pairs[shift:] + pairs[:shift]:
            cb = callbacks[pair]
            cb.on_epoch_start(trainer, epoch)
            trainer.optimizer.zero_grad(set_to_none=True)
            loss = trainer.loss_fn(trainer.model(x), y)
            loss.backward()
            fake = SimpleNamespace(model=trainer.model, device=device)
            _sync(device)
            start = time.perf_counter()
            for _ in range(calls):
                cb.on_after_backward(fake, loss)
            _sync(device)
            penalty_times[pair].append((time.perf_counter() - start) / calls)
    steps = len(trainer.train_loader)
    out: dict[str, Any] = {"steps_per_epoch": steps, "strength": s, "pairs": []}
    for on, k in pairs:
        out["pairs"].append({"log_gradients": on, "checkpoints": k,
                             "epoch_time": _summary(epoch_times[on, k]),
                             "penalty_step_time": _summary(penalty_times[on, k])})
    return out


def _row_for(timing: dict[str, Any], counts: list[int]) -> dict[str, float]:
    """The per-run numbers from one run's timing (module docstring)."""
    pick = {(p["log_gradients"], p["checkpoints"]): p for p in timing["pairs"]}
    steps = timing["steps_per_epoch"]
    epoch = np.array([pick[False, k]["epoch_time"]["median"] for k in counts])
    # Without a checkpoint the callback does no penalty work: its time there is the call alone.
    penalty = np.array([pick[False, k]["penalty_step_time"]["median"] * steps if k else 0.0
                        for k in counts])
    ks = np.array(counts, dtype=float)
    base = float(epoch[counts.index(0)]) if 0 in counts else float("nan")
    row: dict[str, float] = {f"epoch_time_{k}": float(t) for k, t in zip(counts, epoch, strict=True)}
    if len(counts) > 1:
        slope = float(np.polyfit(ks, epoch, 1)[0])
        pslope = float(np.polyfit(ks, penalty, 1)[0])
        row.update(seconds_per_checkpoint=slope, share_per_checkpoint=slope / base,
                   penalty_seconds_per_checkpoint=pslope,
                   penalty_share_per_checkpoint=pslope / base)
    top = max(counts)
    if 1 in counts and top > 1 and penalty[counts.index(1)] > 0:
        t1, tk = penalty[counts.index(1)], penalty[counts.index(top)]
        row["linearity"] = float((tk - t1) / ((top - 1) * t1))
    if (True, top) in pick:
        row["logging_share"] = float((pick[True, top]["epoch_time"]["median"]
                                      - pick[False, top]["epoch_time"]["median"]) / base)
    return row


def _in_run(records: StudyRecords, skip_first: int) -> list[dict[str, Any]]:
    """The runs' own epoch times by active checkpoints (blurred by parallel runs and load)."""
    results = records.results
    finished = set(records.runs.loc[records.runs["status"] == "finished", "run_id"])
    rows = results[results["run_id"].isin(finished) & (results["epoch"] > skip_first)].copy()
    if rows.empty or "epoch_time" not in rows:
        return []
    if "active_checkpoints" not in rows:
        rows["active_checkpoints"] = 0
    rows["active_checkpoints"] = rows["active_checkpoints"].fillna(0).astype(int)
    out = []
    for variant, group in rows.groupby("variant", sort=False):
        by_count = group.groupby("active_checkpoints")["epoch_time"]
        counts = sorted(by_count.groups)
        out.append({"variant": variant, "checkpoints": counts,
                    "median_epoch_time": [float(by_count.get_group(k).median()) for k in counts],
                    "epochs": [int(by_count.get_group(k).size) for k in counts]})
    return out


def _penalized(config: TrainConfig) -> bool:
    r = config.repulsion
    return r.strength > 0 and bool(r.checkpoint_epochs(config.epochs))


@register_analysis("repulsion_cost")
def repulsion_cost(records: StudyRecords, *, variants: list[str] | None = None,
                   max_checkpoints: int = 3, repeats: int = 5, calls: int = 100,
                   max_runs: int | None = 3, strength: float | None = None,
                   threads: int | None = 1, skip_first: int = 1) -> dict[str, Any]:
    """Epoch time against the number of repulsion checkpoints, measured interleaved (module
    docstring), for the finished runs of ``variants`` (default: those that apply the penalty),
    at most ``max_runs`` of them (None: all). ``threads``: torch threads while timing (1: one core, as each of two study
    workers on two cores; None: leave as is)."""
    if max_checkpoints < 1:
        raise InputError(f"repulsion_cost: max_checkpoints must be >= 1, got {max_checkpoints}")
    runs = records.runs[records.runs["status"] == "finished"]
    unknown = [v for v in variants or [] if v not in records.variants]
    if unknown:
        raise InputError(f"repulsion_cost: unknown variants {unknown}; the study has "
                         f"{list(records.variants)}")
    runs = runs[runs["variant"].isin(variants)] if variants else runs
    configs = {r.run_id: validate_config(RunDir(r.run_dir).read_config())
               for r in runs.itertuples()}
    if not variants:  # the runs that apply the penalty
        runs = runs[[_penalized(configs[i]) for i in runs["run_id"]]]
    runs = runs.sort_values(["variant", "seed"])
    if max_runs is not None:
        runs = runs.head(max_runs)
    if runs.empty:
        raise InputError("repulsion_cost: no finished runs with repulsion to rebuild and time "
                         f"(variants: {variants or 'those with repulsion.strength > 0'})")
    counts = list(range(max_checkpoints + 1))
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    timings, per_run = [], []
    try:
        for r in runs.itertuples():
            config = configs[r.run_id]
            log.info("repulsion_cost: timing %s", r.run_id)
            t = time_repulsion(config, counts=counts, repeats=repeats, calls=calls,
                               strength=strength)
            timings.append({"run_id": r.run_id, **t})
            per_run.append({"run_id": r.run_id, "variant": r.variant, "seed": int(r.seed),
                            **_row_for(t, counts)})
    finally:
        torch.set_num_threads(before)
    per_count = []
    for on in (False, True):
        for k in counts:
            cells = [p for t in timings for p in t["pairs"]
                     if p["log_gradients"] == on and p["checkpoints"] == k]
            epoch = [c["epoch_time"]["median"] for c in cells]
            per_count.append({
                "checkpoints": k, "log_gradients": on, "runs": len(cells),
                "epoch_time_median": statistics.median(epoch),
                "epoch_time_min": min(c["epoch_time"]["min"] for c in cells),
                "epoch_time_max": max(c["epoch_time"]["max"] for c in cells),
                "penalty_step_time_median": (statistics.median(
                    c["penalty_step_time"]["median"] for c in cells) if k else 0.0)})
    return {"method": "interleaved", "repeats": repeats, "calls": calls,
            "threads": threads or before, "checkpoints": counts,
            "steps_per_epoch": timings[0]["steps_per_epoch"], "strength": timings[0]["strength"],
            "per_count": per_count, "per_run": per_run, "timings": timings,
            "in_run": _in_run(records, skip_first), "thesis": THESIS_COST}
