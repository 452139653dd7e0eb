"""Cosine annealing with warm restarts (SGDR), stepped per iteration."""

from __future__ import annotations

from torch.optim import Optimizer

from losslab.train.schedules._base import ClosedFormSchedule, check_int, cosine_anneal

__all__ = ["CosineWarmRestartsSchedule"]


class CosineWarmRestartsSchedule(ClosedFormSchedule):
    r"""SGDR: cosine annealing from the base lr to ``eta_min``, restarted periodically.

    .. math::
        \eta_k = \eta_{\min} + \tfrac12(\eta_{\text{base}} - \eta_{\min})
                 \left(1 + \cos\left(\pi \frac{T_{cur}}{T_i}\right)\right)

    Cycle ``i`` (from 0) lasts ``T_i = T_0 * T_mult**i`` iterations and starts at
    ``S_i = T_0 (T_mult**i - 1) / (T_mult - 1)`` (``S_i = i T_0`` for ``T_mult = 1``);
    ``T_cur = k - S_i`` for the cycle that contains ``k``. The lr restarts at the base lr at
    each ``S_i``. Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm
    Restarts", ICLR 2017 (arXiv:1608.03983). Equals torch's
    :class:`~torch.optim.lr_scheduler.CosineAnnealingWarmRestarts` stepped once per
    iteration with ``step()`` (integer arithmetic here, no logarithms).

    Args:
        optimizer: wrapped optimizer; each group's ``initial_lr`` is its base lr.
        T_0: iterations of the first cycle (>= 1).
        T_mult: growth factor of the cycle length (integer >= 1).
        eta_min: lowest lr (absolute, the same for every group).
        last_epoch: torch's resume index; leave at ``-1``.
    """

    def __init__(self, optimizer: Optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        self.T_0 = check_int("T_0", T_0, 1)
        self.T_mult = check_int("T_mult", T_mult, 1)
        self.eta_min = float(eta_min)
        super().__init__(optimizer, last_epoch)

    def cycle_of(self, step: int) -> tuple[int, int, int]:
        """``(cycle index, start iteration S_i, length T_i)`` of the cycle containing ``step``."""
        if self.T_mult == 1:
            index = step // self.T_0
            return index, index * self.T_0, self.T_0
        index, start, length = 0, 0, self.T_0
        while step >= start + length:
            index, start, length = index + 1, start + length, length * self.T_mult
        return index, start, length

    def lr_for(self, step: int, base_lr: float, group: int) -> float:
        _, start, length = self.cycle_of(step)
        return cosine_anneal(base_lr, self.eta_min, step - start, length)

    def is_cycle_end(self, step: int) -> bool:
        """Whether ``step`` is the last iteration of a cycle (the lr is lowest there)."""
        _, start, length = self.cycle_of(step)
        return step - start == length - 1
