"""Run planned runs of a study: train each, or resume it if it was started before.

Backends call :func:`execute_run`: the Ray backend in a Ray worker; the local backend in a
worker process it keeps (``python -m losslab.studies.worker --serve``), which takes one run
after another from its stdin, writes each run's output to the run's log and answers with one
JSON line. A crash of one run (even a segfault or an out-of-memory kill) takes down only that
worker and that run; the backend starts a new worker. Keeping the process saves what a fresh
one pays every run: importing torch and its compiler stack (``torch.optim`` loads
``torch._dynamo``), 5-6 s of a 20 s MNIST-1D run on one core. ``python -m
losslab.studies.worker STUDY_DIR RUN_ID`` runs one run and exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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
    from losslab.train.run import resume_run, train_run

    if threads:
        torch.set_num_threads(threads)
    study = StudyDir(study_dir)
    try:
        planned = {r.run_id: r for r in study.planned_runs()}[run_id]
        run_dir = study.run_dir(run_id)
        # init.run names a variant in the plan; the run it means is a directory of this study
        init_run = study.run_dir(planned.init_from) if planned.init_from else None
        if RunDir(run_dir).exists():
            resume_run(run_dir, init_run=init_run)
        else:
            train_run(planned.config, run_dir, init_run=init_run)
        return {"run_id": run_id, "status": "finished", "error": None}
    except Exception as e:
        logging.getLogger(__name__).error("run %s failed: %s", run_id, e)
        return {"run_id": run_id, "status": "failed",
                "error": f"{type(e).__name__}: {e}\n{traceback.format_exc()}"}


def _run_logged(study_dir: str, run_id: str, log_path: str, threads: int | None) -> dict:
    """:func:`execute_run` with the process's stdout and stderr (Python's and the C
    libraries') going to ``log_path`` for the run's duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "w", encoding="utf-8") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        try:
            result = execute_run(study_dir, run_id, threads)
            if result["error"]:  # the backend keeps this log as the run's error
                sys.stderr.write(result["error"] + "\n")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
    return result


def serve(threads: int | None) -> int:
    """Take requests ``{"study_dir", "run_id", "log"}``, one JSON line each, from stdin until it
    closes; answer each with the result of :func:`execute_run` as one JSON line on stdout."""
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        result = _run_logged(request["study_dir"], request["run_id"], request["log"], threads)
        answers.write(json.dumps(result) + "\n")
        _release_memory()
    return 0


def _release_memory() -> None:
    """Hand cached accelerator memory back between runs, so the next run starts as in a fresh
    process."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="run one run of a study, or serve runs on stdin")
    p.add_argument("study_dir", nargs="?")
    p.add_argument("run_id", nargs="?")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--serve", action="store_true",
                   help="take runs from stdin, one JSON line each, until it closes")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.serve:
        return serve(args.threads)
    if not (args.study_dir and args.run_id):
        p.error("STUDY_DIR and RUN_ID are needed unless --serve")
    result = execute_run(args.study_dir, args.run_id, args.threads)
    if result["error"]:  # the backend keeps this log (logs/<run_id>.log) as the run's error
        sys.stderr.write(result["error"] + "\n")
    return 0 if result["status"] == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
