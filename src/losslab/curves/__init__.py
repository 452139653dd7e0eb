"""Mode connectivity (Garipov et al. 2018): curves between trained models, for any module.

In progress (issue 9): the curve bases, :class:`CurveModel`, fitting through the trainer (a run
with a ``curve:`` config section), the evaluation along t and the plane are in place and
tested; the CLI, the study analysis, the recipes, the demo part and the benchmark are to come.
"""

from losslab.curves.bases import (
    CURVE_KINDS,
    bezier_coefficients,
    curve_coefficients,
    polychain_coefficients,
)
from losslab.curves.curve_model import CurveModel
from losslab.curves.evaluate import CurveEvaluation, default_ts, evaluate_curve
from losslab.curves.plane import CurvePlane, curve_plane
from losslab.curves.training import load_curve

__all__ = ["CURVE_KINDS", "CurveModel", "CurveEvaluation", "CurvePlane", "bezier_coefficients",
           "curve_coefficients", "curve_plane", "default_ts", "evaluate_curve", "load_curve",
           "polychain_coefficients"]
