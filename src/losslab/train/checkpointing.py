"""The checkpoint policy of a run, as a callback.

Saves ``epoch_NNNN`` (role ``epoch``) at the configured epochs, keeps the best model on
validation accuracy as ``best`` (the source documents report best-on-validation results;
ties go to the lower validation loss), and always saves ``final`` after the last epoch. With
``optimizer_state`` each checkpoint carries the optimizer's state too
(:mod:`losslab.runs.optimizer_state`), so another run can start from it warm.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from losslab.runs.checkpoints import save_model_checkpoint
from losslab.runs.optimizer_state import save_optimizer_state
from losslab.train.callbacks import Callback

if TYPE_CHECKING:
    from losslab.train.trainer import Trainer

__all__ = ["CheckpointPolicy"]


class CheckpointPolicy(Callback):
    """Save checkpoints of ``trainer.model`` into ``directory`` following the policy."""

    def __init__(self, directory: str | Path, *, run_id: str, every: int = 0,
                 epochs: Iterable[int] = (), keep_best: bool = True, save_initial: bool = False,
                 best_metric: str = "val_acc", optimizer_state: bool = False):
        self.directory = Path(directory)
        self.run_id = run_id
        self.every = every
        self.epochs = set(epochs)
        self.keep_best = keep_best
        self.save_initial = save_initial
        self.best_metric = best_metric
        self.optimizer_state = optimizer_state
        self.best: tuple[float, float] | None = None  # (accuracy, -loss) of the best epoch
        self.best_epoch: int | None = None

    def wants(self, epoch: int) -> bool:
        return epoch in self.epochs or (self.every > 0 and epoch % self.every == 0)

    def save(self, trainer: Trainer, name: str, role: str, epoch: int,
             extra: dict[str, Any] | None = None) -> Path:
        if self.optimizer_state:  # before the sidecar, which completes the checkpoint
            extra = {**(extra or {}), "optimizer": save_optimizer_state(
                self.directory / f"{name}.safetensors", trainer.optimizer)}
        return save_model_checkpoint(self.directory, name, trainer.model, run_id=self.run_id,
                                     epoch=epoch, step=trainer.step, role=role, extra=extra)

    def on_train_start(self, trainer: Trainer) -> None:
        if self.save_initial and trainer.epoch == 0:
            self.save(trainer, "epoch_0000", "epoch", 0)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        if self.wants(epoch):
            self.save(trainer, f"epoch_{epoch:04d}", "epoch", epoch)
        if self.keep_best and self.best_metric in metrics:
            if self._record_if_best(metrics, epoch):
                self.save(trainer, "best", "best", epoch, extra={self.best_metric: self.best[0]})
            metrics["best_epoch"] = self.best_epoch
        if epoch == trainer.epochs:
            self.save(trainer, "final", "final", epoch)

    def restore_best(self, history: list[dict[str, Any]]) -> None:
        """The best epoch as the records ``history`` say (a restart from a checkpoint, whose
        policy state was lost), with the rule :meth:`on_epoch_end` applies."""
        self.best = self.best_epoch = None
        for metrics in history:
            if self.best_metric in metrics:
                self._record_if_best(metrics, int(metrics["epoch"]))

    def _record_if_best(self, metrics: dict[str, Any], epoch: int) -> bool:
        """Whether epoch ``epoch`` is the best so far (accuracy, then the lower loss); if so it
        becomes ``best``."""
        score = (metrics[self.best_metric],
                 -metrics.get(self.best_metric.replace("acc", "loss"), 0.0))
        if any(math.isnan(v) for v in score) or (self.best is not None and score <= self.best):
            return False
        self.best, self.best_epoch = score, epoch
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"best": list(self.best) if self.best else None, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = tuple(state["best"]) if state["best"] is not None else None
        self.best_epoch = state["best_epoch"]
