"""From checkpoints to member predictions: each member's network and data rebuilt from its run.

A checkpoint lives in ``RUN_DIR/checkpoints/``; the run's ``config.yaml`` says which model and
data set made it (rebuilt by :mod:`losslab.runs.rebuild`). Members are grouped by architecture
(model name, options and input shape): a group shares one template module and is evaluated in
one vectorized call (:class:`~losslab.ensembles.predict.Ensemble`). Members from different data sets (a different
test split or classes) cannot form an ensemble and are refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from losslab.errors import InputError, MissingFileError
from losslab.params import ParamDict
from losslab.runs.checkpoint_set import CheckpointRef, CheckpointSet, LoadedCheckpoint
from losslab.runs.config import TrainConfig
from losslab.runs.device import resolve_device
from losslab.runs.rebuild import (
    check_fits_run,
    config_path_of,
    data_key,
    dataset_of,
    run_config_of,
    split_loader,
    template_model,
)

__all__ = ["MemberPredictions", "collect_checkpoints", "distinct_checkpoints", "predict_members"]


@dataclass
class MemberPredictions:
    """Every member's logits on one split, the labels, and (per architecture) the weights."""

    names: list[str]              # "run_id:role@epoch" (or the file name) per member
    logits: Tensor                # (M, N, C) float64, on the CPU
    labels: Tensor                # (N,)
    params: list[ParamDict]       # each member's trainable parameters (for weight distances)
    architectures: list[str]      # the architecture key of each member
    split: str

    @property
    def same_architecture(self) -> bool:
        return len(set(self.architectures)) == 1


def _arch_key(config: TrainConfig) -> str:
    """Members with equal keys share an architecture and data, so one template serves them."""
    return json.dumps([config.model.name, config.model.options, data_key(config)], sort_keys=True)


def collect_checkpoints(paths: Sequence[str | Path], role: str | None = None) -> CheckpointSet:
    """Checkpoint files, and run directories (their ``role`` checkpoints, default ``final``).

    A finished run's checkpoint whose sidecar is gone is an error, not a smaller ensemble
    (:meth:`CheckpointSet.from_run <losslab.runs.checkpoint_set.CheckpointSet.from_run>`)."""
    refs: list[CheckpointRef] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = CheckpointSet.from_run(p, role=role or "final")
            if not len(found):
                raise MissingFileError(f"run {p} has no checkpoints with role {role or 'final'!r}")
            refs.extend(found)
        else:
            refs.extend(CheckpointSet.from_paths([p]))
    return CheckpointSet(refs)


def distinct_checkpoints(checkpoints: CheckpointSet) -> tuple[CheckpointSet, list[str]]:
    """Each set of weights once, in order, and a note for each duplicate left out.

    A snapshot saved after a run's last iteration and the run's final model are the same
    weights (a snapshot ensemble whose last cycle ends with the run would count it twice, and
    an average of probabilities would weigh it double). Two checkpoints are the same when their
    weights files have the same SHA-256 (same tensors, same bytes; every sidecar records it).
    The first is kept.
    """
    kept: list[CheckpointRef] = []
    seen: dict[str, CheckpointRef] = {}
    dropped: list[str] = []
    for ref in checkpoints:
        key = ref.meta.sha256
        if key in seen:
            dropped.append(f"{_name(ref)} = {_name(seen[key])}")
            continue
        seen[key] = ref
        kept.append(ref)
    return CheckpointSet(kept), dropped


def _name(ref: CheckpointRef) -> str:
    return f"{ref.run_id}:{ref.role}@{ref.epoch}"


@torch.no_grad()
def predict_members(checkpoints: CheckpointSet, *, split: str = "test",
                    device: torch.device | str | None = None,
                    batch_size: int = 1024) -> MemberPredictions:
    """Every member's logits on ``split`` ("test", "val" or "train"), in checkpoint order."""
    from losslab.ensembles.predict import Ensemble

    if not len(checkpoints):
        raise InputError("an ensemble needs at least one member")
    device = resolve_device(device)
    configs = [run_config_of(ref) for ref in checkpoints]
    data_keys = {data_key(c) for c in configs}
    if len(data_keys) > 1:
        raise InputError("members were trained on different data sets or splits, so their "
                         f"predictions cannot be compared: {sorted(data_keys)}")
    loader = split_loader(dataset_of(configs[0]), split, batch_size, device)
    arch_keys = [_arch_key(c) for c in configs]
    logits: list[Tensor | None] = [None] * len(checkpoints)
    params: list[ParamDict] = [{}] * len(checkpoints)
    for key in dict.fromkeys(arch_keys):  # one vectorized ensemble per architecture
        index = [i for i, k in enumerate(arch_keys) if k == key]
        loaded: list[LoadedCheckpoint] = [checkpoints[i].load(device) for i in index]
        template = template_model(configs[index[0]]).to(device)
        for i, member in zip(index, loaded, strict=True):  # the group shares its config's network
            check_fits_run(template, member, config_path_of(checkpoints[i]))
        ensemble = Ensemble.from_checkpoints(template, loaded).to(device)
        outs = [ensemble.member_logits(x).double().cpu() for x, _ in loader]
        group = torch.cat(outs, dim=1)
        for j, i in enumerate(index):
            logits[i] = group[j]
            params[i] = {k: v.detach().double().cpu() for k, v in loaded[j].params.items()}
    labels = torch.cat([y.cpu() for _, y in loader])
    return MemberPredictions(names=[_name(r) for r in checkpoints], logits=torch.stack(logits),
                             labels=labels, params=params, architectures=arch_keys, split=split)
