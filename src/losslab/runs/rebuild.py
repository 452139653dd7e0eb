"""Rebuild a finished run's pieces from its ``config.yaml``: its config, data set, network, loaders.

Every analysis that takes a checkpoint needs what made it: the ensemble analytics (members),
curves (their endpoints), the landscape and the study analyses. A checkpoint lives in
``RUN_DIR/checkpoints/``, so :func:`run_config_of` finds the run and validates its config;
:func:`dataset_of` loads the run's data set (once per process for every run that shares it),
:func:`template_model` builds an untrained network of the run's architecture to be filled with
checkpoint weights, and :func:`split_loader` gives the batches of one split in order,
normalized like training and never augmented.

A checkpoint's tensors and a rebuilt network are paired only through :func:`check_fits_run`
(or :func:`model_for`, which loads both and checks them): a checkpoint file can sit in, or be
given with, a run whose config describes another network (another width, say), and the
functional evaluation every analysis uses would run it without a word.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from losslab.data import DatasetSplits, DeviceLoader, load_dataset
from losslab.errors import InputError, MissingFileError
from losslab.models import create_model
from losslab.runs.checkpoint_set import CheckpointRef, LoadedCheckpoint, check_compatible
from losslab.runs.config import ConfigError, TrainConfig, validate_config
from losslab.runs.rundir import RunDir

__all__ = ["stored_config", "run_config_of", "data_key", "dataset_of", "template_model", "split_loader",
           "config_path_of", "check_fits_run", "model_for"]


def config_path_of(ref: CheckpointRef) -> Path:
    """The ``config.yaml`` of the run a checkpoint sits in (``RUN_DIR/checkpoints/NAME``)."""
    return RunDir(ref.path.parent.parent).config_path


def stored_config(run: RunDir) -> TrainConfig:
    """A run's ``config.yaml``, validated; a config that does not validate (edited by hand, or
    written by another version) is a :class:`~losslab.errors.ConfigError` naming the file."""
    try:
        return validate_config(run.read_config())
    except ConfigError as e:
        raise ConfigError(f"{run.config_path}: {e}") from None


def run_config_of(ref: CheckpointRef) -> TrainConfig:
    """The config of the run a checkpoint came from (``RUN_DIR/checkpoints/NAME``)."""
    run = RunDir(ref.path.parent.parent)
    if not run.exists():
        raise MissingFileError(f"checkpoint {ref.path} is not inside a run directory, so its "
                                "model and data are unknown")
    return stored_config(run)


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


def check_fits_run(model: nn.Module, checkpoint: LoadedCheckpoint | CheckpointRef,
                   config_path: str | Path) -> None:
    """Refuse ``checkpoint`` unless its tensors have the names and shapes of ``model``, the
    network rebuilt from ``config_path`` (an :class:`~losslab.errors.InputError` naming the
    checkpoint file, the first mismatching tensor and both shapes). A reference is checked
    from its file's header, without loading it."""
    if isinstance(checkpoint, LoadedCheckpoint):
        params, buffers, path = checkpoint.params, checkpoint.buffers, checkpoint.ref.path
    else:
        params, buffers, path = checkpoint.shapes(), {}, checkpoint.path
    check_compatible(model, params, buffers, path,
                     expects=f"the run's model (config {config_path})")


def model_for(ref: CheckpointRef, device: torch.device | str = "cpu"
              ) -> tuple[LoadedCheckpoint, nn.Module, TrainConfig]:
    """``(the checkpoint loaded on device, its run's untrained network there, the run's config)``,
    the checkpoint checked to fit the network."""
    config = run_config_of(ref)
    model = template_model(config).to(device)
    loaded = ref.load(device)
    check_fits_run(model, loaded, config_path_of(ref))
    return loaded, model, config


def split_loader(data: DatasetSplits, split: str, batch_size: int,
                 device: torch.device | str | None) -> DeviceLoader:
    """Batches of one split in order, normalized like training, never augmented."""
    part = getattr(data, split, None) if split in ("train", "val", "test") else None
    if part is None:
        raise InputError(f"split {split!r} is not available (train, test, and val when the run "
                         "carved one)")
    return DeviceLoader(part, batch_size, shuffle=False, mean=data.mean, std=data.std,
                        device=device)
