"""The study directory: the plan, one run directory per run, aggregates, analyses, report.

::

    STUDY_DIR/
      study.yaml          the study file as given (with --set overrides applied)
      plan.json           fingerprint and every planned run (variant, seed, overrides, config)
      runs/<run_id>/      run directories (see losslab.runs.rundir)
      results.parquet     one row per run and epoch
      summary.csv         one row per variant, mean ± std over seeds
      analyses/<name>.json
      report.html, figures/
      archive/<time>/     runs set aside by --force (nothing is deleted)
"""

from __future__ import annotations

import datetime as _dt
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from losslab.errors import MissingFileError
from losslab.runs.atomic import atomic_write_json, atomic_write_text
from losslab.runs.config import ConfigError, config_to_dict, validate_config
from losslab.runs.rundir import RunDir
from losslab.studies.spec import PlannedRun, StudySpec, study_fingerprint

__all__ = ["StudyDir"]


class StudyDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    # paths ---------------------------------------------------------------------------------
    @property
    def plan_path(self) -> Path:
        return self.path / "plan.json"

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    @property
    def analyses_dir(self) -> Path:
        return self.path / "analyses"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    # the plan ------------------------------------------------------------------------------
    def read_plan(self) -> dict[str, Any] | None:
        """The study's ``plan.json`` (None where there is none yet); an unreadable one, or one
        without its fingerprint and runs, is an error that names it."""
        from losslab.errors import CorruptFileError
        from losslab.runs.readers import read_json

        what = "the study's plan (a JSON object with its fingerprint and runs)"
        try:
            plan = read_json(self.plan_path, what=what)
        except MissingFileError:
            return None
        if not isinstance(plan, dict) or not isinstance(plan.get("runs"), list) \
                or "fingerprint" not in plan:
            raise CorruptFileError(f"{self.plan_path} is not a study plan; expected {what}")
        return plan

    def planned_runs(self) -> list[PlannedRun]:
        plan = self.read_plan()
        if plan is None:
            raise MissingFileError(f"{self.path} is not a study directory (no plan.json)")
        return [PlannedRun(**r) for r in plan["runs"]]

    def prepare(self, spec: StudySpec, runs: list[PlannedRun], fingerprint: str,
                base_config: dict[str, Any], *, force: bool = False) -> list[str]:
        """Write the plan; refuse a directory holding another study unless ``force``.

        With ``force``, runs whose config changed (or that the new plan lacks) are moved to
        ``archive/<time>/`` so that no results are mixed or lost. Returns the archived run ids.
        """
        old = self.read_plan()
        archived: list[str] = []
        if old is not None and old["fingerprint"] != fingerprint \
                and _current_fingerprint(old) != fingerprint:
            if not force:
                raise ConfigError(
                    f"{self.path} holds results of a different study (its plan differs from this "
                    "study file's). Use another --out, or --force to archive the runs that "
                    "changed (into archive/) and run the new plan.")
            archived = self._archive_changed(runs)
        self.path.mkdir(parents=True, exist_ok=True)
        self.runs_dir.mkdir(exist_ok=True)
        atomic_write_text(self.path / "study.yaml",
                          yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
        atomic_write_json(self.plan_path, {"name": spec.name, "fingerprint": fingerprint,
                                           "base_config": base_config,
                                           "runs": [asdict(r) for r in runs]})
        return archived

    def _archive_changed(self, runs: list[PlannedRun]) -> list[str]:
        wanted = {r.run_id: r.config for r in runs}
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        moved = []
        for run_path in sorted(self.runs_dir.iterdir()) if self.runs_dir.is_dir() else []:
            run = RunDir(run_path)
            same = run.exists() and wanted.get(run_path.name) == _current_form(run.read_config())
            if not same:
                target = self.path / "archive" / stamp / run_path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(run_path), target)
                moved.append(run_path.name)
        return moved

    # run states ----------------------------------------------------------------------------
    def run_status(self, run_id: str) -> str:
        """'pending' (never started), or the status its meta.json records."""
        run = RunDir(self.run_dir(run_id))
        if not run.exists():
            return "pending"
        return run.read_meta().get("status", "interrupted")


def _current_form(config: dict[str, Any]) -> dict[str, Any] | None:
    """A stored run config as the current schema resolves it; None if it no longer validates.

    Configs are stored with every default written out, so a config written before a section or
    an option was added lacks only that; filling in its default (which keeps the earlier
    behaviour) must not make a finished study count as a different one.
    """
    try:
        return config_to_dict(validate_config(config))
    except ConfigError:
        return None


def _current_fingerprint(plan: dict[str, Any]) -> str | None:
    """The fingerprint of a stored plan with its configs in their current form."""
    runs = []
    for r in plan["runs"]:
        config = _current_form(r["config"])
        if config is None:
            return None
        runs.append(PlannedRun(**{**r, "config": config}))
    return study_fingerprint(runs)
