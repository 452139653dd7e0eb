"""A run from a config: build data, model, optimizer, schedule and trainer; train; resume.

This is what ``losslab train`` and ``losslab resume`` call, and what studies call per run::

    from losslab.train.run import train_run
    from losslab.runs.config import load_config
    run_dir = train_run(load_config(overrides=["epochs=5"]), "runs/quick")
"""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from losslab.data import Augment, DeviceLoader, load_dataset, make_loaders
from losslab.ensembles.collect import MemberCollector, member_role
from losslab.errors import CheckpointCorruptError, MissingFileError
from losslab.models import create_model
from losslab.models.registry import check_inputs
from losslab.runs.checkpoint_set import CheckpointSet, LoadedCheckpoint
from losslab.runs.config import ConfigError, TrainConfig, config_to_dict, validate_config
from losslab.runs.device import resolve_device
from losslab.runs.lock import DirectoryLock
from losslab.runs.metrics import MetricsLog, read_metrics
from losslab.runs.optimizer_state import load_optimizer_state
from losslab.runs.rebuild import stored_config
from losslab.runs.rundir import RunDir
from losslab.runs.state_file import newest_good_state, previous_state_path, read_state
from losslab.train.annealing_log import AnnealingLog
from losslab.train.callbacks import Callback
from losslab.train.checkpointing import CheckpointPolicy
from losslab.train.init_from import start_from
from losslab.train.optim import build_optimizer
from losslab.train.repulsion_callback import RepulsionCallback
from losslab.train.restarts import ColdRestart
from losslab.train.schedules import build_schedule
from losslab.train.trainer import Trainer

__all__ = ["seed_everything", "build_trainer", "train_run", "resume_run"]

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed every global generator; losslab's own randomness takes explicit seeds as well."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _val_size(v: float) -> float | int:
    return int(v) if v >= 1 else v


@torch.no_grad()
def _scale_init(model: torch.nn.Module, factor: float) -> None:
    """Scale the initial weights (not biases, not BatchNorm), widening the init distribution."""
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)):
            module.weight.mul_(factor)


def _new_model(config: TrainConfig, splits) -> torch.nn.Module:
    """A freshly initialized network of the config's architecture for ``splits`` (on the CPU),
    its initial weights scaled by ``model.init_scale``."""
    model = create_model(config.model.name, num_classes=splits.num_classes,
                         in_channels=splits.in_channels, image_size=splits.image_size,
                         **config.model.options)
    if config.model.init_scale != 1.0:
        _scale_init(model, config.model.init_scale)
    return model


class _RunDirGuard(Callback):
    """Stops a run whose directory was removed or moved while it trained, before the epoch's
    records are written: they would otherwise recreate a directory that holds no config and
    append epochs to whatever run is put there next."""

    def __init__(self, run: RunDir):
        self.run = run

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        if not self.run.config_path.exists():
            raise MissingFileError(f"run directory {self.run.path} was removed or moved while it "
                                   f"trained (epoch {epoch}); stopped without writing to it")


def _cold_restart(config: TrainConfig, splits, device: torch.device) -> ColdRestart:
    """Restarts re-create the model with seeds derived from the run's, without touching the
    global RNG; the estimate uses shuffled, unaugmented training batches of its own."""
    r, d = config.restarts, config.data

    def reinit(k: int) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + 1_000_003 * (k + 1))
            return _new_model(config, splits)

    batches = DeviceLoader(splits.train, d.batch_size, shuffle=True, mean=splits.mean,
                           std=splits.std, seed=config.seed + 17, device=device)
    scale = 1.0 / r.thesis_batch_size if r.thesis_loss_scale else 1.0  # its 512, not ours
    return ColdRestart(r.eps, reinit, n_batches=r.n_batches, batches=batches, loss_scale=scale)


