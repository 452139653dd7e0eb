"""The study file: a base config, variants, seeds and analyses, expanded into runs.

::

    name: schedules
    base:                       # a config tree, as `losslab train` takes it
      epochs: 15
      model: {name: small_cnn}
    base_file: cifar.yaml       # or/and a config file (relative to the study file), under `base`
    variants:                   # named overrides (dotted keys)...
      - name: constant
        set: {schedule.name: constant}
      - name: cosine
        set: {schedule.name: cosine}
    grid:                       # ...and/or the cartesian product of value lists
      optimizer.lr: [0.02, 0.1]
    seeds: [0, 1]
    analyses:
      - name: compare
        baseline: constant
    findings:                   # the claims the study tests, each with a verdict
      - {id: cosine_wins, claim: "...", source: "...", metric: test_acc, at: final,
         a: cosine, b: constant, expect: greater}
    resources: {cpus: 1, gpus: 0}   # what one run needs (used by the Ray backend)

A variant may start from another variant's checkpoint (``init: {run: ind, epoch: 160}``, as
FGE starts from an independent network): ``init.run`` names the variant, each seed's run starts
from that variant's run of the same seed, which trains first; the planner checks that it saves
the epoch (and the optimizer state) asked for.

Variants and grid combine as a product: every listed variant is crossed with every grid
point (a study with only one of them uses it alone; with neither, one variant ``base``). Each
(variant, seed) is a run named ``<variant>-s<seed>``; it trains with that seed, plus the
variant's ``seed_offset`` (0 unless set: the variants of one seed then share initialization
and data order, a paired design; distinct offsets make them independent). Every run's config is validated before any
run starts, and a failing variant is named; so is every finding that names an unknown variant,
metric or analysis (:mod:`losslab.studies.findings`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from losslab.errors import InputError
from losslab.runs.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_to_dict,
    explain_validation_error,
    parse_overrides,
    read_yaml,
    validate_config,
)
from losslab.studies.findings import FindingSpec, check_findings

__all__ = ["StudySpec", "VariantSpec", "AnalysisSpec", "ResourceSpec", "PlannedRun",
           "load_study", "plan_runs", "study_fingerprint", "check_study_findings"]


def _repeated(values: Iterable[Any]) -> list[Any]:
    """The values that occur more than once, sorted."""
    seen, twice = set(), set()
    for v in values:
        (twice if v in seen else seen).add(v)
    return sorted(twice)


_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
SAFE_NAME_RULE = ("letters, digits, '-', '_' and '.' only (no '/', no spaces), and not '.' or "
                  "'..'")


def check_safe_name(name: str, what: str) -> str:
    """``name`` if it is one safe path component (:data:`SAFE_NAME_RULE`), else an
    :class:`InputError` naming ``what`` and the rule.

    Variant names become ``runs/<variant>-s<seed>/`` and ``logs/<run id>.log``, analysis keys
    ``analyses/<key>.json``, a study's name its default directory: a name with a separator or
    a ``..`` would write outside the study directory.
    """
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or name in (".", ".."):
        raise InputError(f"{what} {name!r} is not a safe name for a file or directory: use "
                         f"{SAFE_NAME_RULE}")
    return name


def SafeName(what: str) -> Any:  # noqa: N802 - used as a type: `name: SafeName("variant name")`
    """A string field that must be one safe path component (:func:`check_safe_name`)."""
    return Annotated[str, AfterValidator(partial(check_safe_name, what=what))]


def _safe_run_id(run_id: str) -> bool:
    """Whether a planned run id is one path component (grid points add '+', ',', '=')."""
    return bool(run_id) and run_id not in (".", "..") and not any(
        c in run_id for c in ("/", "\\", "\x00")) and run_id == run_id.strip()


class _Strict(BaseModel):
    # allow_inf_nan=False: resources are finite numbers (inf CPUs would never be scheduled)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class VariantSpec(_Strict):
    name: SafeName("variant name") = Field(min_length=1)
    set: dict[str, Any] = Field(default_factory=dict, description="dotted key -> value")
    seed_offset: int = Field(0, ge=0, description="the run of study seed s trains with seed "
                             "s + seed_offset: variants with distinct offsets start from "
                             "independent initializations and data orders (0: shared with "
                             "the other variants of seed s, the paired design)")


class AnalysisSpec(BaseModel):
    """``name`` picks a registered analysis; its options sit beside it. ``id`` names its
    result (default: the name) so that one analysis can be listed twice with other options."""

    model_config = ConfigDict(extra="allow")
    name: SafeName("analysis name")
    id: SafeName("analysis id") | None = None

    @property
    def key(self) -> str:
        return self.id or self.name

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ResourceSpec(_Strict):
    cpus: float = Field(1.0, gt=0, description="CPU cores one run needs")
    gpus: float = Field(0.0, ge=0, description="GPUs one run needs (fractions share a GPU)")


class StudySpec(_Strict):
    name: SafeName("study name") = "study"
    base: dict[str, Any] = Field(default_factory=dict)
    base_file: str | None = None
    variants: list[VariantSpec] = Field(default_factory=list)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    analyses: list[AnalysisSpec] = Field(default_factory=list)
    findings: list[FindingSpec] = Field(default_factory=list)
    resources: ResourceSpec = ResourceSpec()

    @field_validator("variants")
    @classmethod
    def _unique_names(cls, variants: list[VariantSpec]) -> list[VariantSpec]:
        dupes = _repeated(v.name for v in variants)
        if dupes:
            raise InputError(f"variant names must be unique; repeated: {dupes}")
        return variants

    @field_validator("grid")
    @classmethod
    def _non_empty_lists(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [k for k, v in grid.items() if not v]
        if empty:
            raise InputError(f"grid keys need at least one value: {empty}")
        return grid

    @field_validator("analyses")
    @classmethod
    def _unique_analyses(cls, analyses: list[AnalysisSpec]) -> list[AnalysisSpec]:
        dupes = _repeated(a.key for a in analyses)
        if dupes:
            raise InputError(f"analyses listed twice need distinct `id`s; repeated: {dupes}")
        return analyses

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if _repeated(seeds):
            raise InputError(f"seeds must be unique: {seeds}")
        return seeds


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study: which variant, which seed, and its resolved, validated config."""

    run_id: str
    variant: str
    seed: int
    overrides: dict[str, Any]  # the variant's dotted overrides (without the seed)
    config: dict[str, Any]     # the complete resolved config of this run
    init_from: str | None = None  # the run whose checkpoint this run starts from (init.run)


