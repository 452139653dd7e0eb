"""Per-epoch bookkeeping of the simulated-annealing optimizers, as a callback.

SSA and SGD-SA count their moves on the device during an epoch; ``epoch_end()`` reads the
counters once, cools the temperature (and, for SSA, shrinks ε when too few moves improved) and
returns the epoch's statistics, which this callback adds to the metrics: worsening moves accepted
and rejected, improving moves, the mean acceptance probability, T, ε and its drops, the share of
improving moves (SSA) and the mean lr drawn from H (SGD-SA).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from losslab.train.callbacks import Callback

if TYPE_CHECKING:
    from losslab.train.trainer import Trainer

__all__ = ["AnnealingLog"]


class AnnealingLog(Callback):
    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        for key, value in trainer.optimizer.epoch_end().items():
            metrics[key] = value
