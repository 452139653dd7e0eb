"""Studies: grids of runs (variants x seeds), run locally or on Ray, aggregated and reported."""

from losslab.studies.analyses import list_analyses, register_analysis
from losslab.studies.records import StudyRecords, load_records
from losslab.studies.runner import StudyOutcome, finish_study, run_study, run_study_spec
from losslab.studies.spec import StudySpec, load_study, plan_runs
from losslab.studies.suite import SuiteOutcome, load_suite, run_suite

__all__ = ["StudySpec", "StudyRecords", "StudyOutcome", "load_study", "plan_runs", "run_study",
           "run_study_spec", "finish_study", "load_records", "register_analysis", "list_analyses",
           "run_suite", "load_suite", "SuiteOutcome", "DEMO_STUDY"]

from importlib.resources import files as _files

#: The built-in demo study file (see ``losslab demo``).
DEMO_STUDY = _files("losslab.studies") / "demo.yaml"
