"""Maps of the Hessian's eigenvalue ratio |λ_min / λ_max| on a plane (Li et al. 2018, §6).

Li, Xu, Taylor, Studer & Goldstein 2018 ("Visualizing the Loss Landscape of Neural Nets",
arXiv:1712.09913, §6 and Fig. 7) ask whether the convexity seen in a 2-D loss plot is real:
a dimension-reduced plot can look convex while the full-dimensional surface is not. At each
point of the plot's plane

    θ(x, y) = θ* + x·d1 + y·d2

they compute the extreme eigenvalues λ_max and λ_min of the Hessian H(θ) = ∇²L(θ) of the mean
loss and map the absolute ratio

    r(x, y) = |λ_min(θ(x, y)) / λ_max(θ(x, y))|.

A convex function has a positive semi-definite Hessian (λ_min ≥ 0); at a non-convex point
λ_min < 0. Where r is small (e.g. < 0.01; the paper's blue regions) the negative curvature, if
any, is negligible next to the positive one and the region is locally convex-looking; a large
r (the paper's yellow regions) shows significant negative curvature the 2-D plot hides. The
sign of λ_min is kept in :attr:`RatioMapResult.lambda_min`, so ``lambda_min < 0`` tells a
genuinely non-convex point from a positive-definite one with a small condition number.

Both extremes come from one Lanczos run per grid point
(:func:`~losslab.landscape.hessian.eigensolvers.lanczos` with ``which="both"``, full
reorthogonalization), on a :class:`~losslab.landscape.hessian.operator.HessianOperator`
evaluated at the point θ(x, y) with the given buffers: the model is never changed. The grid
follows :func:`~losslab.landscape.evaluate.surface` (:mod:`~losslab.landscape.grid`: 0 must be
a grid point, and the centre is exactly θ*), and ``value[i, j]`` is at ``(x[j], y[i])``
(``indexing="xy"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from losslab.errors import InputError, NotFoundError
from losslab.landscape.directions import (
    Directions,
    as_params,
    directions_metadata,
    point_buffers,
)
from losslab.landscape.grid import plane_of
from losslab.landscape.grid_io import (
    batches_digest,
    grid_fingerprint,
    grid_paths,
    load_grid,
    save_grid,
)
from losslab.landscape.hessian.eigensolvers import lanczos
from losslab.landscape.hessian.operator import HessianOperator, ParamSelection
from losslab.landscape.options import EvalOptions, loss_name
from losslab.landscape.spread import (
    RayWorkers,
    chunk_store,
    evaluate_indices,
    merge_stored,
    remove_store,
)
from losslab.params import ParamDict, check_same_keys
from losslab.progress import track

__all__ = ["RATIO_AXIS_CONVENTION", "RatioMapResult", "eigenvalue_ratio_map"]

DEFAULTS = EvalOptions()

RATIO_AXIS_CONVENTION = "value[i, j] is at (x[j], y[i])"


@dataclass
class RatioMapResult:
    """Extreme Hessian eigenvalues on a grid; every array has shape ``(ny, nx)`` and
    ``value[i, j]`` is at ``(x[j], y[i])``.

    ``ratio = |lambda_min / lambda_max|`` (``nan`` where ``lambda_max == 0``); ``converged``
    says whether Lanczos met its tolerance at each point; ``num_products`` is the total number
    of Hessian-vector products over the grid (``metadata["products"]`` has them per point).
    """

    x: Tensor
    y: Tensor
    lambda_max: Tensor
    lambda_min: Tensor
    ratio: Tensor
    converged: Tensor
    num_products: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def axis_convention(self) -> str:
        return self.metadata.get("axis_convention", RATIO_AXIS_CONVENTION)

    def index_of(self, x: float, y: float) -> tuple[int, int]:
        """``(i, j)`` of the grid point ``(x, y)`` (exact coordinates), by the stored convention."""
        hits_x = torch.nonzero(self.x == x).flatten()
        hits_y = torch.nonzero(self.y == y).flatten()
        if not len(hits_x) or not len(hits_y):
            raise NotFoundError(f"({x}, {y}) is not a grid point")
        return int(hits_y[0]), int(hits_x[0])


def _point(center: ParamDict, dirs: Sequence[ParamDict], coords: Sequence[float]) -> ParamDict:
    """``center + Σ_d c_d · dirs[d]``; a zero coordinate leaves θ exactly as it is."""
    out = {}
    for k, t in center.items():
        p = t
        for c, d in zip(coords, dirs, strict=True):
            if c != 0.0:
                p = p + c * d[k]
        out[k] = p
    return out


def _resume(path: str, store: dict[str, Tensor], stored: dict[str, Any]) -> None:
    """Fill ``store`` from a partial map at ``path``, if one is there and is the same map."""
    if not grid_paths(path)[0].exists():
        return
    arrays, meta = load_grid(path)
    if meta.get("fingerprint") != stored["fingerprint"] or set(arrays) != set(store):
        raise InputError(f"{grid_paths(path)[0]} holds a different ratio map (grid, centre, "
                         "directions, data, loss, wrt or Lanczos settings differ); remove it or "
                         "choose another path")
    for key, value in arrays.items():
        store[key].copy_(value)
    stored.update(num_parameters=meta.get("num_parameters"), num_examples=meta.get("num_examples"))


class _RatioPoints:
    """The ratio map's evaluator, as a worker builds it once: at each point θ a
    :class:`HessianOperator` and one Lanczos run, giving (λmin, λmax, converged, products,
    iterations, number of parameters) per point (:func:`~losslab.landscape.spread.chunk_values`)."""

    points_per_call = 1

    def __init__(self, model: nn.Module, center: ParamDict, buffers: ParamDict,
                 dirs: list[ParamDict], batches: list, options: EvalOptions,
                 wrt: ParamSelection, max_iter: int, tol: float, seed: int) -> None:
        self.model, self.center, self.buffers, self.dirs = model, center, buffers, dirs
        self.batches, self.options, self.wrt = batches, options, wrt
        self.max_iter, self.tol, self.seed = max_iter, tol, seed
        self.device = next(iter(center.values())).device
        self.examples: dict[str, int] = {}
        self.evaluations = 0

    def chunk_values(self, coords: Tensor) -> np.ndarray:
        out = np.empty((6, len(coords)), dtype=np.float64)
        for n, c in enumerate(coords.tolist()):
            op = HessianOperator(self.model, _point(self.center, self.dirs, c),
                                 batches=self.batches, buffers=self.buffers, wrt=self.wrt,
                                 options=self.options)
            res = lanczos(op, k=1, which="both", max_iter=self.max_iter, tol=self.tol,
                          seed=self.seed, progress=False)
            out[:, n] = (res.min, res.max, bool(res.converged), op.num_products,
                         res.iterations, op.size)
            self.examples = {"": op.num_examples}
        self.evaluations += len(coords)
        return out


def eigenvalue_ratio_map(model: nn.Module, point: ParamDict | Any,
                         directions: Sequence[ParamDict] | Directions, *,
                         batches: Iterable[tuple[Any, Any]] | tuple[Tensor, Tensor],
                         buffers: Mapping[str, Tensor] | None = None,
                         grid: Any = (-1.0, 1.0, 5), options: EvalOptions = DEFAULTS,
                         wrt: ParamSelection = "all", max_iter: int = 30, tol: float = 1e-3,
                         seed: int = 0, callback: Callable[[int, int], None] | None = None,
                         path: str | None = None, progress: bool | None = None,
                         workers: RayWorkers | None = None) -> RatioMapResult:
    """λ_max, λ_min and ``|λ_min / λ_max|`` of the Hessian at every point of a plane.

    At each grid point θ = point + x·d1 + y·d2 (``grid`` as for
    :func:`~losslab.landscape.evaluate.surface`: one axis or ``(x_axis, y_axis)``; 0 must be a
    grid point so the centre is exactly ``point``) the Hessian of the mean loss over
    ``batches`` (``options.loss_fn``, per the loss contract of
    :mod:`~losslab.landscape.options`) is built as a :class:`HessianOperator` at θ with
    ``buffers`` (None: the point's own if it is a LoadedCheckpoint, else the model's; eval
    mode, so BatchNorm uses them as they are) and :func:`lanczos` (``k=1, which="both"``, at
    most ``max_iter`` products, relative residual ``tol``, start vector seeded ``seed``, the
    same at every point) gives both extremes. ``wrt`` restricts the Hessian to a parameter
    subset (see :func:`~losslab.landscape.hessian.operator.select_parameters`); the plane
    always moves every parameter. Directions are cast to the point's dtype.
    ``callback(done, total)`` runs after each point. ``progress``: a bar over the grid points,
    starting at the finished ones of a resumed map (:func:`~losslab.progress.track`; None: on
    a terminal; the finished map is logged in one line, its Lanczos runs are not).

    Resumable: with ``path``, every finished point is stored (atomically,
    :mod:`~losslab.landscape.grid_io`; a point costs a Lanczos run), and running again with the
    same ``path`` computes only the missing points. The stored file must describe the same map
    (grid, centre, buffers, directions, data, loss, ``wrt`` and the Lanczos settings), else an
    error. ``workers``: a :class:`~losslab.landscape.spread.RayWorkers` spreads the points
    over Ray workers, one point per chunk unless ``workers.chunk`` says (the same numbers;
    with ``path`` the workers' finished points are kept in ``PATH.chunks/`` as
    :func:`~losslab.landscape.evaluate.surface` keeps them).

    The model is never changed. Li et al. 2018 (arXiv:1712.09913, §6) use such maps to check
    whether convexity in a 2-D plot is real: small ratios mean locally convex-looking.
    """
    dirs_in = list(directions)
    if len(dirs_in) != 2:
        raise InputError(f"a ratio map needs 2 directions, got {len(dirs_in)}")
    if max_iter < 1:
        raise InputError(f"max_iter must be >= 1, got {max_iter}")
    center_p = {k: v.detach() for k, v in as_params(point).items()}
    bufs = {k: v.detach() for k, v in point_buffers(point, model, buffers).items()}
    dirs = []
    for d in dirs_in:
        d = as_params(d)
        check_same_keys(center_p, d)
        dirs.append({k: d[k].detach().to(device=t.device, dtype=t.dtype)
                     for k, t in center_p.items()})
    if isinstance(batches, tuple) and len(batches) == 2 and isinstance(batches[0], Tensor):
        batches = [batches]
    batches = list(batches)  # read once per point: an iterator would be exhausted
    x, y = plane_of(grid)
    ny, nx = len(y), len(x)
    lam_max = torch.full((ny, nx), float("nan"), dtype=torch.float64)
    store = {"x": x, "y": y, "lambda_max": lam_max, "lambda_min": lam_max.clone(),
             "converged": torch.zeros((ny, nx), dtype=torch.bool),
             "products": torch.zeros((ny, nx), dtype=torch.int64),
             "iterations": torch.zeros((ny, nx), dtype=torch.int64),
             "done": torch.zeros((ny, nx), dtype=torch.bool)}
    stored: dict[str, Any] = {"num_parameters": None, "num_examples": None}
    if path is not None:
        stored["fingerprint"] = grid_fingerprint(
            x, y, f"ratio|{loss_name(options.loss_fn)}|{wrt}|{max_iter}|{tol}|{seed}",
            [center_p, bufs, *dirs], batches_digest([("batches", batches)]))
        _resume(path, store, stored)
    yy, xx = torch.meshgrid(y, x, indexing="ij")  # point i*nx + j is (x[j], y[i])
    coords = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    build = partial(_RatioPoints, model, center_p, bufs, dirs, batches, options, wrt, max_iter,
                    tol, seed)
    ev = build()
    fields = ("lambda_min", "lambda_max", "converged", "products", "iterations")

    def record(rows: Tensor, values: Tensor, merging: bool = False) -> None:
        for n, r in enumerate(rows.tolist()):
            i, j = divmod(r, nx)
            for f, v in zip(fields, values[:5, n].tolist(), strict=True):
                store[f][i, j] = v
            store["done"][i, j] = True
            stored["num_parameters"] = int(values[5, n])
        stored["num_examples"] = ev.examples.get("", stored["num_examples"])
        if path is not None:
            save_grid(path, store, {"kind": "eigenvalue_ratio_map (partial)", **stored})
        if not merging:  # a chunk just evaluated, not one stored by an earlier run
            bar.update(len(rows))
            if callback is not None:
                callback(bar.done, ny * nx)

    chunks = chunk_store(path)
    if path is not None:
        merge_stored(chunks, stored["fingerprint"], partial(record, merging=True))
    finished = int(store["done"].sum())
    todo = torch.nonzero(~store["done"].reshape(-1)).flatten()
    with track(ny * nx, "ratio map", initial=finished, enabled=progress) as bar:
        evaluate_indices(build, ev, coords, todo, workers, record, largest=1, store=chunks,
                         fingerprint=stored.get("fingerprint", ""))
    remove_store(chunks)  # the stored map holds every point now
    lam_max, lam_min, converged = store["lambda_max"], store["lambda_min"], store["converged"]
    products, iterations = store["products"], store["iterations"]
    size, num_examples = stored["num_parameters"], stored["num_examples"]
    ratio = torch.where(lam_max != 0, (lam_min / lam_max).abs(),
                        torch.full_like(lam_max, float("nan")))
    meta = {"kind": "eigenvalue_ratio_map", "axis_convention": RATIO_AXIS_CONVENTION,
            "indexing": "xy", "shape": [ny, nx],
            "formula": "r(x, y) = |λmin / λmax| of ∇²L(θ* + x·d1 + y·d2)",
            "loss_fn": loss_name(options.loss_fn), "directions": directions_metadata(directions, 2),
            "hessian_wrt": wrt if isinstance(wrt, str) else list(wrt),
            "num_parameters": size, "num_examples": num_examples,
            "lanczos": {"k": 1, "which": "both", "max_iter": max_iter, "tol": tol,
                        "seed": seed, "reorthogonalize": True},
            "all_converged": bool(converged.all()), "products": products.tolist(),
            "iterations": iterations.tolist(), "bn": "eval-mode, given buffers",
            "reference": "Li et al. 2018, arXiv:1712.09913, §6"}
    return RatioMapResult(x, y, lam_max, lam_min, ratio, converged, int(products.sum()), meta)
