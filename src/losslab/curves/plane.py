"""The plane through a curve's endpoints and one bend, with a loss grid and the paths on it.

Garipov et al. 2018 (Figs. 1, 3) draw the train loss over the plane through ŵ1, θ and ŵ2 with
the curve and the straight line on it. An orthonormal basis of that plane (Gram-Schmidt):

    e1 = (ŵ2 − ŵ1) / ‖ŵ2 − ŵ1‖,   e2 = v / ‖v‖,   v = (θ − ŵ1) − ((θ − ŵ1)·e1) e1,

so a point p has coordinates ((p − ŵ1)·e1, (p − ŵ1)·e2) in units of weight-space distance:
ŵ1 is (0, 0), ŵ2 is (‖ŵ2 − ŵ1‖, 0). The grid spans the control points' coordinates plus a
``margin`` (a fraction of the span) on every side and is evaluated by the landscape engine
(:func:`losslab.landscape.evaluate_points`) with BatchNorm statistics recomputed at every grid
point when the network has BatchNorm (the paper's choice), else as it is. A one-bend Bezier
curve lies in the plane; for more bends the curve is projected and ``curve_off_plane`` gives
its largest distance from the plane. Layout: ``loss[i, j]`` is at ``(x[j], y[i])``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from losslab.curves.curve_model import CurveModel
from losslab.curves.evaluate import bn_policy
from losslab.landscape.evaluate import evaluate_points
from losslab.params import buffers_of

__all__ = ["CurvePlane", "curve_plane"]

AXIS_CONVENTION = "loss[i, j] is at (x[j], y[i])"


@dataclass
class CurvePlane:
    x: Tensor                 # (nx,) float64
    y: Tensor                 # (ny,)
    loss: Tensor              # (ny, nx)
    acc: Tensor
    curve_xy: Tensor          # (T, 2) the curve's projection, t = 0 … 1
    line_xy: Tensor           # (2, 2) ŵ1 and ŵ2
    control_xy: Tensor        # (n + 2, 2) ŵ1, the bends, ŵ2
    curve_off_plane: float    # max distance of the curve from the plane
    metadata: dict = field(default_factory=dict)


def _basis(points: Tensor, bend: int) -> tuple[Tensor, Tensor, Tensor]:
    w1, w2, theta = points[0], points[-1], points[bend]
    u = w2 - w1
    if float(u.norm()) == 0.0:
        raise ValueError("the endpoints coincide: no plane through them")
    e1 = u / u.norm()
    v = (theta - w1) - ((theta - w1) @ e1) * e1
    if float(v.norm()) <= 1e-12 * float(u.norm()):
        raise ValueError("the bend lies on the straight line (an untrained curve): the plane "
                         "through the endpoints and the bend is not defined")
    return w1, e1, v / v.norm()


@torch.no_grad()
def curve_plane(curve: CurveModel, *, batches: Iterable, recompute_batches: Iterable | None = None,
                grid: int = 21, margin: float = 0.2, bend: int | None = None, curve_points: int = 61,
                device: torch.device | str | None = None) -> CurvePlane:
    """The loss over the plane through ŵ1, bend ``bend`` (1-based; default the middle one) and
    ŵ2, on ``grid`` × ``grid`` points; see the module docstring."""
    if curve.num_bends == 0:
        raise ValueError("a curve without bends is the straight line: no plane to draw")
    bend = (curve.num_bends + 1) // 2 if bend is None else bend
    if not 1 <= bend <= curve.num_bends:
        raise ValueError(f"bend must be in [1, {curve.num_bends}], got {bend}")
    if grid < 2:
        raise ValueError(f"grid must be >= 2, got {grid}")
    points = curve.control_points().detach().double()
    w1, e1, e2 = _basis(points, bend)

    def project(p: Tensor) -> Tensor:
        d = p.double() - w1
        return torch.stack([d @ e1, d @ e2], dim=-1)

    control = project(points)
    lo, hi = control.min(0).values, control.max(0).values
    pad = margin * (hi - lo)
    x = torch.linspace(float(lo[0] - pad[0]), float(hi[0] + pad[0]), grid, dtype=torch.float64)
    y = torch.linspace(float(lo[1] - pad[1]), float(hi[1] + pad[1]), grid, dtype=torch.float64)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    coords = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    dtype = curve.endpoints.dtype
    as_dict = [curve.unflatten(v.to(dtype)) for v in (w1, e1, e2)]
    bn = bn_policy(curve)
    loss, acc = evaluate_points(curve.net, as_dict[0], buffers_of(curve.net), as_dict[1:], coords,
                                batches, bn=bn, recompute_batches=recompute_batches,
                                device=device)
    ts = torch.linspace(0, 1, curve_points, dtype=torch.float64)
    along = torch.stack([curve.flat_point(float(t)).double() for t in ts])
    curve_xy = project(along)
    rebuilt = w1 + curve_xy[:, :1] * e1 + curve_xy[:, 1:] * e2
    off = float((along - rebuilt).norm(dim=1).max())
    meta = {"axis_convention": AXIS_CONVENTION, "indexing": "xy", "bn": bn, "bend": bend,
            "basis": "e1 = (ŵ2 − ŵ1)/‖ŵ2 − ŵ1‖, e2 ⟂ e1 towards the bend (Gram-Schmidt)",
            "reference": "Garipov et al. 2018, arXiv:1802.10026"}
    return CurvePlane(x, y, loss.view(grid, grid), acc.view(grid, grid), curve_xy,
                      project(points[[0, -1]]), control, off, meta)
