"""Cyclic cosine schedule of Snapshot Ensembles."""

from __future__ import annotations

import math

from torch.optim import Optimizer

from losslab.errors import InputError
from losslab.train.schedules._base import ClosedFormSchedule, check_int, cosine_anneal

__all__ = ["SnapshotCosineSchedule"]


class SnapshotCosineSchedule(ClosedFormSchedule):
    r"""``M`` cosine cycles over ``T`` iterations; a snapshot is taken at each cycle's end.

    .. math::
        \alpha(t) = \frac{\alpha_0}{2}\left(\cos\left(
            \frac{\pi \bmod(t - 1, \lceil T/M \rceil)}{\lceil T/M \rceil}\right) + 1\right)

    with ``t = k + 1`` the 1-based iteration, ``T = total_steps``, ``M = cycles`` and
    ``alpha_0`` the group's base lr. Huang et al., "Snapshot Ensembles: Train 1, get M for
    free", ICLR 2017 (arXiv:1704.00109), eq. (2). It equals torch's
    :class:`~torch.optim.lr_scheduler.CosineAnnealingWarmRestarts` with
    ``T_0 = ceil(T/M)``, ``eta_min = 0`` (stepped per iteration).

    Snapshots: iteration ``k`` (0-based: the optimizer step taken with lr ``f(k)``) ends a
    cycle when ``(k + 1) % cycle_length == 0``, or when ``k == T - 1`` (the end of training
    also ends the last, possibly shorter, cycle). In a loop that calls ``scheduler.step()``
    after ``optimizer.step()``, test ``is_cycle_end(n - 1)`` with ``n`` the number of
    optimizer steps done so far (e.g. ``trainer.step - 1`` in ``on_step_end``). When ``M``
    divides ``T`` there are exactly ``M`` cycle ends; otherwise there are
    ``num_cycles = ceil(T / ceil(T/M))`` (which can be fewer than ``M``, e.g. T=9, M=4 gives
    3 cycles of 3). After ``T`` the lr keeps cycling but no step counts as a cycle end.

    Args:
        optimizer: wrapped optimizer; each group's ``initial_lr`` is its ``alpha_0``.
        total_steps: training budget ``T`` in iterations (>= 1).
        cycles: number of cycles ``M`` (1 <= M <= T).
        last_epoch: torch's resume index; leave at ``-1``.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, cycles: int,
                 last_epoch: int = -1) -> None:
        self.total_steps = check_int("total_steps", total_steps, 1)
        self.cycles = check_int("cycles", cycles, 1)
        if cycles > total_steps:
            raise InputError(f"cycles ({cycles}) must not exceed total_steps ({total_steps})")
        super().__init__(optimizer, last_epoch)

    @property
    def cycle_length(self) -> int:
        """``ceil(T / M)``: iterations per cycle."""
        return math.ceil(self.total_steps / self.cycles)

    @property
    def num_cycles(self) -> int:
        """Number of cycles (and snapshots) within ``total_steps``: ``ceil(T / cycle_length)``."""
        return math.ceil(self.total_steps / self.cycle_length)

    def lr_for(self, step: int, base_lr: float, group: int) -> float:
        # t - 1 = step; alpha_0/2 (cos(.) + 1) written in torch's order of operations
        return cosine_anneal(base_lr, 0.0, step % self.cycle_length, self.cycle_length)

    def is_cycle_end(self, step: int) -> bool:
        """Whether iteration ``step`` (0-based) is the last of a cycle: take a snapshot after it."""
        if not 0 <= step < self.total_steps:
            return False
        return (step + 1) % self.cycle_length == 0 or step == self.total_steps - 1

    @property
    def cycle_end_steps(self) -> list[int]:
        """All iterations ``k`` with ``is_cycle_end(k)``, in order."""
        ends = list(range(self.cycle_length - 1, self.total_steps, self.cycle_length))
        if not ends or ends[-1] != self.total_steps - 1:
            ends.append(self.total_steps - 1)
        return ends
