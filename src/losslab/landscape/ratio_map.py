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
(:func:`~losslab.landscape.hessian.lanczos.lanczos` with ``which="both"``, full
reorthogonalization), on a :class:`~losslab.landscape.hessian.operator.HessianOperator`
evaluated at θ(x, y) through ``at=`` and ``buffers=``: the model is never changed. The grid
follows :func:`~losslab.landscape.evaluate.surface`: each range ``(lo, hi, n)`` is built by
:func:`~losslab.landscape.evaluate.make_axis` (0 must be a grid point, and the centre is
exactly θ*), and ``value[i, j]`` is at ``(x[j], y[i])`` (``indexing="xy"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losslab.landscape.directions import Directions, as_params
from losslab.landscape.evaluate import make_axis
from losslab.landscape.hessian.lanczos import lanczos
from losslab.landscape.hessian.operator import HessianOperator
from losslab.params import ParamDict, buffers_of, check_same_keys

__all__ = ["RATIO_AXIS_CONVENTION", "RatioMapResult", "eigenvalue_ratio_map"]

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
            raise KeyError(f"({x}, {y}) is not a grid point")
        return int(hits_y[0]), int(hits_x[0])


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


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


def eigenvalue_ratio_map(model: nn.Module, center: ParamDict | Any,
                         buffers: Mapping[str, Tensor] | None,
                         directions: Sequence[ParamDict] | Directions, *,
                         xrange: tuple[float, float, int] = (-1.0, 1.0, 5),
                         yrange: tuple[float, float, int] = (-1.0, 1.0, 5),
                         batches: Iterable[tuple[Any, Any]] | tuple[Tensor, Tensor],
                         loss_fn: Callable[[Any, Any], Tensor] = F.cross_entropy,
                         max_iter: int = 30, tol: float = 1e-3, seed: int = 0,
                         params: str | Sequence[str] = "all",
                         callback: Callable[[int, int], None] | None = None
                         ) -> RatioMapResult:
    """λ_max, λ_min and ``|λ_min / λ_max|`` of the Hessian at every point of a plane.

    At each grid point θ = center + x·d1 + y·d2 (``xrange``/``yrange`` are ``(lo, hi, n)``,
    see :func:`make_axis`; 0 must be a grid point so the centre is exactly ``center``) the
    Hessian of the mean loss over ``batches`` (``loss_fn`` returns a batch *mean*, e.g.
    ``F.cross_entropy``) is built as a :class:`HessianOperator` at θ with ``buffers`` (None:
    the centre's if it is a LoadedCheckpoint, else the model's; eval mode, so BatchNorm uses
    them as they are) and :func:`lanczos` (``k=1, which="both"``, at most ``max_iter``
    products, relative residual ``tol``, start vector seeded ``seed``, the same at every
    point) gives both extremes. ``params`` restricts the Hessian to a parameter subset (see
    :func:`~losslab.landscape.hessian.operator.select_parameters`); the plane always moves
    every parameter. ``callback(done, total)`` runs after each point.

    The model is never changed. Li et al. 2018 (arXiv:1712.09913, §6) use such maps to check
    whether convexity in a 2-D plot is real: small ratios mean locally convex-looking.
    """
    dirs_in = list(directions)
    if len(dirs_in) != 2:
        raise ValueError(f"a ratio map needs 2 directions, got {len(dirs_in)}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    center_p = {k: v.detach() for k, v in as_params(center).items()}
    if buffers is None:
        source = center.buffers if isinstance(getattr(center, "buffers", None), Mapping) else None
        buffers = source if source is not None else buffers_of(model)
    bufs = {k: v.detach() for k, v in buffers.items()}
    dirs = []
    for d in dirs_in:
        d = as_params(d)
        check_same_keys(center_p, d)
        dirs.append({k: d[k].detach().to(device=t.device, dtype=t.dtype)
                     for k, t in center_p.items()})
    if isinstance(batches, tuple) and len(batches) == 2 and isinstance(batches[0], Tensor):
        batches = [batches]
    batches = list(batches)  # read once per point: an iterator would be exhausted
    x, y = make_axis(*xrange, name="x"), make_axis(*yrange, name="y")
    ny, nx = len(y), len(x)
    lam_max = torch.full((ny, nx), float("nan"), dtype=torch.float64)
    lam_min = lam_max.clone()
    converged = torch.zeros((ny, nx), dtype=torch.bool)
    products = torch.zeros((ny, nx), dtype=torch.int64)
    iterations = torch.zeros((ny, nx), dtype=torch.int64)
    size = num_examples = None
    done = 0
    for i in range(ny):
        for j in range(nx):
            theta = _point(center_p, dirs, (float(x[j]), float(y[i])))
            op = HessianOperator(model, loss_fn, batches, params=params, at=theta,
                                 buffers=bufs)
            res = lanczos(op, k=1, which="both", max_iter=max_iter, tol=tol, seed=seed)
            lam_min[i, j], lam_max[i, j] = res.min, res.max
            converged[i, j] = bool(res.converged)
            products[i, j] = op.num_products
            iterations[i, j] = res.iterations
            size, num_examples = op.size, op.num_examples
            done += 1
            if callback is not None:
                callback(done, ny * nx)
    ratio = torch.where(lam_max != 0, (lam_min / lam_max).abs(),
                        torch.full_like(lam_max, float("nan")))
    dir_meta = (directions.metadata() if isinstance(directions, Directions)
                else {"kind": "user", "count": 2})
    meta = {"kind": "eigenvalue_ratio_map", "axis_convention": RATIO_AXIS_CONVENTION,
            "indexing": "xy", "shape": [ny, nx],
            "formula": "r(x, y) = |λmin / λmax| of ∇²L(θ* + x·d1 + y·d2)",
            "loss_fn": _name(loss_fn), "directions": dir_meta,
            "hessian_params": params if isinstance(params, str) else list(params),
            "num_parameters": size, "num_examples": num_examples,
            "lanczos": {"k": 1, "which": "both", "max_iter": max_iter, "tol": tol,
                        "seed": seed, "reorthogonalize": True},
            "all_converged": bool(converged.all()), "products": products.tolist(),
            "iterations": iterations.tolist(), "bn": "eval-mode, given buffers",
            "reference": "Li et al. 2018, arXiv:1712.09913, §6"}
    return RatioMapResult(x, y, lam_max, lam_min, ratio, converged, int(products.sum()), meta)
