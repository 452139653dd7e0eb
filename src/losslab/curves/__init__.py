"""Mode connectivity (Garipov et al. 2018): curves between trained models, for any module.

In progress (issue 9): the curve bases, :class:`CurveModel` and the evaluation along t are in
place and tested; fitting through the trainer, the plane, the CLI, the study analysis, the
recipes and the benchmark are still to come.
"""

from losslab.curves.bases import (
    CURVE_KINDS,
    bezier_coefficients,
    curve_coefficients,
    polychain_coefficients,
)
from losslab.curves.curve_model import CurveModel
from losslab.curves.evaluate import CurveEvaluation, default_ts, evaluate_curve

__all__ = ["CURVE_KINDS", "CurveModel", "CurveEvaluation", "bezier_coefficients",
           "curve_coefficients", "default_ts", "evaluate_curve", "polychain_coefficients"]
