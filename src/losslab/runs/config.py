"""The run configuration: a validated tree of small pydantic models.

A run is described entirely by a :class:`TrainConfig`. YAML files and ``--set KEY=VALUE``
overrides (dotted keys address the tree, e.g. ``optimizer.lr=0.1``) are merged into a plain
dict and validated here, so a typo fails before any work starts, with a message that names
the key and the nearest valid ones, or the value and what is allowed.

The annealing values are those of M. Stringher, "Unconventional Training of Deep Neural
Networks", Master's thesis, University of Padova, 2019 ("the thesis" below).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from losslab.errors import ConfigError, CorruptFileError, InputError
from losslab.runs import readers

__all__ = ["ConfigError", "TrainConfig", "load_config", "parse_overrides", "apply_overrides",
           "config_to_dict"]


class _Strict(BaseModel):
    # allow_inf_nan=False: every float option is a finite number (lr=inf or nan would train
    # to NaN with exit 0, and inf passes a bound such as gt=0)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class AugmentConfig(_Strict):
    """On-device training augmentation (CIFAR standard: ``crop_padding: 4, flip: true``)."""

    crop_padding: int = Field(0, ge=0)
    flip: bool = False


class DataConfig(_Strict):
    name: str = "digits"
    root: str | None = None
    download: bool = False
    val_size: float = Field(0.1, ge=0, description="fraction of train (< 1) or a count (>= 1)")
    split_seed: int = 0
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(1024, ge=1)
    augment: AugmentConfig = AugmentConfig()
    options: dict[str, Any] = Field(default_factory=dict, description="extra dataset arguments")


class ModelConfig(_Strict):
    name: str = "small_cnn"
    options: dict[str, Any] = Field(default_factory=dict, description="extra model arguments")
    init_scale: float = Field(1.0, gt=0, description="multiply the initial weights by this "
                              "(2: four times the init variance; Garipov et al.'s variant E)")


class AnnealingConfig(_Strict):
    """Simulated-annealing optimizers (``optimizer.name: ssa`` or ``sgdsa``).

    The thesis's values (SSA: ε0 = 1e-2, T0 = 1, α = 0.97, improving-share bound 0.6; SGD-SA:
    T0 = 1, α = 0.93, H1 or H2) were tuned for its loss scale, the mean cross-entropy divided
    by its batch size, 512: ``thesis_loss_scale: true`` compares losses on that scale
    (``thesis_batch_size``), whatever ``data.batch_size`` is. Moves are judged with the
    objective in eval mode (``objective_mode``), as the thesis's code does.
    """

    t0: float = Field(1.0, gt=0, description="initial temperature T0")
    alpha: float | None = Field(None, gt=0, le=1, description="cooling per epoch, T <- alpha*T "
                                "(default: 0.97 for ssa, 0.93 for sgdsa)")
    eps: float = Field(1e-2, gt=0, description="SSA: initial move size ε0")
    improve_bound: float = Field(0.6, ge=0, le=1, description="SSA: divide ε when the share of "
                                 "improving moves in an epoch falls below this")
    eps_factor: float = Field(0.1, gt=0, lt=1, description="SSA: ε <- eps_factor*ε")
    lrs: str | list[float] = Field("H2", description="SGD-SA: the set H of learning rates, "
                                   "'H1', 'H2' or a list")
    objective: Literal["loss", "error"] = Field("loss", description="SSA: minimize the loss or "
                                                "the (non-differentiable) error rate")
    objective_mode: Literal["eval", "train"] = Field(
        "eval", description="the model's mode when a move is judged (eval: the thesis's code; "
        "a rejected move restores every parameter and buffer either way)")
    thesis_loss_scale: bool = Field(False, description="compare mean loss / thesis_batch_size")
    thesis_batch_size: int = Field(512, ge=1, description="the batch size of the thesis's loss "
                                   "scale (it trained with 512), not the run's")


class OptimizerConfig(_Strict):
    name: Literal["sgd", "adam", "adamw", "ssa", "sgdsa"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0)
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = \
        (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    annealing: AnnealingConfig = AnnealingConfig()


class ScheduleConfig(BaseModel):
    """``name`` picks a schedule; its parameters (durations in epochs) sit beside it."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, allow_inf_nan=False)
    name: str = "cosine"

    @model_validator(mode="after")
    def _known_schedule_and_params(self) -> ScheduleConfig:
        from losslab.train.schedules import REQUIRED, SCHEDULE_PARAMS

        if self.name not in SCHEDULE_PARAMS:
            raise InputError(f"unknown schedule {self.name!r}; allowed: {sorted(SCHEDULE_PARAMS)}"
                             + _suggest(self.name, SCHEDULE_PARAMS))
        allowed = SCHEDULE_PARAMS[self.name]
        for key in self.params:
            if key not in allowed:
                raise InputError(f"schedule {self.name!r} has no parameter {key!r}; allowed: "
                                 f"{sorted(allowed) or 'none'}" + _suggest(key, allowed))
        for key, value in self.params.items():
            # the parameters sit beside `name` untyped, so the finite check is made here
            if not _finite(value):
                raise InputError(f"bad value for 'schedule.{key}': {value!r}: expected a finite "
                                 "number")
        missing = [k for k, default in allowed.items() if default is REQUIRED and k not in self.params]
        if missing:
            raise InputError(f"schedule {self.name!r} needs {', '.join(missing)} "
                             f"(e.g. --set schedule.{missing[0]}=...)")
        return self

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class CheckpointConfig(_Strict):
    """Which checkpoints a run keeps; the final model is always saved."""

    every: int = Field(0, ge=0, description="save every N epochs (0: never)")
    epochs: list[int] = Field(default_factory=list, description="save at these epochs")
    keep_best: bool = Field(True, description="keep the best model on validation (role 'best')")
    save_initial: bool = Field(False, description="save the initialization as epoch 0")
    members: bool = Field(True, description="save ensemble members where the schedule marks them "
                          "(snapshot and cosine_restarts: each cycle's end; fge: each lr minimum)")
    optimizer: bool = Field(False, description="also save the optimizer state (momentum) with "
                            "each checkpoint, so another run can start from it warm (init)")


