"""Ensemble predictive metrics as pure tensor functions.

Inputs are member logits ``(M, N, C)`` (M members, N examples, C classes) and integer labels
``(N,)``. Every computation runs in float64 on the logits' device and reads the host once, when
it returns Python floats (so results are JSON-able as they are).

Combining members (:func:`ensemble_probs`):

* ``combine="probs"`` (the default, and the standard of deep ensembles, Lakshminarayanan et al.
  2017, snapshot ensembles, Huang et al. 2017, and fast geometric ensembles, Garipov et al.
  2018): the (weighted) mean of the members' softmax probabilities,
  ``p(y|x) = sum_m w_m softmax(z_m(x))``;
* ``combine="logits"``: the softmax of the (weighted) mean logits,
  ``p(y|x) = softmax(sum_m w_m z_m(x))`` (a geometric mean of the members' distributions,
  renormalized); sharper than the probability average where members disagree.

Weights ``w`` are non-negative and normalized to sum 1; the default is uniform ``1/M``.

Scores of a probability table ``p (N, C)``:

* accuracy: ``mean_n [argmax_c p_nc == y_n]`` (ties go to the lowest class index, as argmax);
* NLL: ``-mean_n log p_{n, y_n}``;
* Brier score: ``mean_n sum_c (p_nc - [c == y_n])^2`` (the multi-class form of Brier 1950,
  summed over classes, so it lies in [0, 2]);
* ECE (Guo et al. 2017, "On Calibration of Modern Neural Networks"): confidences
  ``conf_n = max_c p_nc`` fall into ``B`` equal-width bins ``((b-1)/B, b/B]``;
  ``ECE = sum_b (|S_b|/N) |acc(S_b) - conf(S_b)|``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from losslab.errors import InputError

__all__ = [
    "ensemble_probs",
    "accuracy",
    "nll",
    "expected_calibration_error",
    "brier",
    "probs_metrics",
    "member_metrics",
    "cumulative_metrics",
]

COMBINES = ("probs", "logits")
METRICS = ("acc", "nll", "ece", "brier")

# Floor for a true-class probability before the log. Averaging softmaxes in float64 underflows
# to exactly 0 once a class trails by ~745 nats, and log(0) = -inf would make the mean NLL of
# the whole set infinite because of one example; the smallest normal float64 caps that
# example's loss at ~708 nats instead, far above any loss a real model reports.
PROB_FLOOR = torch.finfo(torch.float64).tiny


# -- validation (shapes and dtypes only: checking label values would read the device) --------


def check_logits(logits: Tensor) -> None:
    """Raise ``ValueError`` unless ``logits`` is a floating ``(M, N, C)`` tensor with M, N, C >= 1."""
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits must be a Tensor (M, N, C), got {type(logits).__name__}")
    if logits.dim() != 3:
        raise InputError(f"logits must have shape (M, N, C) = (members, examples, classes), "
                         f"got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise InputError(f"logits must be floating point, got {logits.dtype}")
    if min(logits.shape) < 1:
        raise InputError(f"logits shape {tuple(logits.shape)} has an empty dimension")


def check_labels(labels: Tensor, n: int) -> None:
    """Raise ``ValueError`` unless ``labels`` is an integer ``(n,)`` tensor."""
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a Tensor (N,), got {type(labels).__name__}")
    if labels.dim() != 1 or labels.shape[0] != n:
        raise InputError(f"labels must have shape ({n},) to match the predictions' N = {n}, "
                         f"got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise InputError(f"labels must be an integer tensor, got {labels.dtype}")


def _check_probs(probs: Tensor, labels: Tensor) -> None:
    if not isinstance(probs, Tensor) or probs.dim() != 2 or min(probs.shape) < 1:
        shape = tuple(probs.shape) if isinstance(probs, Tensor) else type(probs).__name__
        raise InputError(f"probs must have shape (N, C) with N, C >= 1, got {shape}")
    check_labels(labels, probs.shape[0])


def _check_n_bins(n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise InputError(f"n_bins must be a positive int, got {n_bins!r}")


def _check_combine(combine: str) -> None:
    if combine not in COMBINES:
        raise InputError(f"combine must be one of {COMBINES}, got {combine!r}")


def _weights(weights: Tensor | Sequence[float] | None, m: int, device: torch.device) -> Tensor:
    """Weights as a float64 ``(M,)`` tensor summing to 1 (uniform when None)."""
    if weights is None:
        return torch.full((m,), 1.0 / m, dtype=torch.float64, device=device)
    w = torch.as_tensor(weights, dtype=torch.float64, device=device)
    if w.shape != (m,):
        raise InputError(f"weights must have shape ({m},), one per member, got {tuple(w.shape)}")
    # Validating M user-given numbers reads the device once; no per-example sync.
    if bool(((w < 0).any() | ~torch.isfinite(w).all() | (w.sum() <= 0)).item()):
        raise InputError("weights must be finite, non-negative and not all zero")
    return w / w.sum()


# -- combination ---------------------------------------------------------------------------


def ensemble_probs(logits: Tensor, combine: str = "probs",
                   weights: Tensor | Sequence[float] | None = None) -> Tensor:
    """The ensemble's predictive distribution ``(N, C)`` in float64.

    ``combine="probs"`` (default, the standard): ``sum_m w_m softmax(z_m)``;
    ``combine="logits"``: ``softmax(sum_m w_m z_m)``. ``weights (M,)`` are non-negative and
    normalized to sum 1 (uniform by default).
    """
    check_logits(logits)
    _check_combine(combine)
    z = logits.to(torch.float64)
    w = _weights(weights, z.shape[0], z.device)
    if combine == "probs":
        return torch.einsum("m,mnc->nc", w, torch.softmax(z, dim=-1))
    return torch.softmax(torch.einsum("m,mnc->nc", w, z), dim=-1)


# -- scores, batched over leading dimensions -------------------------------------------------


def _bin_edges(n_bins: int, device: torch.device) -> Tensor:
    # Interior edges b/B as k / B (one correctly rounded division each) rather than linspace,
    # so a confidence equal to b/B lands in bin ((b-1)/B, b/B] as in Guo et al.
    return torch.arange(1, n_bins, dtype=torch.float64, device=device) / n_bins


def _true_prob(p: Tensor, labels: Tensor) -> Tensor:
    """``p[..., n, y_n]``: each example's probability of its label, shape ``(..., N)``."""
    lab = labels.to(p.device).long().expand(p.shape[:-1])
    return p.gather(-1, lab.unsqueeze(-1)).squeeze(-1)