def build_trainer(config: TrainConfig, run: RunDir | None = None,
                  callbacks: Sequence[Callback] = (), *, start_epoch: int = 0) -> Trainer:
    """Everything ``config`` describes, assembled into a :class:`Trainer` (not yet run)."""
    device = resolve_device(config.device)
    seed_everything(config.seed)
    d = config.data
    splits = load_dataset(d.name, d.root, download=d.download, val_size=_val_size(d.val_size),
                          split_seed=d.split_seed, **d.options)
    check_inputs(config.model.name, splits.train.x.ndim, repr(d.name))  # images vs signals
    model = _new_model(config, splits).to(device)
    optimizer_config, all_callbacks = config.optimizer, list(callbacks)
    if config.curve.enabled:  # the run trains a curve's bends between two trained models
        from losslab.curves.training import build_curve

        model, optimizer_config, curve_callbacks = build_curve(config, model, device)
        all_callbacks.extend(curve_callbacks)
    train_loader, eval_loaders = make_loaders(
        splits, batch_size=d.batch_size, eval_batch_size=d.eval_batch_size,
        augment=Augment(crop_padding=d.augment.crop_padding, flip=d.augment.flip),
        seed=config.seed, device=device)
    optimizer = build_optimizer(optimizer_config, model, seed=config.seed, batch_size=d.batch_size)
    annealing = config.optimizer.name in ("ssa", "sgdsa")
    scheduler = None if annealing else build_schedule(
        config.schedule.name, optimizer, steps_per_epoch=len(train_loader), epochs=config.epochs,
        **config.schedule.params)
    if annealing:
        all_callbacks.append(AnnealingLog(run.path if run is not None else None))
    if config.log.sharpness_every:
        from itertools import islice

        from losslab.landscape.sharpness import SharpnessTracker

        fixed = DeviceLoader(splits.train, d.batch_size, shuffle=False, mean=splits.mean,
                             std=splits.std, device=device)
        all_callbacks.append(SharpnessTracker(list(islice(fixed, config.log.sharpness_batches)),
                                              every=config.log.sharpness_every,
                                              seed=config.seed,
                                              operators=config.log.sharpness_operators))
    if config.restarts.eps is not None:
        all_callbacks.append(_cold_restart(config, splits, device))
    if config.repulsion.checkpoint_epochs(config.epochs):
        all_callbacks.append(RepulsionCallback(
            config.repulsion, config.epochs, directory=run.checkpoints if run else None,
            run_id=run.run_id if run else "run"))
    metrics_log = state_path = None
    if run is not None:
        c = config.checkpoints
        all_callbacks.insert(0, _RunDirGuard(run))  # first: before anything is written
        all_callbacks.insert(1, CheckpointPolicy(run.checkpoints, run_id=run.run_id, every=c.every,
                                                 epochs=c.epochs, keep_best=c.keep_best,
                                                 save_initial=c.save_initial,
                                                 optimizer_state=c.optimizer))
        if c.members and member_role(scheduler) is not None:
            all_callbacks.append(MemberCollector(run.checkpoints, run_id=run.run_id,
                                                 scheduler=scheduler))
        metrics_log = MetricsLog(run.path, tensorboard=config.log.tensorboard, start_epoch=start_epoch)
        state_path = run.state_path
    return Trainer(model, optimizer, train_loader, epochs=config.epochs, eval_loaders=eval_loaders,
                   scheduler=scheduler, callbacks=all_callbacks, device=device,
                   metrics_log=metrics_log, state_path=state_path, grad_norm=config.log.grad_norm,
                   progress=config.log.progress, objective=config.optimizer.annealing.objective)


def _fit(trainer: Trainer, run: RunDir) -> None:
    try:
        trainer.fit()
    except BaseException as e:
        # KeyboardInterrupt and kills leave status "interrupted": the state on disk resumes.
        status = "failed" if isinstance(e, Exception) else "interrupted"
        if run.exists():  # a directory removed under the run is not recreated for its status
            run.finish(status=status, error=f"{type(e).__name__}: {e}")
        raise
    finally:
        if trainer.metrics_log is not None:
            trainer.metrics_log.close()
    run.finish()


