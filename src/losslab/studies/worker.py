"""Run one planned run of a study: train it, or resume it if it was started before.

Backends call :func:`execute_run` (the Ray backend in a Ray worker, the local backend in a
fresh process through ``python -m losslab.studies.worker STUDY_DIR RUN_ID``), so a crash of
one run (even a segfault or an out-of-memory kill) cannot take the others down.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

__all__ = ["execute_run"]


def execute_run(study_dir: str | Path, run_id: str, threads: int | None = None) -> dict[str, Any]:
    """Train or resume run ``run_id``; return ``{"run_id", "status", "error"}`` (never raises)."""
    import torch

    from losslab.runs.rundir import RunDir
    from losslab.studies.study_dir import StudyDir
    from losslab.train.run import resume, train

    if threads:
        torch.set_num_threads(threads)
    study = StudyDir(study_dir)
    try:
        planned = {r.run_id: r for r in study.planned_runs()}[run_id]
        run_dir = study.run_dir(run_id)
        if RunDir(run_dir).exists():
            resume(run_dir)
        else:
            train(planned.config, run_dir)
        return {"run_id": run_id, "status": "finished", "error": None}
    except Exception as e:
        logging.getLogger(__name__).error("run %s failed: %s", run_id, e)
        return {"run_id": run_id, "status": "failed",
                "error": f"{type(e).__name__}: {e}\n{traceback.format_exc()}"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="run one run of a study")
    p.add_argument("study_dir")
    p.add_argument("run_id")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = execute_run(args.study_dir, args.run_id, args.threads)
    if result["error"]:  # the backend keeps this log (logs/<run_id>.log) as the run's error
        sys.stderr.write(result["error"] + "\n")
    return 0 if result["status"] == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
