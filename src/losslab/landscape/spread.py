"""One map's points spread over Ray workers, in chunks written as they finish.

A map (a surface, a line, a trajectory plane) is a list of points θ_n = θ* + Σ_d c_nd·δ_d, each
evaluated independently, the way loss-landscape spreads a surface's points over MPI ranks (Li
et al. 2018, arXiv:1712.09913). With ``workers=RayWorkers(n)`` the points are cut into chunks
and handed out by Ray's :class:`ray.util.ActorPool` to ``n`` actors (one per GPU on a GPU
cluster, one per process on CPUs). Each actor builds its evaluation copy once (the
:class:`~losslab.landscape.points.PointEvaluator` of the map: the model, its data made
resident on its device) and keeps it for all its chunks.

Nothing finished is lost. With a store directory (the map's ``path`` plus ``.chunks``), each
actor writes every finished chunk there atomically (:func:`losslab.runs.atomic.atomic_write`)
before returning it, so

* a killed worker loses only its chunk in flight: Ray restarts the actor, which builds its
  copy again, and retries that one call (``max_restarts``, ``max_task_retries``);
* a killed driver loses nothing written: the rerun merges the stored chunks (and the map's
  partial grid) and evaluates only the points that are in neither.

Every point is evaluated by the same code on the same data with the same thread count, so the
merged grid is bitwise the single-process grid on CPU (with ``points_per_call`` > 1 the chunks
are whole multiples of it, so the vmapped groups are the single process's too).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from losslab.errors import InputError
from losslab.runs.atomic import atomic_write

__all__ = ["RayWorkers", "map_workers", "spread_points", "read_chunks", "chunk_store"]

log = logging.getLogger(__name__)

#: what one evaluation set's numbers are, in the order PointEvaluator.evaluate_sets gives them
QUANTITIES = ("loss", "acc", "loss_se")


@dataclass(frozen=True)
class RayWorkers:
    """Where a map's points are evaluated: ``workers`` Ray actors, each with ``threads`` torch
    threads (and as many Ray CPUs) and ``gpus`` GPUs (None: one when the map's device is
    CUDA, else none). ``address``: a running cluster (``"auto"`` or ``HOST:PORT``); None
    starts a private instance on this machine for the map. ``chunk``: points per chunk (None:
    about four chunks per worker, at most 32 points each, so a lost chunk costs little and
    the workers finish together). ``max_restarts``: how often a dead worker is restarted
    (and its call retried) before the map fails."""

    workers: int = 2
    address: str | None = None
    threads: int = 1
    gpus: float | None = None
    chunk: int | None = None
    max_restarts: int = 3
    init_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("workers", "threads", "chunk"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise InputError(f"RayWorkers: {name} must be a positive integer, got {value!r}")
        if self.gpus is not None and self.gpus < 0:
            raise InputError(f"RayWorkers: gpus must be >= 0, got {self.gpus!r}")

    def chunk_size(self, n_points: int, multiple: int = 1, largest: int = 32) -> int:
        """Points per chunk for ``n_points`` points (at most ``largest`` unless ``chunk``
        says), a whole multiple of ``multiple``."""
        size = self.chunk or max(1, min(largest, math.ceil(n_points / (4 * self.workers))))
        return max(multiple, (size // multiple) * multiple)

    def describe(self) -> dict[str, Any]:
        return {"backend": "ray", "workers": self.workers, "threads": self.threads,
                "address": self.address, "chunk": self.chunk}


def map_workers(backend: str, workers: int | None = None, address: str | None = None,
                threads: int = 1) -> RayWorkers | None:
    """The ``workers=`` of a map from command-line style options: None for ``"local"`` (one
    process), a :class:`RayWorkers` for ``"ray"`` (default 2 workers)."""
    if backend == "local":
        if workers is not None or address is not None:
            raise InputError("workers and address are options of backend 'ray' "
                             "(--backend ray)")
        return None
    if backend != "ray":
        raise InputError(f"backend must be 'local' or 'ray', got {backend!r}")
    return RayWorkers(workers=2 if workers is None else workers, address=address,
                      threads=threads)


def chunk_store(path: str | Path | None) -> Path | None:
    """The chunk directory of a map stored at ``path`` (``PATH.chunks``), or None."""
    return None if path is None else Path(f"{path}.chunks")


# ---------------------------------------------------------------------------------------------
# chunk files


def _chunk_path(store: Path, index: np.ndarray) -> Path:
    return store / f"chunk-{int(index[0]):08d}-{len(index)}.npz"


def _write_chunk(store: Path, fingerprint: str, chunk: dict[str, Any]) -> None:
    meta = json.dumps({"fingerprint": fingerprint, "examples": chunk["examples"],
                       "pid": chunk["pid"]})

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, index=chunk["index"], values=chunk["values"], meta_json=np.array(meta))

    store.mkdir(parents=True, exist_ok=True)
    atomic_write(_chunk_path(store, chunk["index"]), write)


def read_chunks(store: Path | None, fingerprint: str) -> list[dict[str, Any]]:
    """The chunks stored for the map with ``fingerprint``. A chunk of another map is refused
    (the store belongs to the map at its path); an unreadable one is skipped with a warning,
    its points evaluated again."""
    if store is None or not store.is_dir():
        return []
    chunks = []
    for file in sorted(store.glob("chunk-*.npz")):
        try:
            with np.load(file, allow_pickle=False) as z:
                meta = json.loads(str(z["meta_json"]))
                chunk = {"index": z["index"], "values": z["values"], **meta}
        except (OSError, ValueError, KeyError) as e:
            log.warning("skipping unreadable chunk %s (%s); its points are evaluated again",
                        file, e)
            continue
        if chunk["fingerprint"] != fingerprint:
            raise InputError(f"{store} holds chunks of a different map (grid, BN policy, loss, "
                             "centre, directions or data differ); remove it or choose another "
                             "path")
        chunks.append(chunk)
    return chunks


def remove_store(store: Path | None) -> None:
    """Remove a map's chunks once the merged map is written."""
    if store is not None and store.is_dir():
        shutil.rmtree(store, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# the workers


def chunk_values(ev: Any, coords: Tensor) -> np.ndarray:
    """(Q, M) float64: what ``ev`` gives at the M points ``coords``: its ``chunk_values``, or
    a :class:`~losslab.landscape.points.PointEvaluator`'s loss, accuracy and loss standard
    error on each evaluation set in turn (Q = 3 × sets)."""
    if hasattr(ev, "chunk_values"):
        return ev.chunk_values(coords)
    return np.concatenate([torch.stack(v).numpy() for v in ev.evaluate_sets(coords).values()])


class _PointWorker:
    """One Ray actor: the map's evaluator, built once, evaluating chunk after chunk."""

    def __init__(self, build: Callable[[], Any], threads: int) -> None:
        from losslab.studies.worker import watch_parent

        watch_parent()  # a private instance's raylet dies with the driver: so do we
        torch.set_num_threads(threads)
        self.ev = build()

    def run(self, index: np.ndarray, coords: Tensor, store: str | None,
            fingerprint: str) -> dict[str, Any]:
        chunk = {"index": index, "values": chunk_values(self.ev, coords),
                 "examples": dict(self.ev.examples), "pid": os.getpid()}
        if store is not None:
            _write_chunk(Path(store), fingerprint, chunk)
        return chunk


def _chunks(index: Tensor, size: int) -> Iterator[np.ndarray]:
    idx = index.numpy()
    for s in range(0, len(idx), size):
        yield idx[s:s + size]


def spread_points(build: Callable[[], Any], coords: Tensor, index: Tensor,
                  workers: RayWorkers, *, device: torch.device, multiple: int = 1,
                  largest: int = 32, store: Path | None = None, fingerprint: str = "",
                  on_chunk: Callable[[dict[str, Any]], None]) -> int:
    """Evaluate the points ``coords[index]`` on Ray workers; ``on_chunk(chunk)`` runs on the
    driver as each chunk finishes, in the order they finish, with ``chunk["index"]`` (which
    rows of ``coords``), ``chunk["values"]`` ((Q, points), :func:`chunk_values`) and
    ``chunk["examples"]``.

    ``build()`` (pickled to every worker) returns the evaluator: a
    :class:`~losslab.landscape.points.PointEvaluator`, or anything with ``chunk_values(coords)``
    and ``examples`` (see :func:`chunk_values`). ``store``: where
    the workers write each chunk (see the module docstring). Returns the number of points
    evaluated."""
    if len(index) == 0:
        return 0
    ray, owns = _start(workers)
    from ray.util import ActorPool

    actors: list[Any] = []
    try:
        gpus = workers.gpus if workers.gpus is not None else float(device.type == "cuda")
        actor = ray.remote(_PointWorker).options(
            num_cpus=workers.threads, num_gpus=gpus, max_restarts=workers.max_restarts,
            max_task_retries=workers.max_restarts)
        built = ray.put(build)
        actors = [actor.remote(built, workers.threads)
                  for _ in range(min(workers.workers, len(index)))]
        pool = ActorPool(actors)
        plan = list(_chunks(index, workers.chunk_size(len(index), multiple, largest)))
        where = None if store is None else str(store)
        done = 0
        for chunk in pool.map_unordered(
                lambda a, idx: a.run.remote(idx, coords[torch.from_numpy(idx)], where,
                                            fingerprint), plan):
            on_chunk(chunk)
            done += len(chunk["index"])
        return done
    finally:
        for a in actors:  # their CPUs and GPUs go back to the cluster now, not at exit
            ray.kill(a)
        if owns:
            ray.shutdown()


def _start(workers: RayWorkers) -> tuple[Any, bool]:
    from losslab.ray_session import start_ray

    return start_ray(workers.address, workers.init_kwargs)


def _record_chunk(record: Callable[[Tensor, Tensor], None], chunk: dict[str, Any]) -> None:
    """``record(rows, values)`` of one chunk, its arrays copied (Ray's and numpy's are
    read-only)."""
    record(torch.from_numpy(chunk["index"].copy()), torch.from_numpy(chunk["values"].copy()))


def evaluate_indices(build: Callable[[], Any], ev: Any, coords: Tensor, index: Tensor,
                     workers: RayWorkers | None,
                     record: Callable[[Tensor, Tensor], None], *, largest: int = 32,
                     store: Path | None = None, fingerprint: str = "") -> None:
    """Evaluate the rows ``index`` of ``coords`` and ``record(rows, values)`` each finished
    chunk (values (Q, points), :func:`chunk_values`): on ``ev`` (the driver's evaluator) in
    this process, ``points_per_call`` at a time, or with ``workers`` spread over Ray
    (:func:`spread_points`, each worker's evaluator from ``build()``, chunks of at most
    ``largest`` points unless ``workers.chunk`` says). Either way ``ev.examples`` and
    ``ev.evaluations`` end as if ``ev`` had evaluated every point."""
    step = ev.points_per_call
    if workers is None:
        for s in range(0, len(index), step):
            rows = index[s:s + step]
            record(rows, torch.from_numpy(chunk_values(ev, coords[rows])))
        return

    def on_chunk(chunk: dict[str, Any]) -> None:
        ev.examples.update(chunk["examples"])
        ev.evaluations += len(chunk["index"])
        _record_chunk(record, chunk)

    spread_points(build, coords, index, workers, device=ev.device, multiple=step,
                  largest=largest, store=store, fingerprint=fingerprint, on_chunk=on_chunk)


def merge_stored(store: Path | None, fingerprint: str,
                 record: Callable[[Tensor, Tensor], None]) -> int:
    """Record the chunks stored for this map (a rerun after a killed driver); the number of
    points they hold."""
    n = 0
    for chunk in read_chunks(store, fingerprint):
        _record_chunk(record, chunk)
        n += len(chunk["index"])
    return n