def train_run(config: TrainConfig | dict[str, Any], out: str | Path,
              callbacks: Sequence[Callback] = (), *, init_run: str | Path | None = None) -> Path:
    """Train a new run into the directory ``out`` and return it.

    ``init_run`` is the run directory ``config.init.run`` means, where the config names it
    otherwise (a study's variant name); the config is stored as given. The directory is locked
    while the run trains (:class:`~losslab.runs.lock.DirectoryLock`): a second process asking
    for it is refused.
    """
    if not isinstance(config, TrainConfig):
        config = validate_config(config)
    run = RunDir(out)
    before = set(run.path.iterdir()) if run.path.is_dir() else None
    with DirectoryLock(run.path, what="run"):
        if run.exists():
            raise ConfigError(f"{run.path} already holds a run; continue it with "
                              f"resume_run({str(run.path)!r}) (`losslab resume {run.path}`), "
                              "or train into another directory")
        run.create(config_to_dict(config))
        try:
            trainer = build_trainer(config, run, callbacks)
            _start(trainer, run, config, init_run)
        except BaseException:
            # Nothing was trained: remove what this call created, so a corrected retry can
            # start, and nothing that was in the directory before.
            if before is None:
                shutil.rmtree(run.path, ignore_errors=True)
            else:
                for entry in set(run.path.iterdir()) - before:  # the lock file too, if new
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            raise
        run.start(seed=config.seed, device=str(trainer.device), resumed=False)
        _fit(trainer, run)
    return run.path


def _start(trainer: Trainer, run: RunDir, config: TrainConfig,
           init_run: str | Path | None) -> None:
    """Apply ``config.init`` to a run that has not trained a step, and record it."""
    if config.init.enabled:
        init = config.init if init_run is None else config.init.model_copy(
            update={"run": str(init_run)})
        run.update_meta(init=start_from(trainer, init))


def resume_run(run_dir: str | Path, callbacks: Sequence[Callback] = (), *,
               init_run: str | Path | None = None, from_checkpoint: bool = False) -> Path:
    """Continue a killed or interrupted run from its last finished epoch.

    With the same code and device the continued run reaches exactly the numbers an
    uninterrupted run would have (on CPU, bit for bit). A corrupt training state is an error
    that names the file; ``from_checkpoint=True`` then continues from the newest state that
    reads back intact, the last epoch's or the one before it (``state/trainer.prev.pt``),
    replaying the epochs after it exactly; where neither is intact, it restarts from the newest
    intact epoch (or best) checkpoint, as near as its weights allow (see ``_restart_from``).
    The run directory is locked while it trains.
    """
    run = RunDir(run_dir)
    if not run.exists():
        raise MissingFileError(f"{run.path} is not a run directory (no config.yaml)")
    with DirectoryLock(run.path, what="run"):
        _remove_stale_temporaries(run)
        config = stored_config(run)
        state = _resume_state(run, from_checkpoint)
        weights = _restart_checkpoint(run) if from_checkpoint and state is _NO_GOOD_STATE else None
        state = None if state is _NO_GOOD_STATE else state
        start_epoch = (int(state["epoch"]) if state is not None
                       else weights.ref.epoch if weights is not None else 0)
        trainer = build_trainer(config, run, callbacks, start_epoch=start_epoch)
        if state is not None:
            trainer.load_state_dict(state)
        elif weights is not None:
            _restart_from(trainer, weights, run, config)
        else:  # killed before its first epoch ended: it starts over, from its init if it has one
            _start(trainer, run, config, init_run)
        assert trainer.metrics_log is not None
        trainer.metrics_log.truncate(start_epoch)
        if trainer.epoch >= trainer.epochs:
            log.info("%s is already complete (%d epochs)", run.path, trainer.epoch)
            trainer.metrics_log.close()
            run.finish()
            return run.path
        run.start(seed=config.seed, device=str(trainer.device), resumed=True)
        _fit(trainer, run)
    return run.path


