"""The study analysis ``curve``: fit a mode-connecting curve between two variants' final models,
evaluate it along t against the straight line, and draw the plane (Garipov et al. 2018).

Options (beside ``name: curve``):

* ``variants``: the two variants whose final models are the endpoints (the same variant twice
  with two ``seeds`` connects independently trained networks, the paper's setting); ``seeds``:
  the seed of each endpoint (default: the study's first seed for both);
* ``pairs``: more endpoint seed pairs (``[[2, 3], [4, 5]]``), each fitted and evaluated like
  the first (no plane or ensemble: the report draws the first), for findings over pairs;
* ``bends`` (1), ``kind`` (``bezier`` or ``polychain``), ``set`` (overrides of the start run's
  config for the curve's training, e.g. ``{epochs: 30, optimizer.lr: 0.02}``);
* ``points`` (61 values of t), ``grid`` (21 points per axis of the planes; 0: no plane):
  DMC's two planes through the endpoints and the middle bend, the train loss plus
  ½·wd·‖w‖² (``plane.train_loss_l2``; wd the curve run's ``optimizer.weight_decay``, w
  every trainable parameter) and the test error in percent (``plane.test_error``),
  beside the train ``loss``/``acc`` grids (:func:`losslab.curves.curve_plane`);
* ``ensemble``: the t of the points ensembled through the ensemble analytics (default 0, 0.25,
  0.5, 0.75, 1; saved as ``curve_point`` checkpoints of the curve run; empty: none);
* ``published``: numbers to print beside ours, e.g. the reference README's test error (%)
  ranges ``{endpoints: [6.79, 6.94], bezier: [6.79, 7.75], polychain: [6.79, 8.08]}``, with
  ``published_setting`` (required with them: the model, data set and budget they come from,
  e.g. ``"VGG16, CIFAR-10, 600 epochs (DMC README)"``; the report labels them with it).

``per_run`` rows (one per pair, ``variant`` the first endpoint's, ``seed`` its seed), read by
findings as ``<id>.<key>``: ``curve_barrier`` and ``line_barrier`` (max train loss along the
path minus the endpoints' mean) and ``curve_error_rise`` and ``line_error_rise`` (max test
error along the path minus the endpoints' mean, in %).

The curve is trained as a run of its own under ``STUDY/curves/`` (a finished one is reused, an
interrupted one resumed), so re-running the study does not refit it. What it was fitted from
(the endpoints' checkpoint hashes, ``bends``, ``kind``, ``set``) is kept beside it in
``curve_source.json``: when that changes (new options, or endpoints retrained with
``--force``) the old curve is moved to ``STUDY/curves/archive/<time>-<name>/`` and the curve is
fitted anew, so the report never shows a curve between other models or with other options.
"""

from __future__ import annotations

import datetime as _dt
import logging
import shutil
from pathlib import Path
from typing import Any

from losslab.curves.curve_runs import evaluate_curve_run, fit_curve, plane_of_curve_run
from losslab.errors import InputError
from losslab.landscape.spread import map_workers
from losslab.runs.atomic import atomic_write_json
from losslab.runs.checkpoint_set import resolve_checkpoint
from losslab.runs.readers import read_json
from losslab.runs.rundir import RunDir
from losslab.studies.analyses import register_analysis
from losslab.studies.published import check_published_setting
from losslab.studies.records import StudyRecords

__all__ = ["curve_analysis"]

log = logging.getLogger(__name__)

SOURCE_FILE = "curve_source.json"


def _endpoint_runs(records: StudyRecords, variants: list[str],
                   seeds: list[int] | None) -> list[str]:
    runs = records.runs[records.runs["status"] == "finished"]
    if seeds is None:
        first = int(runs["seed"].min()) if len(runs) else 0
        seeds = [first, first]
    out = []
    for variant, seed in zip(variants, seeds, strict=True):
        match = runs[(runs["variant"] == variant) & (runs["seed"] == seed)]
        if not len(match):
            raise InputError(f"curve: no finished run of variant {variant!r} with seed {seed}")
        out.append(str(match["run_dir"].iloc[0]))
    return out


def _source(start: str, end: str, bends: int, kind: str, sets: list[str]) -> dict[str, Any]:
    """What a curve is fitted from: the endpoints' weights (by hash, not by path, so a study
    run from another directory or moved is still the same) and the options."""
    return {"endpoints_sha256": [resolve_checkpoint(p).meta.sha256 for p in (start, end)],
            "bends": bends, "kind": kind, "set": sets}


def _fitted(directory: Path, start: str, end: str, bends: int, kind: str,
            overrides: dict[str, Any]) -> Path:
    """The curve run in ``directory``: reused when finished, resumed when interrupted, both
    only if fitted from the same source; else archived and fitted anew."""
    from losslab.train.run import resume_run

    sets = [f"{k}={v}" for k, v in overrides.items()]
    source = _source(start, end, bends, kind, sets)
    run, marker = RunDir(directory), directory / SOURCE_FILE
    if run.exists():
        # a curve fitted before the source was recorded is taken as it is
        same = not marker.exists() or read_json(
            marker, what="the endpoints and options the curve was fitted from") == source
        if same:
            if run.read_meta().get("status") != "finished":
                resume_run(directory)
            return directory
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        target = directory.parent / "archive" / f"{stamp}-{directory.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(directory), str(target))
        log.warning("curve %s was fitted from other endpoints or options: archived to %s, "
                    "fitting it anew", directory.name, target)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, source)
    return fit_curve(start, end, directory, bends=bends, kind=kind, overrides=sets)


