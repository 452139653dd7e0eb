"""Optimizers named in a config: SGD (momentum, Nesterov, weight decay), Adam and AdamW."""

from __future__ import annotations

import torch
from torch import nn

from losslab.runs.config import OptimizerConfig

__all__ = ["build_optimizer"]


def build_optimizer(cfg: OptimizerConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` describes, over the model's trainable parameters.

    ``weight_decay`` is L2 regularisation added to the gradient for SGD and Adam (PyTorch's
    convention, and the source documents'), decoupled for AdamW (Loshchilov & Hutter 2019).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.name == "sgd":
        if cfg.nesterov and cfg.momentum == 0:
            raise ValueError("optimizer.nesterov=true needs optimizer.momentum > 0")
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                 weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.name!r}; allowed: sgd, adam, adamw")
