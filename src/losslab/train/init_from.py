"""Start a run from a checkpoint of another run (the ``init`` config section).

Fast Geometric Ensembling (Garipov et al., "Loss Surfaces, Mode Connectivity, and Fast
Ensembling of DNNs", NeurIPS 2018) pre-trains with the independent networks' own schedule and
then cycles: their ``fge.py`` loads ``checkpoint-160.pt`` of a ``train.py`` run, weights and
optimizer state, and runs its cyclic schedule from there. ``init: {run: IND_RUN, epoch: 160}``
does the same: before the first step, the model's parameters and buffers become that
checkpoint's, and (``init.optimizer``) the optimizer's per-parameter state (SGD's momentum)
too. Everything else (lr, schedule, data order, epochs) is the new run's own; its epoch count
starts at 0, as ``fge.py``'s does. A resumed run does not re-apply it: its state on disk holds
what it has trained since.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from losslab.errors import InputError
from losslab.runs.checkpoint_set import CheckpointRef, CheckpointSet, resolve_checkpoint
from losslab.runs.config import ConfigError, InitConfig
from losslab.runs.optimizer_state import load_optimizer_state
from losslab.train.trainer import Trainer

__all__ = ["init_checkpoint", "start_from"]

log = logging.getLogger(__name__)


def init_checkpoint(init: InitConfig) -> CheckpointRef:
    """The checkpoint ``init`` names: a run's final model, its epoch ``init.epoch``, or a file."""
    path = Path(str(init.run))
    try:
        if init.epoch is None:
            return resolve_checkpoint(path)
        if not path.is_dir():
            raise ConfigError(f"init.epoch={init.epoch} needs init.run to be a run directory; "
                              f"{path} is not one")
        found = CheckpointSet.from_run(path, role="epoch", epochs=init.epoch)
    except FileNotFoundError as e:
        raise ConfigError(f"init.run: {e}") from None
    if not len(found):
        saved = CheckpointSet.from_run(path, role="epoch").epochs
        raise ConfigError(f"init: {path} has no checkpoint of epoch {init.epoch} (it saved "
                          f"epochs {saved}); list it in that run's checkpoints.epochs")
    return found[0]


def start_from(trainer: Trainer, init: InitConfig) -> dict[str, Any]:
    """Load ``init``'s checkpoint into the trainer's model (and optimizer); returns where it
    came from, for the run's records."""
    ref = init_checkpoint(init)
    state = ref.load(trainer.device)
    try:
        state.load_into(trainer.model)
    except (RuntimeError, InputError) as e:
        raise ConfigError(f"init: {ref.path} does not fit this run's model: "
                          f"{str(e).splitlines()[0]}") from None
    if init.optimizer:
        try:
            load_optimizer_state(ref.path, ref.meta, trainer.optimizer)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"init: {e}; or set init.optimizer: false") from None
    log.info("started from %s (run %s, epoch %d)", ref.path, ref.run_id, ref.epoch)
    return {"checkpoint": str(ref.path), "run_id": ref.run_id, "epoch": ref.epoch,
            "step": ref.step, "sha256": ref.meta.sha256, "optimizer": init.optimizer}
