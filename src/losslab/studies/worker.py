"""Run planned runs of a study: train each, or resume it if it was started before.

Backends call :func:`execute_run`: the Ray backend in a Ray worker; the local backend in a
worker process it keeps (``python -m losslab.studies.worker --serve``), which takes one run
after another from its stdin, writes each run's output to the run's log and answers with one
JSON line. A crash of one run (even a segfault or an out-of-memory kill) takes down only that
worker and that run; the backend starts a new worker. Keeping the process saves what a fresh
one pays every run: importing torch and its compiler stack (``torch.optim`` loads
``torch._dynamo``), 5-6 s of a 20 s MNIST-1D run on one core. ``python -m
losslab.studies.worker STUDY_DIR RUN_ID`` runs one run and exits.

A worker dies with its driver. The local backend passes its pid (``--parent PID``); on Linux
the worker asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``),
elsewhere a watchdog thread polls ``os.getppid()``. Without that, ``kill -9`` of the driver left
its workers training on as orphans, racing the next ``losslab run`` of the study for the same
run directories. SIGTERM (the backend's ``stop()``, a scheduler, ``kill``) is handled as Ctrl-C
(:mod:`losslab.signals`): the run is recorded ``interrupted``, atomic writes remove their
temporary files, and the worker exits quietly with status 143.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["execute_run", "die_with_parent", "watch_parent"]

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_WATCHDOG_SECONDS = 0.5


def execute_run(study_dir: str | Path, run_id: str, threads: int | None = None) -> dict[str, Any]:
    """Train or resume run ``run_id``; return ``{"run_id", "status", "error"}``.

    A failure of the run is its result, never an exception. A ``KeyboardInterrupt`` (Ctrl-C,
    or SIGTERM as :class:`~losslab.signals.Terminated`) is not a failure: the run records
    itself ``interrupted`` and the exception goes on up, so the process stops.
    """
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
    libraries') going to ``log_path`` for the run's duration, and the error, if any, at its end.

    The local backend's kept workers and the Ray backend's tasks both run runs through this, so
    every backend leaves the same ``logs/<run_id>.log``.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    saved = os.dup(1), os.dup(2)
    with open(log_path, "w", encoding="utf-8") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        try:
            result = execute_run(study_dir, run_id, threads)
            if result["error"]:  # the backend keeps this log as the run's error
                sys.stderr.write(result["error"] + "\n")
        except KeyboardInterrupt as e:  # the run recorded itself interrupted; say so in its log
            sys.stderr.write(f"run {run_id} interrupted: {e or 'KeyboardInterrupt'}\n")
            raise
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


def _set_parent_death_signal(signum: int) -> bool:
    """Ask the Linux kernel to send ``signum`` to this process when its parent dies; False
    where the call is not available (not Linux, no C library found)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


_watched: set[int] = set()  # the parents a watchdog of this process watches


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_WATCHDOG_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)  # re-parented: the parent is gone


def watch_parent(parent: int | None = None) -> None:
    """Start, once per process, a daemon thread that kills this process (SIGKILL) when its
    parent (``parent``, default the current one) dies, seen as ``os.getppid()`` changing
    (a process's parent changes only when it dies). It works everywhere, at the cost of up
    to half a second's delay, and follows the parent *process*, whatever thread started us."""
    parent = os.getppid() if parent is None else parent
    if parent in _watched:
        return
    _watched.add(parent)
    threading.Thread(target=_watch, args=(parent,), name="losslab-parent-watchdog",
                     daemon=True).start()


def die_with_parent(parent: int) -> None:
    """Make this process die (SIGKILL) when process ``parent``, its parent, dies.

    A worker killed so loses at most its current epoch, as any ``kill -9`` does: the run
    resumes from its last finished epoch in the next ``losslab run``. On Linux this is
    ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel sends the signal at once when the thread
    that started the worker exits; for the local backend that is the thread running
    :meth:`LocalBackend.run`, which stops its workers before it returns, so in effect the
    signal comes when the driver dies. The parent may have died between starting this process
    and the call (the process was then re-parented), hence the ``getppid`` checks around it.
    Where there is no prctl (macOS), :func:`watch_parent` polls ``getppid`` instead.
    """
    if os.getppid() != parent:  # already gone (or never ours): nobody waits for this worker
        os.kill(os.getpid(), signal.SIGKILL)
    if _set_parent_death_signal(signal.SIGKILL):
        if os.getppid() != parent:  # died between the check and the call
            os.kill(os.getpid(), signal.SIGKILL)
        return
    watch_parent(parent)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="run one run of a study, or serve runs on stdin")
    p.add_argument("study_dir", nargs="?")
    p.add_argument("run_id", nargs="?")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--serve", action="store_true",
                   help="take runs from stdin, one JSON line each, until it closes")
    p.add_argument("--parent", type=int, default=None, metavar="PID",
                   help="the driver's pid: exit when it dies")
    args = p.parse_args(argv)
    if args.parent is not None:
        die_with_parent(args.parent)
    if not (args.serve or (args.study_dir and args.run_id)):
        p.error("STUDY_DIR and RUN_ID are needed unless --serve")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from losslab.signals import TERMINATED_EXIT_STATUS, Terminated, sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            if args.serve:
                return serve(args.threads)
            result = execute_run(args.study_dir, args.run_id, args.threads)
    except Terminated:  # stopped by the backend or a user: the run is recorded interrupted
        return TERMINATED_EXIT_STATUS
    except KeyboardInterrupt:
        return 130
    if result["error"]:  # the backend keeps this log (logs/<run_id>.log) as the run's error
        sys.stderr.write(result["error"] + "\n")
    return 0 if result["status"] == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