class RepulsionConfig(_Strict):
    """Checkpoint repulsion (the "distance function"): RBF hills at saved checkpoints.

    Checkpoints are placed at the end of the listed ``epochs``, or at ``first``, then every
    ``every`` epochs, ``count`` of them (None: until the run ends). ``strength: 0`` is the
    baseline: "shadow" checkpoints at the same epochs, distances logged, no penalty.
    """

    strength: float = Field(0.0, ge=0, description="s; 0: shadow checkpoints only")
    width: float = Field(100.0, gt=0, description="σ² of the RBF exp(-‖θ-θc‖²/(2σ²))")
    first: int | None = Field(None, ge=1, description="epoch of the first checkpoint")
    every: int = Field(0, ge=0, description="epochs between checkpoints (0: just one)")
    count: int | None = Field(None, ge=1, description="how many checkpoints (None: no limit)")
    epochs: list[int] = Field(default_factory=list, description="explicit checkpoint epochs")
    window: int | None = Field(None, ge=1, description="epochs a checkpoint's term stays on "
                               "(None: to the end)")
    merge: bool = Field(False, description="one term whose anchor is the checkpoints' mean")
    weights_only: bool = Field(False, description="count only weights (no biases, no BN)")
    mode: Literal["analytic", "autograd"] = Field(
        "analytic", description="add the exact gradient to .grad, or differentiate the penalty")
    log_gradients: bool = Field(True, description="log task/penalty gradient norms and cosine")

    def checkpoint_epochs(self, total_epochs: int) -> list[int]:
        """The epochs at whose end a checkpoint is placed (before the last epoch)."""
        if self.epochs:
            chosen = sorted(set(self.epochs))
        elif self.first is None:
            return []
        else:
            chosen, epoch = [], self.first
            while epoch < total_epochs and (self.count is None or len(chosen) < self.count):
                chosen.append(epoch)
                if self.every == 0:
                    break
                epoch += self.every
        return [e for e in chosen if e < total_epochs]


