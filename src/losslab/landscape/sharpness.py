"""Sharpness during training: λmax of the Hessian (and the Gauss-Newton) every N epochs.

The mode-connectivity source names it as its next step: track the largest Hessian eigenvalue
during training to tell flat from sharp convergence. Every ``every`` epochs, λmax of the mean
training loss on a fixed set of training batches is computed by Lanczos with full
reorthogonalization (:func:`~losslab.landscape.hessian.lanczos`), in eval mode (BatchNorm with
its running statistics). Logged: ``sharpness`` (λmax), ``sharpness_products`` (Hessian-vector
products used) and ``sharpness_converged``; with ``"ggn"`` among the operators, the same for
the generalized Gauss-Newton as ``sharpness_ggn``, ``sharpness_ggn_products`` and
``sharpness_ggn_converged`` (PSD, and for cross-entropy the curvature the Fisher sees; Cohen et
al. 2021 track both at the edge of stability).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch import Tensor

from losslab.errors import InputError
from losslab.landscape.hessian import lanczos
from losslab.landscape.hessian.curvature import operator_class
from losslab.landscape.options import EvalOptions
from losslab.train.callbacks import Callback

if TYPE_CHECKING:
    from losslab.train.trainer import Trainer

__all__ = ["SharpnessTracker"]

TRACKED = ("hessian", "ggn")  # λmax of each is cheap enough to take every few epochs


class SharpnessTracker(Callback):
    def __init__(self, batches: Sequence[tuple[Tensor, Tensor]], *, every: int = 1,
                 max_iter: int = 30, tol: float = 1e-3, wrt: str = "all", seed: int = 0,
                 operators: Sequence[str] = ("hessian",)):
        if every < 1:
            raise InputError(f"every must be >= 1, got {every}")
        unknown = [o for o in operators if o not in TRACKED]
        if unknown or not operators:
            raise InputError(f"sharpness operators must be among {list(TRACKED)}, got "
                             f"{list(operators)}")
        self.operators = list(operators)
        self.batches = list(batches)  # fixed: the same data at every measurement
        self.every = every
        self.max_iter = max_iter
        self.tol = tol
        self.wrt = wrt
        self.seed = seed

    def measure(self, trainer: Trainer) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.operators:
            op = operator_class(name)(trainer.model, batches=self.batches, wrt=self.wrt,
                                  options=EvalOptions(loss_fn=trainer.loss_fn))
            result = lanczos(op, k=1, which="largest", max_iter=self.max_iter, tol=self.tol,
                             seed=self.seed, progress=False)  # a step of an epoch
            key = "sharpness" if name == "hessian" else f"sharpness_{name}"
            out.update({key: float(result.max), f"{key}_products": result.num_products,
                        f"{key}_converged": bool(result.converged)})
        return out

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        if epoch % self.every == 0:
            metrics.update(self.measure(trainer))