def _ensemble_along(run: Path, ts: list[float]) -> dict[str, Any]:
    """Members φ(t) for t in ``ts`` (BatchNorm recomputed), through the ensemble analytics."""
    from losslab.curves.members import save_curve_points
    from losslab.ensembles.analyze import analyze_ensemble
    from losslab.runs.device import resolve_device

    device = resolve_device("auto")
    result = analyze_ensemble(save_curve_points(run, ts, device), swa=False, device=device)
    return {"ts": ts, "member_acc": [m["acc"] for m in result["member_metrics"]],
            "cumulative_acc": [c["acc"] for c in result["cumulative"]],
            "ensemble_acc": result["ensemble"]["acc"],
            "mean_member_acc": result["mean_member_acc"],
            "all_agree": result["diversity"]["agreement"]["all_agree"],
            "n_examples": result["n_examples"], "combination": result["combination"]}


def _pair(records: StudyRecords, variants: list[str], seeds: list[int] | None, bends: int,
          kind: str, sets: dict[str, Any] | None, points: int):
    """Fit (or reuse) the curve between one pair of endpoints and evaluate it along t."""
    start, end = _endpoint_runs(records, variants, seeds)
    tags = [Path(start).name, Path(end).name]
    run = _fitted(records.directory / "curves" / f"{tags[0]}--{tags[1]}-{kind}{bends}", start,
                  end, bends, kind, dict(sets or {}))
    return run, tags, evaluate_curve_run(run, points=points)


def _pair_row(variant: str, tags: list[str], records: StudyRecords,
              evaluation: dict[str, Any]) -> dict[str, Any]:
    """The numbers findings compare for one pair: barriers and test-error rises."""
    runs = records.runs
    seed = int(runs.loc[runs["run_id"] == tags[0], "seed"].iloc[0])
    row = {"variant": variant, "seed": seed, "pair": f"{tags[0]} → {tags[1]}"}
    for path in ("curve", "line"):
        error = [100 * (1 - a) for a in evaluation[path]["test_acc"]]
        row[f"{path}_barrier"] = evaluation["barrier"][path]
        row[f"{path}_error_rise"] = max(error) - (error[0] + error[-1]) / 2
    return row


@register_analysis("curve")
def curve_analysis(records: StudyRecords, *, variants: list[str] | None = None,
                   seeds: list[int] | None = None, pairs: list[list[int]] | None = None,
                   bends: int = 1, kind: str = "bezier",
                   set: dict[str, Any] | None = None, points: int = 61, grid: int = 21,
                   ensemble: list[float] | None = (0.0, 0.25, 0.5, 0.75, 1.0),
                   published: dict[str, list[float]] | None = None,
                   published_setting: str | None = None, backend: str = "local",
                   workers: int | None = None, address: str | None = None,
                   worker_threads: int = 1) -> dict[str, Any]:
    """A curve between two variants' final models: loss and error along t, barrier, the
    planes (train loss + l2, test error). ``backend: ray`` (with ``workers``, ``address``,
    ``worker_threads``) spreads the planes' points over Ray workers (the same numbers)."""
    check_published_setting("curve", published, published_setting)
    spread = map_workers(backend, workers, address, worker_threads)
    if not variants or len(variants) != 2:
        raise InputError("curve: give exactly two variants (the endpoints)")
    if seeds is not None and len(seeds) != 2:
        raise InputError("curve: seeds gives one seed per endpoint (two)")
    first, *more = ([seeds] if seeds is not None or not pairs else []) + list(pairs or [])
    if any(p is None or len(p) != 2 for p in more):
        raise InputError("curve: pairs lists pairs of seeds, e.g. [[2, 3], [4, 5]]")
    run, tags, evaluation = _pair(records, list(variants), first, bends, kind, set, points)
    out: dict[str, Any] = {"pair": f"{tags[0]} → {tags[1]}", "run": str(run),
                           "kind": kind, "bends": bends, "published": published,
                           "published_setting": published_setting, "evaluation": evaluation}
    rows = [_pair_row(variants[0], tags, records, evaluation)]
    for pair in more:
        _, pair_tags, pair_evaluation = _pair(records, list(variants), list(pair), bends, kind,
                                              set, points)
        rows.append(_pair_row(variants[0], pair_tags, records, pair_evaluation))
    out["per_run"] = rows
    if ensemble:
        out["ensemble"] = _ensemble_along(run, list(ensemble))
    if grid:
        try:
            out["plane"] = plane_of_curve_run(run, grid=grid, workers=spread)
        except ValueError as e:  # e.g. a curve that did not move off the line
            out["plane"] = {"error": str(e)}
    return out
