"""Run a study: plan and validate every run, execute what is missing, aggregate, analyse, report.

Resumable by construction: a run whose record says ``finished`` and is whole (its metrics,
final checkpoint and checkpoint hashes checked by :func:`losslab.runs.verify.record_problems`)
is skipped; a finished run whose record is damaged is set aside into ``archive/`` and trained
again, with a warning saying what was found; any other run is handed to the backend, which
trains it or resumes it from its last finished epoch. The driver holds the study directory's
lock (:class:`~losslab.runs.lock.DirectoryLock`) from planning to report, so a second
``losslab run`` or ``losslab report`` of the same directory is refused while it works. A second
``losslab run`` of a finished study only rebuilds what is missing: aggregates and the report
are rebuilt from the records, and an analysis is computed again only when its inputs changed
(:mod:`losslab.studies.analysis_inputs`). A failing run is recorded with its error in
``status.json`` and its own ``meta.json`` and does not stop the others. Runs that start from
another run's checkpoint (``init.run`` naming a variant) run in a later wave than that run;
if it failed, they are recorded as failed with the reason, without starting.
"""

from __future__ import annotations

import datetime as _dt
import logging
import shutil
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from losslab.errors import LosslabError
from losslab.progress import progress_enabled, track
from losslab.runs.atomic import atomic_write_json
from losslab.runs.config import ConfigError, config_to_dict, validate_config
from losslab.runs.lock import DirectoryLock
from losslab.runs.readers import read_json
from losslab.runs.verify import record_problems
from losslab.studies.analyses import check_analysis, run_analysis
from losslab.studies.analysis_inputs import analysis_inputs, run_digests
from losslab.studies.backends import make_backend
from losslab.studies.findings import evaluate_findings
from losslab.studies.records import StudyRecords, load_records, write_aggregates
from losslab.studies.spec import (
    PlannedRun,
    StudySpec,
    base_tree,
    check_study_findings,
    load_study,
    plan_runs,
    study_fingerprint,
)
from losslab.studies.study_dir import StudyDir

__all__ = ["StudyOutcome", "run_study", "run_study_spec", "finish_study"]

log = logging.getLogger(__name__)


@dataclass
class StudyOutcome:
    directory: Path
    report: Path | None
    counts: dict[str, int]  # status -> number of runs
    archived: list[str]  # runs of a previous plan set aside by --force in this call
    failed_analyses: dict[str, str] = field(default_factory=dict)  # analysis key -> error


def run_study(path: str | Path, out: str | Path | None = None, *, backend: str = "local",
              workers: int | None = None, overrides: list[str] | None = None,
              force: bool = False, address: str | None = None,
              progress: bool | None = None) -> StudyOutcome:
    """Run the study file ``path`` into ``out`` (default ``studies/<name>``)."""
    spec, root = load_study(path, overrides)
    return run_study_spec(spec, root, out, backend=backend, workers=workers, force=force,
                          address=address, progress=progress)


def run_study_spec(spec: StudySpec, root: Path, out: str | Path | None = None, *,
                   backend: str = "local", workers: int | None = None, force: bool = False,
                   address: str | None = None, progress: bool | None = None) -> StudyOutcome:
    runs = plan_runs(spec, root)
    check_study_findings(spec)
    for analysis in spec.analyses:  # an unknown analysis fails now, not after hours of training
        try:
            check_analysis(analysis.name, analysis.options)
        except ValueError as e:
            raise ConfigError(f"the study cannot start; no run was started: {e}") from None
    base_config = config_to_dict(validate_config(base_tree(spec, root)))
    base_config.pop("seed", None)
    study = StudyDir(Path(out) if out is not None else Path("studies") / spec.name)
    with DirectoryLock(study.path, what="study"):  # one driver per study directory
        archived = study.prepare(spec, runs, study_fingerprint(runs), base_config, force=force)
        if archived:
            log.warning("archived %d changed runs of the previous plan: %s", len(archived),
                        archived)
        _execute(study, spec, runs, backend=backend, workers=workers, address=address,
                 progress=progress)
        return replace(finish_study(study.path, spec), archived=archived)


