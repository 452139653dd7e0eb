"""Tests of losslab.ensembles.metrics on hand-built examples with known answers.

Everything is compared in float64; hand values are exact up to rounding, so the tolerance is
1e-12 unless a comparison involves a different summation order only.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from losslab.ensembles.metrics import (
    PROB_FLOOR,
    accuracy,
    brier,
    cumulative_metrics,
    ensemble_probs,
    expected_calibration_error,
    member_metrics,
    nll,
    probs_metrics,
)

TOL = 1e-12

# Four examples, three classes: predictions 0, 1, 2, 0 against labels 0, 2, 2, 1.
HAND_PROBS = torch.tensor([[0.7, 0.2, 0.1],
                           [0.1, 0.6, 0.3],
                           [0.3, 0.3, 0.4],
                           [0.5, 0.4, 0.1]], dtype=torch.float64)
HAND_LABELS = torch.tensor([0, 2, 2, 1])


def random_logits(m: int = 4, n: int = 50, c: int = 5, seed: int = 0, scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(m, n, c, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (n,), generator=g)
    return logits, labels


def ece_reference(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    """Guo et al.'s ECE written as the plain loop over bins ((b-1)/B, b/B]."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    correct = (pred == labels).astype(np.float64)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return total


# -- combination -------------------------------------------------------------------------------


def test_probs_and_logits_combination_by_hand():
    # Member 0 is uniform; member 1 has p = (3/4, 1/4), i.e. logits (log 3, 0).
    logits = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]], dtype=torch.float64)
    by_probs = ensemble_probs(logits)
    assert by_probs.shape == (1, 2) and by_probs.dtype == torch.float64
    assert by_probs[0].tolist() == pytest.approx([0.625, 0.375], abs=TOL)
    # Mean logits (log 3 / 2, 0): softmax gives sqrt(3) / (sqrt(3) + 1).
    by_logits = ensemble_probs(logits, combine="logits")
    s3 = math.sqrt(3.0)
    assert by_logits[0].tolist() == pytest.approx([s3 / (s3 + 1), 1 / (s3 + 1)], abs=TOL)


def test_weights_are_normalized():
    logits = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]], dtype=torch.float64)
    # Weights (3, 1) -> (3/4, 1/4).
    p = ensemble_probs(logits, weights=[3.0, 1.0])
    assert p[0, 0].item() == pytest.approx(0.75 * 0.5 + 0.25 * 0.75, abs=TOL)
    q = ensemble_probs(logits, combine="logits", weights=torch.tensor([3.0, 1.0]))
    r = 3.0 ** 0.25
    assert q[0, 0].item() == pytest.approx(r / (r + 1), abs=TOL)
    # A one-hot weight selects that member alone.
    only1 = ensemble_probs(logits, weights=[0.0, 2.0])
    assert only1[0].tolist() == pytest.approx([0.75, 0.25], abs=TOL)
    # Uniform weights equal the default.
    z, _ = random_logits()
    torch.testing.assert_close(ensemble_probs(z, weights=[5.0] * 4), ensemble_probs(z),
                               rtol=0, atol=TOL)


def test_ensemble_probs_rows_sum_to_one_and_float32_input():
    z, _ = random_logits()
    for combine in ("probs", "logits"):
        p = ensemble_probs(z.float(), combine=combine)
        assert p.dtype == torch.float64
        torch.testing.assert_close(p.sum(-1), torch.ones(z.shape[1], dtype=torch.float64))


@pytest.mark.parametrize("weights, match", [([1.0, 2.0], "shape"), ([1.0, -1.0, 1.0, 1.0], "non-negative"),
                                            ([0.0] * 4, "not all zero")])
def test_bad_weights(weights, match):
    z, _ = random_logits()
    with pytest.raises(ValueError, match=match):
        ensemble_probs(z, weights=weights)


def test_bad_combine():
    z, _ = random_logits()
    with pytest.raises(ValueError, match="combine"):
        ensemble_probs(z, combine="mean")
    with pytest.raises(ValueError, match="combine"):
        cumulative_metrics(z, torch.zeros(z.shape[1], dtype=torch.long), combine="vote")


# -- scores ------------------------------------------------------------------------------------


def test_accuracy_nll_brier_by_hand():
    assert accuracy(HAND_PROBS, HAND_LABELS) == 0.5
    expected_nll = -(math.log(0.7) + math.log(0.3) + math.log(0.4) + math.log(0.4)) / 4
    assert nll(HAND_PROBS, HAND_LABELS) == pytest.approx(expected_nll, abs=TOL)
    # Squared distances to the one-hot labels: 0.14, 0.86, 0.54, 0.62.
    assert brier(HAND_PROBS, HAND_LABELS) == pytest.approx(0.54, abs=TOL)


def test_ece_all_confident_08_with_75_percent_accuracy():
    probs = torch.tensor([[0.8, 0.2]] * 4, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.05, abs=TOL)


