"""Callbacks: the hooks through which capabilities plug into the training loop.

Checkpoint repulsion adds its gradient in :meth:`Callback.on_after_backward`; cold restarts
and snapshot collection act in :meth:`Callback.on_epoch_end`; Hessian tracking adds keys to
the epoch's metrics. A callback with state (a best score, a list of anchors) returns it from
:meth:`state_dict`, so a resumed run continues exactly.

Hooks must not synchronise with the device on every step (no ``.item()`` in
``on_after_backward`` / ``on_step_end``): keep running values as tensors and read them once per
epoch in :meth:`on_epoch_end`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

    from losslab.train.trainer import Trainer

__all__ = ["Callback"]


class Callback:
    """Base class with no-op hooks; override the ones you need."""

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first epoch of this process (also after a resume)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before epoch ``epoch`` (1-based) starts."""

    def extra_loss(self, trainer: Trainer) -> Tensor | None:
        """A differentiable term added to the task loss before backward (None: nothing).

        The epoch's ``train_loss`` stays the task loss alone."""
        return None

    def on_after_backward(self, trainer: Trainer, loss: Tensor) -> None:
        """Gradients of the task loss are in ``.grad``; the optimizer has not stepped yet."""

    def on_step_end(self, trainer: Trainer) -> None:
        """After the optimizer and the schedule have stepped (``trainer.step`` is updated)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        """After evaluation; add keys to ``metrics`` to have them logged with the epoch."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last epoch."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
