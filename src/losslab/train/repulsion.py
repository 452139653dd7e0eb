"""Checkpoint repulsion: a Gaussian (RBF) "hill" at saved checkpoints that pushes training away.

Source document: the Bachelor thesis of P. N. von Bachmann (Universität Tübingen, 2020; ResNet32 and
MobileNetV2 on CIFAR-10), ch. 2.1 "Distance Function" and ch. 3.

Math. With θ the flat vector of the *counted* parameters and θ_c the saved checkpoints,

    d_c(θ) = ‖θ − θ_c‖²
    P(θ)   = Σ_c s · exp(−d_c / (2σ²))                   (loss = task loss + P)
    ∇P(θ)  = −(s/σ²) · Σ_c exp(−d_c / (2σ²)) · (θ − θ_c)

with strength ``s`` and width ``σ²`` (the thesis settles on ``σ² = 100``, tries ``s`` in 1, 10, 100).
The counted parameters are the trainable ones (``requires_grad``), or with ``weights_only=True``
only those with ``ndim > 1`` (conv/linear weights: no biases, no BatchNorm affine). BatchNorm
running statistics are buffers and never count.

Options:

- ``merge=True``: the thesis's "one larger checkpoint": a single term whose anchor is the mean of
  the *active* checkpoints (zero when none is active).
- windows: each checkpoint has ``[start_epoch, end_epoch)``; :meth:`CheckpointRepulsion.set_epoch`
  switches terms on and off (the thesis's open question: let the kernel out again). Until
  ``set_epoch`` is first called, every checkpoint is active.
- ``strength=0`` is a "shadow": distances are tracked for logging, penalty and gradient are zero
  (the baseline run of the thesis's comparisons).

Two ways to use it::

    repulsion = CheckpointRepulsion(strength=10.0, width=100.0)
    repulsion.add_checkpoint(model)
    loss = F.cross_entropy(model(x), y) + repulsion(model)   # differentiable
    loss.backward()
    # or, faster, without a graph:
    F.cross_entropy(model(x), y).backward(); repulsion.add_gradient_(model); optimizer.step()

Neither path synchronises with the host (no ``.item()``, no branching on tensor values): the
active mask is a device buffer updated once per epoch by ``set_epoch``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from losslab.errors import InputError, NotFoundError

__all__ = ["CheckpointRepulsion"]

# Buffer names used when a checkpoint *Mapping* (a state dict) is the first source and so has to
# tell parameters from buffers by itself.
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")

_SIZED_BUFFERS = ("anchors", "start_epochs", "end_epochs", "active")


class CheckpointRepulsion(nn.Module):
    """RBF repulsion from saved checkpoints: ``P(θ) = Σ_c s·exp(−‖θ−θ_c‖²/(2σ²))``.

    Args:
        strength: ``s ≥ 0``; 0 is the shadow mode (distances only).
        width: ``σ² > 0`` (the thesis's "width"; the kernel's variance, not its standard deviation).
        merge: one term at the mean of the active checkpoints instead of one term per checkpoint.
        weights_only: count only parameters with ``ndim > 1``.

    Buffers (saved by ``state_dict``, moved by ``.to``): ``anchors`` (K, P), ``start_epochs`` and
    ``end_epochs`` (K,) int64 (end −1: never), ``active`` (K,) 0/1 mask in the anchors' dtype.
    The names and shapes of the counted parameters travel as extra state, so ``load_state_dict``
    into a fresh instance restores all checkpoints.

    The first :meth:`add_checkpoint` fixes the counted parameter names (in ``named_parameters``
    order) and the anchors' dtype and device (those of that source; ``.to`` moves them later).

    Example (both usage patterns)::

        >>> import torch, torch.nn.functional as F
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        >>> repulsion = CheckpointRepulsion(strength=10.0, width=100.0)
        >>> repulsion.add_checkpoint(model)
        0
        >>> loss = F.cross_entropy(model(x), y) + repulsion(model)   # differentiable
        >>> loss.backward()
        >>> optimizer.zero_grad()
        >>> F.cross_entropy(model(x), y).backward(); penalty = repulsion.add_gradient_(model)
        >>> optimizer.step()
        >>> repulsion.distances(model).shape
        torch.Size([1])
    """

    anchors: Tensor
    start_epochs: Tensor
    end_epochs: Tensor
    active: Tensor

    def __init__(
        self, strength: float, width: float, *, merge: bool = False, weights_only: bool = False
    ) -> None:
        super().__init__()
        strength, width = float(strength), float(width)
        if not math.isfinite(strength) or strength < 0:
            raise InputError(f"strength must be a finite number >= 0, got strength={strength!r}")
        if not math.isfinite(width) or width <= 0:
            raise InputError(f"width must be a finite number > 0, got width={width!r}")
        self.strength = strength
        self.width = width
        self.merge = bool(merge)
        self.weights_only = bool(weights_only)
        self._names: list[str] = []
        self._shapes: list[tuple[int, ...]] = []
        self._numels: list[int] = []
        self._epoch: int | None = None
        self.register_buffer("anchors", torch.zeros(0, 0))
        self.register_buffer("start_epochs", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("end_epochs", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("active", torch.zeros(0))

    # ------------------------------------------------------------------ properties

    @property
    def parameter_names(self) -> list[str]:
        """Names of the counted parameters, in flattening order (empty before a checkpoint)."""
        return list(self._names)

    @property
    def num_checkpoints(self) -> int:
        return self.anchors.shape[0]

    @property
    def num_parameters(self) -> int:
        """P, the length of the flat parameter vector."""
        return sum(self._numels)

    @property
    def epoch(self) -> int | None:
        """The epoch last given to :meth:`set_epoch` (None: windows not applied, all active)."""
        return self._epoch

    def extra_repr(self) -> str:
        return (
            f"strength={self.strength}, width={self.width}, merge={self.merge}, "
            f"weights_only={self.weights_only}, checkpoints={self.num_checkpoints}, "
            f"parameters={self.num_parameters}"
        )

    # ------------------------------------------------------------------ selecting parameters

    def _counts(self, name: str, t: Tensor, *, trainable: bool = True) -> bool:
        del name
        if not trainable:
            return False
        return t.ndim > 1 if self.weights_only else True

    def _select_first(self, source: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The counted tensors of the first checkpoint source (which fixes the names)."""
        if isinstance(source, nn.Module):
            out = {
                n: p.detach()
                for n, p in source.named_parameters()
                if self._counts(n, p, trainable=p.requires_grad)
            }
        elif isinstance(source, Mapping):
            out = {
                n: t.detach()
                for n, t in source.items()
                if isinstance(t, Tensor)
                and t.is_floating_point()
                and n.rsplit(".", 1)[-1] not in _BUFFER_SUFFIXES
                and self._counts(n, t)
            }
        else:
            raise TypeError(f"expected an nn.Module or a Mapping[str, Tensor], got {type(source)}")
        if not out:
            raise InputError("the checkpoint source has no parameters to count")
        return out

    def _tensors(self, source: nn.Module | Mapping[str, Tensor], what: str) -> list[Tensor]:
        """The counted tensors of ``source`` in ``parameter_names`` order, checked by name/shape.

        A Module must have exactly the counted trainable parameters; a Mapping may have extra keys.
        """
        if not self._names:
            raise RuntimeError(f"{what}: no checkpoint has been added yet")
        if isinstance(source, nn.Module):
            table: Mapping[str, Tensor] = dict(source.named_parameters())
            if len(table) != len(self._names):
                known = set(self._names)
                extra = [
                    n
                    for n, p in table.items()
                    if n not in known and self._counts(n, p, trainable=p.requires_grad)
                ]
                if extra:
                    raise NotFoundError(f"{what}: parameter {extra[0]!r} is not among the counted ones")
        elif isinstance(source, Mapping):
            table = source
        else:
            raise TypeError(
                f"{what}: expected an nn.Module or a Mapping[str, Tensor], got {type(source)}"
            )
        out = []
        for name, shape in zip(self._names, self._shapes, strict=True):
            t = table.get(name)
            if t is None:
                raise NotFoundError(f"{what}: parameter {name!r} is missing")
            if tuple(t.shape) != shape:
                raise InputError(
                    f"{what}: parameter {name!r} has shape {tuple(t.shape)}, expected {shape}"
                )
            out.append(t)
        return out

    def flat_parameters(self, model_or_params: nn.Module | Mapping[str, Tensor]) -> Tensor:
        """The counted parameters as one detached flat vector (P,)."""
        with torch.no_grad():
            return torch.cat(
                [t.reshape(-1) for t in self._tensors(model_or_params, "flat_parameters")]
            )

    # ------------------------------------------------------------------ checkpoints and windows

    def add_checkpoint(
        self,
        source: nn.Module | Mapping[str, Tensor],
        *,
        start_epoch: int = 0,
        end_epoch: int | None = None,
    ) -> int:
        """Save a copy of ``source``'s counted parameters as a checkpoint; returns its index.

        The term is active for epochs in ``[start_epoch, end_epoch)`` (``end_epoch=None``: forever)
        once :meth:`set_epoch` has been called. ``source`` is never modified.
        """
        start_epoch = int(start_epoch)
        if end_epoch is not None and int(end_epoch) <= start_epoch:
            raise InputError(
                f"end_epoch must be > start_epoch, got start_epoch={start_epoch}, end_epoch={end_epoch}"
            )
        if start_epoch < 0:
            raise InputError(f"start_epoch must be >= 0, got start_epoch={start_epoch}")
        with torch.no_grad():
            if not self._names:
                first = self._select_first(source)
                tensors = list(first.values())
                dtype, device = tensors[0].dtype, tensors[0].device
                row = torch.cat([t.reshape(-1).to(device=device, dtype=dtype) for t in tensors])
                self._names = list(first)
                self._shapes = [tuple(t.shape) for t in tensors]
                self._numels = [t.numel() for t in tensors]
                anchors = row.unsqueeze(0).clone()
                self.start_epochs = self.start_epochs.to(device)
                self.end_epochs = self.end_epochs.to(device)
            else:
                tensors = self._tensors(source, "add_checkpoint")
                a = self.anchors
                row = torch.cat([t.reshape(-1).to(device=a.device, dtype=a.dtype) for t in tensors])
                anchors = torch.cat([a, row.unsqueeze(0)])  # a new tensor: a copy of the source
        dev = anchors.device
        self.register_buffer("anchors", anchors)
        self.register_buffer(
            "start_epochs",
            torch.cat([self.start_epochs.to(dev), torch.tensor([start_epoch], device=dev)]),
        )
        end = -1 if end_epoch is None else int(end_epoch)
        self.register_buffer(
            "end_epochs", torch.cat([self.end_epochs.to(dev), torch.tensor([end], device=dev)])
        )
        self._update_active()
        return self.num_checkpoints - 1

    def set_epoch(self, epoch: int) -> None:
        """Apply the windows: checkpoint c is active iff ``start ≤ epoch`` and (``end < 0`` or ``epoch < end``)."""
        self._epoch = int(epoch)
        self._update_active()

    def _update_active(self) -> None:
        a = self.anchors
        if self._epoch is None:
            mask = torch.ones(a.shape[0], dtype=a.dtype, device=a.device)
        else:
            e = self._epoch
            on = (self.start_epochs <= e) & ((self.end_epochs < 0) | (e < self.end_epochs))
            mask = on.to(a.dtype)
        self.register_buffer("active", mask)

    # ------------------------------------------------------------------ the penalty

    def _terms(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """``(e, diffs)``: per-term penalties (K',) and ``θ − anchor`` (K', P), masked.

        Per checkpoint: K' = K. Merged: K' = 1, anchor = mean of the active checkpoints.
        """
        a = self.anchors
        if self.merge:
            count = self.active.sum()
            anchor = (self.active @ a) / count.clamp_min(1)
            diffs = (theta - anchor).unsqueeze(0)
            weight = (count > 0).to(a.dtype).unsqueeze(0)
        else:
            diffs = theta.unsqueeze(0) - a
            weight = self.active
        d = torch.linalg.vector_norm(diffs, dim=1).square()  # one pass, no (K, P) temporary
        e = self.strength * torch.exp(d * (-0.5 / self.width)) * weight
        return e, diffs

    def forward(self, model_or_params: nn.Module | Mapping[str, Tensor]) -> Tensor:
        """The penalty ``P(θ)`` (0-d), differentiable: autograd flows into the parameters.
        Before the first checkpoint there is nothing to repel from: 0."""
        if not self._names:
            return _zero_of(model_or_params)
        tensors = self._tensors(model_or_params, "forward")
        if self.strength == 0.0 or self.num_checkpoints == 0:
            return self.anchors.new_zeros(())
        theta = torch.cat([t.reshape(-1) for t in tensors])
        e, _ = self._terms(theta)
        return e.sum()

    def _flat_gradient(self, tensors: list[Tensor]) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            theta = torch.cat([t.detach().reshape(-1) for t in tensors])
            e, diffs = self._terms(theta)
            # Σ_c e_c (θ − θ_c) as one mat-vec over the explicit differences. The algebraically equal
            # e.sum()·θ − e @ anchors subtracts two large, nearly equal vectors (θ ≈ θ_c right after
            # a checkpoint is saved, exactly where the hill is steepest relative to the distance),
            # losing all precision of the small difference in float32; the differences are needed
            # anyway for d_c, so this costs nothing extra.
            grad = (e * (-1.0 / self.width)) @ diffs  # scale the K weights, not the P-vector
        return grad, e.sum()

    def penalty_gradient(self, model_or_params: nn.Module | Mapping[str, Tensor]) -> Tensor:
        """The flat (P,) gradient ``∇P(θ)`` (for logging its norm, cosine with the task gradient)."""
        tensors = self._tensors(model_or_params, "penalty_gradient")
        if self.strength == 0.0 or self.num_checkpoints == 0:
            return tensors[0].new_zeros(self.num_parameters)
        return self._flat_gradient(tensors)[0]

    def add_gradient_(
        self, model: nn.Module | Mapping[str, Tensor], *, return_gradient: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Add ``∇P(θ)`` to each counted parameter's ``.grad`` (created if None), with no graph.

        ``model`` is the module, or a name → parameter mapping of it (``dict(named_parameters())``,
        which a training loop can build once instead of walking the module every step).
        Returns the penalty value (0-d tensor, no host sync); with ``return_gradient`` also the
        flat (P,) gradient that was added, in the anchors' dtype (zeros for a shadow).
        """
        if not self._names:  # no checkpoint yet: no penalty, nothing added
            value = _zero_of(model)
            return (value, value.new_zeros(0)) if return_gradient else value
        params = self._tensors(model, "add_gradient_")
        with torch.no_grad():
            grads = []
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                grads.append(p.grad)
            if self.strength == 0.0 or self.num_checkpoints == 0:
                value = self.anchors.new_zeros(())
                if return_gradient:
                    return value, self.anchors.new_zeros(self.num_parameters)
                return value
            flat, value = self._flat_gradient(params)
            added = flat.to(grads[0].dtype)
            pieces = [
                g.view(s)
                for g, s in zip(torch.split(added, self._numels), self._shapes, strict=True)
            ]
            torch._foreach_add_(grads, pieces)
        return (value, flat) if return_gradient else value

    def distances(self, model_or_params: nn.Module | Mapping[str, Tensor]) -> Tensor:
        """``‖θ − θ_c‖`` (not squared) to every checkpoint, active or not: (K,), detached."""
        if not self._names:
            return _zero_of(model_or_params).new_zeros(0)
        tensors = self._tensors(model_or_params, "distances")
        with torch.no_grad():
            theta = torch.cat([t.detach().reshape(-1) for t in tensors])
            return torch.linalg.vector_norm(theta.unsqueeze(0) - self.anchors, dim=1)

    def checkpoint(self, index: int) -> dict[str, Tensor]:
        """Checkpoint ``index`` as a name -> tensor dict (views into ``anchors``)."""
        row = self.anchors[index]
        return {
            n: piece.view(s)
            for n, piece, s in zip(
                self._names, torch.split(row, self._numels), self._shapes, strict=True
            )
        }

    # ------------------------------------------------------------------ state

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "names": list(self._names),
            "shapes": [list(s) for s in self._shapes],
            "epoch": self._epoch,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._names = list(state["names"])
        self._shapes = [tuple(int(x) for x in s) for s in state["shapes"]]
        self._numels = [math.prod(s) for s in self._shapes]
        self._epoch = state["epoch"]

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # The number of checkpoints (and P) may differ from this instance's: resize the buffers to
        # the incoming shapes first, then copy. They keep this instance's device, and its dtype
        # unless it holds no checkpoint yet (a fresh instance takes the saved dtype).
        fresh = not self._names
        for name in _SIZED_BUFFERS:
            key = prefix + name
            if key in state_dict:
                mine, theirs = self._buffers[name], state_dict[key]
                dtype = theirs.dtype if fresh else mine.dtype
                self._buffers[name] = torch.empty(theirs.shape, dtype=dtype, device=mine.device)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if self._names and self.anchors.shape[1] != self.num_parameters:
            error_msgs.append(
                f"anchors have {self.anchors.shape[1]} columns, the parameter list needs "
                f"{self.num_parameters}"
            )


def _zero_of(source: nn.Module | Mapping[str, Tensor]) -> Tensor:
    """A 0-d zero on the device and in the dtype of ``source``'s first tensor."""
    tensors = source.parameters() if isinstance(source, nn.Module) else iter(source.values())
    first = next(tensors, None)
    return torch.zeros(()) if first is None else first.new_zeros(())
