"""Triangular cyclic schedule of Fast Geometric Ensembling (FGE)."""

from __future__ import annotations

from collections.abc import Sequence

from torch.optim import Optimizer

from losslab.errors import InputError
from losslab.train.schedules._base import ClosedFormSchedule, check_int

__all__ = ["FGECycleSchedule"]


class FGECycleSchedule(ClosedFormSchedule):
    r"""Piecewise-linear cycles ``alpha_1 -> alpha_2 -> alpha_1`` of ``c`` iterations.

    With ``i = k - start_step + 1`` (1-based iteration of the cyclic phase) and
    ``t(i) = (mod(i - 1, c) + 1) / c``:

    .. math::
        \alpha(i) = \begin{cases}
            (1 - 2t)\,\alpha_1 + 2t\,\alpha_2 & t \le \tfrac12 \\
            (2 - 2t)\,\alpha_2 + (2t - 1)\,\alpha_1 & t > \tfrac12
        \end{cases}

    with ``alpha_1 = lr_high`` and ``alpha_2 = lr_low``. Garipov et al., "Loss Surfaces, Mode
    Connectivity, and Fast Ensembling of DNNs", NeurIPS 2018 (arXiv:1802.10026), eq. (4).
    For even ``c`` it is torch's :class:`~torch.optim.lr_scheduler.CyclicLR`
    (``mode="triangular", base_lr=alpha_2, max_lr=alpha_1, step_size_up=c/2``) shifted by
    half a cycle (equal up to rounding).

    Before ``start_step`` (the pre-training phase, which normally runs under another
    schedule) this object holds each group's **base lr** (``initial_lr``) constant; this is a
    deliberate choice, so one object can cover the whole run with a constant pre-training.

    Members: FGE collects a model at the lr minimum ``alpha_2``, mid-cycle. Iteration ``k``
    (0-based: the optimizer step taken with lr ``f(k)``) is a member step when it is
    iteration ``m = c // 2`` of its cycle, i.e. ``mod(i - 1, c) + 1 == c // 2``. For even
    ``c`` that is ``t = 1/2`` exactly and the lr there equals ``lr_low``; for odd ``c`` the
    minimum is shared by iterations ``(c-1)/2`` and ``(c+1)/2`` and the first is taken.
    In a loop that steps the schedule after the optimizer, test ``is_member_step(n - 1)``
    with ``n`` optimizer steps done (``trainer.step - 1`` in ``on_step_end``).

    Args:
        optimizer: wrapped optimizer; each group's ``initial_lr`` is its lr before
            ``start_step``.
        cycle_steps: cycle length ``c`` in iterations (>= 2).
        lr_high: ``alpha_1``, one value for all groups or one per group.
        lr_low: ``alpha_2``, one value for all groups or one per group.
        start_step: iteration at which the cyclic phase begins (>= 0).
        last_epoch: torch's resume index; leave at ``-1``.
    """

    def __init__(self, optimizer: Optimizer, cycle_steps: int,
                 lr_high: float | Sequence[float], lr_low: float | Sequence[float],
                 start_step: int = 0, last_epoch: int = -1) -> None:
        self.cycle_steps = check_int("cycle_steps", cycle_steps, 2)
        self.start_step = check_int("start_step", start_step, 0)
        n = len(optimizer.param_groups)
        self.lr_high = _per_group("lr_high", lr_high, n)
        self.lr_low = _per_group("lr_low", lr_low, n)
        super().__init__(optimizer, last_epoch)

    def position(self, step: int) -> int:
        """``mod(i - 1, c) + 1`` in ``1..c``: the iteration's place in its cycle (step >= start)."""
        return (step - self.start_step) % self.cycle_steps + 1

    def lr_for(self, step: int, base_lr: float, group: int) -> float:
        if step < self.start_step:
            return base_lr
        a1, a2 = self.lr_high[group], self.lr_low[group]
        t = self.position(step) / self.cycle_steps
        if t <= 0.5:
            return (1 - 2 * t) * a1 + 2 * t * a2
        return (2 - 2 * t) * a2 + (2 * t - 1) * a1

    def is_member_step(self, step: int) -> bool:
        """Whether iteration ``step`` (0-based) is at the lr minimum: collect a member after it."""
        return step >= self.start_step and self.position(step) == self.cycle_steps // 2


def _per_group(name: str, value: float | Sequence[float], groups: int) -> list[float]:
    values = [value] * groups if isinstance(value, (int, float)) else list(value)
    if len(values) != groups:
        raise InputError(f"{name} has {len(values)} values for {groups} param groups")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in values):
        raise InputError(f"{name} must be non-negative numbers, got {value!r}")
    return [float(v) for v in values]
