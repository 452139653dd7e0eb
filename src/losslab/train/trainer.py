"""The training loop: epochs of minibatch steps, evaluation, records and exact resume.

What the trainer *is*: a small loop that composes a model, an optimizer, an optional
per-iteration schedule (any ``torch.optim.lr_scheduler.LRScheduler``), loaders, and
callbacks, and records one metrics row per epoch. What it is *not*: it does not own the
methods it runs. Repulsion, restarts, annealing and snapshot collection are objects that work
in a user's own loop too; here they are attached as :class:`~losslab.train.callbacks.Callback`.

Speed: the inner loop never reads a value back to the host. Loss, accuracy and gradient
norms accumulate in device tensors and are read once per epoch, so a GPU is never stalled. On a
CPU the trainer calls :func:`losslab.cpu_allocator.keep_freed_memory` (ResNet-20 epochs: about
2.25 s with 150-300k page faults, 1.95 s with none; ``LOSSLAB_KEEP_FREED_MEMORY=0`` opts out).

Resume: after every epoch the complete state (model, optimizer, schedule, callbacks, RNG
states, counters) is written atomically, with its SHA-256, to ``state_path``. Loaders that expose ``set_epoch``
(such as :class:`losslab.data.DeviceLoader`) draw their shuffling and augmentation from
``(seed, epoch)``, so a resumed run reaches exactly the numbers of an uninterrupted one.

Example (your own model and data)::

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), train_loader,
                      epochs=10, eval_loaders={"val": val_loader})
    history = trainer.fit()   # list of per-epoch metric dicts
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from losslab.cpu_allocator import keep_freed_memory
from losslab.errors import InputError
from losslab.runs.state_file import read_state, write_state
from losslab.train.callbacks import Callback
from losslab.train.evaluate import evaluate

__all__ = ["Trainer", "read_state", "rng_state", "set_rng_state"]

log = logging.getLogger(__name__)

LossFn = Callable[[Tensor, Tensor], Tensor]


def rng_state() -> dict[str, Any]:
    """Every global random state a training step may draw from."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    # numpy arrays are not allowed by torch.load(weights_only=True): store the key as a tensor.
    numpy_state = [kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss]
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                             "numpy": numpy_state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_python_random_state(state["python"]))
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_python_random_state(s: Any) -> tuple:
    # A round trip through torch.save turns the inner tuple into a list; random wants tuples.
    version, internal, gauss = s
    return (version, tuple(internal), gauss)


