"""Where a study's runs execute: local worker processes, or Ray tasks on a cluster.

A backend takes the study directory and the run ids to execute, and calls ``on_done(result)``
with ``{"run_id", "status", "error"}`` as each run ends, in completion order. Both refuse, as
an :class:`~losslab.errors.InputError` when they are made and before any process or Ray
instance starts, a ``workers`` count that is not a positive integer (``None``: as many as
fit) and a negative ``cpus_per_run`` or ``gpus_per_run``.
"""

from losslab.errors import InputError
from losslab.studies.backends.local import LocalBackend
from losslab.studies.backends.ray_backend import RayBackend

__all__ = ["LocalBackend", "RayBackend", "make_backend"]


def make_backend(name: str, *, workers: int | None = None, cpus_per_run: float = 1.0,
                 gpus_per_run: float = 0.0, address: str | None = None):
    if name == "local":
        if address is not None:
            raise InputError("--address is for the Ray backend (--backend ray)")
        return LocalBackend(workers=workers, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
    if name == "ray":
        return RayBackend(address=address, workers=workers, cpus_per_run=cpus_per_run,
                          gpus_per_run=gpus_per_run)
    raise InputError(f"unknown backend {name!r}; allowed: local, ray")
