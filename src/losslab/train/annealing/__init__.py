"""Simulated-annealing optimizers: SSA (derivative-free) and SGD-SA, with cooling schedules.

Source: M. Stringher, "Unconventional Training of Deep Neural Networks" (thesis, Padova 2019),
chapters 3-4.

Both optimizers take a closure that returns the objective on the current minibatch as a 0-d
tensor and calls ``backward()`` only when ``torch.is_grad_enabled()``::

    def closure():
        loss = F.cross_entropy(model(x), y)
        if torch.is_grad_enabled():
            optimizer.zero_grad()
            loss.backward()
        return loss

    for epoch in range(epochs):
        for x, y in loader:
            optimizer.step(closure)          # returns the objective before the step
        stats = optimizer.epoch_end()        # counters (one host sync), then T <- alpha T

``SSA`` calls it three times under ``torch.no_grad()`` (the value may be non-differentiable,
e.g. the error rate); ``SGDSA`` once with gradients enabled and under ``no_grad`` for the
evaluations that judge the move. Given ``module=model``, both judge moves with the objective in
eval mode (``objective_mode="eval"``, the default, as the thesis's code does; ``"train"`` is
the option), and a rejected move leaves every parameter and every buffer bitwise as it was
(:mod:`losslab.train.annealing.objective`). Steps never synchronize with the host;
``epoch_end`` reads the epoch's counters and per-move record (``last_moves``) once.

The thesis's loss scale is the mean cross-entropy divided by its batch size, 512, whatever
batch size a run uses: ``loss_scale=1 / THESIS_BATCH_SIZE``.
"""

from losslab.train.annealing.objective import OBJECTIVE_MODES, ObjectiveGuard
from losslab.train.annealing.sgdsa import H1, H2, LR_SETS, SGDSA
from losslab.train.annealing.ssa import SSA, THESIS_BATCH_SIZE
from losslab.train.annealing.temperature import (
    CoolingSchedule,
    ExponentialCooling,
    LinearCooling,
    as_cooling,
    metropolis_accept,
)

__all__ = [
    "SSA",
    "THESIS_BATCH_SIZE",
    "ObjectiveGuard",
    "OBJECTIVE_MODES",
    "SGDSA",
    "H1",
    "H2",
    "LR_SETS",
    "CoolingSchedule",
    "ExponentialCooling",
    "LinearCooling",
    "as_cooling",
    "metropolis_accept",
]
