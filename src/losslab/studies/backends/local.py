"""The local backend: runs in worker processes, several at a time.

Why processes and not threads: training holds the GIL between kernels and torch's intra-op
threads would fight each other; separate processes with ``torch.set_num_threads(cores //
workers)`` use the cores without oversubscription. Each slot keeps one worker process
(:func:`losslab.studies.worker.serve`) for run after run, because starting one costs more
than a small run's training (torch and its compiler stack: 5-6 s). A crash, a segfault or an
out-of-memory kill still stays inside one run: the run is recorded as failed with its log and
the slot starts a new worker. On a machine with GPUs, each worker is pinned to one GPU
(``CUDA_VISIBLE_DEVICES``), or several runs share one when a run asks for a fraction of a GPU.

Workers never outlive the driver: each is started with ``--parent`` (the driver's pid) and dies
when the driver dies, even by ``kill -9`` (:func:`losslab.studies.worker.die_with_parent`). When
the driver stops them itself (done, Ctrl-C, SIGTERM, an error), it sends SIGTERM, which a worker
handles as Ctrl-C (its run is recorded ``interrupted``), and kills any that has not exited after
:data:`STOP_TIMEOUT` seconds, so a hung worker cannot hang the driver.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from losslab.errors import InputError
from losslab.threads import usable_cores

__all__ = ["LocalBackend", "default_workers", "check_backend_options", "STOP_TIMEOUT"]

log = logging.getLogger(__name__)

#: Seconds a worker has to exit after SIGTERM before it is killed (an epoch's records and state
#: are written well within this; a worker that is still busy is stuck).
STOP_TIMEOUT = 10.0


def check_backend_options(workers: int | None, cpus_per_run: float, gpus_per_run: float) -> None:
    """Refuse option values no backend can use, before anything starts.

    ``workers=None`` means "as many as fit"; 0 used to mean that too, silently, and a negative
    count made the Ray backend wait forever for tasks it never submitted. Every backend calls
    this, so each refuses the same values with the same message.
    """
    if workers is not None and (isinstance(workers, bool)
                                or not isinstance(workers, numbers.Integral) or workers < 1):
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    for name, value, zero_ok in (("cpus_per_run", cpus_per_run, False),
                                 ("gpus_per_run", gpus_per_run, True)):
        number = not isinstance(value, bool) and isinstance(value, numbers.Real) \
            and math.isfinite(value)
        if not number or value < 0 or (value == 0 and not zero_ok):
            raise InputError(f"{name} must be a number {'>= 0' if zero_ok else '> 0'}, "
                             f"got {value!r}")


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no usable CUDA: plan for CPUs only
        return 0


def default_workers(cpus_per_run: float = 1.0, gpus_per_run: float = 0.0) -> int:
    """As many runs as fit: one per GPU (or per GPU fraction), else one per ``cpus_per_run`` cores."""
    gpus = _gpu_count()
    if gpus:
        per_gpu = max(1, math.floor(1 / gpus_per_run)) if 0 < gpus_per_run < 1 else 1
        return gpus * per_gpu
    return max(1, math.floor(usable_cores() / max(cpus_per_run, 1e-9)))


class _Worker:
    """One kept worker process and the run it is busy with (``None`` when idle)."""

    def __init__(self, threads: int, env: dict[str, str]):
        # --parent: the worker dies with this process (see losslab.studies.worker)
        cmd = [sys.executable, "-m", "losslab.studies.worker", "--serve",
               "--threads", str(threads), "--parent", str(os.getpid())]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True, bufsize=1)
        self.run_id: str | None = None
        self.log_path: Path | None = None

    def start(self, study_dir: Path, run_id: str, log_path: Path) -> None:
        request = {"study_dir": str(study_dir), "run_id": run_id, "log": str(log_path)}
        self.run_id, self.log_path = run_id, log_path
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:  # it died since the last look: answer() reports the run failed
            pass

    def answer(self) -> dict[str, Any] | None:
        """The busy run's result once the worker answered or died; None while it works."""
        if select.select([self.proc.stdout], [], [], 0)[0]:
            line = self.proc.stdout.readline()
            if line:
                self.run_id = None
                return json.loads(line)
        if self.proc.poll() is None:
            return None
        result = _died(self.run_id, self.proc.returncode, self.log_path)
        self.run_id = None
        return result

    def terminate(self) -> None:
        """Ask the worker to stop (SIGTERM: its run is recorded interrupted)."""
        if self.proc.poll() is None:
            try:
                self.proc.terminate()
            except ProcessLookupError:  # exited since the poll
                pass

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the worker: SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        _stop_all([self], timeout)


