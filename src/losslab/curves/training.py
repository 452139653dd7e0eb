"""Fitting a curve with the trainer: what a run with a ``curve:`` config section trains.

The run's model becomes a :class:`~losslab.curves.CurveModel` around the configured
architecture, with the endpoints read from ``curve.start`` and ``curve.end`` (run directories or
checkpoint files); the optimizer sees the bends alone, so the trainer's records, schedules,
checkpoints and exact resume apply unchanged. Weight decay follows ``curve.weight_decay_on``:
``point`` (Garipov et al.'s choice) adds ½·wd·‖φ(t)‖² at the sampled t through
:class:`CurveWeightDecay` and gives the optimizer none; ``bends`` leaves it to the optimizer.
Per-epoch val/test metrics are at t = ``curve.eval_t`` with the running BatchNorm statistics
of training, a monitor only: :func:`losslab.curves.evaluate_curve` recomputes them at every t.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from losslab.curves.curve_model import CurveModel
from losslab.errors import InputError
from losslab.runs.checkpoint_set import check_compatible, resolve_checkpoint
from losslab.runs.config import ConfigError, OptimizerConfig, TrainConfig
from losslab.runs.rebuild import config_path_of, run_config_of, template_model
from losslab.train.callbacks import Callback

__all__ = ["CurveWeightDecay", "build_curve"]


class CurveWeightDecay(Callback):
    """½·wd·‖φ(t)‖² at the t of the step's forward, added to the loss."""

    def __init__(self, weight_decay: float):
        self.weight_decay = float(weight_decay)

    def extra_loss(self, trainer) -> Tensor | None:
        if self.weight_decay == 0.0:
            return None
        return 0.5 * self.weight_decay * trainer.model.point_l2()


def build_curve(config: TrainConfig, template: nn.Module,
                device: torch.device) -> tuple[CurveModel, OptimizerConfig, list[Callback]]:
    """The curve model, the optimizer config to use for it, and its callbacks."""
    c = config.curve
    ends = []
    for which, path in (("start", c.start), ("end", c.end)):
        try:
            ends.append(resolve_checkpoint(path).load(device))
        except FileNotFoundError as e:
            relative = "" if Path(path).is_absolute() else \
                f" (a relative path, read from the current directory {Path.cwd()})"
            raise ConfigError(f"curve.{which}{relative}: {e}") from None
    for which, ckpt in zip(("start", "end"), ends, strict=True):
        try:  # names and shapes: another width of the same family would otherwise train on
            check_compatible(template, ckpt.params, ckpt.buffers, ckpt.ref.path,
                             expects=f"model {config.model.name!r} of this curve run")
        except InputError as e:
            raise ConfigError(f"curve.{which}: {e}") from None
    template.load_state_dict({**ends[0].params, **ends[0].buffers}, strict=False)
    curve = CurveModel(template, ends[0], ends[1], bends=c.bends, kind=c.kind, seed=config.seed,
                       eval_t=c.eval_t).to(device)
    optimizer = config.optimizer
    callbacks: list[Callback] = []
    if c.weight_decay_on == "point":
        optimizer = optimizer.model_copy(update={"weight_decay": 0.0})
        callbacks.append(CurveWeightDecay(config.optimizer.weight_decay))
    return curve, optimizer, callbacks


def load_curve(path, device: torch.device | str = "cpu") -> tuple[CurveModel, TrainConfig]:
    """A fitted curve back from its run directory (its final checkpoint) or a checkpoint file
    of a curve run, with the run's config (architecture, data, curve options)."""
    ref = resolve_checkpoint(path)
    config = run_config_of(ref)
    if not config.curve.enabled:
        raise InputError(f"{ref.path} is not from a curve run (its config has no curve.start)")
    state = ref.load(device)
    template = template_model(config).to(device)
    placeholder = {k: v for k, v in template.named_parameters() if v.requires_grad}
    c = config.curve
    curve = CurveModel(template, placeholder, placeholder, bends=c.bends, kind=c.kind,
                       seed=config.seed, eval_t=c.eval_t).to(device)
    try:
        curve.load_state_dict({**state.params, **state.buffers})
    except RuntimeError as e:  # names or shapes that are not this curve run's network
        raise InputError(f"checkpoint {ref.path} does not fit the curve its run's config "
                         f"({config_path_of(ref)}) describes: {str(e).splitlines()[0]}") from None
    return curve.eval(), config
