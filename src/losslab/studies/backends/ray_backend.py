"""The Ray backend: each run is a Ray task with declared resources, on any Ray cluster.

Locally, ``RayBackend()`` starts a private Ray instance sized to this machine. On a cluster,
start Ray on the nodes (``ray start --head`` on one, ``ray start --address=HEAD:6379`` on the
others), install losslab on every node, put the study directory on a file system every node
sees (NFS, a shared volume), and run ``losslab run STUDY.yaml --backend ray --address
HEAD:6379`` (or ``--address auto`` on a cluster node). Each task asks for ``resources.cpus``
CPUs and ``resources.gpus`` GPUs (fractions let several runs share a GPU); Ray places them.

Each task writes its run's output to ``STUDY_DIR/logs/<run_id>.log``, as the local backend's
workers do, through the same function (:func:`losslab.studies.worker._run_logged`), and the
error of a failed run at its end.

Tasks die with the driver. A private instance (no ``--address``) is started by the driver and
shares its fate: measured with Ray 2.60 on Linux, ``kill -9`` of the driver takes the GCS server
and the raylet down at once, but the raylet's workers went on training (and appending epochs)
for 2-3 s until Ray noticed; each task therefore watches its worker's parent, the raylet, and
kills its process within half a second of the raylet's death. A run loses at most the epoch in
progress and resumes in the next ``losslab run``. (Ray's per-node dashboard and runtime-env
agents linger 30-100 s more, training nothing.) On a cluster (``--address``) the driver owns
its tasks: with ``kill -9`` of the driver, Ray killed the job's workers within half a second,
and the cluster lives on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from losslab.ray_session import start_ray
from losslab.studies.backends.local import check_backend_options, log_tail

__all__ = ["RayBackend"]

log = logging.getLogger(__name__)


def _log_path(study_dir: str | Path, run_id: str) -> Path:
    return Path(study_dir) / "logs" / f"{run_id}.log"


def _execute(study_dir: str, run_id: str, threads: int) -> dict[str, Any]:
    """The Ray task: train or resume one run, its output in the study's ``logs/<run_id>.log``.

    The Ray worker process dies when its parent, the raylet, does (:func:`watch_parent`):
    a private instance's raylet dies with the driver, and Ray's own clean-up left the tasks
    training and writing for 2-3 s more."""
    from losslab.studies.worker import _run_logged, watch_parent

    watch_parent()
    return _run_logged(study_dir, run_id, str(_log_path(study_dir, run_id)), threads)


class RayBackend:
    def __init__(self, address: str | None = None, workers: int | None = None,
                 cpus_per_run: float = 1.0, gpus_per_run: float = 0.0,
                 init_kwargs: dict[str, Any] | None = None):
        check_backend_options(workers, cpus_per_run, gpus_per_run)  # before Ray starts
        self.address = address
        self.workers = workers
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.init_kwargs = dict(init_kwargs or {})

    def _init(self):
        ray, self._owns_instance = start_ray(self.address, self.init_kwargs)
        return ray

    def run(self, study_dir: str | Path, run_ids: Sequence[str],
            on_done: Callable[[dict[str, Any]], None]) -> None:
        ray = self._init()
        task = ray.remote(_execute).options(num_cpus=self.cpus_per_run,
                                            num_gpus=self.gpus_per_run, max_retries=0)
        threads = max(1, int(self.cpus_per_run))
        study_dir = Path(study_dir).resolve()
        (study_dir / "logs").mkdir(parents=True, exist_ok=True)
        queue = list(run_ids)
        limit = self.workers or len(queue) or 1  # Ray itself queues what does not fit
        pending: dict[Any, str] = {}
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    run_id = queue.pop(0)
                    pending[task.remote(str(study_dir), run_id, threads)] = run_id
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    run_id = pending.pop(ref)
                    try:
                        on_done(ray.get(ref))
                    except Exception as e:  # the task's process died (node lost, OOM kill)
                        tail = log_tail(_log_path(study_dir, run_id))
                        on_done({"run_id": run_id, "status": "failed",
                                 "error": f"ray task failed: {e}\n{tail}".strip()})
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if self._owns_instance:
                ray.shutdown()