def load_study(path: str | Path, overrides: list[str] | None = None) -> tuple[StudySpec, Path]:
    """Read and validate a study file; ``overrides`` (``KEY=VALUE``) apply to the base config."""
    path = Path(path)
    tree = read_yaml(path)
    try:
        spec = StudySpec.model_validate(tree)
    except ValidationError as e:
        message = explain_validation_error(e, StudySpec)
        raise ConfigError(message.replace("invalid config", f"invalid study {path}", 1)) from None
    if overrides:
        spec = spec.model_copy(update={"base": apply_overrides(spec.base, parse_overrides(overrides))})
    check_study_findings(spec, str(path))
    return spec, path.parent


def check_study_findings(spec: StudySpec, where: str = "the study") -> None:
    """Raise a one-line :class:`ConfigError` per bad finding (unknown variant, metric, ...)."""
    problems = check_findings(spec.findings, variant_overrides(spec),
                              [a.key for a in spec.analyses])
    if problems:
        raise ConfigError(f"invalid findings in {where}: " + "; ".join(problems))


def _slug(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "x"


def _grid_points(grid: dict[str, list[Any]]) -> list[tuple[str, dict[str, Any]]]:
    if not grid:
        return []
    keys = list(grid)
    points = []
    for values in itertools.product(*(grid[k] for k in keys)):
        name = ",".join(f"{k.split('.')[-1]}={_slug(v)}" for k, v in zip(keys, values, strict=True))
        points.append((name, dict(zip(keys, values, strict=True))))
    return points


def variant_overrides(spec: StudySpec) -> dict[str, dict[str, Any]]:
    """Variant name -> its dotted overrides, expanding the grid (see the module docstring)."""
    listed = [(v.name, dict(v.set)) for v in spec.variants]
    grid = _grid_points(spec.grid)
    if listed and grid:
        combined = [(f"{n}+{g}", {**o, **go}) for n, o in listed for g, go in grid]
    else:
        combined = listed or grid or [("base", {})]
    return dict(combined)


def seed_offsets(spec: StudySpec) -> dict[str, int]:
    """Variant name -> its seed offset (grid points take their listed variant's)."""
    offsets = {v.name: v.seed_offset for v in spec.variants}
    return {name: offsets.get(name.split("+")[0], 0) for name in variant_overrides(spec)}


def base_tree(spec: StudySpec, study_root: Path) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    if spec.base_file:
        tree = read_yaml(study_root / spec.base_file)
    return _deep_merge(tree, spec.base)


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def plan_runs(spec: StudySpec, study_root: Path) -> list[PlannedRun]:
    """Every (variant, seed) run with its validated config; all errors are reported together."""
    base = base_tree(spec, study_root)
    runs, errors, configs = [], [], {}
    variants, offsets = variant_overrides(spec), seed_offsets(spec)
    for name, overrides in variants.items():
        if "seed" in overrides:
            errors.append(f"variant {name!r}: set seeds with the study's `seeds`, not in a variant")
            continue
        try:
            tree = apply_overrides(base, overrides)
            configs[name] = validate_config(tree)  # once; seeds only change the top-level `seed`
        except ConfigError as e:
            errors.append(f"variant {name!r}: {e}")
            continue
        source = configs[name].init.run if configs[name].init.run in variants else None
        for seed in spec.seeds:
            if not _safe_run_id(f"{name}-s{seed}"):
                errors.append(f"variant {name!r}: its run id {name + '-s' + str(seed)!r} is not "
                              "one file name (it holds a path separator)")
                break
            config = config_to_dict(validate_config({**tree, "seed": seed + offsets[name]},
                                                    TrainConfig))
            runs.append(PlannedRun(f"{name}-s{seed}", name, seed, overrides, config,
                                   f"{source}-s{seed}" if source else None))
    errors += _init_problems(configs)
    if errors:
        raise ConfigError("the study cannot start; no run was started:\n" + "\n".join(errors))
    return runs


def _init_problems(configs: dict[str, TrainConfig]) -> list[str]:
    """What stops a variant from starting at another variant's checkpoint: a cycle, or a
    source that does not save the epoch or the optimizer state asked for."""
    problems = []
    for name, config in configs.items():
        init, seen = config.init, [name]
        source = configs.get(init.run) if init.run is not None else None
        if source is None:
            continue
        while init.run in configs and init.run not in seen:  # follow the chain
            seen.append(init.run)
            init = configs[init.run].init
        if init.run in seen:
            problems.append(f"variant {name!r}: init.run makes a cycle: {' -> '.join(seen)} -> "
                            f"{init.run}")
            continue
        want, c = config.init.epoch, source.checkpoints
        saves = want is None or want in c.epochs or (c.every > 0 and want % c.every == 0)
        if want is not None and not (saves and want <= source.epochs):
            problems.append(f"variant {name!r}: init.epoch={want}, but variant "
                            f"{config.init.run!r} does not save epoch {want} (its epochs: "
                            f"{source.epochs}; add it to its checkpoints.epochs)")
        if config.init.optimizer and not c.optimizer:
            problems.append(f"variant {name!r}: init.optimizer needs variant {config.init.run!r} "
                            "to set checkpoints.optimizer: true (or set init.optimizer: false)")
    return problems


def study_fingerprint(runs: list[PlannedRun]) -> str:
    """A hash of what determines the study's results: its runs and their configs.

    Analyses are not part of it: changing them only rebuilds the analyses and the report.
    """
    payload = json.dumps({"runs": [(r.run_id, r.config) for r in runs]}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