class RestartConfig(_Strict):
    """Cold restarts: after each epoch, estimate the training loss on ``n_batches`` random
    minibatches; below ``eps``, re-initialize the model and its optimizer (thesis ch. 2)."""

    eps: float | None = Field(None, gt=0, description="restart threshold ε (None: no restarts)")
    n_batches: int = Field(10, ge=1, description="minibatches of the training-loss estimate")
    thesis_loss_scale: bool = Field(False, description="compare mean loss / thesis_batch_size "
                                    "to ε (the thesis's scale, for its ε = 1e-6, 1e-7)")
    thesis_batch_size: int = Field(512, ge=1, description="the batch size of the thesis's loss "
                                   "scale (it trained with 512), not the run's")


class LogConfig(_Strict):
    tensorboard: bool = True
    progress: bool | None = Field(None, description="tqdm bars; None: only on a terminal")
    grad_norm: bool = Field(True, description="log the mean gradient norm of each epoch")
    sharpness_every: int = Field(0, ge=0, description="log λmax of the Hessian every N epochs "
                                 "(0: never)")
    sharpness_batches: int = Field(2, ge=1, description="training batches of that Hessian")
    sharpness_operators: list[Literal["hessian", "ggn"]] = Field(
        ["hessian"], min_length=1, description="the matrices whose λmax is tracked: hessian "
        "(logged as sharpness) and/or ggn, the generalized Gauss-Newton (sharpness_ggn)")


class CurveConfig(_Strict):
    """Mode connectivity: train a curve between two trained models instead of a network.

    ``start`` and ``end`` are run directories (their final model) or checkpoint files of the
    same architecture as ``model``; the run trains the ``bends`` interior points of a Bezier
    or PolyChain curve (Garipov et al. 2018), one t ~ U[0, 1] per minibatch.
    """

    start: str | None = Field(None, description="run directory or checkpoint file of φ(0)")
    end: str | None = Field(None, description="run directory or checkpoint file of φ(1)")
    bends: int = Field(1, ge=0, description="trainable interior points (the paper: 1)")
    kind: Literal["bezier", "polychain"] = "bezier"
    weight_decay_on: Literal["point", "bends"] = Field(
        "point", description="point: ½·wd·‖φ(t)‖² at the sampled t (the paper); bends: "
        "optimizer weight decay on the bends")
    eval_t: float = Field(0.5, ge=0, le=1, description="t of the per-epoch val/test metrics")

    @model_validator(mode="after")
    def _both_ends(self) -> CurveConfig:
        if (self.start is None) != (self.end is None):
            raise InputError("a curve needs both curve.start and curve.end")
        return self

    @property
    def enabled(self) -> bool:
        return self.start is not None


class InitConfig(_Strict):
    """Start from a checkpoint of another run instead of a fresh initialization.

    Garipov et al.'s FGE starts from epoch 160 of an independent network, with its weights and
    its SGD momentum (their ``fge.py --ckpt checkpoint-160.pt``): ``init: {run: RUN, epoch:
    160}``. ``run`` is a run directory or a checkpoint file; in a study it may name a variant,
    meaning that variant's run of the same seed, which then trains first.
    """

    run: str | None = Field(None, description="run directory or checkpoint file; in a study, "
                            "a variant's name (its run with the same seed)")
    epoch: int | None = Field(None, ge=0, description="that run's checkpoint of this epoch "
                              "(None: its final model)")
    optimizer: bool = Field(True, description="also take its optimizer state (momentum), as "
                            "fge.py does; that run needs checkpoints.optimizer: true")

    @property
    def enabled(self) -> bool:
        return self.run is not None


