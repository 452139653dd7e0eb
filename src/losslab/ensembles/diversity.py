"""Ensemble diversity: how differently members predict, and how far apart their weights are.

Fort et al. (2019, "Deep Ensembles: A Loss Landscape Perspective") compare members by the
fraction of test points on which they predict different classes and by the divergence of their
predictive distributions, and set both against distances in weight space; snapshot (Huang et
al. 2017) and fast geometric (Garipov et al. 2018) ensembles are judged the same way. This
module computes those measures as batched ``(M, M)`` tensors from member logits ``(M, N, C)``
and labels ``(N,)``, all in float64 on the logits' device, and :func:`pair_table` /
:func:`diversity_report` turn them into JSON-able tables (one host read per matrix).

Conventions:

* Matrices are indexed ``[i, j]`` = (row member i, column member j).
* Undefined values (the error correlation of a member with zero error variance, the cosine of
  a zero weight vector) are NaN in tensors and ``None`` in the JSON-able outputs, since strict
  JSON has no NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from losslab import params as P
from losslab.ensembles.metrics import check_labels, check_logits
from losslab.errors import InputError, NotFoundError

__all__ = [
    "predictions",
    "pairwise_disagreement",
    "agreement_counts",
    "error_correlation",
    "pairwise_kl",
    "weight_distances",
    "pair_table",
    "diversity_report",
]


def predictions(logits: Tensor) -> Tensor:
    """Each member's predicted class ``(M, N)`` (argmax over classes; ties to the lowest index)."""
    check_logits(logits)
    return logits.argmax(dim=-1)


def _disagreement(preds: Tensor) -> Tensor:
    # Broadcast (M, M, N) comparison: M^2 N bytes, small next to the (M, N, C) logits for the
    # ensemble sizes studied, and the count is exact (integers before the one division).
    differ = preds.unsqueeze(1) != preds.unsqueeze(0)
    return differ.sum(dim=-1, dtype=torch.int64).to(torch.float64) / preds.shape[1]


def pairwise_disagreement(logits: Tensor) -> Tensor:
    """``D[i, j] = mean_n [argmax z_i(x_n) != argmax z_j(x_n)]`` (Fort et al. 2019), ``(M, M)``.

    Symmetric, 0 on the diagonal, in [0, 1].
    """
    return _disagreement(predictions(logits))


def agreement_counts(logits: Tensor, labels: Tensor) -> dict[str, Any]:
    """How often all members agree, and how many distinct classes they predict.

    Returns (Python ints/floats)::

        n                       N, the number of examples
        all_agree               examples on which every member predicts the same class
        all_agree_correct       ... and that class is the label
        all_agree_wrong         ... and it is not (all members make the same mistake)
        all_agree_frac          all_agree / N
        any_correct             examples at least one member gets right (the "oracle")
        distinct_classes_hist   list of length M: entry k-1 counts the examples on which the
                                members predict exactly k distinct classes (entry 0 equals
                                all_agree; entries past C are 0)

    The histogram of distinct classes (rather than the size of the largest agreeing group) is
    chosen because it is a set count that needs no tie-breaking and is computed by one sort.
    """
    check_logits(logits)
    check_labels(labels, logits.shape[1])
    preds = predictions(logits)
    m, n = preds.shape
    lab = labels.to(preds.device).long()
    all_agree = (preds == preds[0]).all(dim=0)
    right = preds[0] == lab
    any_correct = (preds == lab).any(dim=0)
    # Sorting each example's M predictions puts equal classes together; the number of
    # distinct classes is 1 + the number of changes along the sorted column.
    sorted_preds = preds.sort(dim=0).values
    distinct = 1 + (sorted_preds[1:] != sorted_preds[:-1]).sum(dim=0)
    hist = torch.bincount(distinct, minlength=m + 1)[1 : m + 1]
    # One host read for all counts and the histogram.
    counts = torch.cat([torch.stack([all_agree.sum(), (all_agree & right).sum(),
                                     (all_agree & ~right).sum(), any_correct.sum()]),
                        hist]).tolist()
    return {
        "n": n,
        "all_agree": counts[0],
        "all_agree_correct": counts[1],
        "all_agree_wrong": counts[2],
        "all_agree_frac": counts[0] / n,
        "any_correct": counts[3],
        "distinct_classes_hist": counts[4:],
    }


