"""Collect ensemble members during training, where the schedule says a member ends.

* Snapshot ensembles (Huang et al. 2017): with ``SnapshotCosineSchedule`` (or SGDR's
  ``CosineWarmRestartsSchedule``), a member is saved after the last iteration of each cycle,
  when the learning rate is at its minimum, just before it jumps back up (role ``snapshot``).
* Fast geometric ensembling (Garipov et al. 2018): with ``FGECycleSchedule``, a member is saved
  after each iteration at the middle of a cycle, where the lr reaches α2 (role ``fge``).

The schedules answer in closed form whether an iteration ends a member, so the check costs
nothing and a resumed run saves exactly the members an uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from losslab.errors import InputError
from losslab.runs.checkpoints import save_model_checkpoint
from losslab.train.callbacks import Callback

if TYPE_CHECKING:
    from torch.optim.lr_scheduler import LRScheduler

    from losslab.train.trainer import Trainer

__all__ = ["MemberCollector", "member_role"]


def member_role(scheduler: LRScheduler | None) -> str | None:
    """``"fge"`` or ``"snapshot"`` when the schedule marks members, else None."""
    if hasattr(scheduler, "is_member_step"):
        return "fge"
    if hasattr(scheduler, "is_cycle_end"):
        return "snapshot"
    return None


class MemberCollector(Callback):
    """Save ``trainer.model`` as a member checkpoint at each iteration the schedule marks."""

    def __init__(self, directory: str | Path, *, run_id: str, scheduler: LRScheduler):
        role = member_role(scheduler)
        if role is None:
            raise InputError(f"{type(scheduler).__name__} marks no ensemble members; use the "
                             "snapshot, cosine_restarts or fge schedule")
        self.directory = Path(directory)
        self.run_id = run_id
        self.scheduler = scheduler
        self.role = role
        self._marks = scheduler.is_member_step if role == "fge" else scheduler.is_cycle_end

    def on_step_end(self, trainer: Trainer) -> None:
        iteration = trainer.step - 1  # the iteration just taken, trained with lr f(iteration)
        if self._marks(iteration):
            save_model_checkpoint(self.directory, f"{self.role}_{trainer.step:08d}", trainer.model,
                                  run_id=self.run_id, epoch=trainer.epoch + 1, step=trainer.step,
                                  role=self.role,
                                  extra={"lr": self.scheduler.lr_at(iteration)[0],
                                         "iteration": iteration})