class TrainConfig(_Strict):
    """Everything that defines a training run."""

    seed: int = 0
    epochs: int = Field(10, ge=1)
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', 'mps', ...")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    checkpoints: CheckpointConfig = CheckpointConfig()
    repulsion: RepulsionConfig = RepulsionConfig()
    restarts: RestartConfig = RestartConfig()
    log: LogConfig = LogConfig()
    curve: CurveConfig = CurveConfig()
    init: InitConfig = InitConfig()

    @field_validator("device")
    @classmethod
    def _device_name(cls, name: str) -> str:
        # the form only: whether this machine has the device is known when the run builds
        from losslab.runs.device import check_device_name

        return check_device_name(name)

    @model_validator(mode="after")
    def _init_or_curve(self) -> TrainConfig:
        if self.init.enabled and self.curve.enabled:
            raise InputError("init and curve cannot be combined: a curve run starts from its "
                             "endpoints (curve.start, curve.end)")
        return self

    @model_validator(mode="after")
    def _annealing_sets_its_own_steps(self) -> TrainConfig:
        if self.optimizer.name in ("ssa", "sgdsa") and self.schedule.name != "constant":
            raise InputError(f"optimizer {self.optimizer.name!r} chooses its own step sizes; "
                             "set schedule.name=constant")
        return self


# ---------------------------------------------------------------------------------------------
# Loading, overrides and readable errors


def _finite(value: Any) -> bool:
    """Whether every number in ``value`` (a number, or a list of them) is finite; strings such
    as ``"inf"`` count as the number they spell."""
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    if isinstance(value, str) and value.strip().lower().lstrip("+-") in ("inf", "infinity",
                                                                           "nan", ".inf", ".nan"):
        return False
    return not isinstance(value, float) or math.isfinite(value)


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _model_at(cls: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The sub-model class that owns the key at ``loc`` (for listing its valid keys)."""
    for part in loc:
        field = cls.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            cls = ann
        else:
            return cls
    return cls


def explain_validation_error(err: ValidationError, cls: type[BaseModel]) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            owner = _model_at(cls, loc[:-1]) or cls
            valid = list(owner.model_fields)
            lines.append(f"unknown key {key!r}{_suggest(loc[-1], valid)}; valid keys here: "
                         f"{', '.join(valid)}")
        elif e["type"] == "value_error":
            message = e["msg"].removeprefix("Value error, ")
            where = f" in {key!r}" if key and f"'{key}" not in message else ""
            lines.append(f"{message}{where}")
        elif e["type"] == "finite_number":
            lines.append(f"bad value for {key!r}: {e['input']!r}: expected a finite number")
        else:
            lines.append(f"bad value for {key!r}: {e['input']!r}: {e['msg']}")
    return "invalid config:\n  " + "\n  ".join(lines)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1, 2]"]`` -> ``{"a.b": 1, "c": [1, 2]}``; values are parsed as YAML."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. optimizer.lr=0.1)")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return out


def apply_overrides(tree: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (copying the path), creating levels as needed."""
    import copy

    tree = copy.deepcopy(tree)
    for dotted, value in overrides.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for p in parents:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"cannot set {dotted!r}: {p!r} is a value ({child!r}), not a section")
            node = child
        node[leaf] = value
    return tree


def validate_config(tree: Mapping[str, Any], cls: type[BaseModel] = TrainConfig) -> Any:
    try:
        return cls.model_validate(dict(tree))
    except ValidationError as e:
        raise ConfigError(explain_validation_error(e, cls)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config (or study, or suite) file a person wrote, as a mapping; a missing, binary or
    broken one is an error that names the file and where it stopped."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return readers.read_yaml(path, what="a YAML mapping of config keys")
    except CorruptFileError as e:
        # a config file is the user's input: a ConfigError, with the reader's message
        raise ConfigError(f"config file {e}") from None


def load_config(path: str | Path | None = None, overrides: Iterable[str] | Mapping[str, Any] = (),
                cls: type[BaseModel] = TrainConfig) -> Any:
    """Read an optional YAML file, apply ``KEY=VALUE`` overrides, and validate."""
    tree = read_yaml(path) if path is not None else {}
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(overrides)
    return validate_config(apply_overrides(tree, overrides), cls)


def config_to_dict(config: BaseModel) -> dict[str, Any]:
    """A plain, YAML-ready dict of the resolved config (every default written out)."""
    return config.model_dump(mode="json")
