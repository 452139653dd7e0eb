"""Cold restarts (thesis ch. 2, Algorithm 5): when training has converged, start again.

After every epoch the training loss is estimated on ``n_batches`` random minibatches (cheaper than
a full pass; the thesis's Table 2.1 shows 5-10 minibatches estimate it well). Below ``eps`` the
model is re-initialized from scratch and the optimizer's state (momentum, Adam moments) is
cleared; the learning-rate schedule goes on. The result of the run is the best model on
validation across all restarts (the trainer's ``best`` checkpoint).

Use it in your own loop::

    restart = ColdRestart(eps=1e-3, reinit=lambda k: make_model(seed=k))
    restarted_at = []
    for epoch in range(1, epochs + 1):
        train_one_epoch(model, optimizer)
        if restart.check(model, optimizer, estimate_batches, epoch):
            restarted_at.append(epoch)   # also in restart.restart_epochs

or attach it to :class:`~losslab.train.trainer.Trainer` as a callback (``restarts.eps`` in a
config does that).

Source: M. Stringher, "Unconventional Training of Deep Neural Networks", Master's thesis,
University of Padova, 2019 ("the thesis").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losslab.errors import InputError
from losslab.train.callbacks import Callback

if TYPE_CHECKING:
    from losslab.train.trainer import Trainer

__all__ = ["ColdRestart"]


class ColdRestart(Callback):
    """Re-initialize model and optimizer when the estimated training loss drops below ``eps``.

    Args:
        eps: the threshold ε on the estimated training loss.
        reinit: ``reinit(k)`` returns a freshly initialized module of the same architecture for
            the k-th restart (its weights are copied into the trained model, so the optimizer
            keeps its parameter references).
        n_batches: minibatches of the estimate.
        batches: what to estimate on when used as a callback: an iterable of ``(x, y)``
            (reshuffled each epoch if it has ``set_epoch``), e.g. the training split without
            augmentation. Only the first ``n_batches`` batches are used.
        loss_scale: the estimate is multiplied by this before the comparison (the thesis's
            scale is the mean loss / 512, its batch size, whatever batch size you train with:
            ``1 / 512``, for its ε = 1e-6 and 1e-7).
        loss_fn: the loss (default cross-entropy).
    """

    def __init__(self, eps: float, reinit: Callable[[int], nn.Module], *, n_batches: int = 10,
                 batches: Iterable[tuple[Tensor, Tensor]] | None = None, loss_scale: float = 1.0,
                 loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy):
        if eps <= 0:
            raise InputError(f"eps must be > 0, got {eps}")
        if n_batches < 1:
            raise InputError(f"n_batches must be >= 1, got {n_batches}")
        self.eps = eps
        self.reinit = reinit
        self.n_batches = n_batches
        self.batches = batches
        self.loss_scale = loss_scale
        self.loss_fn = loss_fn
        self.restart_epochs: list[int] = []

    @torch.no_grad()
    def estimate(self, model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> float:
        """Mean loss (times ``loss_scale``) over the first ``n_batches`` batches, in eval mode."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        total, count = torch.zeros((), dtype=torch.float64, device=device), 0
        for x, y in islice(batches, self.n_batches):
            x, y = x.to(device), y.to(device)
            total += self.loss_fn(model(x), y).double() * y.shape[0]
            count += y.shape[0]
        model.train(was_training)
        if count == 0:
            raise InputError("no batches to estimate the training loss on")
        return total.item() / count * self.loss_scale

    def restart(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        """Fresh weights from ``reinit`` and a cleared optimizer state; recorded."""
        fresh = self.reinit(len(self.restart_epochs))
        model.load_state_dict(fresh.state_dict())
        optimizer.state = defaultdict(dict)
        self.restart_epochs.append(epoch)

    def check(self, model: nn.Module, optimizer: torch.optim.Optimizer,
              batches: Iterable[tuple[Tensor, Tensor]], epoch: int) -> bool:
        """Estimate the training loss; restart if it is below ε. Returns whether it restarted."""
        self.last_estimate = self.estimate(model, batches)
        if self.last_estimate < self.eps:
            self.restart(model, optimizer, epoch)
            return True
        return False

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        if self.batches is None:
            raise InputError("ColdRestart needs `batches` to estimate the training loss on")
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)
        if epoch == trainer.epochs:  # nothing trains after the last epoch: estimate only
            self.last_estimate, restarted = self.estimate(trainer.model, self.batches), False
        else:
            restarted = self.check(trainer.model, trainer.optimizer, self.batches, epoch)
        metrics["loss_estimate"] = self.last_estimate
        metrics["restarted"] = int(restarted)
        metrics["restarts"] = len(self.restart_epochs)

    def state_dict(self) -> dict[str, Any]:
        return {"restart_epochs": list(self.restart_epochs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.restart_epochs = list(state["restart_epochs"])
