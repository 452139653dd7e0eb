"""Decay by ``gamma`` at given milestones."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from torch.optim import Optimizer

from losslab.errors import InputError
from losslab.train.schedules._base import ClosedFormSchedule, check_int

__all__ = ["MultiStepSchedule"]


class MultiStepSchedule(ClosedFormSchedule):
    r"""Multiply the lr by ``gamma`` at each milestone.

    .. math::
        \eta_k = \eta_{\text{base}} \cdot \gamma^{\,|\{m \in M : m \le k\}|}

    (a milestone listed twice counts twice, as in torch). This is torch's
    :class:`~torch.optim.lr_scheduler.MultiStepLR` in closed form; it is the schedule of
    He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (lr divided by 10 at
    32k and 48k iterations).

    Args:
        optimizer: wrapped optimizer; each group's ``initial_lr`` is its base lr.
        milestones: iterations at which the lr is multiplied by ``gamma`` (>= 0; any order).
        gamma: multiplicative decay factor.
        last_epoch: torch's resume index; leave at ``-1``.
    """

    def __init__(self, optimizer: Optimizer, milestones: Sequence[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
            raise InputError(f"milestones must be a sequence of integers, got {milestones!r}")
        self.milestones = sorted(check_int("milestone", m, 0) for m in milestones)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def lr_for(self, step: int, base_lr: float, group: int) -> float:
        # same expression as MultiStepLR._get_closed_form_lr
        return base_lr * self.gamma ** bisect_right(self.milestones, step)
