"""Checkpoint repulsion in the training loop: place checkpoints, apply the penalty, log it.

At the end of each checkpoint epoch the current model is saved as a ``snapshot`` (so the
thesis's ensemble, all snapshots plus the final model, can be built with the ensemble
analytics) and added as a checkpoint of :class:`~losslab.train.repulsion.CheckpointRepulsion`,
active from the next epoch (for ``window`` epochs, or to the end). With strength 0 (the
baseline) the same "shadow" checkpoints are placed and their distances logged, so baseline and
repulsion curves compare.

Logged every epoch: ``dist_ckpt_<k>`` (‖θ − θ_k‖ at the epoch's end, for every checkpoint
placed so far, 0 in the epoch that places it), ``repulsion_penalty`` (mean over the epoch's steps), ``active_checkpoints``, and
in the analytic mode ``task_grad_norm``, ``penalty_grad_norm`` and ``grad_cosine`` (the cosine
between the task gradient and the penalty gradient), means over the epoch's steps. Running
sums stay on the device; they are read once per epoch.

Source: P. N. von Bachmann, Bachelor thesis on checkpoint repulsion ("distance function"),
Wilhelm-Schickard-Institut für Informatik, University of Tübingen, 2020 ("the thesis").
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from losslab.runs.checkpoints import save_model_checkpoint
from losslab.runs.config import RepulsionConfig
from losslab.train.callbacks import Callback
from losslab.train.repulsion import CheckpointRepulsion

if TYPE_CHECKING:
    from losslab.train.trainer import Trainer

__all__ = ["RepulsionCallback"]


class RepulsionCallback(Callback):
    def __init__(self, config: RepulsionConfig, total_epochs: int, *,
                 directory: str | Path | None = None, run_id: str = "run"):
        self.config = config
        self.epochs = config.checkpoint_epochs(total_epochs)
        self.directory = Path(directory) if directory is not None else None
        self.run_id = run_id
        self.repulsion = CheckpointRepulsion(config.strength, config.width, merge=config.merge,
                                             weights_only=config.weights_only)
        self._sums: Tensor | None = None  # penalty, task norm, penalty norm, cosine
        self._steps = 0
        self._model: torch.nn.Module | None = None  # the model self._params belongs to
        self._params: dict[str, Tensor] = {}

    # -- per epoch -------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer) -> None:
        self.repulsion.to(trainer.device)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.repulsion.set_epoch(epoch)
        self._sums = torch.zeros(4, dtype=torch.float64, device=trainer.device)
        self._steps = 0

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        metrics["active_checkpoints"] = int(self.repulsion.active.sum().item())
        if epoch in self.epochs:  # placed first, so its distance curve starts at 0 here
            self._place_checkpoint(trainer, epoch)
        if self.repulsion.num_checkpoints:
            for k, d in enumerate(self.repulsion.distances(trainer.model).tolist(), start=1):
                metrics[f"dist_ckpt_{k}"] = d
        if not self._steps:  # no checkpoint yet: nothing was applied, nothing to average
            return
        sums = (self._sums / self._steps).tolist()
        metrics["repulsion_penalty"] = sums[0]
        if self.config.mode == "analytic" and self.config.log_gradients:
            metrics["task_grad_norm"], metrics["penalty_grad_norm"] = sums[1], sums[2]
            metrics["grad_cosine"] = sums[3]

    def _place_checkpoint(self, trainer: Trainer, epoch: int) -> None:
        index = self.repulsion.num_checkpoints + 1
        if self.directory is not None:  # the snapshot of the thesis's ensemble
            save_model_checkpoint(self.directory, f"snapshot_{epoch:04d}", trainer.model,
                                  run_id=self.run_id, epoch=epoch, step=trainer.step,
                                  role="snapshot",
                                  extra={"checkpoint": index,
                                         "penalized": self.config.strength > 0})
        end = epoch + 1 + self.config.window if self.config.window else None
        self.repulsion.add_checkpoint(trainer.model, start_epoch=epoch + 1, end_epoch=end)

    # -- per step --------------------------------------------------------------------------
    def extra_loss(self, trainer: Trainer) -> Tensor | None:
        if self.config.mode != "autograd" or not self.repulsion.num_checkpoints:
            return None
        penalty = self.repulsion(trainer.model)
        self._sums[0] += penalty.detach()
        self._steps += 1
        return penalty

    def on_after_backward(self, trainer: Trainer, loss: Tensor) -> None:
        if self.config.mode != "analytic" or not self.repulsion.num_checkpoints:
            return
        self._steps += 1
        params = self._parameters(trainer.model)
        if not self.config.log_gradients:
            self._sums[0] += self.repulsion.add_gradient_(params).detach()
            return
        task = self._flat_grad(params)  # before the penalty's gradient is added to .grad
        value, penalty_grad = self.repulsion.add_gradient_(params, return_gradient=True)
        self._sums[0] += value.detach()
        penalty_grad = penalty_grad.double()
        task_norm, pen_norm = task.norm(), penalty_grad.norm()
        cosine = (task @ penalty_grad) / (task_norm * pen_norm).clamp_min(1e-300)
        self._sums[1:] += torch.stack([task_norm, pen_norm, cosine]).double()

    def _parameters(self, model: torch.nn.Module) -> dict[str, Tensor]:
        """The model's parameters by name, built once per model: walking the module tree in
        every step costs more than the penalty itself on a small network. Loading weights
        (resume, cold restarts) copies into the same parameters, so the table stays valid; a
        different model object gets a new one."""
        if self._model is not model:
            self._model, self._params = model, dict(model.named_parameters())
        return self._params

    def _flat_grad(self, params: dict[str, Tensor]) -> Tensor:
        return torch.cat([params[n].grad.reshape(-1) if params[n].grad is not None
                          else torch.zeros_like(params[n]).reshape(-1)
                          for n in self.repulsion.parameter_names]).double()

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"repulsion": self.repulsion.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.repulsion.load_state_dict(state["repulsion"])
