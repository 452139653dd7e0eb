"""The Ray backend: each run is a Ray task with declared resources, on any Ray cluster.

Locally, ``RayBackend()`` starts a private Ray instance sized to this machine. On a cluster,
start Ray on the nodes (``ray start --head`` on one, ``ray start --address=HEAD:6379`` on the
others), install losslab on every node, put the study directory on a file system every node
sees (NFS, a shared volume), and run ``losslab run STUDY.yaml --backend ray --address
HEAD:6379`` (or ``--address auto`` on a cluster node). Each task asks for ``resources.cpus``
CPUs and ``resources.gpus`` GPUs (fractions let several runs share a GPU); Ray places them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from losslab.errors import DependencyError

__all__ = ["RayBackend"]

log = logging.getLogger(__name__)


def _execute(study_dir: str, run_id: str, threads: int) -> dict[str, Any]:
    from losslab.studies.worker import execute_run

    return execute_run(study_dir, run_id, threads)


class RayBackend:
    def __init__(self, address: str | None = None, workers: int | None = None,
                 cpus_per_run: float = 1.0, gpus_per_run: float = 0.0,
                 init_kwargs: dict[str, Any] | None = None):
        self.address = address
        self.workers = workers
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.init_kwargs = dict(init_kwargs or {})

    def _init(self):
        try:
            import ray
        except ImportError:
            raise DependencyError("the Ray backend needs ray: pip install 'losslab[all]' "
                               "(or pip install ray)") from None
        self._owns_instance = not ray.is_initialized()
        if self._owns_instance:
            kwargs = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
            if self.address is not None:
                kwargs["address"] = self.address
            ray.init(**kwargs)
        return ray

    def run(self, study_dir: str | Path, run_ids: Sequence[str],
            on_done: Callable[[dict[str, Any]], None]) -> None:
        ray = self._init()
        task = ray.remote(_execute).options(num_cpus=self.cpus_per_run,
                                            num_gpus=self.gpus_per_run, max_retries=0)
        threads = max(1, int(self.cpus_per_run))
        queue = list(run_ids)
        limit = self.workers or len(queue) or 1  # Ray itself queues what does not fit
        pending: dict[Any, str] = {}
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    run_id = queue.pop(0)
                    pending[task.remote(str(Path(study_dir).resolve()), run_id, threads)] = run_id
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    run_id = pending.pop(ref)
                    try:
                        on_done(ray.get(ref))
                    except Exception as e:  # the task's process died (node lost, OOM kill)
                        on_done({"run_id": run_id, "status": "failed", "error": f"ray task failed: {e}"})
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if self._owns_instance:
                ray.shutdown()
