"""Ensembles from the landscape: members, prediction, analytics.

* members are collected during training (:class:`MemberCollector`: snapshot ensembles at each
  cycle's end, FGE at each lr minimum) or taken from any checkpoint set;
* :class:`Ensemble` predicts with all members (averaged probabilities by default);
* :mod:`~losslab.ensembles.metrics` and :mod:`~losslab.ensembles.diversity` measure the ensemble
  and how much its members differ; :func:`analyze_ensemble` does it all from checkpoints;
* :mod:`~losslab.ensembles.swa` averages the members' weights (SWA) as a comparison point.
"""

from losslab.ensembles.analyze import analyze_ensemble
from losslab.ensembles.collect import MemberCollector
from losslab.ensembles.diversity import (
    agreement_counts,
    diversity_report,
    error_correlation,
    pair_table,
    pairwise_disagreement,
    pairwise_kl,
    weight_distances,
)
from losslab.ensembles.members import collect_checkpoints, predict_members
from losslab.ensembles.metrics import (
    cumulative_metrics,
    ensemble_probs,
    expected_calibration_error,
    member_metrics,
)
from losslab.ensembles.predict import Ensemble
from losslab.ensembles.swa import average_weights, recompute_batchnorm, swa_model

__all__ = [
    "Ensemble", "MemberCollector", "analyze_ensemble", "collect_checkpoints", "predict_members",
    "ensemble_probs", "member_metrics", "cumulative_metrics", "expected_calibration_error",
    "pairwise_disagreement", "agreement_counts", "error_correlation", "pairwise_kl",
    "weight_distances", "pair_table", "diversity_report",
    "average_weights", "recompute_batchnorm", "swa_model",
]
