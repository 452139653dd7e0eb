"""Members as the ensemble functions take them: checkpoints in any form, and member weights.

:class:`~losslab.ensembles.predict.Ensemble` and the weight average
(:mod:`losslab.ensembles.swa`) accept each member as a
:class:`~losslab.runs.checkpoint_set.LoadedCheckpoint`, a
:class:`~losslab.runs.checkpoint_set.CheckpointRef` (loaded on demand) or a plain state dict;
:func:`state_of` turns any of them into a state dict, :func:`checkpoint_name` names one in
messages, and :func:`normalize_weights` checks per-member weights and scales them to sum to 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from losslab.errors import InputError
from losslab.runs.checkpoint_set import CheckpointRef, LoadedCheckpoint

__all__ = ["state_of", "checkpoint_name", "normalize_weights"]


def state_of(item: object, index: int, device: torch.device | str | None = None
             ) -> Mapping[str, Tensor]:
    """A checkpoint (LoadedCheckpoint, CheckpointRef or state dict) as a state dict."""
    if isinstance(item, LoadedCheckpoint):
        return item.state_dict
    if isinstance(item, CheckpointRef):
        return item.load("cpu" if device is None else device).state_dict
    if isinstance(item, Mapping):
        bad = [k for k, v in item.items() if not isinstance(v, Tensor)]
        if bad:
            raise TypeError(f"checkpoint {index}: a state dict maps names to tensors, but "
                            f"{bad[:3]} are not tensors")
        return item
    raise TypeError(f"checkpoint {index}: expected a LoadedCheckpoint, a CheckpointRef or a state "
                    f"dict (a mapping of names to tensors), got {type(item).__name__}")


def checkpoint_name(item: object, index: int) -> str:
    """How messages name member ``index``: with its file when it came from one."""
    ref = item.ref if isinstance(item, LoadedCheckpoint) else item
    if isinstance(ref, CheckpointRef):
        return f"checkpoint {index} ({ref.path})"
    return f"checkpoint {index}"


def normalize_weights(weights: Sequence[float] | Tensor, count: int | None) -> Tensor:
    """Non-negative, finite weights (one per member) scaled to sum to 1, as float64 on the CPU."""
    if isinstance(weights, Tensor):
        w = weights.detach().to(device="cpu", dtype=torch.float64)
    else:
        w = torch.as_tensor(list(weights), dtype=torch.float64)
    if w.ndim != 1 or (count is not None and w.numel() != count):
        want = "a 1-d sequence" if count is None else f"{count} (one per member)"
        raise InputError(f"weights: expected {want}, got shape {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise InputError(f"weights must be finite, got {w.tolist()}")
    if bool((w < 0).any()):
        raise InputError(f"weights must be non-negative, got {w.tolist()}")
    total = w.sum()
    if total <= 0:
        raise InputError("weights sum to zero: at least one member needs a positive weight")
    return w / total
