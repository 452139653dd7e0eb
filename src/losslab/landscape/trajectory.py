"""An optimization trajectory on the loss surface of its PCA plane (Li et al. 2018, §7).

Li, Xu, Taylor, Studer & Goldstein 2018 ("Visualizing the Loss Landscape of Neural Nets",
arXiv:1712.09913, §7, Fig. 9-10) plot a training run's path on the loss contours of the plane
that captures most of its motion. With checkpoints θ_1 … θ_T and the final point θ_f:

1. the PCA directions v_1, v_2 are the principal components of the rows of the T × P matrix
   M = [θ_1 − θ_f; …; θ_T − θ_f], centred on their mean as the paper's code (scikit-learn's
   ``PCA``; ``centered=False``: the SVD of M itself;
   :func:`~losslab.landscape.pca.pca_directions`; unit norm in parameter space, explained
   variance ratio s_k² / Σ_j s_j²);
2. the loss surface f(x, y) = L(θ_f + x·v_1 + y·v_2) is evaluated around θ_f
   (:func:`~losslab.landscape.evaluate.surface`; its centre is exactly θ_f);
3. each checkpoint is drawn at c_ik = ⟨θ_i − θ_f, v_k⟩ (θ_f at (0, 0)), and optionally other
   models (snapshot-ensemble or FGE members, other seeds) at their least-squares coordinates in
   the plane (:func:`~losslab.landscape.pca.project`), which for points off the plane are
   their orthogonal projections.

Coordinates are in the units of the unit-norm directions, i.e. Euclidean distance in
parameter space along v_1 and v_2. The paper notes that the path usually lies in a very
low-dimensional space: the two components explain a large part of the variance (reported in
``pca.explained_variance_ratio``).

Example::

    traj = CheckpointSet.from_run("runs/digits", role="epoch")
    plane = trajectory_plane(model, traj, batches=test_batches, grid=21, path="traj_surface")
    plt.contour(plane.surface.x, plane.surface.y, plane.surface.loss)   # loss[i, j] at (x[j], y[i])
    plt.plot(*plane.path_coords.T, "o-")
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from losslab.errors import InputError
from losslab.landscape.directions import as_params
from losslab.landscape.evaluate import surface
from losslab.landscape.grid import is_count, make_axis, plane_of
from losslab.landscape.grid_io import SurfaceResult
from losslab.landscape.options import EvalOptions
from losslab.landscape.pca import PCAResult, pca_directions, project
from losslab.landscape.spread import RayWorkers
from losslab.params import ParamDict
from losslab.runs.checkpoint_set import CheckpointRef, CheckpointSet, LoadedCheckpoint

__all__ = ["TrajectoryPlane", "trajectory_plane", "auto_range"]

DEFAULTS = EvalOptions()
PAD = 0.2  # fraction of the coordinates' span added on each side of an automatic range


@dataclass
class TrajectoryPlane:
    """A trajectory's PCA plane: the directions, the loss surface on it around θ_final, and the
    projected path (``path_coords[t]`` = (x, y) of checkpoint t, epochs in ``path_epochs``) and
    other checkpoints (``member_coords``, labelled ``run_id:role@epoch``; None if none given).
    """

    pca: PCAResult
    surface: SurfaceResult
    path_coords: Tensor
    path_epochs: list[int]
    member_coords: Tensor | None = None
    member_labels: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def auto_range(values: Tensor, n: int, pad: float = PAD) -> tuple[float, float, int]:
    """A grid ``(lo, hi, n)`` covering ``values`` padded by ``pad`` of their span on each side,
    containing 0 as an exact grid point.

    With the padded interval ``[-L, H]`` (``L, H ≥ 0``, made to contain 0), the grid is
    ``lo = −a·h, hi = b·h`` with ``a + b = n − 1`` grid steps of size
    ``h = max(L / a, H / b)``; ``a`` is chosen to minimize ``h`` (the finest grid), so 0 is
    grid point ``a`` for any ``n ≥ 3``, odd or even. A zero span is taken as ``[-1, 1]`` (then
    padded, giving ``[-1.4, 1.4]``).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 3:
        raise InputError(f"n must be an int >= 3 (0 and both sides of it), got {n!r}")
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    lo = min(float(v.min()), 0.0) if v.numel() else 0.0
    hi = max(float(v.max()), 0.0) if v.numel() else 0.0
    span = hi - lo
    if not math.isfinite(span):
        raise InputError("the coordinates are not finite")
    if span == 0.0:
        lo, hi, span = -1.0, 1.0, 2.0
    neg, pos = -(lo - pad * span), hi + pad * span
    best = None
    for a in range(1, n - 1):
        b = n - 1 - a
        h = max(neg / a, pos / b)
        if best is None or h < best[0]:
            best = (h, a, b)
    h, a, b = best
    return -a * h, b * h, n


def _label(ref: CheckpointRef | None, index: int) -> str:
    if ref is None:
        return f"#{index}"
    return f"{ref.run_id}:{ref.role}@{ref.epoch}"


def _ref(item: Any) -> CheckpointRef | None:
    if isinstance(item, CheckpointRef):
        return item
    ref = getattr(item, "ref", None)
    return ref if isinstance(ref, CheckpointRef) else None


