"""Build a schedule by name, with durations given in epochs.

Convention
----------
* Every schedule is stepped once per **iteration**; :func:`build_schedule` receives
  ``steps_per_epoch`` and ``epochs`` and converts.
* Parameters that are **durations or points in time are given in epochs** and converted to
  iterations as ``round(value * steps_per_epoch)`` (fractional epochs are allowed; a duration
  must come out >= 1 iteration, a point in time >= 0). These are listed in
  :data:`EPOCH_PARAMS`: ``step_size``, ``restart_every``, ``milestones`` (each entry),
  ``T_0``, ``cycle`` and ``start_epoch``.
* The total length of ``linear``, ``cosine``, ``snapshot`` and ``dmc`` is the whole run:
  ``epochs * steps_per_epoch`` iterations.
* Everything else is unit-free: ``gamma``, ``final_factor``, ``T_mult``, ``cycles``,
  ``flat`` and ``decay_end`` (fractions of the run), and
  the learning rates ``eta_min``, ``lr_high``, ``lr_low`` (absolute values).
* :data:`SCHEDULE_PARAMS` maps each name to ``{param: default}``; :data:`REQUIRED` marks a
  parameter without a default.
"""

from __future__ import annotations

import math
from typing import Any, Final

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from losslab.errors import InputError
from losslab.train.schedules.constant import ConstantSchedule
from losslab.train.schedules.cosine import CosineSchedule
from losslab.train.schedules.cosine_restarts import CosineWarmRestartsSchedule
from losslab.train.schedules.dmc import DMCSchedule
from losslab.train.schedules.fge import FGECycleSchedule
from losslab.train.schedules.linear import LinearDecaySchedule
from losslab.train.schedules.multistep import MultiStepSchedule
from losslab.train.schedules.snapshot import SnapshotCosineSchedule
from losslab.train.schedules.step import StepSchedule

__all__ = ["REQUIRED", "SCHEDULE_PARAMS", "EPOCH_PARAMS", "build_schedule"]


class _Required:
    """Type of :data:`REQUIRED`, the marker of a parameter without a default."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()

SCHEDULE_PARAMS: Final[dict[str, dict[str, Any]]] = {
    "constant": {},
    "step": {"step_size": REQUIRED, "gamma": 0.1, "restart_every": None},
    "multistep": {"milestones": REQUIRED, "gamma": 0.1},
    "linear": {"final_factor": 0.0},
    "cosine": {"eta_min": 0.0},
    "cosine_restarts": {"T_0": REQUIRED, "T_mult": 1, "eta_min": 0.0},
    "snapshot": {"cycles": REQUIRED},
    "fge": {"cycle": REQUIRED, "lr_high": REQUIRED, "lr_low": REQUIRED, "start_epoch": 0},
    "dmc": {"flat": 0.5, "decay_end": 0.9, "final_factor": 0.01},
}
"""``{schedule name: {parameter: default or REQUIRED}}``; durations are in epochs."""

EPOCH_PARAMS: Final[frozenset[str]] = frozenset(
    {"step_size", "restart_every", "milestones", "T_0", "cycle", "start_epoch"})
"""Parameters given in epochs (converted to iterations by ``steps_per_epoch``)."""


def _iters(name: str, epochs: Any, steps_per_epoch: int, minimum: int) -> int:
    if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or not math.isfinite(epochs):
        raise InputError(f"{name} must be a number of epochs, got {epochs!r}")
    steps = round(epochs * steps_per_epoch)
    if steps < minimum:
        raise InputError(f"{name}={epochs!r} epochs is {steps} iterations at {steps_per_epoch} "
                         f"steps per epoch; need at least {minimum}")
    return steps


def build_schedule(name: str, optimizer: Optimizer, *, steps_per_epoch: int, epochs: int,
                   **params: Any) -> LRScheduler:
    """The schedule ``name`` for ``optimizer``, stepped per iteration.

    ``params`` are the schedule's parameters of :data:`SCHEDULE_PARAMS`, durations in epochs
    (see the module docstring). Raises ``ValueError`` for an unknown name, an unknown or
    missing parameter, or a value out of range.

    Example::

        build_schedule("step", opt, steps_per_epoch=391, epochs=300,
                       step_size=50, gamma=0.1, restart_every=150)
    """
    if name not in SCHEDULE_PARAMS:
        raise InputError(f"unknown schedule {name!r}; allowed: {', '.join(SCHEDULE_PARAMS)}")
    allowed = SCHEDULE_PARAMS[name]
    for key in params:
        if key not in allowed:
            raise InputError(f"schedule {name!r} has no parameter {key!r}; allowed: "
                             f"{', '.join(allowed) or 'none'}")
    missing = [key for key, default in allowed.items() if default is REQUIRED and key not in params]
    if missing:
        raise InputError(f"schedule {name!r} is missing required parameter(s) "
                         f"{', '.join(map(repr, missing))}; allowed: {', '.join(allowed)}")
    for key, value, least in (("steps_per_epoch", steps_per_epoch, 1), ("epochs", epochs, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InputError(f"{key} must be an integer >= {least}, got {value!r}")
    p = {**allowed, **params}
    spe, total = steps_per_epoch, epochs * steps_per_epoch
    if name in ("linear", "cosine", "snapshot", "dmc") and total < 1:
        raise InputError(f"schedule {name!r} spans the whole run and needs epochs >= 1")

    if name == "constant":
        return ConstantSchedule(optimizer)
    if name == "step":
        restart = p["restart_every"]
        return StepSchedule(optimizer, _iters("step_size", p["step_size"], spe, 1), p["gamma"],
                            None if restart is None else _iters("restart_every", restart, spe, 1))
    if name == "multistep":
        milestones = p["milestones"]
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise InputError(f"milestones must be a list of epochs, got {milestones!r}")
        return MultiStepSchedule(optimizer, [_iters("milestones", m, spe, 0) for m in milestones],
                                 p["gamma"])
    if name == "linear":
        return LinearDecaySchedule(optimizer, total, p["final_factor"])
    if name == "cosine":
        return CosineSchedule(optimizer, total, p["eta_min"])
    if name == "cosine_restarts":
        return CosineWarmRestartsSchedule(optimizer, _iters("T_0", p["T_0"], spe, 1),
                                          p["T_mult"], p["eta_min"])
    if name == "snapshot":
        return SnapshotCosineSchedule(optimizer, total, p["cycles"])
    if name == "fge":
        return FGECycleSchedule(optimizer, _iters("cycle", p["cycle"], spe, 2), p["lr_high"],
                                p["lr_low"], _iters("start_epoch", p["start_epoch"], spe, 0))
    if name == "dmc":
        return DMCSchedule(optimizer, spe, epochs, p["flat"], p["decay_end"], p["final_factor"])
    raise AssertionError(f"schedule {name!r} listed in SCHEDULE_PARAMS but not built")
