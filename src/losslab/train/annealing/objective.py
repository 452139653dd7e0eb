"""The module side of an annealing step: the mode its objective is judged in, and its buffers.

SSA and SGD-SA accept or reject a move by comparing the objective before and after it. Two
things about the model matter for that comparison and for what a rejection restores:

* **The mode.** In train mode BatchNorm normalizes with the minibatch's own statistics and
  dropout drops units, so the objective of the same weights changes from call to call, and
  every forward pass moves the BatchNorm running statistics. The thesis's code judges moves
  in eval mode (``model.eval()`` around the acceptance evaluations); that is the default here
  (``mode="eval"``): the objective is a function of the weights (and of the running statistics
  the move carries), the one the final model is evaluated with. ``mode="train"`` judges it in
  train mode, as the trainer ran it before.
* **The buffers.** A rejected move must leave the model exactly as it was: every parameter
  *and* every buffer (BatchNorm's ``running_mean``, ``running_var``, ``num_batches_tracked``).
  Eval-mode evaluations do not touch torch's buffers, but SGD-SA's gradient forward pass runs
  in the caller's (train) mode and updates them, and train-mode evaluations update them on
  every call. :class:`ObjectiveGuard` snapshots them and puts back what the decision says:
  the pre-step values after a rejection, the values an accepted move produced otherwise.

Each submodule's ``training`` flag is restored individually after an evaluation, so a model
whose parts are in different modes (a frozen BatchNorm in eval) comes back as it went in.

Source: M. Stringher, "Unconventional Training of Deep Neural Networks", Master's thesis,
University of Padova, 2019 ("the thesis").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn

from losslab.errors import InputError

__all__ = ["ObjectiveGuard", "ObjectiveMode", "OBJECTIVE_MODES"]

ObjectiveMode = Literal["eval", "train"]
OBJECTIVE_MODES: tuple[str, ...] = ("eval", "train")


class ObjectiveGuard:
    """Mode switching and buffer snapshots for one module (``module=None``: a no-op guard).

    Without a module the optimizer cannot know the model: the closure is evaluated as it is
    called (the caller chose the mode) and buffers are the caller's business.
    """

    def __init__(self, module: nn.Module | None, mode: str = "eval") -> None:
        if mode not in OBJECTIVE_MODES:
            raise InputError(f"objective_mode must be one of {', '.join(OBJECTIVE_MODES)}, "
                             f"got {mode!r}")
        if module is not None and not isinstance(module, nn.Module):
            raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
        self.module = module
        self.mode = mode
        self._modules = list(module.modules()) if module is not None else []
        self._snapshots: dict[str, list[Tensor]] = {}

    @property
    def active(self) -> bool:
        return self.module is not None

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Within: every submodule in the objective's mode; after: each back in its own."""
        if self.module is None:
            yield
            return
        flags = [m.training for m in self._modules]
        want = self.mode == "train"
        for m in self._modules:
            m.training = want
        try:
            yield
        finally:
            for m, flag in zip(self._modules, flags, strict=True):
                m.training = flag

    # -- buffers -----------------------------------------------------------------------------
    def buffers(self) -> list[Tensor]:
        """The module's buffers now (a model may replace a buffer tensor between steps)."""
        return [] if self.module is None else list(self.module.buffers())

    def save(self, slot: str) -> None:
        """Copy the buffers into the scratch ``slot`` (allocated once per shape and dtype)."""
        bufs = self.buffers()
        if not bufs:
            return
        saved = self._snapshots.get(slot)
        if saved is None or len(saved) != len(bufs) or any(
                s.shape != b.shape or s.dtype != b.dtype or s.device != b.device
                for s, b in zip(saved, bufs, strict=True)):
            saved = [torch.empty_like(b) for b in bufs]
            self._snapshots[slot] = saved
        for s, b in zip(saved, bufs, strict=True):
            s.copy_(b)

    def restore(self, slot: str) -> None:
        """Buffers <- the snapshot in ``slot``, bitwise."""
        for b, s in zip(self.buffers(), self._snapshots.get(slot, []), strict=False):
            b.copy_(s)

    def select(self, keep: Tensor, slot: str) -> None:
        """Buffers stay as they are where the 0-d bool ``keep`` is true, else <- ``slot``.

        ``torch.where`` on the device: the decision is never read back to the host.
        """
        for b, s in zip(self.buffers(), self._snapshots.get(slot, []), strict=False):
            torch.where(keep, b, s, out=b)

    def select3(self, keep_a: Tensor, slot_a: str, keep_b: Tensor, slot_rest: str) -> None:
        """Buffers <- ``slot_a`` where ``keep_a``, as they are where ``keep_b``, else
        ``slot_rest`` (SSA in train mode: the kept candidate's statistics, or the old ones)."""
        bufs = self.buffers()
        sa, sr = self._snapshots.get(slot_a, []), self._snapshots.get(slot_rest, [])
        for b, a, r in zip(bufs, sa, sr, strict=False):
            torch.where(keep_a, a, torch.where(keep_b, b, r), out=b)