_NO_GOOD_STATE: dict[str, Any] = {}  # from_checkpoint found no intact state: restart from weights


def _resume_state(run: RunDir, from_checkpoint: bool) -> dict[str, Any] | None:
    """The training state a resume starts from (None: the run never finished an epoch)."""
    path, previous = run.state_path, previous_state_path(run.state_path)
    if not path.exists() and not previous.exists():
        return None
    if from_checkpoint:
        found = newest_good_state(path)
        if found is None:
            return _NO_GOOD_STATE
        used, state = found
        if used != path:
            log.warning("%s: continuing from %s (epoch %d)", run.path, used, int(state["epoch"]))
        return state
    if not path.exists():  # killed between the two renames of a state write
        return read_state(previous)
    try:
        return read_state(path)
    except CheckpointCorruptError as e:
        remedy = (f"; `losslab resume {run.path} --from-checkpoint` continues from the state of "
                  "the epoch before" if previous.exists() else "")
        raise CheckpointCorruptError(f"{e}{remedy}") from None


def _restart_checkpoint(run: RunDir) -> LoadedCheckpoint:
    """The newest intact checkpoint saved at an epoch's end (role ``epoch`` or ``best``),
    loaded (on the CPU; loading verifies its hash)."""
    refs = CheckpointSet.from_run(run.path, role=("epoch", "best"))
    for ref in sorted(refs, key=lambda r: r.epoch, reverse=True):
        if ref.epoch == 0:
            continue
        try:
            return ref.load("cpu")
        except CheckpointCorruptError as e:
            log.warning("%s", e)
    raise CheckpointCorruptError(
        f"no training state of {run.path} reads back intact and it has no intact epoch "
        "checkpoint to restart from; train it again")


def _restart_from(trainer: Trainer, loaded: LoadedCheckpoint, run: RunDir,
                  config: TrainConfig) -> None:
    """Continue from a checkpoint's weights, as near the lost state as the checkpoint allows:
    its epoch and step, the schedule at that step, its optimizer state if it carries one, the
    metrics up to it. The global RNG is seeded from the run's seed and the epoch, and callbacks
    start from their initial state, so the continued run is not bit-identical to an
    uninterrupted one (it is a restart, said in a warning)."""
    ref = loaded.ref
    loaded.load_into(trainer.model)  # copied onto the model's device
    notes = []
    try:
        load_optimizer_state(ref.path, ref.meta, trainer.optimizer)
    except MissingFileError:
        notes.append("the optimizer state starts afresh (checkpoints.optimizer was off)")
    trainer.epoch, trainer.step = ref.epoch, ref.step
    if trainer.scheduler is not None:  # closed-form schedules: the lr is a function of the step
        trainer.scheduler.jump_to(ref.step)
    trainer.history = [r for r in read_metrics(run.metrics_path) if r.get("epoch", 0) <= ref.epoch]
    for cb in trainer.callbacks:
        if isinstance(cb, CheckpointPolicy):
            cb.restore_best(trainer.history)
    seed_everything(config.seed + 7919 * ref.epoch)
    stateful = sorted({type(cb).__name__ for cb in trainer.callbacks
                       if type(cb).state_dict is not Callback.state_dict
                       and not isinstance(cb, CheckpointPolicy)})
    if stateful:
        notes.append(f"callbacks {', '.join(stateful)} start from their initial state")
    log.warning("%s: no intact training state; restarted from %s (epoch %d)%s; the run is not "
                "bit-identical to an uninterrupted one", run.path, ref.path, ref.epoch,
                "".join(f"; {n}" for n in notes))


def _remove_stale_temporaries(run: RunDir) -> None:
    """Temporary files of atomic writes a killed process left (``.NAME.*.tmp``); the lock says
    no process is writing them."""
    for tmp in run.path.rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink()
