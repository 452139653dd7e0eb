"""A suite: several study files run one after another, their findings gathered in one table.

::

    name: findings_small
    studies:                      # study files, relative to the suite file
      - repulsion/one_checkpoint_small.yaml
      - annealing/ssa_small.yaml

``losslab findings SUITE.yaml`` runs every study (resumably: a finished run is never redone)
into ``OUT/<study name>`` and writes ``OUT/findings.json``, ``findings.csv`` and
``findings.md``: every finding of every study with its verdict, the wall time of each study
and the machine it ran on. All study files are loaded and validated (findings included) before
the first run starts.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from losslab.errors import CorruptFileError
from losslab.runs.atomic import atomic_write, atomic_write_json, atomic_write_text
from losslab.runs.config import ConfigError, explain_validation_error, read_yaml
from losslab.runs.readers import read_json
from losslab.studies.spec import load_study

__all__ = ["SuiteSpec", "SuiteOutcome", "load_suite", "run_suite", "is_suite_file"]


class SuiteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "suite"
    description: str = ""
    studies: list[str] = Field(min_length=1)


@dataclass
class SuiteOutcome:
    directory: Path
    findings: list[dict[str, Any]]
    times: dict[str, float]   # study name -> wall seconds of this invocation
    counts: dict[str, int]    # verdict -> number of findings
    failed_runs: int


def is_suite_file(path: str | Path) -> bool:
    """Whether a YAML file is a suite (it lists ``studies``) rather than a study."""
    tree = read_yaml(Path(path))
    return isinstance(tree, dict) and "studies" in tree


def load_suite(path: str | Path) -> tuple[SuiteSpec, list[Path]]:
    """The suite and its study files, each checked to exist and to be a valid study."""
    path = Path(path)
    try:
        spec = SuiteSpec.model_validate(read_yaml(path))
    except ValidationError as e:
        message = explain_validation_error(e, SuiteSpec)
        raise ConfigError(message.replace("invalid config", f"invalid suite {path}", 1)) from None
    files = [path.parent / s for s in spec.studies]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise ConfigError(f"suite {path}: no study file {', '.join(missing)}")
    names = [load_study(f)[0].name for f in files]  # validates each, findings included
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"suite {path}: study names must be unique; repeated: {twice}")
    return spec, files


def _machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or
            platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}


def run_suite(path: str | Path, out: str | Path | None = None, *, backend: str = "local",
              workers: int | None = None, only: list[str] | None = None,
              force: bool = False, progress: bool | None = None) -> SuiteOutcome:
    """Run every study of the suite at ``path`` and write the findings table (module docstring)."""
    from losslab.studies.runner import run_study

    spec, files = load_suite(path)
    directory = Path(out) if out is not None else Path("studies") / spec.name
    named = [(f, load_study(f)[0].name) for f in files]
    chosen = named
    if only:
        unknown = sorted(set(only) - {n for _, n in chosen})
        if unknown:
            raise ConfigError(f"suite {path}: no study named {unknown}; studies: "
                              f"{[n for _, n in named]}")
        chosen = [(f, n) for f, n in chosen if n in only]
    times, failed = {}, 0
    for file, name in chosen:
        start = time.perf_counter()
        outcome = run_study(file, directory / name, backend=backend, workers=workers,
                            force=force, progress=progress)
        times[name] = time.perf_counter() - start
        failed += sum(n for s, n in outcome.counts.items() if s != "finished")
    findings = []
    what = "a study's findings (a JSON object with a list `findings`)"
    for _, name in named:
        record = directory / name / "findings.json"
        if record.exists():
            data = read_json(record, what=what)
            if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
                raise CorruptFileError(f"{record} holds no list `findings`; expected {what}")
            findings += data["findings"]
    _write_tables(directory, spec, findings, times)
    counts = pd.Series([f["verdict"] for f in findings]).value_counts().to_dict()
    return SuiteOutcome(directory, findings, times, {k: int(v) for k, v in counts.items()},
                        failed)


def _write_tables(directory: Path, spec: SuiteSpec, findings: list[dict[str, Any]],
                  times: dict[str, float]) -> None:
    from losslab.report.findings_section import findings_rows

    directory.mkdir(parents=True, exist_ok=True)
    machine = _machine()
    atomic_write_json(directory / "findings.json", {"suite": spec.name, "machine": machine,
                                                    "times": times, "findings": findings})
    table = findings_rows(findings, with_study=True)
    atomic_write(directory / "findings.csv", lambda tmp: table.to_csv(tmp, index=False))
    lines = [f"# Findings: {spec.name}", "", spec.description, "",
             f"Machine: {machine['processor']}, {machine['cpus']} CPUs, torch "
             f"{machine['torch']} ({machine['torch_threads']} threads), Python {machine['python']}.",
             f"Wall time of this invocation: {sum(times.values()) / 60:.1f} min "
             f"({', '.join(f'{k} {v:.0f} s' for k, v in times.items())}).", ""]
    if len(table):
        counts = table["verdict"].value_counts()
        lines += [", ".join(f"{int(counts[v])} {v}" for v in ("reproduced", "not resolved",
                                                              "contradicted") if v in counts), ""]
        cols = ["study", "finding", "source", "expected", "a", "b", "a − b [95% CI]",
                "published", "verdict"]
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "---|" * len(cols))
        for _, row in table.iterrows():
            lines.append("| " + " | ".join(str(row[c]).replace("|", "/") for c in cols) + " |")
        lines += ["", "## Claims", ""]
        lines += [f"- **{row['study']} / {row['finding']}** ({row['source']}): {row['claim']} "
                  f"— {row['verdict']}: {row['why']}." for _, row in table.iterrows()]
    atomic_write_text(directory / "findings.md", "\n".join(lines) + "\n")
