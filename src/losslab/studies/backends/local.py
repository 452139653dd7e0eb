"""The local backend: each run in its own worker process, several at a time.

Why processes and not threads: training holds the GIL between kernels and torch's intra-op
threads would fight each other; separate processes with ``torch.set_num_threads(cores //
workers)`` use the cores without oversubscription. Why a fresh process per run: a crash, a
leak or an out-of-memory kill stays inside one run. On a machine with GPUs, each worker is
pinned to one GPU (``CUDA_VISIBLE_DEVICES``), or several runs share one when a run asks for a
fraction of a GPU.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["LocalBackend", "default_workers"]

log = logging.getLogger(__name__)


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
    return max(1, math.floor((os.cpu_count() or 1) / max(cpus_per_run, 1e-9)))


class LocalBackend:
    def __init__(self, workers: int | None = None, cpus_per_run: float = 1.0,
                 gpus_per_run: float = 0.0, poll_seconds: float = 0.1):
        self.workers = workers or default_workers(cpus_per_run, gpus_per_run)
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        self.threads = max(1, (os.cpu_count() or 1) // self.workers)
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
        running: dict[int, tuple[subprocess.Popen, str, Any]] = {}  # slot -> process
        try:
            while queue or running:
                for slot in range(self.workers):
                    if slot not in running and queue:
                        running[slot] = self._start(study_dir, queue.pop(0), slot, logs)
                for slot, (proc, run_id, log_file) in list(running.items()):
                    if proc.poll() is not None:
                        log_file.close()
                        del running[slot]
                        on_done(self._result(run_id, proc.returncode, logs / f"{run_id}.log"))
                time.sleep(self.poll_seconds)
        finally:  # interrupted: stop the children, their runs resume next time
            for proc, _, log_file in running.values():
                proc.terminate()
                proc.wait()
                log_file.close()

    def _start(self, study_dir: Path, run_id: str, slot: int, logs: Path):
        log_file = open(logs / f"{run_id}.log", "w", encoding="utf-8")  # noqa: SIM115 (closed on exit)
        cmd = [sys.executable, "-m", "losslab.studies.worker", str(study_dir), run_id,
               "--threads", str(self.threads)]
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=self._env(slot))
        log.info("started %s in slot %d (pid %d)", run_id, slot, proc.pid)
        return proc, run_id, log_file

    @staticmethod
    def _result(run_id: str, returncode: int, log_path: Path) -> dict[str, Any]:
        if returncode == 0:
            return {"run_id": run_id, "status": "finished", "error": None}
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:].strip()
        reason = f"worker exited with status {returncode}"
        if returncode < 0:
            reason = f"worker killed by signal {-returncode}"
        return {"run_id": run_id, "status": "failed", "error": f"{reason}\n{tail}".strip()}