def _error_correlation(errors: Tensor) -> Tensor:
    # Pearson correlation of rows of a 0/1 matrix: centred Gram over standard deviations. A
    # member with no variance (always right or always wrong) has an all-zero centred row, so
    # its row and column are 0/0 = NaN, as numpy.corrcoef gives.
    e = errors.to(torch.float64)
    centred = e - e.mean(dim=1, keepdim=True)
    cov = centred @ centred.T / e.shape[1]
    std = cov.diagonal().sqrt()
    corr = (cov / (std.unsqueeze(1) * std.unsqueeze(0))).clamp(-1.0, 1.0)
    # Rounding can leave the defined diagonal a few ulps from 1; it is 1 by definition.
    diag = torch.where(std > 0, torch.ones_like(std), torch.full_like(std, math.nan))
    return corr.diagonal_scatter(diag)


def error_correlation(logits: Tensor, labels: Tensor) -> Tensor:
    """Pearson correlation ``(M, M)`` between members' 0/1 error indicators ``[pred != y]``.

    ``rho_ij = cov(e_i, e_j) / (std(e_i) std(e_j))``. Low correlation means members err on
    different examples, which is what averaging can fix. A member with zero variance (no
    errors, or only errors) has NaN in its row and column, its diagonal entry included.
    """
    check_logits(logits)
    check_labels(labels, logits.shape[1])
    return _error_correlation(predictions(logits) != labels.to(logits.device).unsqueeze(0))


def _pairwise_kl(logits: Tensor) -> Tensor:
    # KL(p_i || p_j) = sum p_i log p_i - sum p_i log p_j. Both sums for all pairs come from one
    # (M, N*C) x (N*C, M) product, with log p from log_softmax (stable for any logit scale;
    # p_i = 0 times a finite log p_j is exactly 0). The difference cancels when p_i ~ p_j, so
    # values below ~1e-14 times the entropy are rounding noise; float64 keeps that negligible.
    logp = torch.log_softmax(logits.to(torch.float64), dim=-1).flatten(1)
    p = logp.exp()
    cross = p @ logp.T
    kl = (cross.diagonal().unsqueeze(1) - cross) / logits.shape[1]
    # KL >= 0 and KL(p || p) = 0 exactly; clamp the rounding that breaks either.
    return kl.clamp_min(0.0).fill_diagonal_(0.0)


def pairwise_kl(logits: Tensor, symmetric: bool = False) -> Tensor:
    """``K[i, j] = mean_n KL(p_i(x_n) || p_j(x_n))`` in nats, ``(M, M)`` (Fort et al. 2019).

    With ``symmetric=True``, ``(K[i, j] + K[j, i]) / 2``. Logits must be finite.
    """
    check_logits(logits)
    kl = _pairwise_kl(logits)
    return (kl + kl.T) / 2 if symmetric else kl


def _check_params(params: Sequence[Mapping[str, Tensor]], names: Sequence[str] | None
                  ) -> list[str]:
    if len(params) == 0:
        raise InputError("weight_distances needs at least one member's parameters")
    first = params[0]
    if names is None:
        for i, p in enumerate(params[1:], start=1):
            try:
                P.check_same_keys(first, p)
            except (KeyError, ValueError) as err:
                msg = err.args[0] if err.args else str(err)
                raise type(err)(f"member {i} does not match member 0: {msg}") from None
        return list(first)
    names = list(names)
    if not names:
        raise InputError("names is empty")
    for i, p in enumerate(params):
        missing = [k for k in names if k not in p]
        if missing:
            raise NotFoundError(f"member {i} has no parameter(s) {missing[:5]}")
        for k in names:
            if p[k].shape != first[k].shape:
                raise InputError(f"member {i}, parameter {k!r}: shape {tuple(p[k].shape)} "
                                 f"!= member 0's {tuple(first[k].shape)}")
    return names


def weight_distances(params: Sequence[Mapping[str, Tensor]], names: Sequence[str] | None = None
                     ) -> tuple[Tensor, Tensor]:
    """Euclidean distance and cosine similarity ``(M, M)`` between members' weight vectors.

    Each member's tensors ``names`` (default: all keys of the first dict, in its order) are
    flattened (:func:`losslab.params.flatten`) into ``w_i`` and stacked as ``W (M, P)`` in
    float64 on the first member's device (M * P * 8 bytes). Every dict must have those names
    with the same shapes (``KeyError`` / ``ValueError`` naming the member otherwise).

    * ``l2[i, j] = ||w_i - w_j||`` by ``torch.cdist`` computing the differences directly, not
      through ``||w_i||^2 + ||w_j||^2 - 2 w_i.w_j``: members (checkpoints of one run above
      all) are often close relative to their norms, where that Gram form cancels
      catastrophically; the direct form is exact to rounding and gives 0 for equal weights.
    * ``cosine[i, j] = w_i.w_j / (||w_i|| ||w_j||)`` from the Gram matrix ``W W^T`` (a ratio,
      so no cancellation), clamped to [-1, 1]; NaN where a member's weights are all zero.
    """
    names = _check_params(params, names)
    device = params[0][names[0]].device
    w = torch.stack([P.flatten(p, names).to(device=device, dtype=torch.float64) for p in params])
    l2 = torch.cdist(w.unsqueeze(0), w.unsqueeze(0),
                     compute_mode="donot_use_mm_for_euclid_dist").squeeze(0)
    gram = w @ w.T
    norms = gram.diagonal().sqrt()
    cosine = (gram / (norms.unsqueeze(1) * norms.unsqueeze(0))).clamp(-1.0, 1.0)
    return l2, cosine