def _load(item: Any, device: torch.device | str) -> Any:
    return item.load(device) if isinstance(item, CheckpointRef) else item


def trajectory_plane(model: nn.Module, trajectory: CheckpointSet | Sequence[Any], *,
                     batches: Iterable[tuple[Tensor, Tensor]],
                     point: LoadedCheckpoint | CheckpointRef | ParamDict | int | None = None,
                     buffers: Mapping[str, Tensor] | None = None, grid: Any = 11,
                     options: EvalOptions = DEFAULTS,
                     members: CheckpointSet | Sequence[Any] | None = None,
                     path: str | None = None, ignore: str = "none",
                     centered: bool = True, progress: bool | None = None,
                     workers: RayWorkers | None = None) -> TrajectoryPlane:
    """The loss surface on the PCA plane of a trajectory, with the path projected on it.

    ``trajectory``: the run's checkpoints in order (e.g. ``CheckpointSet.from_run(run,
    role="epoch")``; also a list of LoadedCheckpoints or parameter dicts), loaded onto
    ``options.device`` (default the CPU). ``point``: the centre θ_f (a LoadedCheckpoint,
    CheckpointRef, parameter dict or an index into the trajectory; default the last
    checkpoint). The PCA directions of ``{θ_i − θ_f}`` (centred on their mean unless
    ``centered=False``; ``ignore="biasbn"`` leaves biases and BatchNorm parameters out of them)
    span the plane; :func:`surface` evaluates ``L(θ_f + x·v_1 + y·v_2)`` with ``options`` and
    the buffers ``buffers`` (default the centre checkpoint's, else the model's), resumably
    with ``path``, and its ``progress`` bar (None: on a terminal), spread over ``workers``
    (a :class:`~losslab.landscape.spread.RayWorkers`; None: this process).

    ``grid``: as for :func:`surface` (one axis or ``(x_axis, y_axis)``), where an axis may also
    be an ``int n`` (the default, 11): :func:`auto_range` over the projected path (and
    members), their range padded by 20% on each side with 0 an exact grid point.
    ``members``: other checkpoints (snapshot or FGE members, ...) projected onto the plane
    and labelled ``run_id:role@epoch``.

    The model is never changed. Li et al. 2018, arXiv:1712.09913, §7.
    """
    device = options.device if options.device is not None else "cpu"
    refs = list(trajectory)
    if not refs:
        raise InputError("the trajectory is empty")
    points = [_load(r, device) for r in refs]
    if point is None:
        centre = points[-1]
    elif isinstance(point, int) and not isinstance(point, bool):
        centre = points[point]
    else:
        centre = _load(point, device)
    centre_p = as_params(centre)
    if buffers is None and isinstance(getattr(centre, "buffers", None), Mapping):
        buffers = centre.buffers
    pca = pca_directions(points, centre_p, k=2, ignore=ignore, centered=centered)
    path_coords = pca.coords
    path_refs = [_ref(r) for r in refs]
    epochs = [ref.epoch if ref is not None else i for i, ref in enumerate(path_refs)]
    member_coords, member_labels = None, []
    if members is not None:
        member_refs = list(members)
        loaded = [_load(m, device) for m in member_refs]
        member_labels = [_label(_ref(m), i) for i, m in enumerate(member_refs)]
        member_coords = (project(loaded, centre_p, pca.directions) if loaded
                         else torch.zeros(0, 2, dtype=torch.float64))
    every = path_coords if member_coords is None else torch.cat([path_coords, member_coords])
    x, y = plane_of(grid, auto_x=lambda n: _auto_axis(every[:, 0], n),
                    auto_y=lambda n: _auto_axis(every[:, 1], n))
    surf = surface(model, centre_p, pca.directions, batches=batches,
                   buffers=None if buffers is None else dict(buffers), grid=(x, y),
                   options=options, path=path, progress=progress, workers=workers)
    evr = [float(v) for v in pca.explained_variance_ratio]
    surf.metadata["directions"] = {"kind": "pca", "explained_variance_ratio": evr,
                                   "num_points": len(points), "ignore": ignore,
                                   "centre": "final", "centered": centered}
    auto = is_count(grid) or (isinstance(grid, (tuple, list)) and len(grid) == 2
                              and all(map(is_count, grid)))
    meta = {"kind": "trajectory_plane", "explained_variance_ratio": evr,
            "xrange": [float(x[0]), float(x[-1]), len(x)],
            "yrange": [float(y[0]), float(y[-1]), len(y)],
            "auto_range": {"grid": auto, "pad": PAD},
            "path_labels": [_label(ref, i) for i, ref in enumerate(path_refs)],
            "units": "unit-norm PCA directions: Euclidean distance in parameter space",
            "reference": "Li et al. 2018, arXiv:1712.09913, §7"}
    return TrajectoryPlane(pca, surf, path_coords, epochs, member_coords, member_labels, meta)


def _auto_axis(values: Tensor, n: int) -> Tensor:
    lo, hi, n = auto_range(values, n)
    return make_axis(lo, hi, n)
