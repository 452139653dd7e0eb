"""Loss-landscape maps (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets").

Directions (random filter-normalized, interpolation, planes, PCA of a trajectory), loss and
accuracy along lines and on surfaces evaluated through ``torch.func.functional_call`` (the
model is never changed), and their storage.
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
    cross_entropy_per_example,
    evaluate_points,
    line,
    make_axis,
    subset_batches,
    surface,
)
from losslab.landscape.grid_io import (
    AXIS_CONVENTION,
    LineResult,
    SurfaceResult,
    load_result,
    save_result,
)
from losslab.landscape.pca import PCAResult, pca_directions, project
from losslab.landscape.ratio_map import RATIO_AXIS_CONVENTION, RatioMapResult, eigenvalue_ratio_map
from losslab.landscape.trajectory import TrajectoryPlane, auto_range, trajectory_plane

__all__ = [
    "Directions", "as_params", "interpolation_direction", "plane_through", "random_direction",
    "SubsetBatches", "cross_entropy_per_example", "evaluate_points", "line", "make_axis",
    "subset_batches", "surface",
    "AXIS_CONVENTION", "LineResult", "SurfaceResult", "load_result", "save_result",
    "PCAResult", "pca_directions", "project",
    "RATIO_AXIS_CONVENTION", "RatioMapResult", "eigenvalue_ratio_map",
    "TrajectoryPlane", "auto_range", "trajectory_plane",
]
