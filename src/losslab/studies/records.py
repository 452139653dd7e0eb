"""A study's records, read from its directory alone: what the report and analyses take.

:func:`load_records` reads ``plan.json``, ``status.json`` and each run's ``meta.json`` and
``metrics.jsonl``, and builds three tables:

* ``runs``: one row per run (run_id, variant, seed, status, error, run_dir, variant keys); a
  run whose files do not read, or a finished run whose metrics lack or repeat an epoch, is
  ``damaged`` with the reason as its error (said in a warning) and adds no rows;
* ``results``: one row per run and epoch (the same keys plus every logged metric), saved as
  ``results.parquet``;
* ``summary``: one row per variant with, for each standard metric M, ``final_M_mean/std/ci95``
  (the last epoch) and ``best_M_mean/std/ci95`` (max for accuracies, min for losses) over the
  finished seeds, saved as ``summary.csv``; ``ci95`` is the half-width of the 95% Student
  t-interval of the mean (:func:`losslab.studies.stats.mean_ci`), NaN with one seed.

A study with ``findings`` also has ``findings.json`` (each finding with its verdict), read into
``findings``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from losslab.errors import LosslabError, MissingFileError
from losslab.runs.metrics import read_metrics
from losslab.runs.readers import read_json, read_yaml
from losslab.runs.rundir import RunDir
from losslab.runs.verify import metrics_problems
from losslab.studies.stats import mean_ci
from losslab.studies.study_dir import StudyDir

__all__ = ["StudyRecords", "load_records", "run_records", "SUMMARY_METRICS"]

log = logging.getLogger(__name__)

SUMMARY_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


@dataclass
class StudyRecords:
    directory: Path
    name: str
    study: dict[str, Any]
    base_config: dict[str, Any]
    variants: dict[str, dict[str, Any]]
    variant_keys: list[str]
    runs: pd.DataFrame
    results: pd.DataFrame
    summary: pd.DataFrame
    analyses: dict[str, Any] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)

    def run_dirs(self, *, variant: str | None = None, status: str = "finished") -> list[Path]:
        """Directories of the runs with ``status`` (of one variant, or all)."""
        rows = self.runs[self.runs["status"] == status]
        if variant is not None:
            rows = rows[rows["variant"] == variant]
        return [Path(p) for p in rows["run_dir"]]


def _cell(value: Any) -> Any:
    # Variant values may be lists or dicts; parquet columns need one scalar type.
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _read_status(directory: Path) -> dict[str, dict[str, Any]]:
    path = directory / "status.json"
    return read_json(path, what="the study's run status") if path.exists() else {}


def _summary(results: pd.DataFrame, runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    finished = runs[runs["status"] == "finished"]
    per_run = []
    for run_id, rows in results[results["run_id"].isin(finished["run_id"])].groupby("run_id"):
        rows = rows.sort_values("epoch")
        record: dict[str, Any] = {"run_id": run_id, "variant": rows["variant"].iloc[0]}
        for m in SUMMARY_METRICS:
            if m in rows and rows[m].notna().any():
                record[f"final_{m}"] = rows[m].iloc[-1]
                record[f"best_{m}"] = rows[m].max() if m.endswith("acc") else rows[m].min()
        per_run.append(record)
    per_run_df = pd.DataFrame(per_run)
    out = []
    for variant, group in runs.groupby("variant", sort=False):
        row: dict[str, Any] = {"variant": variant}
        row.update({k: group[k].iloc[0] for k in keys})
        row["n_runs"] = len(group)
        row["n_finished"] = int((group["status"] == "finished").sum())
        mine = per_run_df[per_run_df["variant"] == variant] if len(per_run_df) else per_run_df
        for m in SUMMARY_METRICS:
            for kind in ("final", "best"):
                col = f"{kind}_{m}"
                values = mine[col].dropna() if col in mine else pd.Series(dtype=float)
                ci = mean_ci(values.tolist())
                row[f"{col}_mean"] = ci.mean
                row[f"{col}_std"] = float("nan") if ci.std is None else ci.std
                row[f"{col}_ci95"] = float("nan") if ci.half is None else ci.half
        out.append(row)
    return pd.DataFrame(out)


def _run_record(run: RunDir, recorded: dict[str, Any], epochs: int
                ) -> tuple[str, str | None, list[dict[str, Any]]]:
    """A run's status, error and metrics. A file that does not read, or a finished run whose
    metrics lack or repeat epochs, makes the run ``damaged`` with the reason (and its rows are
    left out, said in a warning): one damaged run leaves the rest of the study usable."""
    try:
        meta = run.read_meta() if run.exists() else {}
        metrics = read_metrics(run.metrics_path)
    except LosslabError as e:
        log.warning("%s", e)
        return "damaged", str(e), []
    state = meta.get("status") or recorded.get("status") or "pending"
    if recorded.get("status") == "failed" and state != "finished":
        state = "failed"
    error = meta.get("error") or recorded.get("error")
    if state == "finished":
        problems = metrics_problems([int(m.get("epoch", -1)) for m in metrics], epochs,
                                    run.metrics_path)
        if problems:
            log.warning("%s", problems[0])
            return "damaged", problems[0], []
    return state, error, metrics


def _read_analysis(path: Path) -> dict[str, Any]:
    try:
        return read_json(path, what="an analysis result")
    except LosslabError as e:  # shown as that analysis's error; the rest of the report stands
        log.warning("%s", e)
        return {"analysis": path.stem, "error": str(e)}


def load_records(directory: str | Path) -> StudyRecords:
    """Everything a study directory records (see the module docstring)."""
    directory = Path(directory)
    study_dir = StudyDir(directory)
    plan_path = study_dir.plan_path
    if not plan_path.exists():
        raise MissingFileError(f"{directory} is not a study directory (no plan.json)")
    plan = read_json(plan_path, what="a study plan")
    study = read_yaml(directory / "study.yaml", what="a study file")
    status = _read_status(directory)
    variants: dict[str, dict[str, Any]] = {}
    for r in plan["runs"]:
        variants.setdefault(r["variant"], r["overrides"])
    keys = list(dict.fromkeys(k for o in variants.values() for k in o))

    run_rows, result_rows = [], []
    for r in plan["runs"]:
        run_dir = study_dir.run_dir(r["run_id"])
        state, error, metrics = _run_record(RunDir(run_dir), status.get(r["run_id"], {}),
                                            int(r["config"].get("epochs", 0)))
        values = {k: _cell(r["overrides"].get(k)) for k in keys}
        base = {"run_id": r["run_id"], "variant": r["variant"], "seed": r["seed"], **values}
        run_rows.append({**base, "status": state, "error": error, "run_dir": str(run_dir)})
        result_rows += [{**base, **m} for m in metrics]
    runs = pd.DataFrame(run_rows)
    results = pd.DataFrame(result_rows)
    if results.empty:
        results = pd.DataFrame(columns=["run_id", "variant", "seed", *keys, "epoch"])
    listed = [a.get("id") or a["name"] for a in study.get("analyses", [])]
    files = sorted(study_dir.analyses_dir.glob("*.json"),
                   key=lambda p: (listed.index(p.stem) if p.stem in listed else len(listed), p.stem))
    analyses = {p.stem: _read_analysis(p) for p in files}
    base_config = plan.get("base_config", {})
    findings_path = directory / "findings.json"
    findings = (read_json(findings_path, what="a study's findings").get("findings", [])
                if findings_path.exists() else [])
    return StudyRecords(directory=directory, name=plan.get("name", directory.name), study=study,
                        base_config=base_config, variants=variants, variant_keys=keys, runs=runs,
                        results=results, summary=_summary(results, runs, keys), analyses=analyses,
                        findings=findings)


def run_records(run_dir: str | Path) -> StudyRecords:
    """One run directory as the records of a one-run study (its name the only variant), so
    every table and per-epoch figure of a study report serves a single run as well."""
    run = RunDir(run_dir)
    if not run.metrics_path.exists():
        raise MissingFileError(f"{run.path} is not a run directory (no metrics.jsonl)")
    meta = run.read_meta() if run.exists() else {}
    config = read_yaml(run.path / "config.yaml", what="a run config") \
        if (run.path / "config.yaml").exists() else {}
    name = run.path.resolve().name
    metrics = read_metrics(run.metrics_path)
    base = {"run_id": name, "variant": name, "seed": config.get("seed", 0)}
    runs = pd.DataFrame([{**base, "status": meta.get("status", "finished"),
                          "error": meta.get("error"), "run_dir": str(run.path)}])
    results = pd.DataFrame([{**base, **m} for m in metrics])
    return StudyRecords(directory=run.path, name=name, study={}, base_config=config,
                        variants={name: {}}, variant_keys=[], runs=runs, results=results,
                        summary=_summary(results, runs, []))


def write_aggregates(records: StudyRecords) -> None:
    """``results.parquet`` and ``summary.csv`` in the study directory (atomically)."""
    from losslab.runs.atomic import atomic_write

    results = records.results.copy()
    for col in results.columns:  # metrics written as "nan"/"inf" strings back to floats
        if results[col].dtype == object and col not in ("run_id", "variant", *records.variant_keys):
            try:
                results[col] = pd.to_numeric(results[col])
            except (ValueError, TypeError):
                results[col] = results[col].astype(str)  # mixed types: parquet needs one
    atomic_write(records.directory / "results.parquet", lambda tmp: results.to_parquet(tmp, index=False))
    atomic_write(records.directory / "summary.csv", lambda tmp: records.summary.to_csv(tmp, index=False))
