"""Loss and accuracy at points of weight space: lines, surfaces (Li et al. 2018).

Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the Loss Landscape of Neural Nets"
(arXiv:1712.09913) evaluate

    1-D:  f(α)    = L((1 − α) θ_s + α θ_e)          (interpolation between two solutions)
          f(α)    = L(θ_s + α δ)                     (along a direction)
    2-D:  f(α, β) = L(θ* + α δ + β η)                (a plane through θ*)

where ``L`` is the mean loss over a data set. Every point is evaluated with
``torch.func.functional_call(net, {**params, **buffers}, x)`` on a private copy ``net`` of the
model, so the user's model (weights, buffers, train/eval mode) is never changed.

The traps of the reference tool (Li et al. 2018's loss-landscape code) are avoided: α = 0 and α = 1 are exactly on the
default line grid and evaluate exactly the endpoint parameters; a surface axis whose range
contains 0 must have 0 as a grid point (else an error), so its centre is exactly θ*; the
array layout is recorded (``loss[i, j]`` is at ``(x[j], y[i])``, ``indexing="xy"``); the
BatchNorm policy is an explicit, recorded option:

* ``bn="keep"``: every point uses the centre's (or start model's) running statistics, as the
  reference tool does;
* ``bn="recompute"``: at every point the running statistics are reset and re-estimated by a
  pass over ``options.recompute_batches`` (default: the evaluation batches) in train mode, with a
  cumulative average (``momentum=None``) as :func:`torch.optim.swa_utils.update_bn` does:
  running_mean is the mean of the per-batch means, running_var the mean of the per-batch
  unbiased variances. The pass runs through ``functional_call`` on a copy of the buffers;
* ``bn="interpolate"`` (a line between two models, the default there when both models'
  buffers are known): running means follow the parameters' combination
  ``(1 − α)·μ_start + α·μ_end`` and running variances its log-linear analogue
  ``σ²_start^(1−α) · σ²_end^α`` (positive when α leaves [0, 1]), so α = 0 and α = 1 are
  exactly the two models, statistics included (under ``keep`` the end model would run on the
  start's statistics).

Data are any re-iterable collection of ``(x, y)`` batches already on the device (a list, a
:class:`~losslab.data.loader.DeviceLoader` without shuffling or augmentation, or
:func:`subset_batches`). The policies and the loss are :class:`~losslab.landscape.options.EvalOptions`;
by the loss contract (:mod:`~losslab.landscape.options`) the loss returns per-example losses, so
each point also gets the standard error of its mean loss, ``std / √n`` (meaningful as the error
of a random subset's estimate of the full data set's loss); a loss returning a scalar batch mean
gives ``nan`` errors. Grids follow :mod:`~losslab.landscape.grid`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from losslab.errors import InputError
from losslab.landscape.directions import (
    Directions,
    as_params,
    directions_metadata,
    own_buffers,
    point_buffers,
)
from losslab.landscape.grid import axis_of, plane_of
from losslab.landscape.grid_io import (
    AXIS_CONVENTION,
    LineResult,
    SurfaceResult,
    batches_digest,
    grid_fingerprint,
    grid_paths,
    load_grid,
    save_grid,
)
from losslab.landscape.options import (
    EvalOptions,
    loss_name,
)
from losslab.landscape.points import PointEvaluator
from losslab.landscape.spread import (
    RayWorkers,
    chunk_store,
    evaluate_indices,
    merge_stored,
    remove_store,
)
from losslab.params import ParamDict, check_same_keys
from losslab.progress import track

__all__ = ["evaluate_points", "line", "surface", "subset_batches", "SubsetBatches"]

Batches = Iterable[tuple[Tensor, Tensor]]
DEFAULTS = EvalOptions()


class SubsetBatches(list):
    """Batches of a fixed random subset, remembering how it was drawn (recorded in results)."""

    def __init__(self, batches: list, n: int, seed: int, population: int):
        super().__init__(batches)
        self.n, self.seed, self.population = n, seed, population

    def describe(self) -> dict[str, int]:
        return {"n": self.n, "seed": self.seed, "population": self.population}


def subset_batches(source: Any, n: int, seed: int = 0, *, batch_size: int | None = None,
                   device: torch.device | str | None = None) -> SubsetBatches:
    """``n`` examples drawn without replacement (CPU generator seeded ``seed``) from
    ``source``: a DeviceLoader (normalized as it does, never augmented), a Split (``.x``,
    ``.y``) or an ``(x, y)`` tuple; as batches of ``batch_size`` (default one batch)."""
    if hasattr(source, "num_examples") and hasattr(source, "take"):  # a DeviceLoader
        total = int(source.num_examples)
    elif hasattr(source, "x") and hasattr(source, "y"):
        x_all, y_all = source.x, source.y
        total = int(x_all.shape[0])
    else:
        x_all, y_all = source
        total = int(x_all.shape[0])
    if not 1 <= n <= total:
        raise InputError(f"subset size n must be in [1, {total}], got {n}")
    gen = torch.Generator("cpu").manual_seed(int(seed))
    index = torch.randperm(total, generator=gen)[:n]
    if hasattr(source, "take") and hasattr(source, "num_examples"):
        x, y = source.take(index)
    else:
        x, y = x_all[index.to(x_all.device)], y_all[index.to(y_all.device)]
    if device is not None:
        x, y = x.to(device), y.to(device)
    bs = batch_size or n
    batches = [(x[i:i + bs], y[i:i + bs]) for i in range(0, n, bs)]
    return SubsetBatches(batches, n=n, seed=int(seed), population=total)


def _data_meta(batches: Any) -> dict[str, Any]:
    return {"subset": batches.describe() if isinstance(batches, SubsetBatches) else None}


def evaluate_points(model: nn.Module, point: ParamDict | Any,
                    directions: Sequence[ParamDict] | Directions, *, batches: Batches,
                    coords: Tensor | Sequence[Sequence[float]], buffers: ParamDict | None = None,
                    options: EvalOptions = DEFAULTS, return_stderr: bool = False,
                    progress: bool | None = None) -> tuple[Tensor, ...]:
    """Mean loss and accuracy at ``θ_n = point + Σ_d coords[n, d] · directions[d]``.

    ``coords`` lists the points, one row of coordinates each (not a grid). Returns float64
    CPU tensors ``(loss (N,), acc (N,))``, plus the standard error of each mean loss with
    ``return_stderr=True``. ``buffers`` (None: the point's own if it is a LoadedCheckpoint or
    a module, else the model's) are used as they are under ``bn="keep"`` (the default) and
    re-estimated at each point under ``bn="recompute"`` (see the module docstring).
    ``options.points_per_call > 1`` evaluates that many points per forward with ``torch.vmap``
    over stacked parameter dicts (more memory; on a 2-core CPU one point per forward was
    faster for a small CNN, hence the default 1). ``progress``: a bar over the points
    (:func:`~losslab.progress.track`; None: on a terminal). The model is never changed.
    """
    dirs = list(directions)
    coords = torch.as_tensor(coords, dtype=torch.float64).reshape(-1, len(dirs))
    ev = PointEvaluator(model, as_params(point), point_buffers(point, model, buffers), dirs,
                        batches, options=options, bn=options.bn_or("keep"))
    with track(len(coords), "points", enabled=progress) as bar:
        loss, acc, se = ev.evaluate(coords, bar.update)
    return (loss, acc, se) if return_stderr else (loss, acc)


def _as_direction(direction: Any) -> ParamDict:
    if isinstance(direction, nn.Module) or hasattr(direction, "buffers"):
        raise InputError("line: the direction is a model or checkpoint; to interpolate "
                         "towards it pass it as end= (line(model, point, end=other))")
    dirs = list(direction) if isinstance(direction, Directions) else [direction]
    if len(dirs) != 1:
        raise InputError(f"a line needs 1 direction, got {len(dirs)}")
    return as_params(dirs[0])


def line(model: nn.Module, point: ParamDict | Any, direction: ParamDict | Any | None = None,
         *, end: ParamDict | Any | None = None, batches: Batches,
         buffers: ParamDict | None = None, end_buffers: ParamDict | None = None,
         grid: Any = (-0.5, 1.5, 41), options: EvalOptions = DEFAULTS,
         progress: bool | None = None, workers: RayWorkers | None = None) -> LineResult:
    """Loss along ``θ(α) = point + α·direction``, or ``θ(α) = (1 − α)·point + α·end``.

    Exactly one of ``direction`` (a parameter dict or a one-direction :class:`Directions`)
    and ``end`` (another model: a LoadedCheckpoint, a module or a parameter dict) is given.
    ``grid`` is one axis (:mod:`~losslab.landscape.grid`), by default 41 points on
    [-0.5, 1.5] (Li et al.'s extrapolated range, step 0.05); it must hold 0 (and 1 with
    ``end``) where its range spans them. The interpolation is written as a convex
    combination so α = 0 evaluates exactly ``point`` and α = 1 exactly ``end`` (``point +
    1·(end − point)`` would be off by rounding). ``buffers`` and ``end_buffers`` default to
    the point's and the end's own (a LoadedCheckpoint's or a module's). ``options.bn``
    defaults to ``"interpolate"`` between two models whose buffers are both known, so both
    endpoints are exact, statistics included, and to ``"keep"`` (the point's buffers
    everywhere) otherwise; ``"recompute"`` re-estimates them at every α. ``progress``: a bar
    over the points (:func:`~losslab.progress.track`; None: on a terminal). ``workers``: a
    :class:`~losslab.landscape.spread.RayWorkers` spreads the points over Ray workers (the
    same numbers; None: this process). Neither model is changed.
    """
    if (end is None) == (direction is None):
        raise InputError("line needs exactly one of direction and end")
    start_p = as_params(point)
    a = axis_of(grid, name="alphas", exact=(0.0, 1.0) if end is not None else (0.0,))
    start_b = point_buffers(point, model, buffers)
    end_b = end_buffers if end_buffers is not None else own_buffers(end)
    bn = options.bn_or("interpolate" if end is not None and end_b is not None else "keep")
    buffer_dirs = None
    if end is not None:
        end_p = as_params(end)
        check_same_keys(start_p, end_p)
        center = {k: torch.zeros_like(v) for k, v in start_p.items()}
        dirs, coords = [start_p, end_p], torch.stack([1.0 - a, a], dim=1)
        formula = "θ(α) = (1 − α)·start + α·end"
        if bn == "interpolate":
            if end_b is None:
                raise InputError("bn='interpolate' needs the end model's buffers: pass "
                                 "end_buffers, or a checkpoint or module as end")
            check_same_keys(start_b, end_b)
            buffer_dirs = [start_b, end_b]
    else:
        center, dirs, coords = start_p, [_as_direction(direction)], a[:, None]
        formula = "θ(α) = start + α·direction"
    build = partial(PointEvaluator, model, center, start_b, dirs, batches, options=options,
                    bn=bn, buffer_dirs=buffer_dirs)
    ev = build()
    values = torch.empty(3, len(coords), dtype=torch.float64)
    with track(len(coords), "line", enabled=progress) as bar:
        def record(rows: Tensor, v: Tensor) -> None:
            values[:, rows] = v
            bar.update(len(rows))

        evaluate_indices(build, ev, coords, torch.arange(len(coords)), workers, record)
    loss, acc, se = values
    meta = {"kind": "line", "formula": formula, "bn": bn, "loss_fn": loss_name(options.loss_fn),
            "num_examples": ev.num_examples, "data": _data_meta(batches),
            "points_per_call": options.points_per_call, "inference": ev.fast.describe(),
            "workers": _workers_meta(workers), "reference": "Li et al. 2018, arXiv:1712.09913"}
    return LineResult(a, loss, acc, meta, se)


def _workers_meta(workers: RayWorkers | None) -> dict[str, Any]:
    return {"backend": "local"} if workers is None else workers.describe()


def _data_digest(ev: PointEvaluator) -> str:
    """The digest of the examples a surface is evaluated on (and, when BatchNorm statistics
    are recomputed, of the batches that recompute them).

    A stored partial surface continues only with the same data: another split or subset gives
    other numbers at every point, and mixing them into one grid would go unseen.
    """
    sets = [*ev.batch_sets.items()]
    if ev.bn == "recompute":
        sets.append(("recompute_batches", ev.recompute_batches))
    return batches_digest(sets)


def surface(model: nn.Module, point: ParamDict | Any,
            directions: Sequence[ParamDict] | Directions, *, batches: Batches,
            buffers: ParamDict | None = None, grid: Any = (-1.0, 1.0, 21),
            options: EvalOptions = DEFAULTS, path: str | None = None, save_every: int = 10,
            callback: Callable[[int, int], None] | None = None,
            progress: bool | None = None, workers: RayWorkers | None = None) -> SurfaceResult:
    """``f(α, β) = L(θ* + α δ + β η)`` on a plane grid around ``point`` = θ* (Li et al. 2018, §4).

    ``grid`` is one axis for both x and y or a pair ``(x_axis, y_axis)``, each ``(lo, hi, n)``
    or explicit coordinates (:mod:`~losslab.landscape.grid`); an axis containing 0 must have 0
    as a grid point, so the centre is evaluated exactly at θ*. Layout ``indexing="xy"``:
    ``loss[i, j]`` is at ``(x[j], y[i])``, shape ``(ny, nx)`` (recorded in the metadata).
    ``buffers`` default to the point's own (a LoadedCheckpoint's or a module's), else the
    model's; ``options.bn`` defaults to ``"keep"``.

    Resumable: with ``path``, finished points are written (atomically, by
    :mod:`~losslab.landscape.grid_io`) every ``save_every`` points and when the run stops, by an
    exception or at the end; running again with the same ``path`` evaluates only the missing
    points. The file is checked to describe the same surface (grid, BN policy, loss, centre,
    buffers, directions and the evaluation data), else an error. ``callback(done, total)`` runs after each chunk
    of points. ``progress``: a bar over the points, starting at the finished ones of a resumed
    surface (:func:`~losslab.progress.track`; None: on a terminal; the finished surface is
    logged in one line).

    ``workers``: a :class:`~losslab.landscape.spread.RayWorkers` spreads the points over Ray
    workers, bitwise the same grid on CPU (:mod:`~losslab.landscape.spread`); with ``path``
    each worker writes its finished chunks to ``PATH.chunks/``, so a killed worker loses only
    its chunk in flight and a killed driver nothing written (the rerun merges them).
    """
    dirs = list(directions)
    if len(dirs) != 2:
        raise InputError(f"a surface needs 2 directions, got {len(dirs)}")
    x, y = plane_of(grid)
    ny, nx = len(y), len(x)
    yy, xx = torch.meshgrid(y, x, indexing="ij")  # point i*nx + j is (x[j], y[i])
    coords = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    center_p = as_params(point)
    bufs = point_buffers(point, model, buffers)
    bn = options.bn_or("keep")
    build = partial(PointEvaluator, model, center_p, bufs, dirs, batches, options=options, bn=bn)
    ev = build()
    meta = {"kind": "surface", "axis_convention": AXIS_CONVENTION, "indexing": "xy",
            "shape": [ny, nx], "bn": bn, "loss_fn": loss_name(options.loss_fn),
            "directions": directions_metadata(directions, 2),
            "data": _data_meta(batches), "formula": "f(x, y) = L(θ* + x·d1 + y·d2)",
            "inference": ev.fast.describe(), "workers": _workers_meta(workers),
            "reference": "Li et al. 2018, arXiv:1712.09913"}
    loss = torch.full((ny * nx,), float("nan"), dtype=torch.float64)
    acc, se = loss.clone(), loss.clone()
    done = torch.zeros(ny * nx, dtype=torch.bool)
    if path is not None:
        meta["fingerprint"] = grid_fingerprint(x, y, f"{bn}|{meta['loss_fn']}",
                                               [center_p, bufs, *dirs], _data_digest(ev))
        if grid_paths(path)[0].exists():
            arrays, old = load_grid(path)
            if old.get("fingerprint") != meta["fingerprint"]:
                raise InputError(f"{grid_paths(path)[0]} holds a different surface (grid, BN "
                                 "policy, loss, centre, directions or data differ); remove it "
                                 "or choose another path")
            loss, acc, se = (arrays[k].reshape(-1).double() for k in ("loss", "acc", "loss_se"))
            done = arrays["done"].reshape(-1).bool()
            meta["num_examples"] = old.get("num_examples")

    def save() -> None:
        meta["num_examples"] = ev.num_examples or meta.get("num_examples")
        save_grid(path, {"x": x, "y": y, "loss": loss.view(ny, nx), "acc": acc.view(ny, nx),
                         "loss_se": se.view(ny, nx), "done": done.view(ny, nx)},
                  {**meta, "complete": bool(done.all())})

    unsaved = 0

    def record(rows: Tensor, v: Tensor, merging: bool = False) -> None:
        nonlocal unsaved
        loss[rows], acc[rows], se[rows] = v
        done[rows] = True
        unsaved += len(rows)
        if merging:  # chunks stored by an earlier run: saved with the next save
            return
        if path is not None and unsaved >= save_every:
            save()
            unsaved = 0
        bar.update(len(rows))
        if callback is not None:
            callback(int(done.sum()), ny * nx)

    store = chunk_store(path)
    if path is not None:
        merge_stored(store, meta["fingerprint"], partial(record, merging=True))
    todo = torch.nonzero(~done).flatten()
    try:
        with track(ny * nx, "surface", initial=ny * nx - len(todo), enabled=progress) as bar:
            evaluate_indices(build, ev, coords, todo, workers, record, store=store,
                             fingerprint=meta.get("fingerprint", ""))
    except BaseException:
        if path is not None and unsaved:
            save()
        raise
    if path is not None and (unsaved or len(todo) == 0):
        save()
    remove_store(store)  # the grid holds every point now
    meta["num_examples"] = ev.num_examples or meta.get("num_examples")
    meta["evaluated_points"] = ev.evaluations
    meta.pop("fingerprint", None)
    return SurfaceResult(x, y, loss.view(ny, nx), acc.view(ny, nx), meta, se.view(ny, nx))
