"""Loss and accuracy along a curve, against the straight line (Garipov et al. 2018, §4).

``evaluate_curve(curve, train=..., test=...)`` evaluates φ(t) at ``ts`` (default 61 points on
[0, 1], as the paper) on the train and test batches, and the straight line
(1 − t)·ŵ1 + t·ŵ2 at the same t. Every point goes through the landscape engine
(:func:`losslab.landscape.evaluate_points`): the curve's point is the linear combination
Σ_j c_j(t)·w_j of its control points, so the control points are the "directions" and the
coefficients the coordinates (the line's are (1 − t, 0, …, 0, t)); the network runs on one
private copy (fused, data resident on the device) for both paths and both splits. BatchNorm
statistics are recomputed at every t on the training batches (``bn="recompute"``, the paper's
``update_bn``), once per point for both splits, since the curve model's running statistics
mix all t; a model without BatchNorm is evaluated as it is.

Summaries, on the training loss as the paper's plots: the **barrier**, max_t L(φ(t)) minus the
mean of the endpoints' losses; the **length-weighted mean loss**
∫ L(φ(t)) ‖φ'(t)‖ dt / ∫ ‖φ'(t)‖ dt (the "uniform on the curve" objective the seed discusses;
trapezoids on the polygon through the ts); and the curve's **length**.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from losslab.curves.curve_model import CurveModel, segment_lengths
from losslab.ensembles.swa import has_batchnorm
from losslab.errors import InputError
from losslab.landscape.options import EvalOptions
from losslab.landscape.points import PointEvaluator
from losslab.params import buffers_of
from losslab.progress import track

__all__ = ["CurveEvaluation", "evaluate_curve", "default_ts", "bn_policy"]


def default_ts(n: int = 61) -> Tensor:
    """``n`` equally spaced t on [0, 1], 0 and 1 exact."""
    return torch.linspace(0.0, 1.0, n, dtype=torch.float64)


@dataclass
class CurveEvaluation:
    """Values along t (float64, shape (T,)) for the curve and the straight line."""

    ts: Tensor
    curve: dict[str, Tensor]   # train_loss, train_acc, test_loss, test_acc (those evaluated)
    line: dict[str, Tensor]
    barrier: dict[str, float]  # "curve", "line": max train loss minus the endpoints' mean
    mean_loss: dict[str, float]  # length-weighted mean train loss
    length: dict[str, float]
    metadata: dict = field(default_factory=dict)


def bn_policy(curve: CurveModel) -> str:
    """``"recompute"`` for a network with BatchNorm (its running statistics mix every t),
    else ``"keep"``."""
    return "recompute" if has_batchnorm(curve.net) else "keep"


def _path_stats(flat_points: Tensor, loss: Tensor) -> tuple[float, float]:
    """(length, length-weighted mean of ``loss``) of the polygon through ``flat_points``."""
    seg = segment_lengths(flat_points)
    length = float(seg.sum())
    if length == 0.0:
        return 0.0, float(loss.mean())
    mid = (loss[1:] + loss[:-1]) / 2
    return length, float((mid * seg.cpu()).sum() / length)


@torch.no_grad()
def evaluate_curve(curve: CurveModel, *, train: Iterable, test: Iterable | None = None,
                   ts: Sequence[float] | Tensor | None = None,
                   device: torch.device | str | None = None,
                   progress: bool | None = None) -> CurveEvaluation:
    """Train (and test) loss and accuracy along the curve and the straight line; see the
    module docstring. ``train`` and ``test`` are re-iterable batches on the device.
    ``progress``: a bar over the points of both paths (:func:`~losslab.progress.track`; None:
    on a terminal; the finished evaluation is logged in one line)."""
    ts = default_ts() if ts is None else torch.as_tensor(ts, dtype=torch.float64).reshape(-1)
    if float(ts.min()) < 0 or float(ts.max()) > 1:
        raise InputError("ts must lie in [0, 1]")
    bn = bn_policy(curve)
    points = curve.control_point_dicts()
    curve_coords = torch.stack([curve.coefficients(float(t)) for t in ts])
    line_coords = torch.zeros_like(curve_coords)
    line_coords[:, 0], line_coords[:, -1] = 1.0 - ts, ts
    splits = {"train": train} if test is None else {"train": train, "test": test}
    zero = {k: torch.zeros_like(v) for k, v in points[0].items()}
    ev = PointEvaluator(curve.net, zero, buffers_of(curve.net), points, splits,
                        options=EvalOptions(recompute_batches=train, device=device), bn=bn)
    with track(2 * len(ts), "curve evaluation", enabled=progress) as bar:
        results = ev.evaluate_sets(torch.cat([curve_coords, line_coords]), bar.update)
    out: dict[str, dict[str, Tensor]] = {"curve": {}, "line": {}}
    for split, (loss, acc, _) in results.items():
        for name, rows in (("curve", slice(0, len(ts))), ("line", slice(len(ts), None))):
            out[name][f"{split}_loss"], out[name][f"{split}_acc"] = loss[rows], acc[rows]
    flat_curve = torch.stack([curve.flat_point(float(t)) for t in ts])
    w1, w2 = curve.endpoints[0], curve.endpoints[1]
    flat_line = torch.stack([(1 - float(t)) * w1 + float(t) * w2 for t in ts])
    barrier, mean_loss, length = {}, {}, {}
    for name, flat in (("curve", flat_curve), ("line", flat_line)):
        loss = out[name]["train_loss"]
        barrier[name] = float(loss.max() - (loss[0] + loss[-1]) / 2)
        length[name], mean_loss[name] = _path_stats(flat, loss)
    meta = {"kind": curve.kind, "bends": curve.num_bends, "bn": bn, "points": len(ts),
            "reference": "Garipov et al. 2018, arXiv:1802.10026"}
    return CurveEvaluation(ts, out["curve"], out["line"], barrier, mean_loss, length, meta)
