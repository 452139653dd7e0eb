"""Checkpoint files: safetensors weights plus a JSON sidecar, verified on load.

A checkpoint ``NAME`` in a directory is two files:

* ``NAME.safetensors``: the model's parameters and buffers under their ``state_dict`` names
  (so ``model.load_state_dict(safetensors.torch.load_file(path))`` works for any user);
* ``NAME.json``: which names are parameters and which are buffers, the run id, epoch, step,
  role (``epoch``, ``best``, ``final``; later capabilities add ``snapshot``, ``fge``,
  ``shadow``, ...), any extra metadata, and the SHA-256 of the weights file.

The sidecar is written last, so a checkpoint without one is incomplete and is ignored while
its run may still write it (in a finished run it is damage: see
:meth:`~losslab.runs.checkpoint_set.CheckpointSet.from_run`); a weights file whose hash does
not match its sidecar, or a sidecar that records no hash, is reported as corrupt.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from losslab.errors import CheckpointCorruptError, CorruptFileError, InputError, MissingFileError
from losslab.params import ParamDict
from losslab.runs.atomic import atomic_write, atomic_write_json

__all__ = ["CheckpointCorruptError", "CheckpointMeta", "save_checkpoint", "save_model_checkpoint",
           "read_meta", "load_checkpoint_tensors", "file_sha256"]

FORMAT = "losslab-checkpoint-v1"


@dataclass
class CheckpointMeta:
    """What the sidecar records about one checkpoint."""

    run_id: str
    epoch: int
    step: int
    role: str
    parameters: list[str]
    buffers: list[str]
    sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "epoch": self.epoch, "step": self.step, "role": self.role,
                "parameters": self.parameters, "buffers": self.buffers, "sha256": self.sha256,
                "extra": self.extra, "format": FORMAT}

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str | Path | None = None) -> CheckpointMeta:
        """The record of a sidecar (``source``: its path, for the messages).

        Every sidecar losslab writes records the SHA-256 of its weights; one without it (an
        edited or damaged sidecar) would load weights that nothing verifies, so it is refused
        like a hash mismatch rather than read as "nothing to check".
        """
        where = f"checkpoint sidecar {source}" if source is not None else "a checkpoint sidecar"
        if not isinstance(d, dict):
            raise CheckpointCorruptError(f"{where} holds {type(d).__name__}, not the JSON object "
                                         "of a checkpoint record")
        fmt = d.get("format", FORMAT)
        if fmt != FORMAT:
            raise CheckpointCorruptError(f"{where} has format {fmt!r}; expected {FORMAT!r}")
        sha256 = d.get("sha256")
        if not isinstance(sha256, str) or not sha256:
            raise CheckpointCorruptError(f"{where} records no SHA-256 of its weights, so they "
                                         "cannot be verified (every checkpoint losslab writes "
                                         "has one)")
        return cls(run_id=d["run_id"], epoch=int(d["epoch"]), step=int(d["step"]), role=d["role"],
                   parameters=list(d["parameters"]), buffers=list(d["buffers"]),
                   sha256=sha256, extra=dict(d.get("extra", {})))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _contiguous_cpu(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    # safetensors refuses shared or strided storage; a fresh contiguous copy is always valid.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def save_checkpoint(directory: str | Path, name: str, params: ParamDict, buffers: ParamDict,
                    *, run_id: str, epoch: int, step: int, role: str,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``NAME.safetensors`` then its sidecar ``NAME.json``, each atomically.

    Returns the path of the weights file.
    """
    directory = Path(directory)
    overlap = set(params) & set(buffers)
    if overlap:
        raise InputError(f"names are both parameters and buffers: {sorted(overlap)[:5]}")
    tensors = _contiguous_cpu({**params, **buffers})
    weights = directory / f"{name}.safetensors"
    atomic_write(weights, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    meta = CheckpointMeta(run_id=run_id, epoch=epoch, step=step, role=role,
                          parameters=list(params), buffers=list(buffers),
                          sha256=file_sha256(weights), extra=dict(extra or {}))
    atomic_write_json(directory / f"{name}.json", meta.to_json())
    return weights


def save_model_checkpoint(directory: str | Path, name: str, model: nn.Module, **kw: Any) -> Path:
    """Checkpoint a module: all its parameters (trainable or not) and its persistent buffers."""
    state = model.state_dict()
    param_names = {n for n, _ in model.named_parameters()}
    params = {k: v for k, v in state.items() if k in param_names}
    buffers = {k: v for k, v in state.items() if k not in param_names}
    return save_checkpoint(directory, name, params, buffers, **kw)


def sidecar_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def read_meta(weights: str | Path) -> CheckpointMeta:
    """The sidecar of a weights file; a missing or unreadable sidecar is an error that names it."""
    from losslab.runs.readers import read_json

    side = sidecar_path(weights)
    try:
        record = read_json(side, what="a checkpoint sidecar (a JSON object)")
    except MissingFileError:
        raise MissingFileError(f"checkpoint {weights} has no sidecar {side.name}: "
                                "it was not completely written") from None
    except CorruptFileError as e:  # binary or broken JSON: the reader's message names the file
        raise CheckpointCorruptError(f"checkpoint sidecar {e}") from None
    try:
        return CheckpointMeta.from_json(record, source=side)
    except KeyError as e:
        raise CheckpointCorruptError(f"checkpoint sidecar {side} lacks the field {e}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointCorruptError(f"checkpoint sidecar {side} is unreadable: {e}") from e


def load_checkpoint_tensors(weights: str | Path, meta: CheckpointMeta, *,
                            device: torch.device | str = "cpu",
                            verify: bool = True) -> tuple[ParamDict, ParamDict]:
    """Load ``(params, buffers)``; with ``verify`` the file's hash must match the sidecar."""
    weights = Path(weights)
    if verify and not meta.sha256:
        raise CheckpointCorruptError(f"checkpoint sidecar {sidecar_path(weights)} records no "
                                     "SHA-256 of its weights, so they cannot be verified")
    if verify and file_sha256(weights) != meta.sha256:
        raise CheckpointCorruptError(
            f"checkpoint {weights} is corrupt: its SHA-256 does not match the one recorded in "
            f"{sidecar_path(weights).name} when it was written")
    try:
        tensors = load_file(weights, device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointCorruptError(f"checkpoint {weights} is unreadable: {e}") from e
    missing = [k for k in (*meta.parameters, *meta.buffers) if k not in tensors]
    if missing:
        raise CheckpointCorruptError(f"checkpoint {weights} lacks tensors {missing[:5]}")
    return ({k: tensors[k] for k in meta.parameters}, {k: tensors[k] for k in meta.buffers})