def _stop_all(workers: Sequence[_Worker], timeout: float = STOP_TIMEOUT) -> None:
    """Stop every worker within ``timeout`` seconds in all: all are asked at once, and those
    still running at the deadline are killed."""
    for worker in workers:
        worker.terminate()
    deadline = time.monotonic() + timeout
    for worker in workers:
        try:
            worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker pid %d did not stop within %.0f s of SIGTERM; killing it",
                        worker.proc.pid, timeout)
            worker.proc.kill()
            worker.proc.wait()
        for pipe in (worker.proc.stdin, worker.proc.stdout):
            try:
                pipe.close()
            except OSError:  # the pipe broke with the worker
                pass


def log_tail(log_path: Path | None, chars: int = 4000) -> str:
    """The end of a run's log, what a failure whose process died can still say."""
    if log_path is None or not Path(log_path).exists():
        return ""
    return Path(log_path).read_text(encoding="utf-8", errors="replace")[-chars:].strip()


def _died(run_id: str, returncode: int, log_path: Path) -> dict[str, Any]:
    tail = log_tail(log_path)
    reason = f"worker exited with status {returncode}"
    if returncode < 0:
        reason = f"worker killed by signal {-returncode}"
    return {"run_id": run_id, "status": "failed", "error": f"{reason}\n{tail}".strip()}


class LocalBackend:
    def __init__(self, workers: int | None = None, cpus_per_run: float = 1.0,
                 gpus_per_run: float = 0.0, poll_seconds: float = 0.1):
        check_backend_options(workers, cpus_per_run, gpus_per_run)
        self.workers = workers if workers is not None else default_workers(cpus_per_run,
                                                                            gpus_per_run)
        self.threads = max(1, usable_cores() // self.workers)
        self.gpus = _gpu_count()
        self.poll_seconds = poll_seconds

    def _env(self, slot: int) -> dict[str, str]:
        env = dict(os.environ)
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % self.gpus)
        return env

    def run(self, study_dir: str | Path, run_ids: Sequence[str],
            on_done: Callable[[dict[str, Any]], None]) -> None:
        study_dir = Path(study_dir)
        logs = study_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        queue = list(run_ids)
        slots: dict[int, _Worker] = {}
        try:
            while queue or any(w.run_id for w in slots.values()):
                for slot in range(self.workers):
                    worker = slots.get(slot)
                    if worker is not None and worker.proc.poll() is not None \
                            and worker.run_id is None:
                        worker.stop()  # died between runs: replace it
                        worker = None
                    if worker is None:
                        if not queue:
                            continue
                        worker = slots[slot] = _Worker(self.threads, self._env(slot))
                    if worker.run_id is None and queue:
                        run_id = queue.pop(0)
                        worker.start(study_dir, run_id, logs / f"{run_id}.log")
                        log.info("started %s in slot %d (pid %d)", run_id, slot, worker.proc.pid)
                for slot, worker in list(slots.items()):
                    if worker.run_id is not None and (result := worker.answer()) is not None:
                        if result["status"] != "finished" and worker.proc.poll() is not None:
                            worker.stop()
                            del slots[slot]
                        on_done(result)
                time.sleep(self.poll_seconds)
        finally:  # done or interrupted: stop the workers; unfinished runs resume next time
            _stop_all(list(slots.values()))
