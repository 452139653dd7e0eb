"""Learning-rate schedules, stepped once per iteration, in closed form.

Each schedule is a :class:`torch.optim.lr_scheduler.LRScheduler` whose lr is a pure function
of the step count and each param group's base lr, so ``state_dict()`` resumes exactly and
``lr_at(k)`` shows the curve without stepping. :func:`build_schedule` builds one by name
with durations in epochs; :data:`SCHEDULE_PARAMS` lists each name's parameters.
"""

from losslab.train.schedules._base import ClosedFormSchedule
from losslab.train.schedules.constant import ConstantSchedule
from losslab.train.schedules.cosine import CosineSchedule
from losslab.train.schedules.cosine_restarts import CosineWarmRestartsSchedule
from losslab.train.schedules.dmc import DMCSchedule
from losslab.train.schedules.factory import (
    EPOCH_PARAMS,
    REQUIRED,
    SCHEDULE_PARAMS,
    build_schedule,
)
from losslab.train.schedules.fge import FGECycleSchedule
from losslab.train.schedules.linear import LinearDecaySchedule
from losslab.train.schedules.multistep import MultiStepSchedule
from losslab.train.schedules.snapshot import SnapshotCosineSchedule
from losslab.train.schedules.step import StepSchedule

__all__ = [
    "ClosedFormSchedule",
    "ConstantSchedule",
    "StepSchedule",
    "MultiStepSchedule",
    "LinearDecaySchedule",
    "CosineSchedule",
    "CosineWarmRestartsSchedule",
    "SnapshotCosineSchedule",
    "FGECycleSchedule",
    "DMCSchedule",
    "build_schedule",
    "SCHEDULE_PARAMS",
    "EPOCH_PARAMS",
    "REQUIRED",
]
