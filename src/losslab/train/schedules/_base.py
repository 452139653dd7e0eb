"""Shared base of the closed-form learning-rate schedules.

Every schedule in this package is a :class:`torch.optim.lr_scheduler.LRScheduler` whose
learning rate is a *pure* function ``f(k, base_lr)`` of the step count ``k = last_epoch`` and
each param group's base lr (its ``initial_lr``). Nothing is accumulated from one step to the
next, so ``state_dict()`` / ``load_state_dict()`` resume exactly, jumping with
``step(k)`` is exact, and the whole curve can be inspected without stepping (:meth:`lr_at`).

Conventions (as in torch): schedules are stepped once per *iteration* (optimizer step);
right after construction the lr is ``f(0)``, after ``k`` calls to ``.step()`` it is ``f(k)``.
"""

from __future__ import annotations

import math

from torch.optim.lr_scheduler import LRScheduler

from losslab.errors import InputError

__all__ = ["ClosedFormSchedule", "cosine_anneal", "check_int"]


def cosine_anneal(base_lr: float, eta_min: float, position: int | float, period: int | float) -> float:
    """``eta_min + (base_lr - eta_min) * (1 + cos(pi * position / period)) / 2``.

    The operations are ordered exactly as in torch's cosine schedulers, so the values agree
    bit for bit with :class:`~torch.optim.lr_scheduler.CosineAnnealingWarmRestarts` and the
    closed form of :class:`~torch.optim.lr_scheduler.CosineAnnealingLR`.
    """
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * position / period)) / 2


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int, or a ``ValueError`` naming ``name`` (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class ClosedFormSchedule(LRScheduler):
    """An ``LRScheduler`` whose lr is ``lr_for(k, base_lr, group)``; subclasses define it.

    ``get_lr()`` (used by ``step()``) and ``_get_closed_form_lr()`` (used by ``step(epoch)``)
    both evaluate the same pure function at ``self.last_epoch``.
    """

    def lr_for(self, step: int, base_lr: float, group: int) -> float:
        """The lr of param group ``group`` (base lr ``base_lr``) after ``step`` steps."""
        raise NotImplementedError

    def lr_at(self, step: int) -> list[float]:
        """The lrs of all param groups after ``step`` steps (does not change any state)."""
        return [self.lr_for(step, base, i) for i, base in enumerate(self.base_lrs)]

    def jump_to(self, step: int) -> None:
        """Set the schedule to where it is after ``step`` steps, the optimizer's lrs with it
        (exact, since the lr is a function of the step count alone)."""
        self.last_epoch = step
        self._last_lr = self.lr_at(step)
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            group["lr"] = lr

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return self.lr_at(self.last_epoch)

    def _get_closed_form_lr(self) -> list[float]:
        return self.lr_at(self.last_epoch)

    def __repr__(self) -> str:
        skip = {"optimizer", "base_lrs", "last_epoch", "_last_lr", "_step_count",
                "_get_lr_called_within_step", "_is_initial", "verbose"}
        args = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()
                         if k not in skip and not k.startswith("_"))
        return f"{type(self).__name__}({args})"
