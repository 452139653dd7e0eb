"""Curve runs: fit one, and evaluate or plane a fitted one, as JSON-ready results.

``fit_curve(start, end, out)`` trains a curve run whose config is the start run's own
(architecture, data, optimizer, schedule) with the ``curve`` section set and ``overrides`` on
top; ``evaluate_curve_run`` and ``plane_of_curve_run`` load a fitted curve from its run
directory and return plain dicts (lists of floats) that ``losslab curve`` writes and the study
analysis ``curve`` (:mod:`losslab.curves.study_analysis`) stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from losslab.curves.evaluate import default_ts, evaluate_curve
from losslab.curves.plane import curve_plane
from losslab.curves.training import load_curve
from losslab.jsonable import as_list
from losslab.landscape.options import EvalOptions
from losslab.runs.checkpoint_set import resolve_checkpoint
from losslab.runs.config import apply_overrides, config_to_dict, parse_overrides, validate_config
from losslab.runs.device import resolve_device
from losslab.runs.rebuild import dataset_of, run_config_of, split_loader

__all__ = ["fit_curve", "evaluate_curve_run", "plane_of_curve_run"]

EVAL_BATCH = 1024


def fit_curve(start: str | Path, end: str | Path, out: str | Path, *, bends: int = 1,
              kind: str = "bezier", overrides: Sequence[str] = ()) -> Path:
    """Train a curve between ``start`` and ``end`` (run directories or checkpoint files) into
    the run directory ``out``, with the start run's config and ``overrides``. The config
    records the endpoints as absolute paths, so the curve run resumes from any directory."""
    from losslab.train.run import train_run

    # stored resolved: the run is resumed and evaluated from whatever directory is current then
    start, end = Path(start).expanduser().resolve(), Path(end).expanduser().resolve()
    base = config_to_dict(run_config_of(resolve_checkpoint(start)))
    base["curve"] = {**base.get("curve", {}), "start": str(start), "end": str(end),
                     "bends": bends, "kind": kind}
    config = validate_config(apply_overrides(base, parse_overrides(overrides)))
    return train_run(config, out)


def _loaded(path: str | Path, splits: Sequence[str]):
    """The fitted curve at ``path``, the device, its data set's ``splits`` on it (a split
    named twice is one loader, so the evaluation engine reads it onto the device once) and
    the curve run's config."""
    device = resolve_device("auto")
    curve, config = load_curve(path, device)
    data = dataset_of(config)
    loaders = {s: split_loader(data, s, EVAL_BATCH, device) for s in dict.fromkeys(splits)}
    return curve, device, [loaders[s] for s in splits], config


def evaluate_curve_run(path: str | Path, *, points: int = 61) -> dict[str, Any]:
    """Train and test loss and accuracy along the fitted curve and the straight line."""
    curve, device, (train, test), config = _loaded(path, ["train", "test"])
    r = evaluate_curve(curve, train=train, test=test, ts=default_ts(points), device=device)
    return {"ts": as_list(r.ts), "curve": {k: as_list(v) for k, v in r.curve.items()},
            "line": {k: as_list(v) for k, v in r.line.items()}, "barrier": r.barrier,
            "mean_loss": r.mean_loss, "length": r.length, "metadata": r.metadata,
            "curve_kind": config.curve.kind, "bends": config.curve.bends}


def plane_of_curve_run(path: str | Path, *, grid: int = 21, split: str = "train",
                       margin: float = 0.2, workers: Any = None) -> dict[str, Any]:
    """DMC's two planes through the endpoints and the middle bend, paths projected: the train
    loss plus ½·wd·‖w‖² (``train_loss_l2``, wd the run's ``optimizer.weight_decay``; ``l2``
    alone) and the test error in percent (``test_error``; ``test_loss``, ``test_acc``).
    ``loss``/``acc`` are the grids of ``split`` (default the train split, as before).
    ``workers``: a :class:`~losslab.landscape.spread.RayWorkers` spreads the plane's points."""
    names = ["train", "test"] + ([] if split in ("train", "test") else [split])
    curve, device, (train, test, *more), config = _loaded(path, names)
    wd = float(config.optimizer.weight_decay)
    p = curve_plane(curve, batches=train, test_batches=test, weight_decay=wd,
                    extra_batches={split: more[0]} if more else None, grid=grid, margin=margin,
                    options=EvalOptions(device=device), workers=workers)
    if split == "train":
        loss, acc = p.loss, p.acc
    elif split == "test":
        loss, acc = p.test_loss, p.test_acc
    else:
        loss, acc = p.extra[split]["loss"], p.extra[split]["acc"]
    meta = {**p.metadata, "weight_decay_on": config.curve.weight_decay_on}
    return {"x": as_list(p.x), "y": as_list(p.y), "loss": as_list(loss), "acc": as_list(acc),
            "train_loss": as_list(p.loss), "train_acc": as_list(p.acc), "l2": as_list(p.l2),
            "train_loss_l2": as_list(p.train_loss_l2), "test_loss": as_list(p.test_loss),
            "test_acc": as_list(p.test_acc), "test_error": as_list(p.test_error),
            "weight_decay": wd, "curve_xy": as_list(p.curve_xy), "line_xy": as_list(p.line_xy),
            "control_xy": as_list(p.control_xy), "curve_off_plane": p.curve_off_plane,
            "split": split, "metadata": meta}
