"""Constant learning rate."""

from __future__ import annotations

from torch.optim import Optimizer

from losslab.train.schedules._base import ClosedFormSchedule

__all__ = ["ConstantSchedule"]


class ConstantSchedule(ClosedFormSchedule):
    r"""Keep every param group at its base lr.

    .. math::
        \eta_k = \eta_{\text{base}}

    The reference "no schedule" baseline (plain SGD with a fixed step size, Robbins & Monro,
    1951). Useful so that every run has a schedule object with the same interface.

    Args:
        optimizer: wrapped optimizer; each group's ``initial_lr`` (its ``lr`` at
            construction) is its base lr.
        last_epoch: torch's resume index; leave at ``-1``.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        super().__init__(optimizer, last_epoch)

    def lr_for(self, step: int, base_lr: float, group: int) -> float:
        return base_lr