def _execute(study: StudyDir, spec: StudySpec, runs: list[PlannedRun], *, backend: str,
             workers: int | None, address: str | None, progress: bool | None) -> None:
    """Hand every run that is not finished, whole, to the backend, wave by wave."""
    status = _read_status(study)
    todo = [r.run_id for r in runs if not _done(study, r.run_id)]
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc=f"study {spec.name}",
               unit="run", disable=not progress_enabled(progress), dynamic_ncols=True)

    def on_done(result: dict[str, Any]) -> None:
        status[result["run_id"]] = {"status": result["status"], "error": result["error"],
                                    "time": _dt.datetime.now(_dt.timezone.utc).isoformat()}
        atomic_write_json(study.path / "status.json", status)
        bar.update(1)
        log.info("run %s: %s (%d of %d)", result["run_id"], result["status"], bar.n, len(runs))
        if result["status"] != "finished":
            log.warning("run %s failed: %s", result["run_id"], (result["error"] or "").splitlines()[0:1])

    if not todo:
        bar.close()
        return
    engine = make_backend(backend, workers=workers, cpus_per_run=spec.resources.cpus,
                          gpus_per_run=spec.resources.gpus, address=address)
    try:
        for wave in _waves(runs, todo):
            ready = []
            for run in wave:
                if run.init_from and study.run_status(run.init_from) != "finished":
                    on_done({"run_id": run.run_id, "status": "failed", "error":
                             f"not started: the run it starts from, {run.init_from}, did not "
                             "finish"})
                else:
                    ready.append(run.run_id)
            if ready:
                engine.run(study.path, ready, on_done)
    finally:
        bar.close()


def _done(study: StudyDir, run_id: str) -> bool:
    """Whether a run is finished with its record whole. A run whose record is damaged (its
    metrics, checkpoints or meta deleted or unreadable) is set aside, with what was found, into
    ``archive/<time>-damaged/`` and trained again: nothing is deleted, nothing counts twice."""
    try:
        if study.run_status(run_id) != "finished":
            return False
        problems = record_problems(study.run_dir(run_id))
    except LosslabError as e:  # its meta.json does not read
        problems = [str(e)]
    if not problems:
        return True
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = study.path / "archive" / f"{stamp}-damaged" / run_id
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(study.run_dir(run_id)), target)
    log.warning("run %s: its record is damaged (%s); set aside in %s and trained again",
                run_id, "; ".join(problems), target)
    return False


def _waves(runs: list[PlannedRun], todo: list[str]) -> list[list[PlannedRun]]:
    """The runs of ``todo`` in waves: a run starting from another run's checkpoint comes one
    wave after it (the planner has refused cycles)."""
    by_id = {r.run_id: r for r in runs}

    def depth(run: PlannedRun) -> int:
        return 0 if run.init_from is None else depth(by_id[run.init_from]) + 1

    waves: dict[int, list[PlannedRun]] = {}
    for run_id in todo:
        waves.setdefault(depth(by_id[run_id]), []).append(by_id[run_id])
    return [waves[k] for k in sorted(waves)]


def _read_status(study: StudyDir) -> dict[str, Any]:
    path = study.path / "status.json"
    return read_json(path, what="the study's run status") if path.exists() else {}


def finish_study(directory: str | Path, spec: StudySpec | None = None, *,
                 compute: bool = True) -> StudyOutcome:
    """Aggregate, run the analyses and build the report from the records alone.

    An analysis whose stored result was computed from the same inputs (the same finished
    runs, options and losslab: :mod:`losslab.studies.analysis_inputs`) is reused, not
    recomputed. With ``compute=False`` (``losslab report``) no analysis runs at all: the report
    shows the stored results, marking those whose inputs have changed since as stale.
    """
    directory = Path(directory)
    with DirectoryLock(directory, what="study") if (directory / "plan.json").exists() \
            else nullcontext():
        return _finish(directory, spec, compute)


def _finish(directory: Path, spec: StudySpec | None, compute: bool) -> StudyOutcome:
    records = load_records(directory)
    if spec is None:
        spec = StudySpec.model_validate(records.study)
    write_aggregates(records)
    failed, stale = _run_analyses(records, spec, compute)
    records = load_records(directory)  # with the analyses just written
    for key in stale:  # said in the report; the stored file itself is left as it was
        records.analyses[key] = {**records.analyses[key], "stale": STALE}
    records.findings = _write_findings(records, spec)
    report = _build_report(records)
    counts = records.runs["status"].value_counts().to_dict()
    return StudyOutcome(directory=directory, report=report, counts=counts, archived=[],
                        failed_analyses=failed)


