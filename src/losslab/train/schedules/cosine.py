"""Cosine annealing (single cycle, no restart)."""

from __future__ import annotations

from torch.optim import Optimizer

from losslab.train.schedules._base import ClosedFormSchedule, check_int, cosine_anneal

__all__ = ["CosineSchedule"]


class CosineSchedule(ClosedFormSchedule):
    r"""Anneal the lr from the base lr to ``eta_min`` along half a cosine.

    .. math::
        \eta_k = \eta_{\min} + \tfrac12(\eta_{\text{base}} - \eta_{\min})
                 \left(1 + \cos\left(\pi \frac{\min(k, T)}{T}\right)\right)

    with ``T = total_steps``: ``eta_min`` is reached at ``T`` and kept afterwards (unlike
    torch's :class:`~torch.optim.lr_scheduler.CosineAnnealingLR`, which rises again after
    ``T_max``). For ``k <= T`` this is exactly torch's closed form; torch's recursive
    ``step()`` form agrees up to rounding. From Loshchilov & Hutter, "SGDR: Stochastic
    Gradient Descent with Warm Restarts", ICLR 2017 (arXiv:1608.03983), one cycle.

    Args:
        optimizer: wrapped optimizer; each group's ``initial_lr`` is its base lr.
        total_steps: iterations of the annealing (>= 1).
        eta_min: final lr (absolute, the same for every group).
        last_epoch: torch's resume index; leave at ``-1``.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        self.total_steps = check_int("total_steps", total_steps, 1)
        self.eta_min = float(eta_min)
        super().__init__(optimizer, last_epoch)

    def lr_for(self, step: int, base_lr: float, group: int) -> float:
        return cosine_anneal(base_lr, self.eta_min, min(step, self.total_steps),
                             self.total_steps)