def test_ece_hand_example_and_bin_edges():
    # Confidences 0.7 (right), 0.6 (wrong), 0.4 (right), 0.5 (wrong).
    # 15 bins: all in different bins, so ECE = mean |correct - conf| = (0.3+0.6+0.6+0.5)/4.
    assert expected_calibration_error(HAND_PROBS, HAND_LABELS) == pytest.approx(0.5, abs=TOL)
    # 2 bins (0, .5], (.5, 1]: 0.5 belongs to the lower bin (Guo et al.'s right-closed bins):
    # lower {0.4 right, 0.5 wrong}: 0.5 * |0.5 - 0.45|; upper {0.7 right, 0.6 wrong}: 0.5 * 0.15.
    assert expected_calibration_error(HAND_PROBS, HAND_LABELS, n_bins=2) == pytest.approx(
        0.1, abs=TOL)
    # One bin: |acc - mean conf| = |0.5 - 0.55|.
    assert expected_calibration_error(HAND_PROBS, HAND_LABELS, n_bins=1) == pytest.approx(
        0.05, abs=TOL)


@pytest.mark.parametrize("n_bins", [1, 10, 15, 20])
def test_ece_against_loop_reference(n_bins):
    z, y = random_logits(m=1, n=400, c=10, seed=3)
    p = torch.softmax(z[0], -1)
    expected = ece_reference(p.numpy(), y.numpy(), n_bins)
    assert expected_calibration_error(p, y, n_bins=n_bins) == pytest.approx(expected, abs=TOL)


def test_nll_floor_keeps_a_zero_probability_finite():
    probs = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    value = nll(probs, labels)
    assert math.isfinite(value)
    assert value == pytest.approx(-math.log(PROB_FLOOR) / 2)


def test_probs_metrics_agrees_with_the_single_functions():
    z, y = random_logits(seed=1)
    p = ensemble_probs(z)
    got = probs_metrics(p, y, n_bins=10)
    assert got["acc"] == accuracy(p, y)
    assert got["nll"] == pytest.approx(nll(p, y), abs=TOL)
    assert got["brier"] == pytest.approx(brier(p, y), abs=TOL)
    assert got["ece"] == pytest.approx(expected_calibration_error(p, y, n_bins=10), abs=TOL)
    assert all(type(v) is float for v in got.values())


# -- per member and cumulative -----------------------------------------------------------------


def test_member_metrics_score_each_member_alone():
    z, y = random_logits(seed=2)
    rows = member_metrics(z, y)
    assert len(rows) == z.shape[0]
    for m, row in enumerate(rows):
        assert set(row) == {"acc", "nll", "ece", "brier"}
        expected = probs_metrics(torch.softmax(z[m], -1), y)
        assert row == pytest.approx(expected, abs=TOL)
    json.dumps(rows, allow_nan=False)


@pytest.mark.parametrize("combine", ["probs", "logits"])
def test_cumulative_metrics_ends(combine):
    z, y = random_logits(m=5, seed=4)
    rows = cumulative_metrics(z, y, combine=combine)
    assert [r["members"] for r in rows] == [1, 2, 3, 4, 5]
    # k = M is the whole ensemble; k = 1 is member 0 alone.
    full = probs_metrics(ensemble_probs(z, combine=combine), y)
    assert {k: rows[-1][k] for k in full} == pytest.approx(full, abs=TOL)
    first = member_metrics(z, y)[0]
    assert {k: rows[0][k] for k in first} == pytest.approx(first, abs=TOL)
    # Every intermediate k is the ensemble of the first k members.
    for k in (2, 3, 4):
        part = probs_metrics(ensemble_probs(z[:k], combine=combine), y)
        assert {key: rows[k - 1][key] for key in part} == pytest.approx(part, abs=TOL)
    json.dumps(rows, allow_nan=False)


def test_cumulative_metrics_order():
    z, y = random_logits(m=4, seed=5)
    rows = cumulative_metrics(z, y, order=[3, 1])
    assert len(rows) == 2
    assert {k: rows[0][k] for k in ("acc", "nll")} == pytest.approx(
        {k: member_metrics(z, y)[3][k] for k in ("acc", "nll")}, abs=TOL)
    pair = probs_metrics(ensemble_probs(z[[3, 1]]), y)
    assert {k: rows[1][k] for k in pair} == pytest.approx(pair, abs=TOL)
    # A tensor order works too.
    assert cumulative_metrics(z, y, order=torch.tensor([3, 1])) == rows
    with pytest.raises(ValueError, match="repeats"):
        cumulative_metrics(z, y, order=[0, 0])
    with pytest.raises(ValueError, match="outside"):
        cumulative_metrics(z, y, order=[0, 4])
    with pytest.raises(ValueError, match="at least one"):
        cumulative_metrics(z, y, order=[])


# -- shape and dtype errors --------------------------------------------------------------------


def test_shape_errors():
    z, y = random_logits(n=10)
    with pytest.raises(ValueError, match=r"\(M, N, C\)"):
        member_metrics(z[0], y)
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        member_metrics(z, y[:9])
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        cumulative_metrics(z, y.view(2, 5))
    with pytest.raises(ValueError, match="integer"):
        member_metrics(z, y.double())
    with pytest.raises(ValueError, match="floating"):
        ensemble_probs(z.long())
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        accuracy(HAND_PROBS[0], HAND_LABELS)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        nll(HAND_PROBS, HAND_LABELS[:3])
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(HAND_PROBS, HAND_LABELS, n_bins=0)
    with pytest.raises(ValueError, match="empty"):
        ensemble_probs(torch.zeros(0, 3, 2))
    with pytest.raises(TypeError):
        member_metrics(z.numpy(), y)