def _json_matrix(t: Tensor) -> list[list[float | None]]:
    """Nested lists of Python floats, NaN as None (strict JSON has no NaN)."""
    return [[None if math.isnan(x) else x for x in row] for row in t.tolist()]


def _matrices(logits: Tensor, labels: Tensor, params: Sequence[Mapping[str, Tensor]] | None
              ) -> dict[str, Tensor]:
    check_logits(logits)
    check_labels(labels, logits.shape[1])
    m = logits.shape[0]
    if params is not None and len(params) != m:
        raise InputError(f"params has {len(params)} members, logits has {m}")
    preds = predictions(logits)
    out = {
        "disagreement": _disagreement(preds),
        "kl": _pairwise_kl(logits),
        "error_correlation": _error_correlation(preds != labels.to(preds.device).unsqueeze(0)),
    }
    if params is not None:
        out["l2"], out["cosine"] = weight_distances(params)
    return out


def _pair_rows(mats: dict[str, list[list[float | None]]]) -> list[dict[str, Any]]:
    m = len(mats["disagreement"])
    rows = []
    for i in range(m):
        for j in range(i + 1, m):
            row: dict[str, Any] = {
                "i": i,
                "j": j,
                "disagreement": mats["disagreement"][i][j],
                "kl_ij": mats["kl"][i][j],
                "kl_ji": mats["kl"][j][i],
                "error_correlation": mats["error_correlation"][i][j],
            }
            if "l2" in mats:
                row["l2"] = mats["l2"][i][j]
                row["cosine"] = mats["cosine"][i][j]
            rows.append(row)
    return rows


def pair_table(logits: Tensor, labels: Tensor,
               params: Sequence[Mapping[str, Tensor]] | None = None) -> list[dict[str, Any]]:
    """One row per unordered pair ``i < j``: does distance in weight space mean different predictions?

    Keys: ``i, j, disagreement, kl_ij`` (KL(p_i || p_j)), ``kl_ji, error_correlation``, and with
    ``params`` (one dict per member, in the logits' order) ``l2, cosine``. Python floats;
    undefined values are None. Pairs are ordered lexicographically.
    """
    mats = {k: _json_matrix(v) for k, v in _matrices(logits, labels, params).items()}
    return _pair_rows(mats)


def _mean_off_diagonal(mat: list[list[float | None]]) -> float | None:
    vals = [x for i, row in enumerate(mat) for j, x in enumerate(row) if i != j and x is not None]
    return sum(vals) / len(vals) if vals else None


def diversity_report(logits: Tensor, labels: Tensor,
                     params: Sequence[Mapping[str, Tensor]] | None = None) -> dict[str, Any]:
    """Everything above in one JSON-able dict.

    Keys: ``members`` (M), ``examples`` (N); matrices as nested lists ``disagreement``, ``kl``
    (row i, column j: KL(p_i || p_j)), ``error_correlation`` and, with ``params``, ``l2`` and
    ``cosine``; ``mean_disagreement``, ``mean_kl`` and ``mean_error_correlation`` over the pairs
    i != j (None for one member, or where undefined); ``agreement`` (:func:`agreement_counts`);
    ``pairs`` (:func:`pair_table`). NaN appears as None.
    """
    mats = {k: _json_matrix(v) for k, v in _matrices(logits, labels, params).items()}
    report: dict[str, Any] = {"members": logits.shape[0], "examples": logits.shape[1]}
    report.update(mats)
    for key in ("disagreement", "kl", "error_correlation"):
        report[f"mean_{key}"] = _mean_off_diagonal(mats[key])
    report["agreement"] = agreement_counts(logits, labels)
    report["pairs"] = _pair_rows(mats)
    return report
