"""Step decay, optionally with periodic warm restarts."""

from __future__ import annotations

from torch.optim import Optimizer

from losslab.train.schedules._base import ClosedFormSchedule, check_int

__all__ = ["StepSchedule"]


class StepSchedule(ClosedFormSchedule):
    r"""Multiply the lr by ``gamma`` every ``step_size`` iterations; optionally restart.

    .. math::
        \eta_k = \eta_{\text{base}} \cdot \gamma^{\lfloor k' / s \rfloor},
        \qquad k' = \begin{cases} k \bmod R & \text{with } R = \texttt{restart\_every} \\
                                  k & \text{otherwise} \end{cases}

    Without restarts this is torch's :class:`~torch.optim.lr_scheduler.StepLR` (in closed
    form). Step decay by a factor 10 is the classic schedule of Krizhevsky et al. (2012) and
    He et al., "Deep Residual Learning for Image Recognition", CVPR 2016. With
    ``restart_every=R`` the decay restarts from the base lr every ``R`` iterations: a
    step-shaped warm restart in the sense of Loshchilov & Hutter, "SGDR: Stochastic Gradient
    Descent with Warm Restarts", ICLR 2017 (arXiv:1608.03983). E.g. "gamma = 0.1 every 50
    epochs, warm restart every 150 epochs" is ``step_size=50*n, restart_every=150*n`` with
    ``n`` iterations per epoch.

    Args:
        optimizer: wrapped optimizer; each group's ``initial_lr`` is its base lr.
        step_size: iterations between two decays (>= 1).
        gamma: multiplicative decay factor.
        restart_every: if given, iterations between warm restarts (>= 1).
        last_epoch: torch's resume index; leave at ``-1``.
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 restart_every: int | None = None, last_epoch: int = -1) -> None:
        self.step_size = check_int("step_size", step_size, 1)
        self.gamma = float(gamma)
        self.restart_every = (None if restart_every is None
                              else check_int("restart_every", restart_every, 1))
        super().__init__(optimizer, last_epoch)

    def lr_for(self, step: int, base_lr: float, group: int) -> float:
        if self.restart_every is not None:
            step = step % self.restart_every
        # same expression as StepLR._get_closed_form_lr, so both agree bit for bit
        return base_lr * self.gamma ** (step // self.step_size)

    def is_restart(self, step: int) -> bool:
        """Whether the lr jumps back to the base lr at ``step`` (``step > 0``)."""
        return self.restart_every is not None and step > 0 and step % self.restart_every == 0
