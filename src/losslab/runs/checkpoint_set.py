"""The checkpoint set: the one data model every analysis takes.

A trajectory, the snapshots of an ensemble, FGE members, repulsion checkpoints, curve points
and merged models are all checkpoint sets: an ordered list of references to checkpoint files
(with the run, epoch and role each came from), loaded lazily as name-keyed parameter and
buffer dicts on any device.

Example::

    from losslab import CheckpointSet
    trajectory = CheckpointSet.from_run("runs/digits", role="epoch")
    members = CheckpointSet.from_runs(["runs/seed0", "runs/seed1"], role="final")
    for ckpt in members.load_all(device="cuda"):
        logits = torch.func.functional_call(model, {**ckpt.params, **ckpt.buffers}, x)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from losslab.errors import CheckpointCorruptError, InputError, MissingFileError
from losslab.params import ParamDict
from losslab.runs.checkpoints import (
    CheckpointMeta,
    load_checkpoint_tensors,
    read_meta,
    sidecar_path,
)
from losslab.runs.rundir import RunDir

__all__ = ["CheckpointRef", "LoadedCheckpoint", "CheckpointSet", "resolve_checkpoint",
           "check_compatible"]

OPTIMIZER_SUFFIX = ".optimizer.safetensors"  # a checkpoint's optimizer state, not a checkpoint


def check_compatible(model: nn.Module, params: Mapping[str, Tensor | Sequence[int]],
                     buffers: Mapping[str, Tensor | Sequence[int]], source: str | Path, *,
                     expects: str = "the model") -> None:
    """Refuse a checkpoint whose tensors are not exactly ``model.state_dict()``'s names and shapes.

    Every analysis pairs a checkpoint's tensors with a network rebuilt from a run's config and
    evaluates it through ``functional_call``, which substitutes tensors by name without looking
    at their shapes: the weights of a narrower network of the same family run through it and
    give numbers for a model that is not the one named. Values are tensors or shapes (from a
    file's header); ``source`` (the checkpoint file) and ``expects`` (which model) are named in
    the :class:`~losslab.errors.InputError`, with the first mismatching tensor and both shapes.
    """
    expected = model.state_dict(keep_vars=True)
    given = {**params, **buffers}
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    if missing or unexpected:
        parts = [f"{what} {names[:5]}" + (f" ({len(names)} in all)" if len(names) > 5 else "")
                 for what, names in (("lacks", missing), ("has unexpected", unexpected)) if names]
        raise InputError(f"checkpoint {source} does not fit {expects}: it "
                         f"{' and '.join(parts)}")
    for k, t in expected.items():
        value = given[k]
        shape = tuple(value.shape) if hasattr(value, "shape") else tuple(value)
        if shape != tuple(t.shape):
            raise InputError(f"checkpoint {source}: tensor {k} has shape {shape} but {expects} "
                             f"expects {tuple(t.shape)}")


def _sidecar_lost(weights: Path) -> CheckpointCorruptError | None:
    """The error for a weights file without its sidecar in a finished run, else None.

    The sidecar is written last, so while a run may still write, a weights file without one
    is an interrupted write and is ignored. A finished run wrote every sidecar, so a missing
    one was lost afterwards, and ignoring the weights would silently drop a member, an epoch
    or the final model from every analysis.
    """
    run = RunDir(weights.parent.parent)
    if not run.meta_path.exists() or run.read_meta().get("status") != "finished":
        return None
    return CheckpointCorruptError(f"checkpoint {weights} has no sidecar "
                                  f"{sidecar_path(weights).name}; the run finished, so the "
                                  "record was lost")


@dataclass(frozen=True)
class LoadedCheckpoint:
    """One checkpoint in memory: parameters and buffers by name, with where they came from."""

    params: ParamDict
    buffers: ParamDict
    ref: CheckpointRef

    @property
    def state_dict(self) -> ParamDict:
        """Parameters and buffers together, as ``nn.Module.load_state_dict`` takes them."""
        return {**self.params, **self.buffers}

    def load_into(self, model: nn.Module) -> nn.Module:
        """Copy the weights into ``model`` (strictly: every name and shape must match) and
        return it."""
        check_compatible(model, self.params, self.buffers, self.ref.path)
        model.load_state_dict(self.state_dict, strict=True)
        return model


@dataclass(frozen=True)
class CheckpointRef:
    """A checkpoint on disk, described by its sidecar; nothing is loaded until :meth:`load`."""

    path: Path
    meta: CheckpointMeta

    @property
    def run_id(self) -> str:
        return self.meta.run_id

    @property
    def epoch(self) -> int:
        return self.meta.epoch

    @property
    def step(self) -> int:
        return self.meta.step

    @property
    def role(self) -> str:
        return self.meta.role

    @classmethod
    def from_path(cls, path: str | Path) -> CheckpointRef:
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        if not path.exists():
            raise MissingFileError(f"no checkpoint at {path}")
        if not sidecar_path(path).exists() and (lost := _sidecar_lost(path)) is not None:
            raise lost
        return cls(path=path, meta=read_meta(path))

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each tensor's shape, read from the weights file's header (no tensor is loaded)."""
        try:
            with safe_open(self.path, framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointCorruptError(f"checkpoint {self.path} is unreadable: {e}") from e

    def load(self, device: torch.device | str = "cpu", *, verify: bool = True) -> LoadedCheckpoint:
        params, buffers = load_checkpoint_tensors(self.path, self.meta, device=device, verify=verify)
        return LoadedCheckpoint(params=params, buffers=buffers, ref=self)


def _as_set(values: int | str | Iterable[int] | Iterable[str] | None) -> set | None:
    if values is None:
        return None
    if isinstance(values, (int, str)):
        return {values}
    return set(values)


class CheckpointSet(Sequence[CheckpointRef]):
    """An ordered, lazily loaded collection of checkpoints from one or more runs."""

    def __init__(self, refs: Iterable[CheckpointRef]):
        self.refs: list[CheckpointRef] = list(refs)

    # construction ---------------------------------------------------------------------------
    @classmethod
    def from_paths(cls, paths: Iterable[str | Path]) -> CheckpointSet:
        """Checkpoints given by path (``x.safetensors``, or the name without suffix)."""
        return cls(CheckpointRef.from_path(p) for p in paths)

    @classmethod
    def from_run(cls, run_dir: str | Path, *, role: str | Iterable[str] | None = None,
                 epochs: int | Iterable[int] | None = None) -> CheckpointSet:
        """The complete checkpoints of one run directory, ordered by step, optionally filtered.

        A weights file without its sidecar is skipped while the run may still write it (an
        interrupted write); in a finished run it is an error (:class:`CheckpointCorruptError`).
        """
        directory = Path(run_dir) / "checkpoints"
        if not directory.is_dir():
            raise MissingFileError(f"{run_dir} is not a run directory: no checkpoints/ in it")
        refs = []
        for p in sorted(directory.glob("*.safetensors")):
            if p.name.endswith(OPTIMIZER_SUFFIX):
                continue  # checked through the sidecar of the checkpoint it belongs to
            if not sidecar_path(p).exists():
                if (lost := _sidecar_lost(p)) is not None:
                    raise lost
                continue  # written incompletely by a run that may still rewrite it
            refs.append(CheckpointRef(path=p, meta=read_meta(p)))
        refs.sort(key=lambda r: (r.step, r.epoch, r.role))
        return cls(refs).select(role=role, epochs=epochs)

    @classmethod
    def from_runs(cls, run_dirs: Iterable[str | Path], **filters) -> CheckpointSet:
        """The concatenation of :meth:`from_run` over several run directories."""
        refs: list[CheckpointRef] = []
        for d in run_dirs:
            refs.extend(cls.from_run(d, **filters))
        return cls(refs)

    # selection ------------------------------------------------------------------------------
    def select(self, *, role: str | Iterable[str] | None = None,
               epochs: int | Iterable[int] | None = None,
               run_id: str | Iterable[str] | None = None) -> CheckpointSet:
        """The subset with the given role(s), epoch(s) and run id(s); ``None`` keeps all."""
        roles, eps, runs = _as_set(role), _as_set(epochs), _as_set(run_id)
        return CheckpointSet(r for r in self.refs
                             if (roles is None or r.role in roles)
                             and (eps is None or r.epoch in eps)
                             and (runs is None or r.run_id in runs))

    def __add__(self, other: CheckpointSet) -> CheckpointSet:
        return CheckpointSet([*self.refs, *other.refs])

    # sequence protocol ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.refs)

    @overload
    def __getitem__(self, i: int) -> CheckpointRef: ...
    @overload
    def __getitem__(self, i: slice) -> CheckpointSet: ...
    def __getitem__(self, i):
        if isinstance(i, slice):
            return CheckpointSet(self.refs[i])
        return self.refs[i]

    def __repr__(self) -> str:
        items = ", ".join(f"{r.run_id}:{r.role}@{r.epoch}" for r in self.refs[:6])
        more = f", ... ({len(self)} in all)" if len(self) > 6 else ""
        return f"CheckpointSet([{items}{more}])"

    # loading --------------------------------------------------------------------------------
    def load(self, index: int, device: torch.device | str = "cpu") -> LoadedCheckpoint:
        return self.refs[index].load(device)

    def load_all(self, device: torch.device | str = "cpu") -> Iterator[LoadedCheckpoint]:
        """Load one checkpoint at a time, so a long trajectory never sits in memory whole."""
        for ref in self.refs:
            yield ref.load(device)

    @property
    def epochs(self) -> list[int]:
        return [r.epoch for r in self.refs]

    @property
    def roles(self) -> list[str]:
        return [r.role for r in self.refs]


def resolve_checkpoint(path: str | Path) -> CheckpointRef:
    """A run directory's final model, or the checkpoint file ``path`` (with or without
    ``.safetensors``): how commands and configs name one model."""
    if Path(path).is_dir():
        final = CheckpointSet.from_run(path, role="final")
        if not len(final):
            raise MissingFileError(f"{path} has no final checkpoint: the run has not finished")
        return final[0]
    return CheckpointRef.from_path(path)
