"""An optimizer's per-parameter state beside a checkpoint, so another run can start warm.

Garipov et al.'s FGE (their ``fge.py``) starts from epoch 160 of an independent run with the
weights *and* the optimizer state of that run (SGD's momentum buffers). A checkpoint ``NAME``
then has a third file, ``NAME.optimizer.safetensors``: the tensors of
``optimizer.state_dict()["state"]`` under ``"<param index>.<key>"``, with the optimizer's class
and the non-tensor entries in the checkpoint's sidecar (``extra["optimizer"]``), and the file's
SHA-256 there too: it is written before the sidecar, so a checkpoint whose sidecar exists has
a complete optimizer file, and a changed one is reported as corrupt.

Only the per-parameter state is carried. Hyper-parameters (lr, momentum, weight decay) are
the new run's own; its schedule sets the lr from its first step, as ``fge.py`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from losslab.errors import InputError, MissingFileError
from losslab.runs.atomic import atomic_write
from losslab.runs.checkpoints import CheckpointCorruptError, CheckpointMeta, file_sha256

__all__ = ["optimizer_state_path", "save_optimizer_state", "load_optimizer_state"]


def optimizer_state_path(weights: str | Path) -> Path:
    """``NAME.optimizer.safetensors`` beside the weights file ``NAME.safetensors``."""
    weights = Path(weights)
    return weights.with_name(weights.stem + ".optimizer.safetensors")


def save_optimizer_state(weights: str | Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Write the optimizer file of the checkpoint ``weights``; return what its sidecar records."""
    tensors, scalars = {}, {}
    for index, entries in optimizer.state_dict()["state"].items():
        for key, value in entries.items():
            name = f"{index}.{key}"
            if isinstance(value, torch.Tensor):
                tensors[name] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars[name] = value
    path = optimizer_state_path(weights)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    return {"class": type(optimizer).__name__, "scalars": scalars, "sha256": file_sha256(path)}


def load_optimizer_state(weights: str | Path, meta: CheckpointMeta,
                         optimizer: torch.optim.Optimizer) -> None:
    """Put the checkpoint's per-parameter optimizer state into ``optimizer`` (same class, same
    parameter order and shapes), keeping ``optimizer``'s own hyper-parameters."""
    recorded = meta.extra.get("optimizer")
    path = optimizer_state_path(weights)
    if recorded is None or not path.exists():
        raise MissingFileError(f"checkpoint {weights} has no optimizer state (the run that "
                                "wrote it did not set checkpoints.optimizer: true)")
    if recorded["class"] != type(optimizer).__name__:
        raise InputError(f"checkpoint {weights} holds {recorded['class']} state; this run's "
                         f"optimizer is {type(optimizer).__name__}")
    if file_sha256(path) != recorded["sha256"]:
        raise CheckpointCorruptError(f"optimizer state {path} is corrupt: its SHA-256 does not "
                                     "match the one recorded in the checkpoint's sidecar")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointCorruptError(f"optimizer state {path} is unreadable: {e}") from e
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *recorded["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    own = optimizer.state_dict()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, entries in state.items():
        if index >= len(params):
            raise InputError(f"checkpoint {weights}: optimizer state for parameter {index}, but "
                             f"this run's optimizer has {len(params)} parameters")
        for key, value in entries.items():
            if isinstance(value, torch.Tensor) and value.ndim and value.shape != params[index].shape:
                raise InputError(f"checkpoint {weights}: optimizer state {index}.{key} has shape "
                                 f"{tuple(value.shape)}, parameter {index} has "
                                 f"{tuple(params[index].shape)}")
    optimizer.load_state_dict({"state": state, "param_groups": own["param_groups"]})
