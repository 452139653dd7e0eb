"""Linear decay to a final fraction of the base lr."""

from __future__ import annotations

from torch.optim import Optimizer

from losslab.errors import InputError
from losslab.train.schedules._base import ClosedFormSchedule, check_int

__all__ = ["LinearDecaySchedule"]


class LinearDecaySchedule(ClosedFormSchedule):
    r"""Decrease the lr linearly from the base lr to ``final_factor`` times it.

    .. math::
        \eta_k = \eta_{\text{base}} \left(1 + (f - 1)\,\frac{\min(k, T)}{T}\right)

    with ``T = total_steps`` and ``f = final_factor``; constant ``f * base`` after ``T``.
    This equals torch's :class:`~torch.optim.lr_scheduler.LinearLR` with
    ``start_factor=1, end_factor=f, total_iters=T`` (closed form, same arithmetic). Linear
    decay to zero is studied as a default in Defazio et al., "Optimal Linear Decay Learning
    Rate Schedules and Further Refinements", 2023 (arXiv:2310.07831).

    Args:
        optimizer: wrapped optimizer; each group's ``initial_lr`` is its base lr.
        total_steps: iterations of the decay (>= 1).
        final_factor: lr at and after ``total_steps``, as a fraction of the base lr (>= 0).
        last_epoch: torch's resume index; leave at ``-1``.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, final_factor: float = 0.0,
                 last_epoch: int = -1) -> None:
        self.total_steps = check_int("total_steps", total_steps, 1)
        if final_factor < 0:
            raise InputError(f"final_factor must be >= 0, got {final_factor!r}")
        self.final_factor = float(final_factor)
        super().__init__(optimizer, last_epoch)

    def lr_for(self, step: int, base_lr: float, group: int) -> float:
        progress = min(self.total_steps, step)
        # same arithmetic as LinearLR._get_closed_form_lr with start_factor = 1.0
        return base_lr * (1.0 + (self.final_factor - 1.0) * progress / self.total_steps)