def _brier_rows(p: Tensor, p_true: Tensor) -> Tensor:
    # sum_c (p_c - y_c)^2 = sum_c p_c^2 - 2 p_y + 1: no one-hot table of size N x C needed.
    return p.square().sum(dim=-1) - 2.0 * p_true + 1.0


def _scores(probs: Tensor, labels: Tensor, n_bins: int) -> dict[str, Tensor]:
    """acc, nll, ece, brier of ``probs (..., N, C)`` as float64 tensors of shape ``(...)``.

    One pass shared by all four scores, batched over members or ensemble sizes, so callers
    read the device once for a whole table.
    """
    p = probs.to(torch.float64)
    lab = labels.to(p.device).long().expand(p.shape[:-1])
    conf, pred = p.max(dim=-1)
    correct = (pred == lab).to(torch.float64)
    p_true = _true_prob(p, labels)
    n = p.shape[-2]

    acc = correct.mean(dim=-1)
    nll_ = -p_true.clamp_min(PROB_FLOOR).log().mean(dim=-1)
    brier_ = _brier_rows(p, p_true).mean(dim=-1)

    # ECE: (|S_b|/N) |acc_b - conf_b| = |sum_{n in S_b} (correct_n - conf_n)| / N, so one
    # scatter-add of the per-example gaps into bins gives every bin at once.
    bins = torch.bucketize(conf, _bin_edges(n_bins, p.device), right=False)
    gap_sums = torch.zeros(*conf.shape[:-1], n_bins, dtype=torch.float64, device=p.device)
    gap_sums.scatter_add_(-1, bins, correct - conf)
    ece = gap_sums.abs().sum(dim=-1) / n
    return {"acc": acc, "nll": nll_, "ece": ece, "brier": brier_}


def _rows(scores: dict[str, Tensor]) -> list[dict[str, float]]:
    """Per-row dicts of Python floats from batched score tensors (one host read)."""
    table = torch.stack([scores[k] for k in METRICS], dim=-1).tolist()
    return [dict(zip(METRICS, row, strict=True)) for row in table]


