"""Landscape results on disk: arrays in ``.npz`` plus a readable JSON sidecar, atomically.

A result ``PATH`` is two files:

* ``PATH.npz``: the coordinates (``alphas`` for a line, ``x`` and ``y`` for a surface), the
  values (``loss``, ``acc``, ``loss_se``; a partial surface also ``done``) and the metadata as
  a JSON string (``meta_json``), so the one file is self-consistent and loads without pickle;
* ``PATH.json``: the same metadata for people (axis convention, BN policy, directions'
  metadata, data), written after the arrays.

Both are written with :func:`losslab.runs.atomic.atomic_write`, so an interrupted write leaves
the previous version. Surfaces follow ``indexing="xy"`` (Li et al. 2018's plots, and
``numpy.meshgrid``'s default): ``loss[i, j]`` is at ``(x[j], y[i])``, rows are y. The string
:data:`AXIS_CONVENTION` is stored in every surface, so no reader has to guess (the reference tool leaves it unsaid).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from losslab.errors import CorruptFileError, InputError
from losslab.runs.atomic import atomic_write, atomic_write_json

__all__ = ["AXIS_CONVENTION", "LineResult", "SurfaceResult", "save_grid", "load_grid",
           "save_result", "load_result", "grid_paths", "grid_fingerprint", "batches_digest"]

AXIS_CONVENTION = "loss[i, j] is at (x[j], y[i])"
_FORMAT = "losslab-landscape-v1"


def batches_digest(named_batches: Iterable[tuple[str, Iterable[Any]]]) -> str:
    """The SHA-256 of named sets of batches (every tensor's dtype, size and bytes)."""
    h = hashlib.sha256()
    for name, batches in named_batches:
        h.update(name.encode())
        for batch in batches:
            for t in [batch] if isinstance(batch, Tensor) else batch:
                t = t.detach().to("cpu").contiguous().reshape(-1)
                h.update(f"{t.dtype}{t.numel()}".encode() + t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def grid_fingerprint(x: Tensor, y: Tensor, options: str, tensors: Iterable[dict[str, Tensor]],
                     data: str = "") -> str:
    """What a stored partial grid must match to be continued: its axes, the options that change
    its values (``options``, a string), the centre, buffers and directions (``tensors``) and
    the data's digest. A different map at the same path is refused rather than mixed in."""
    h = hashlib.sha256()
    h.update(x.numpy().tobytes() + y.numpy().tobytes() + f"{options}|{data}".encode())
    for d in tensors:
        for k in sorted(d):
            t = d[k].detach().to("cpu").contiguous().reshape(-1)
            h.update(k.encode() + str(t.dtype).encode() + t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class LineResult:
    """Loss and accuracy along a line θ(α); ``loss_se`` is the standard error of each mean."""

    alphas: Tensor
    loss: Tensor
    acc: Tensor
    metadata: dict[str, Any] = field(default_factory=dict)
    loss_se: Tensor | None = None


@dataclass
class SurfaceResult:
    """Loss and accuracy on a grid: ``loss[i, j]`` (shape (ny, nx)) is at ``(x[j], y[i])``."""

    x: Tensor
    y: Tensor
    loss: Tensor
    acc: Tensor
    metadata: dict[str, Any] = field(default_factory=dict)
    loss_se: Tensor | None = None

    @property
    def axis_convention(self) -> str:
        return self.metadata.get("axis_convention", AXIS_CONVENTION)

    def value_at(self, x: float, y: float) -> float:
        """The loss at the grid point ``(x, y)`` (exact coordinates), by the stored convention."""
        j = int(torch.nonzero(self.x == x).flatten()[0])
        i = int(torch.nonzero(self.y == y).flatten()[0])
        return float(self.loss[i, j])


def grid_paths(path: str | Path) -> tuple[Path, Path]:
    """``(PATH.npz, PATH.json)`` for ``path`` with or without the ``.npz`` suffix."""
    p = Path(path)
    arrays = p if p.suffix == ".npz" else p.with_name(p.name + ".npz")
    return arrays, arrays.with_suffix(".json")


def _to_numpy(t: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(t, Tensor):
        t = t.detach().to("cpu")
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy()
    return np.asarray(t)


def save_grid(path: str | Path, arrays: dict[str, Tensor | np.ndarray],
              meta: dict[str, Any]) -> Path:
    """Write ``arrays`` and ``meta`` to ``PATH.npz`` then the sidecar ``PATH.json``."""
    npz, side = grid_paths(path)
    meta = {**meta, "format": _FORMAT}
    data = {k: _to_numpy(v) for k, v in arrays.items()}
    data["meta_json"] = np.array(json.dumps(meta, sort_keys=True, default=str))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez(f, **data)

    atomic_write(npz, write)
    atomic_write_json(side, meta)
    return npz


def load_grid(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(arrays as CPU tensors, metadata)`` from ``PATH.npz``."""
    npz, _ = grid_paths(path)
    try:
        with np.load(npz, allow_pickle=False) as f:
            meta = json.loads(str(f["meta_json"]))
            arrays = {k: torch.from_numpy(f[k].copy()) for k in f.files if k != "meta_json"}
    except FileNotFoundError:
        raise
    except Exception as e:  # a damaged zip, a missing member, bad JSON: all "not readable"
        raise CorruptFileError(f"{npz} is not a readable losslab landscape file "
                               f"(.npz arrays with their metadata): {type(e).__name__}: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise InputError(f"{npz} is not a losslab landscape file")
    return arrays, meta


def save_result(path: str | Path, result: LineResult | SurfaceResult) -> Path:
    """Save a line or surface result (coordinates, values, metadata incl. axis convention)."""
    if isinstance(result, SurfaceResult):
        arrays = {"x": result.x, "y": result.y, "loss": result.loss, "acc": result.acc}
        meta = {"axis_convention": AXIS_CONVENTION, **result.metadata, "kind": "surface"}
    elif isinstance(result, LineResult):
        arrays = {"alphas": result.alphas, "loss": result.loss, "acc": result.acc}
        meta = {**result.metadata, "kind": "line"}
    else:
        raise TypeError(f"expected a LineResult or SurfaceResult, got {type(result)}")
    if result.loss_se is not None:
        arrays["loss_se"] = result.loss_se
    return save_grid(path, arrays, {**meta, "complete": True})


def load_result(path: str | Path) -> LineResult | SurfaceResult:
    """Read a result written by :func:`save_result` (or a finished resumable surface)."""
    arrays, meta = load_grid(path)
    if not meta.get("complete", False):
        raise InputError(f"{path} holds an unfinished surface; run surface(..., path=) again "
                         "to complete it")
    se = arrays.get("loss_se")
    if meta.get("kind") == "surface":
        if meta.get("axis_convention") != AXIS_CONVENTION:
            raise InputError(f"{path}: unknown axis convention {meta.get('axis_convention')!r}")
        return SurfaceResult(arrays["x"], arrays["y"], arrays["loss"], arrays["acc"], meta, se)
    if meta.get("kind") == "line":
        return LineResult(arrays["alphas"], arrays["loss"], arrays["acc"], meta, se)
    raise InputError(f"{path}: unknown result kind {meta.get('kind')!r}")