STALE = ("computed before the study's runs last changed; `losslab run` on the study "
         "recomputes it")


def _run_analyses(records: StudyRecords, spec: StudySpec,
                  compute: bool = True) -> tuple[dict[str, str], list[str]]:
    """Bring every analysis of the study in ``analyses/<key>.json`` up to date with the
    records, reusing each result whose inputs are unchanged; returns the failed analyses
    (key -> error, each also recorded in its file and shown in the report) and, when not
    ``compute``, the keys of the stored results that are out of date."""
    failed: dict[str, str] = {}
    stale: list[str] = []
    out = StudyDir(records.directory).analyses_dir
    out.mkdir(exist_ok=True)
    wanted = {a.key for a in spec.analyses}
    for old in out.glob("*.json"):  # an analysis dropped from the study leaves the report
        if old.stem not in wanted:
            old.unlink()
    digests = run_digests(records.runs.to_dict("records"))
    todo = []
    for analysis in spec.analyses:
        inputs = analysis_inputs(analysis.name, analysis.options, digests)
        stored = _stored(out / f"{analysis.key}.json")
        if stored is not None and stored.get("inputs") == inputs:  # only whole results have them
            log.info("analysis %s: inputs unchanged, stored result kept", analysis.key)
        elif compute:
            todo.append((analysis, inputs))
        elif stored is not None and _errors_in(stored):
            failed[analysis.key] = "; ".join(_errors_in(stored))
        elif stored is not None:
            stale.append(analysis.key)
    with track(len(todo), "analyses", unit="analysis", enabled=None if todo else False) as bar:
        for analysis, inputs in todo:  # each map inside draws its own bar below this one
            failed.update(_compute_analysis(records, analysis, inputs, out))
            bar.update()
    return failed, stale


def _stored(path: Path) -> dict[str, Any] | None:
    """The stored result at ``path``, or None when there is none or it does not read (then
    it is computed again)."""
    if not path.exists():
        return None
    try:
        return read_json(path, what="a stored analysis result")
    except LosslabError as e:
        log.warning("%s; it is computed again", e)
        return None


def _compute_analysis(records: StudyRecords, analysis: Any, inputs: str,
                      out: Path) -> dict[str, str]:
    """Run one analysis into ``out/<key>.json``; ``{key: error}`` if it failed (wholly or a
    part of it), else ``{}``. A failure is stored too, and computed again next time."""
    start = time.perf_counter()
    try:
        result = run_analysis(analysis.name, records, analysis.options)
    except Exception as e:  # recorded and shown in the report; other analyses still run
        log.error("analysis %s failed: %s", analysis.key, e)
        result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    errors = _errors_in(result)
    if errors and "traceback" not in result:  # failed inside (one variant, one run): say so
        log.error("analysis %s failed: %s", analysis.key, "; ".join(errors))
    result.setdefault("analysis", analysis.name)  # the report finds its section by it
    if not errors:  # a failure is never reused: the next run tries again
        result["inputs"] = inputs
    atomic_write_json(out / f"{analysis.key}.json", result)
    log.info("analysis %s: computed in %.1f s", analysis.key, time.perf_counter() - start)
    return {analysis.key: "; ".join(errors)} if errors else {}


def _errors_in(result: Any, where: str = "") -> list[str]:
    """Every ``error`` an analysis result records, at its top or inside (an analysis that runs
    per variant or per run records a part's failure there and goes on), with where it was."""
    if isinstance(result, dict):
        found = [f"{where}: {result['error']}" if where else str(result["error"])] \
            if isinstance(result.get("error"), str) else []
        for key, value in result.items():
            found += _errors_in(value, f"{where}/{key}" if where else str(key))
        return found
    if isinstance(result, list):
        return [e for i, v in enumerate(result) for e in _errors_in(v, f"{where}[{i}]")]
    return []


def _write_findings(records: StudyRecords, spec: StudySpec) -> list[dict[str, Any]]:
    """``findings.json``: every finding of the study with its verdict (none: no file)."""
    path = records.directory / "findings.json"
    if not spec.findings:
        path.unlink(missing_ok=True)
        return []
    findings = evaluate_findings(records, spec.findings)
    atomic_write_json(path, {"study": records.name, "findings": findings})
    return findings


def _build_report(records: StudyRecords) -> Path | None:
    from losslab.report import build_report

    return build_report(records)
