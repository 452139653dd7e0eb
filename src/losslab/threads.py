"""How many CPU threads torch may use in this process.

torch sizes its intra-op pool by the machine's cores, ignoring a CPU set (``taskset``, a batch
scheduler's allocation) and a container's CPU quota (cgroup v2 ``cpu.max``). A pool larger than
the cores a process may run on spin-waits for cores it will not get: on a loaded 2-core machine
an epoch that takes 0.35-1.05 s took 27-35 s. The study workers already set their pool to their
share of the cores; :func:`set_main_threads` does the same for the work the ``losslab`` command
does itself (maps, curves, ensembles, a study's analyses).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

__all__ = ["usable_cores", "set_main_threads"]

log = logging.getLogger(__name__)

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _quota(path: Path = CPU_MAX) -> int | None:
    """The cgroup v2 CPU quota in whole cores (rounded up), or None when there is none."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def usable_cores() -> int:
    """The cores this process may run on: its CPU set, capped by the container's quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _quota()
    return max(1, min(cores, quota) if quota else cores)


def set_main_threads() -> int:
    """Set torch's intra-op threads to :func:`usable_cores`, unless ``OMP_NUM_THREADS`` (or
    ``LOSSLAB_THREADS``) chose a count; returns the count in use."""
    import torch

    chosen = os.environ.get("LOSSLAB_THREADS") or os.environ.get("OMP_NUM_THREADS")
    threads = int(chosen) if chosen and chosen.isdigit() and int(chosen) > 0 else usable_cores()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
        log.info("torch threads: %d", threads)
    return threads
