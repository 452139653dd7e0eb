"""Rebuild a finished run's pieces from its ``config.yaml``: its config, data set, network, loaders.

Every analysis that takes a checkpoint needs what made it: the ensemble analytics (members),
curves (their endpoints), the landscape and the study analyses. A checkpoint lives in
``RUN_DIR/checkpoints/``, so :func:`run_config_of` finds the run and validates its config;
:func:`dataset_of` loads the run's data set (once per process for every run that shares it),
:func:`template_model` builds an untrained network of the run's architecture to be filled with
checkpoint weights, and :func:`split_loader` gives the batches of one split in order,
normalized like training and never augmented.
"""

from __future__ import annotations

import json
from functools import lru_cache

import torch
from torch import nn

from losslab.data import DatasetSplits, DeviceLoader, load_dataset
from losslab.errors import InputError, MissingFileError
from losslab.models import create_model
from losslab.runs.checkpoint_set import CheckpointRef
from losslab.runs.config import TrainConfig, validate_config
from losslab.runs.rundir import RunDir

__all__ = ["run_config_of", "data_key", "dataset_of", "template_model", "split_loader"]


def run_config_of(ref: CheckpointRef) -> TrainConfig:
    """The config of the run a checkpoint came from (``RUN_DIR/checkpoints/NAME``)."""
    run = RunDir(ref.path.parent.parent)
    if not run.exists():
        raise MissingFileError(f"checkpoint {ref.path} is not inside a run directory, so its "
                                "model and data are unknown")
    return validate_config(run.read_config())


def data_key(config: TrainConfig) -> str:
    """What identifies a run's data set and splits: runs with equal keys share the same data."""
    d = config.data
    return json.dumps([d.name, d.root, d.val_size, d.split_seed, d.options], sort_keys=True)


@lru_cache(maxsize=4)
def _dataset(key: str) -> DatasetSplits:
    name, root, val_size, split_seed, options = json.loads(key)
    return load_dataset(name, root, val_size=int(val_size) if val_size >= 1 else val_size,
                        split_seed=split_seed, **options)


def dataset_of(config: TrainConfig) -> DatasetSplits:
    """The run's data set (loaded once per process for all runs that share it)."""
    return _dataset(data_key(config))


def template_model(config: TrainConfig) -> nn.Module:
    """An untrained network of the run's architecture, to be filled with checkpoint weights."""
    data = dataset_of(config)
    return create_model(config.model.name, num_classes=data.num_classes,
                        in_channels=data.in_channels, image_size=data.image_size,
                        **config.model.options)


def split_loader(data: DatasetSplits, split: str, batch_size: int,
                 device: torch.device | str | None) -> DeviceLoader:
    """Batches of one split in order, normalized like training, never augmented."""
    part = getattr(data, split, None) if split in ("train", "val", "test") else None
    if part is None:
        raise InputError(f"split {split!r} is not available (train, test, and val when the run "
                         "carved one)")
    return DeviceLoader(part, batch_size, shuffle=False, mean=data.mean, std=data.std,
                        device=device)
