"""The piecewise-linear schedule of the mode-connectivity and FGE reference code."""

from __future__ import annotations

from torch.optim import Optimizer

from losslab.errors import InputError
from losslab.train.schedules._base import ClosedFormSchedule, check_int

__all__ = ["DMCSchedule"]


class DMCSchedule(ClosedFormSchedule):
    r"""Hold the base lr, decay it linearly to a small fraction, hold that: set once per epoch.

    With ``e`` the 1-based epoch of step ``k`` (``e = k // S + 1`` for ``S`` steps per epoch),
    ``E`` the run's epochs and ``a = e / E``:

    .. math::
        \eta_k = \eta_{\text{base}} \cdot \begin{cases}
            1 & a \le a_1 \\
            1 - (1 - f)\,\dfrac{a - a_1}{a_2 - a_1} & a_1 < a \le a_2 \\
            f & a > a_2
        \end{cases}

    with ``a_1 = flat`` (0.5), ``a_2 = decay_end`` (0.9) and ``f = final_factor`` (0.01): the
    schedule of Garipov et al., "Loss Surfaces, Mode Connectivity, and Fast Ensembling of
    DNNs", NeurIPS 2018, as their code (timgaripov/dnn-mode-connectivity, ``train.py``,
    ``learning_rate_schedule``) sets it at the start of each epoch. Their independent networks
    and the pre-training of FGE use it: VGG-16 at lr 0.05 for 200 epochs is at 0.0129 in epoch
    160, where ``fge.py`` takes over.

    Args:
        optimizer: wrapped optimizer; each group's ``initial_lr`` is its base lr.
        steps_per_epoch: iterations per epoch (>= 1).
        epochs: the run's epochs ``E`` (>= 1).
        flat, decay_end: the fractions of the run where the decay starts and ends.
        final_factor: the lr after the decay, as a fraction of the base lr.
        last_epoch: torch's resume index; leave at ``-1``.
    """

    def __init__(self, optimizer: Optimizer, steps_per_epoch: int, epochs: int,
                 flat: float = 0.5, decay_end: float = 0.9, final_factor: float = 0.01,
                 last_epoch: int = -1) -> None:
        self.steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, 1)
        self.epochs = check_int("epochs", epochs, 1)
        if not 0 <= flat < decay_end <= 1:
            raise InputError(f"need 0 <= flat < decay_end <= 1, got flat={flat!r}, "
                             f"decay_end={decay_end!r}")
        if final_factor < 0:
            raise InputError(f"final_factor must be >= 0, got {final_factor!r}")
        self.flat, self.decay_end, self.final_factor = float(flat), float(decay_end), float(final_factor)
        super().__init__(optimizer, last_epoch)

    def factor(self, epoch: int) -> float:
        """The lr factor of 1-based ``epoch`` (the reference code's arithmetic)."""
        a = epoch / self.epochs
        if a <= self.flat:
            return 1.0
        if a <= self.decay_end:
            return 1.0 - (a - self.flat) / (self.decay_end - self.flat) * (1.0 - self.final_factor)
        return self.final_factor

    def lr_for(self, step: int, base_lr: float, group: int) -> float:
        return self.factor(step // self.steps_per_epoch + 1) * base_lr
