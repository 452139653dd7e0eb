"""How points of weight space are evaluated: one options object and one loss contract.

Every map (:func:`~losslab.landscape.evaluate.line`, :func:`~losslab.landscape.evaluate.surface`,
:func:`~losslab.landscape.evaluate.evaluate_points`,
:func:`~losslab.landscape.ratio_map.eigenvalue_ratio_map`,
:func:`~losslab.landscape.trajectory.trajectory_plane`) and the curvature operator
(:class:`~losslab.landscape.hessian.operator.HessianOperator`) take ``options=EvalOptions(...)``.

**The loss contract.** ``loss_fn(outputs, targets)`` returns the per-example losses, shape
``(B,)`` (the default, :func:`cross_entropy_per_example`, is
``F.cross_entropy(..., reduction="none")``). The value at a point is their mean over the whole
evaluation set, ``L(θ) = (1/N) Σ_i ℓ_i(θ)``, exact on batches of uneven sizes; maps also report
its standard error ``std(ℓ) / √N``. A loss returning a 0-d batch mean (e.g. ``F.cross_entropy``)
is accepted too: it is weighted by its batch's size, and the standard errors are ``nan``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from losslab.errors import InputError

__all__ = ["EvalOptions", "BN_POLICIES", "MEMORY_FORMATS", "cross_entropy_per_example",
           "batch_mean", "loss_name"]

BN_POLICIES = ("keep", "recompute", "interpolate")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


def cross_entropy_per_example(logits: Tensor, y: Tensor) -> Tensor:
    """Per-example cross-entropy, the default loss (``F.cross_entropy(reduction="none")``)."""
    return F.cross_entropy(logits, y, reduction="none")


def batch_mean(losses: Tensor) -> Tensor:
    """The batch mean of a loss that follows the contract (per-example or already a mean)."""
    return losses if losses.ndim == 0 else losses.mean()


def loss_name(fn: Callable) -> str:
    """A loss function's name, as recorded in results."""
    return getattr(fn, "__name__", None) or type(fn).__name__


@dataclass(frozen=True)
class EvalOptions:
    """How every point of a map is evaluated (frozen: share one between maps).

    Attributes:
        loss_fn: ``loss_fn(outputs, targets)``, per-example losses (see the module docstring).
        bn: the BatchNorm policy: ``"keep"`` (the point's given running statistics),
            ``"recompute"`` (re-estimated at every point by a pass over ``recompute_batches``)
            or ``"interpolate"`` (a line between two models: statistics follow the weights);
            ``None``: the map's default (``"keep"``; ``"interpolate"`` on a line between two
            models whose buffers are known). The curvature operator uses eval mode with the
            given buffers, i.e. ``"keep"``.
        recompute_batches: the data of the ``"recompute"`` pass (default the evaluation batches).
        points_per_call: points evaluated per forward pass through ``torch.vmap`` (more memory).
        device: where to evaluate (default the point's device).
        memory_format: ``"auto"`` (channels-last for convolutions on a CPU), ``"contiguous"``
            or ``"channels_last"``.
        fuse: fold BatchNorm, fuse convolutions with their ReLU and share the first layer's
            products between points (:mod:`~losslab.landscape.first_layer`), all exact up to
            rounding; ``False`` runs the model's own forward bit for bit.
    """

    loss_fn: Callable[[Any, Any], Tensor] = cross_entropy_per_example
    bn: str | None = None
    recompute_batches: Iterable | None = None
    points_per_call: int = 1
    device: torch.device | str | None = None
    memory_format: str = "auto"
    fuse: bool = True

    def __post_init__(self) -> None:
        if not callable(self.loss_fn):
            raise InputError(f"options.loss_fn must be callable, got {self.loss_fn!r}")
        if self.bn is not None and self.bn not in BN_POLICIES:
            raise InputError(f"options.bn must be one of {BN_POLICIES} or None, got {self.bn!r}")
        if (isinstance(self.points_per_call, bool) or not isinstance(self.points_per_call, int)
                or self.points_per_call < 1):
            raise InputError(f"options.points_per_call must be an int >= 1, "
                             f"got {self.points_per_call!r}")
        if self.memory_format not in MEMORY_FORMATS:
            raise InputError(f"options.memory_format must be one of {MEMORY_FORMATS}, "
                             f"got {self.memory_format!r}")

    def with_(self, **changes: Any) -> EvalOptions:
        """A copy with ``changes`` (``dataclasses.replace``, validated again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise InputError(f"EvalOptions has no option {sorted(unknown)}; options: "
                             f"{[f.name for f in fields(self)]}")
        return replace(self, **changes)

    def bn_or(self, default: str) -> str:
        """The BatchNorm policy, ``default`` when the options leave it to the map."""
        return self.bn if self.bn is not None else default
