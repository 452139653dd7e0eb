"""Loss-landscape maps (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets").

Directions (random filter-normalized, interpolation, planes, PCA of a trajectory), loss and
accuracy along lines and on surfaces evaluated through ``torch.func.functional_call`` (the
model is never changed), and their storage.

Every map has one signature family, ``fn(model, point, directions, *, batches, buffers=None,
grid=..., options=EvalOptions(...))``: ``point`` is where the map is centred (a parameter
dict, a LoadedCheckpoint or a module), ``grid`` follows :mod:`~losslab.landscape.grid` and
``options`` (:class:`~losslab.landscape.options.EvalOptions`) holds the loss (one contract:
per-example losses) and how points are evaluated; curvature operators select parameters with
``wrt=``.
"""

from losslab.landscape.directions import (
    Directions,
    as_params,
    interpolation_direction,
    plane_through,
    random_direction,
)
from losslab.landscape.evaluate import (
    SubsetBatches,
    evaluate_points,
    line,
    subset_batches,
    surface,
)
from losslab.landscape.grid import axis_of, make_axis, plane_of
from losslab.landscape.grid_io import (
    AXIS_CONVENTION,
    LineResult,
    SurfaceResult,
    load_result,
    save_result,
)
from losslab.landscape.options import EvalOptions, cross_entropy_per_example
from losslab.landscape.pca import PCAResult, pca_directions, project
from losslab.landscape.ratio_map import RATIO_AXIS_CONVENTION, RatioMapResult, eigenvalue_ratio_map
from losslab.landscape.trajectory import TrajectoryPlane, auto_range, trajectory_plane

__all__ = [
    "Directions", "as_params", "interpolation_direction", "plane_through", "random_direction",
    "EvalOptions", "cross_entropy_per_example", "make_axis", "axis_of", "plane_of",
    "SubsetBatches", "subset_batches", "evaluate_points", "line", "surface",
    "AXIS_CONVENTION", "LineResult", "SurfaceResult", "load_result", "save_result",
    "PCAResult", "pca_directions", "project",
    "RATIO_AXIS_CONVENTION", "RatioMapResult", "eigenvalue_ratio_map",
    "TrajectoryPlane", "auto_range", "trajectory_plane",
]
