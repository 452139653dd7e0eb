"""The plane through a curve's endpoints and one bend: DMC's two planes, with the paths on them.

Garipov et al. 2018 (Figs. 1, 3; the reference ``plane.py`` and its plotting notebook) draw two
planes through ŵ1, θ and ŵ2 with the curve and the straight segment ŵ1–ŵ2 on top: (a) the
**train loss with the l2 regulariser added** and (b) the **test error (%)**. An orthonormal
basis of that plane (Gram-Schmidt):

    e1 = (ŵ2 − ŵ1) / ‖ŵ2 − ŵ1‖,   e2 = v / ‖v‖,   v = (θ − ŵ1) − ((θ − ŵ1)·e1) e1,

so a point p has coordinates ((p − ŵ1)·e1, (p − ŵ1)·e2) in units of weight-space distance:
ŵ1 is (0, 0), ŵ2 is (‖ŵ2 − ŵ1‖, 0). The grid spans the control points' coordinates plus a
``margin`` (a fraction of the span) on every side and is evaluated by the landscape engine
(:class:`losslab.landscape.points.PointEvaluator`: one private copy, every split's data
resident once) with BatchNorm statistics recomputed at every grid point on the training
batches when the network has BatchNorm (the paper's ``update_bn``), else as it is; each point
is built and its BatchNorm pass run once for all splits. A one-bend Bezier curve lies in the
plane; for more bends the curve is projected and ``curve_off_plane`` gives its largest
distance from the plane. Layout: ``loss[i, j]`` is at ``(x[j], y[i])``.

The l2 term. At the grid point w(x, y) = ŵ1 + x·e1 + y·e2,

    l2[i, j] = ½ · wd · ‖w(x[j], y[i])‖²,   train_loss_l2 = loss + l2,

with ``wd`` the ``weight_decay`` given (for a curve run, its ``optimizer.weight_decay``) and w
the flat vector of **every trainable parameter of the network** (weights and biases of every
layer, BatchNorm's affine weight and bias included; running statistics and other buffers not):
the vector the curve is fitted in, and the set DMC's ``curves.l2_regularizer(wd)`` decays, ½·wd
times the sum over its curve modules (Linear, Conv2d, BatchNorm; all parameters of its
architectures) of ‖w_t‖², the objective a DMC curve is trained with (and losslab's
``CurveWeightDecay``). ‖w‖² is closed form in the basis, in float64, without running the net:

    ‖w‖² = ‖ŵ1‖² + 2x (ŵ1·e1) + 2y (ŵ1·e2) + x² (e1·e1) + 2xy (e1·e2) + y² (e2·e2)

(the Gram entries are kept rather than taken as 1 and 0, so the value is that of the float64
point ŵ1 + x e1 + y e2; the network itself runs at that point rounded to its own dtype). One
difference from the reference, stated so nobody is surprised: DMC's ``plane.py`` passes
``utils.l2_regularizer(wd)`` to its ``utils.test``, which adds ½·wd·Σ_k ‖w_k‖ over the base
model's parameter tensors k, a sum of *unsquared* per-tensor norms; we add the squared norm
above, the quantity its curves are trained on and the paper's "l2-regularized train loss".

The test error is ``test_error = 100 · (1 − test_acc)`` on ``test_batches``, in percent, as
DMC's ``te_err``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor

from losslab.curves.curve_model import CurveModel
from losslab.curves.evaluate import bn_policy
from losslab.errors import InputError
from losslab.landscape.grid import plane_of
from losslab.landscape.options import EvalOptions
from losslab.landscape.points import PointEvaluator
from losslab.landscape.spread import RayWorkers, evaluate_indices
from losslab.params import buffers_of
from losslab.progress import track

__all__ = ["CurvePlane", "curve_plane", "plane_l2"]

AXIS_CONVENTION = "loss[i, j] is at (x[j], y[i])"
L2_FORMULA = ("l2 = 0.5 * weight_decay * ||w||^2 at w = w1 + x e1 + y e2, w every trainable "
              "parameter of the network (no buffers), closed form in float64; "
              "train_loss_l2 = loss + l2")


@dataclass
class CurvePlane:
    """The grids over the plane (float64, (ny, nx), ``[i, j]`` at ``(x[j], y[i])``) and the
    paths on it. ``loss``/``acc`` are on the training batches; the ``test_*`` grids are
    ``None`` when no test batches were given; ``extra`` holds ``{"loss", "acc"}`` grids of
    further named sets."""

    x: Tensor                 # (nx,) float64
    y: Tensor                 # (ny,)
    loss: Tensor              # (ny, nx) train loss (cross-entropy)
    acc: Tensor               # train accuracy in [0, 1]
    curve_xy: Tensor          # (T, 2) the curve's projection, t = 0 … 1
    line_xy: Tensor           # (2, 2) ŵ1 and ŵ2
    control_xy: Tensor        # (n + 2, 2) ŵ1, the bends, ŵ2
    curve_off_plane: float    # max distance of the curve from the plane
    metadata: dict = field(default_factory=dict)
    l2: Tensor | None = None              # ½·wd·‖w‖² at every grid point
    train_loss_l2: Tensor | None = None   # loss + l2: DMC's plane (a)
    test_loss: Tensor | None = None
    test_acc: Tensor | None = None
    test_error: Tensor | None = None      # 100·(1 − test_acc): DMC's plane (b)
    extra: dict[str, dict[str, Tensor]] = field(default_factory=dict)


DEFAULTS = EvalOptions()


def _basis(points: Tensor, bend: int) -> tuple[Tensor, Tensor, Tensor]:
    w1, w2, theta = points[0], points[-1], points[bend]
    u = w2 - w1
    if float(u.norm()) == 0.0:
        raise InputError("the endpoints coincide: no plane through them")
    e1 = u / u.norm()
    v = (theta - w1) - ((theta - w1) @ e1) * e1
    if float(v.norm()) <= 1e-12 * float(u.norm()):
        raise InputError("the bend lies on the straight line (an untrained curve): the plane "
                         "through the endpoints and the bend is not defined")
    return w1, e1, v / v.norm()


def plane_l2(origin: Tensor, e1: Tensor, e2: Tensor, x: Tensor, y: Tensor,
             weight_decay: float) -> Tensor:
    """½·wd·‖origin + x·e1 + y·e2‖² on the grid (``[i, j]`` at ``(x[j], y[i])``), in float64,
    from the Gram matrix of (origin, e1, e2): no weight vector is built per point."""
    basis = torch.stack([origin, e1, e2]).double()
    g = basis @ basis.T
    xx = x.double()[None, :]
    yy = y.double()[:, None]
    sq = (g[0, 0] + 2 * xx * g[0, 1] + 2 * yy * g[0, 2] + xx * xx * g[1, 1]
          + 2 * xx * yy * g[1, 2] + yy * yy * g[2, 2])
    return 0.5 * float(weight_decay) * sq.cpu()


@torch.no_grad()
def curve_plane(curve: CurveModel, *, batches: Iterable, test_batches: Iterable | None = None,
                extra_batches: Mapping[str, Iterable] | None = None, grid: Any = 21,
                options: EvalOptions = DEFAULTS, weight_decay: float = 0.0,
                margin: float = 0.2, bend: int | None = None,
                curve_points: int = 61, progress: bool | None = None,
                workers: RayWorkers | None = None) -> CurvePlane:
    """DMC's planes through ŵ1, bend ``bend`` (1-based; default the middle one) and ŵ2: the
    loss and accuracy on ``batches`` (the training batches), ``train_loss_l2 = loss +
    ½·weight_decay·‖w‖²``, and with ``test_batches`` the test loss, accuracy and error (%);
    ``extra_batches`` (e.g. ``{"val": ...}``) are evaluated at the same points.

    ``grid`` follows :mod:`~losslab.landscape.grid` (one axis or ``(x_axis, y_axis)``); an
    ``int n`` axis (the default, 21) spans the control points' coordinates plus ``margin`` of
    their span on each side, as DMC's plane.py. ``options``
    (:class:`~losslab.landscape.options.EvalOptions`): BatchNorm defaults to the curve's policy
    (recomputed at every point on ``options.recompute_batches``, default ``batches``, when the
    network has BatchNorm), and ``device``. See the module docstring for the basis and for
    what ‖w‖² includes. ``progress``: a bar over the grid points
    (:func:`~losslab.progress.track`; None: on a terminal; the finished plane is logged in
    one line). ``workers``: a :class:`~losslab.landscape.spread.RayWorkers` spreads the
    points over Ray workers (the same numbers; None: this process).

    Example::

        plane = curve_plane(curve, batches=train, test_batches=test, weight_decay=5e-4)
        plane.train_loss_l2, plane.test_error     # (21, 21) each, at (plane.x[j], plane.y[i])
    """
    if curve.num_bends == 0:
        raise InputError("a curve without bends is the straight line: no plane to draw")
    bend = (curve.num_bends + 1) // 2 if bend is None else bend
    if not 1 <= bend <= curve.num_bends:
        raise InputError(f"bend must be in [1, {curve.num_bends}], got {bend}")
    if weight_decay < 0:
        raise InputError(f"weight_decay must be >= 0, got {weight_decay}")
    extra = dict(extra_batches or {})
    if {"train", "test"} & set(extra):
        raise InputError("extra_batches may not be named 'train' or 'test'")
    points = curve.control_points().detach().double()
    w1, e1, e2 = _basis(points, bend)

    def project(p: Tensor) -> Tensor:
        d = p.double() - w1
        return torch.stack([d @ e1, d @ e2], dim=-1)

    control = project(points)
    lo, hi = control.min(0).values, control.max(0).values
    pad = margin * (hi - lo)

    def span(axis: int) -> Callable[[int], Tensor]:
        def values(n: int) -> Tensor:
            if n < 2:
                raise InputError(f"grid: an axis needs >= 2 points, got {n}")
            return torch.linspace(float(lo[axis] - pad[axis]), float(hi[axis] + pad[axis]), n,
                                  dtype=torch.float64)
        return values

    x, y = plane_of(grid, exact=(), auto_x=span(0), auto_y=span(1))
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    coords = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    dtype = curve.endpoints.dtype
    center, *dirs = [curve.unflatten(v.to(dtype)) for v in (w1, e1, e2)]
    bn = options.bn_or(bn_policy(curve))
    sets = {"train": batches, **({} if test_batches is None else {"test": test_batches}), **extra}
    if options.recompute_batches is None:
        options = options.with_(recompute_batches=batches)
    build = partial(PointEvaluator, curve.net, center, buffers_of(curve.net), dirs, sets,
                    options=options, bn=bn)
    ev = build()
    values = torch.empty(3 * len(sets), len(coords), dtype=torch.float64)
    with track(len(coords), "curve plane", enabled=progress) as bar:
        def record(rows: Tensor, v: Tensor) -> None:
            values[:, rows] = v
            bar.update(len(rows))

        evaluate_indices(build, ev, coords, torch.arange(len(coords)), workers, record)
    results = {name: values[3 * k:3 * k + 3] for k, name in enumerate(sets)}
    grids = {name: (loss.view(len(y), len(x)), acc.view(len(y), len(x)))
             for name, (loss, acc, _) in results.items()}
    loss, acc = grids.pop("train")
    l2 = plane_l2(w1, e1, e2, x, y, weight_decay)
    test_loss, test_acc = grids.pop("test", (None, None))
    test_error = None if test_acc is None else 100.0 * (1.0 - test_acc)
    ts = torch.linspace(0, 1, curve_points, dtype=torch.float64)
    along = torch.stack([curve.flat_point(float(t)).double() for t in ts])
    curve_xy = project(along)
    rebuilt = w1 + curve_xy[:, :1] * e1 + curve_xy[:, 1:] * e2
    off = float((along - rebuilt).norm(dim=1).max())
    meta = {"axis_convention": AXIS_CONVENTION, "indexing": "xy", "bn": bn, "bend": bend,
            "basis": "e1 = (ŵ2 − ŵ1)/‖ŵ2 − ŵ1‖, e2 ⟂ e1 towards the bend (Gram-Schmidt)",
            "weight_decay": float(weight_decay), "l2_formula": L2_FORMULA,
            "l2_parameters": curve.endpoints.shape[1],
            "test_error": "100 * (1 - test_acc), percent",
            "reference": "Garipov et al. 2018, arXiv:1802.10026; DMC plane.py"}
    return CurvePlane(x, y, loss, acc, curve_xy, project(points[[0, -1]]), control, off, meta,
                      l2=l2, train_loss_l2=loss + l2, test_loss=test_loss, test_acc=test_acc,
                      test_error=test_error,
                      extra={k: {"loss": v[0], "acc": v[1]} for k, v in grids.items()})