class Trainer:
    """Train ``model`` for ``epochs`` epochs; see the module docstring."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 train_loader: Iterable[tuple[Tensor, Tensor]], *, epochs: int,
                 eval_loaders: Mapping[str, Iterable[tuple[Tensor, Tensor]] | None] | None = None,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                 loss_fn: LossFn = F.cross_entropy, callbacks: Sequence[Callback] = (),
                 device: torch.device | str | None = None, metrics_log: Any = None,
                 state_path: str | Path | None = None, grad_norm: bool = True,
                 progress: bool | None = None, objective: str = "loss"):
        self.model = model
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.eval_loaders = {k: v for k, v in (eval_loaders or {}).items() if v is not None}
        self.scheduler = scheduler
        self.loss_fn = loss_fn
        self.callbacks = list(callbacks)
        self.epochs = epochs
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        if self.device.type == "cpu":  # multi-MiB activations otherwise page-fault in every step
            keep_freed_memory()
        self.metrics_log = metrics_log
        self.state_path = Path(state_path) if state_path is not None else None
        self.grad_norm = grad_norm
        self.progress = sys.stderr.isatty() if progress is None else progress
        if objective not in ("loss", "error"):
            raise InputError(f"objective must be 'loss' or 'error', got {objective!r}")
        self.objective = objective  # what a closure optimizer minimizes
        self.epoch = 0  # epochs finished
        self.step = 0   # optimizer steps taken
        self.history: list[dict[str, Any]] = []

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> list[dict[str, Any]]:
        """Train from the current epoch to ``epochs``; return every epoch's metrics."""
        for cb in self.callbacks:
            cb.on_train_start(self)
        epochs = range(self.epoch + 1, self.epochs + 1)
        bar = tqdm(epochs, desc="epochs", disable=not self.progress, dynamic_ncols=True)
        for epoch in bar:
            metrics = self.run_epoch(epoch)
            bar.set_postfix({k: f"{metrics[k]:.4g}" for k in ("train_loss", "val_acc", "test_acc")
                             if isinstance(metrics.get(k), float)})
        bar.close()
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.history

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch: train, evaluate, let callbacks add to the record, log it, save the state."""
        for cb in self.callbacks:
            cb.on_epoch_start(self, epoch)
        start = time.perf_counter()
        metrics: dict[str, Any] = {"epoch": epoch}
        if "lr" in self.optimizer.param_groups[0]:  # SSA has no learning rate
            metrics["lr"] = self.current_lr()
        metrics.update(self.train_epoch(epoch))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        metrics["epoch_time"] = time.perf_counter() - start
        for name, loader in self.eval_loaders.items():
            result = evaluate(self.model, loader, loss_fn=self.loss_fn, device=self.device)
            metrics[f"{name}_loss"], metrics[f"{name}_acc"] = result["loss"], result["acc"]
        metrics["step"] = self.step
        self.epoch = epoch
        for cb in self.callbacks:
            cb.on_epoch_end(self, epoch, metrics)
        self.history.append(metrics)
        if self.metrics_log is not None:
            self.metrics_log.write(metrics)
        if self.state_path is not None:
            self.save_state(self.state_path)
        log.info("epoch %d: %s", epoch, {k: v for k, v in metrics.items() if k != "epoch"})
        return metrics

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Minibatch steps over the training loader; returns running loss, accuracy, grad norm."""
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(epoch)
        self.model.train()
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        loss_sum, grad_norm_sum, correct = zero.clone(), zero.clone(), zero.clone()
        count = steps = 0
        batches = self.train_loader
        if self.progress:
            total = len(batches) if hasattr(batches, "__len__") else None
            batches = tqdm(batches, total=total, desc=f"epoch {epoch}", leave=False,
                           dynamic_ncols=True)
        uses_closure = getattr(self.optimizer, "uses_closure", False)
        for x, y in batches:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if uses_closure:
                loss, logits = self.closure_step(x, y)
            else:
                loss, logits = self.training_step(x, y)
                if self.grad_norm:
                    grad_norm_sum.add_(self._grad_norm())
                self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            self.step += 1
            for cb in self.callbacks:
                cb.on_step_end(self)
            n = y.shape[0]
            # In-place adds with type promotion: one small kernel each, no host sync.
            loss_sum.add_(loss.detach(), alpha=n)
            correct.add_((logits.detach().argmax(dim=1) == y).sum())
            count += n
            steps += 1
        out = {"train_loss": loss_sum.item() / max(count, 1), "train_acc": correct.item() / max(count, 1)}
        if self.grad_norm and not uses_closure:
            out["grad_norm"] = grad_norm_sum.item() / max(steps, 1)
        return out

    def training_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Forward, loss and backward; callbacks see the gradients before the optimizer steps."""
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        total = loss
        for cb in self.callbacks:
            extra = cb.extra_loss(self)
            if extra is not None:
                total = total + extra
        total.backward()
        for cb in self.callbacks:
            cb.on_after_backward(self, loss)
        return loss, logits

    def closure_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """One step of an optimizer that evaluates the objective itself (SSA, SGD-SA).

        The closure follows losslab's convention: it returns the objective on this minibatch
        (the loss, or the error rate when ``objective="error"``) and calls ``backward`` only
        when gradients are enabled. The loss and logits of the first evaluation (at the
        weights before the step) are what the epoch's running metrics record; the optimizer
        puts the model in the mode its moves are judged in (eval by default, so for SSA and
        SGD-SA ``train_loss`` is then the eval-mode objective the moves were judged on).
        """
        first: dict[str, Tensor] = {}

        def closure() -> Tensor:
            logits = self.model(x)
            loss = self.loss_fn(logits, y)
            if not first:
                first["loss"], first["logits"] = loss.detach(), logits.detach()
            if torch.is_grad_enabled():
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
            if self.objective == "error":
                return (logits.detach().argmax(dim=1) != y).double().mean()
            return loss.detach()

        self.optimizer.step(closure)
        return first["loss"], first["logits"]

    def _grad_norm(self) -> Tensor:
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        if any(g.dtype != grads[0].dtype or g.device != grads[0].device for g in grads):
            return torch.nn.utils.get_total_norm(grads).to(self.device, torch.float64)
        # The global L2 norm: per-tensor norms in one fused foreach kernel, then their norm.
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))

    def current_lr(self) -> float:
        """The first param group's lr (NaN for optimizers without one, such as SSA)."""
        return float(self.optimizer.param_groups[0].get("lr", float("nan")))

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        loader_state = getattr(self.train_loader, "state_dict", None)
        return {"epoch": self.epoch, "step": self.step, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "callbacks": self._callback_states(),
                "loader": loader_state() if callable(loader_state) else None,
                "rng": rng_state(), "history": self.history}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        saved = dict(state["callbacks"])
        for key, cb in self._keyed_callbacks():
            if key in saved:
                cb.load_state_dict(saved.pop(key))
        lost = [k for k, v in saved.items() if v]
        if lost:
            raise InputError(f"the saved state has callbacks {lost} that this trainer lacks; "
                             "resume with the same callbacks")
        if state.get("loader") is not None and hasattr(self.train_loader, "load_state_dict"):
            self.train_loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state["history"])

    def _keyed_callbacks(self) -> list[tuple[str, Callback]]:
        # Keyed by class name (numbered when repeated), so stateless callbacks may differ.
        seen: dict[str, int] = {}
        keyed = []
        for cb in self.callbacks:
            name = type(cb).__qualname__
            seen[name] = seen.get(name, 0) + 1
            keyed.append((f"{name}#{seen[name]}", cb))
        return keyed

    def _callback_states(self) -> dict[str, Any]:
        return {key: cb.state_dict() for key, cb in self._keyed_callbacks()}

    def save_state(self, path: str | Path) -> None:
        """Write the full training state atomically, with its hash (a killed write leaves the
        previous one; see :mod:`losslab.runs.state_file`)."""
        write_state(path, self.state_dict())

    def load_state(self, path: str | Path) -> None:
        self.load_state_dict(read_state(path))
