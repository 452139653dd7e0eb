"""Mode connectivity (Garipov et al. 2018): curves between trained models, for any module.

:class:`CurveModel` (bases in :mod:`~losslab.curves.bases`) wraps any network; a run with a
``curve:`` config section fits it with the trainer (:mod:`~losslab.curves.training`);
:func:`evaluate_curve` and :func:`curve_plane` measure it through the landscape engine;
:mod:`~losslab.curves.members` turns points along it into ensemble members;
:mod:`~losslab.curves.curve_runs` fits, evaluates and planes curve runs for ``losslab curve``
and the study analysis ``curve`` (:mod:`~losslab.curves.study_analysis`). See docs/curves.md.
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