def accuracy(probs: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy ``mean_n [argmax_c p_nc == y_n]`` of ``probs (N, C)``."""
    _check_probs(probs, labels)
    pred = probs.argmax(dim=-1)
    return (pred == labels.to(pred.device)).to(torch.float64).mean().item()


def nll(probs: Tensor, labels: Tensor) -> float:
    """Mean negative log-likelihood ``-mean_n log p_{n, y_n}``.

    The true-class probability is floored at the smallest normal float64 (``PROB_FLOOR``) so
    one underflowed probability cannot make the mean infinite.
    """
    _check_probs(probs, labels)
    p_true = _true_prob(probs.to(torch.float64), labels)
    return (-p_true.clamp_min(PROB_FLOOR).log().mean()).item()


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """Expected calibration error (Guo et al. 2017).

    ``ECE = sum_b (|S_b|/N) |acc(S_b) - conf(S_b)|`` over ``n_bins`` equal-width bins
    ``((b-1)/B, b/B]`` of the confidence ``max_c p_nc``; the prediction is the argmax.
    """
    _check_probs(probs, labels)
    _check_n_bins(n_bins)
    return _scores(probs, labels, n_bins)["ece"].item()


def brier(probs: Tensor, labels: Tensor) -> float:
    """Brier score ``mean_n sum_c (p_nc - [c == y_n])^2`` (summed over classes, in [0, 2])."""
    _check_probs(probs, labels)
    p = probs.to(torch.float64)
    return _brier_rows(p, _true_prob(p, labels)).mean().item()


def probs_metrics(probs: Tensor, labels: Tensor, n_bins: int = 15) -> dict[str, float]:
    """``{"acc", "nll", "ece", "brier"}`` of ``probs (N, C)`` in one pass and one host read."""
    _check_probs(probs, labels)
    _check_n_bins(n_bins)
    return _rows(_scores(probs.unsqueeze(0), labels, n_bins))[0]


# -- per member and per ensemble size ---------------------------------------------------------


def member_metrics(logits: Tensor, labels: Tensor, n_bins: int = 15) -> list[dict[str, float]]:
    """Each member alone: ``[{"acc", "nll", "ece", "brier"}]`` in member order.

    All members are scored in one batched pass over ``softmax(logits) (M, N, C)``.
    """
    check_logits(logits)
    check_labels(labels, logits.shape[1])
    _check_n_bins(n_bins)
    probs = torch.softmax(logits.to(torch.float64), dim=-1)
    return _rows(_scores(probs, labels, n_bins))


def _order(order: Sequence[int] | Tensor | None, m: int) -> list[int]:
    if order is None:
        return list(range(m))
    idx = [int(i) for i in (order.tolist() if isinstance(order, Tensor) else order)]
    if not idx:
        raise InputError("order must name at least one member")
    bad = [i for i in idx if not 0 <= i < m]
    if bad:
        raise InputError(f"order has member indices outside [0, {m}): {bad[:5]}")
    if len(set(idx)) != len(idx):
        raise InputError(f"order repeats members: {idx}")
    return idx


def cumulative_metrics(logits: Tensor, labels: Tensor, combine: str = "probs",
                       order: Sequence[int] | Tensor | None = None,
                       n_bins: int = 15) -> list[dict[str, float]]:
    """Ensembles of the first k members, k = 1..K: ``[{"members": k, "acc", "nll", "ece", "brier"}]``.

    ``order`` lists distinct member indices (default ``0..M-1``; a shorter list scores a
    subset), so snapshot ensembles can grow in collection order (Huang et al. 2017) or any
    other. Uniform weights. The k-member combination is a running sum, ``cumsum`` over the
    members of probabilities (``combine="probs"``) or logits (``"logits"``) divided by k, so all
    K ensembles cost one pass rather than K from-scratch averages.
    """
    check_logits(logits)
    check_labels(labels, logits.shape[1])
    _check_combine(combine)
    _check_n_bins(n_bins)
    idx = torch.tensor(_order(order, logits.shape[0]), device=logits.device)
    z = logits.index_select(0, idx).to(torch.float64)
    k = torch.arange(1, z.shape[0] + 1, dtype=torch.float64, device=z.device).view(-1, 1, 1)
    if combine == "probs":
        probs = torch.softmax(z, dim=-1).cumsum(dim=0) / k
    else:
        probs = torch.softmax(z.cumsum(dim=0) / k, dim=-1)
    rows = _rows(_scores(probs, labels, n_bins))
    return [{"members": i + 1, **row} for i, row in enumerate(rows)]
