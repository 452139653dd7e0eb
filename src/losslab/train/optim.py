"""Optimizers named in a config: SGD (momentum, Nesterov, weight decay), Adam and AdamW.

Source: M. Stringher, "Unconventional Training of Deep Neural Networks", Master's thesis,
University of Padova, 2019 ("the thesis").
"""

from __future__ import annotations

import torch
from torch import nn

from losslab.errors import InputError
from losslab.runs.config import OptimizerConfig

__all__ = ["build_optimizer"]


def build_optimizer(cfg: OptimizerConfig, model: nn.Module, *, seed: int = 0,
                    batch_size: int = 1) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` describes, over the model's trainable parameters.

    ``weight_decay`` is L2 regularisation added to the gradient for SGD and Adam (PyTorch's
    convention, and the source documents'), decoupled for AdamW (Loshchilov & Hutter 2019).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.name == "sgd":
        if cfg.nesterov and cfg.momentum == 0:
            raise InputError("optimizer.nesterov=true needs optimizer.momentum > 0")
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                 weight_decay=cfg.weight_decay)
    if cfg.name in ("ssa", "sgdsa"):
        return _annealing(cfg, params, model, seed=seed)
    raise InputError(f"unknown optimizer {cfg.name!r}; allowed: sgd, adam, adamw, ssa, sgdsa")


def _annealing(cfg: OptimizerConfig, params: list, model: nn.Module, *,
               seed: int) -> torch.optim.Optimizer:
    """SSA or SGD-SA with the thesis's defaults (α = 0.97 for SSA, 0.93 for SGD-SA)."""
    from losslab.train.annealing import SGDSA, SSA, ExponentialCooling

    a = cfg.annealing
    # The thesis's scale divides by its own batch size (512), not the run's (``batch_size``).
    scale = 1.0 / a.thesis_batch_size if a.thesis_loss_scale else 1.0
    judged = {"module": model, "objective_mode": a.objective_mode}
    if cfg.name == "ssa":
        cooling = ExponentialCooling(a.t0, a.alpha if a.alpha is not None else 0.97)
        return SSA(params, eps=a.eps, temperature=cooling, improve_bound=a.improve_bound,
                   eps_factor=a.eps_factor, seed=seed, loss_scale=scale, **judged)
    cooling = ExponentialCooling(a.t0, a.alpha if a.alpha is not None else 0.93)
    return SGDSA(params, lrs=a.lrs, temperature=cooling, seed=seed, loss_scale=scale, **judged)
