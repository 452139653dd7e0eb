"""Is a finished run's record whole? The check a study makes before it counts a run as done.

A run's ``meta.json`` saying ``finished`` is a claim about files that can since have been
deleted, truncated or edited. :func:`record_problems` checks what the study's tables and
analyses read: the config and meta parse, ``metrics.jsonl`` holds exactly one record for each
epoch ``1..epochs``, the ``final`` checkpoint is there, and every checkpoint's weights match
the SHA-256 its sidecar recorded, with no weights file left without its sidecar. It returns
one sentence per problem, each naming the file, so the caller can say what it found and train
the run again rather than report a study with rows silently missing.
"""

from __future__ import annotations

from pathlib import Path

from losslab.errors import LosslabError
from losslab.runs.checkpoint_set import OPTIMIZER_SUFFIX
from losslab.runs.checkpoints import file_sha256, read_meta
from losslab.runs.metrics import read_metrics
from losslab.runs.rundir import RunDir

__all__ = ["record_problems", "metrics_problems"]


def metrics_problems(epochs_logged: list[int], epochs: int, path: Path) -> list[str]:
    """What is wrong with the epochs a metrics log holds, for a run of ``epochs`` epochs."""
    if not epochs_logged:
        return [f"{path} holds no epoch (expected epochs 1-{epochs})"]
    expected = list(range(1, epochs + 1))
    if epochs_logged == expected:
        return []
    repeated = sorted({e for e in epochs_logged if epochs_logged.count(e) > 1})
    missing = sorted(set(expected) - set(epochs_logged))
    parts = []
    if repeated:
        parts.append(f"epochs {_span(repeated)} more than once")
    if missing:
        parts.append(f"no record of epochs {_span(missing)}")
    extra = sorted(set(epochs_logged) - set(expected))
    if extra:
        parts.append(f"epochs {_span(extra)} beyond the run's {epochs}")
    if not parts:
        parts.append("its epochs out of order")
    return [f"{path} has {', '.join(parts)} (expected epochs 1-{epochs}, once each)"]


def _span(values: list[int]) -> str:
    shown = ", ".join(map(str, values[:6]))
    return shown + (f" and {len(values) - 6} more" if len(values) > 6 else "")


def record_problems(run_dir: str | Path) -> list[str]:
    """Every problem of a finished run's record (empty: the record is whole)."""
    run = RunDir(run_dir)
    try:
        config = run.read_config()
        run.read_meta()
        records = read_metrics(run.metrics_path)
    except LosslabError as e:  # a file that does not parse names itself
        return [str(e)]
    problems = []
    if not run.metrics_path.exists():
        problems.append(f"{run.metrics_path} is missing")
    else:
        epochs = int(config.get("epochs", 0))
        problems += metrics_problems([int(r.get("epoch", -1)) for r in records], epochs,
                                     run.metrics_path)
    return problems + checkpoint_problems(run.checkpoints)


def checkpoint_problems(directory: Path) -> list[str]:
    """Missing ``final``, weights that do not match their sidecar, weights without a sidecar."""
    problems = []
    if not (directory / "final.json").exists():
        problems.append(f"{directory} has no final checkpoint (final.json)")
    for weights in sorted(directory.glob("*.safetensors")):
        if weights.name.endswith(OPTIMIZER_SUFFIX):
            continue  # an optimizer file: its hash is in the sidecar it belongs to
        if not weights.with_suffix(".json").exists():
            problems.append(f"{weights} has no sidecar {weights.stem}.json")
    for sidecar in sorted(directory.glob("*.json")):
        weights = sidecar.with_suffix(".safetensors")
        try:
            meta = read_meta(weights)
        except LosslabError as e:
            problems.append(str(e))
            continue
        if not weights.exists():
            problems.append(f"{weights} is missing (its sidecar {sidecar.name} is there)")
        elif not meta.sha256:
            problems.append(f"{sidecar} records no SHA-256 of its weights")
        elif file_sha256(weights) != meta.sha256:
            problems.append(f"{weights} does not match the SHA-256 recorded in {sidecar.name}")
    return problems
