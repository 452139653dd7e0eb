"""Tests of losslab.ensembles.diversity on hand-built predictions with known answers, and
against numpy / scipy oracles (float64)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from losslab.ensembles.diversity import (
    agreement_counts,
    diversity_report,
    error_correlation,
    pair_table,
    pairwise_disagreement,
    pairwise_kl,
    predictions,
    weight_distances,
)

TOL = 1e-12

# Three members, five examples, three classes. Predicted classes:
#   example:   0  1  2  3  4
#   member 0:  0  1  2  0  2
#   member 1:  0  1  1  0  2
#   member 2:  0  2  1  1  2
#   label:     0  1  1  2  0
PRED_TABLE = torch.tensor([[0, 1, 2, 0, 2],
                           [0, 1, 1, 0, 2],
                           [0, 2, 1, 1, 2]])
LABELS = torch.tensor([0, 1, 1, 2, 0])


def logits_with_argmax(table: torch.Tensor, n_classes: int = 3, seed: int = 0) -> torch.Tensor:
    """Logits whose argmax is ``table``: a margin of 3 over noise in [0, 1)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(*table.shape, n_classes, generator=g, dtype=torch.float64)
    return noise + 3.0 * torch.nn.functional.one_hot(table, n_classes).to(torch.float64)


HAND_LOGITS = logits_with_argmax(PRED_TABLE)


def random_logits(m: int = 3, n: int = 6, c: int = 4, seed: int = 0, scale: float = 1.5):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(m, n, c, generator=g, dtype=torch.float64)


def test_predictions():
    assert torch.equal(predictions(HAND_LOGITS), PRED_TABLE)


def test_disagreement_exact():
    d = pairwise_disagreement(HAND_LOGITS)
    expected = torch.tensor([[0.0, 1 / 5, 3 / 5],
                             [1 / 5, 0.0, 2 / 5],
                             [3 / 5, 2 / 5, 0.0]], dtype=torch.float64)
    assert d.dtype == torch.float64
    assert torch.equal(d, expected)


def test_agreement_counts_exact():
    counts = agreement_counts(HAND_LOGITS, LABELS)
    assert counts == {
        "n": 5,
        "all_agree": 2,             # examples 0 (right) and 4 (all wrong)
        "all_agree_correct": 1,
        "all_agree_wrong": 1,
        "all_agree_frac": 0.4,
        "any_correct": 3,           # examples 0, 1, 2
        "distinct_classes_hist": [2, 3, 0],
    }
    json.dumps(counts, allow_nan=False)


def test_agreement_histogram_with_all_distinct():
    table = torch.tensor([[0, 0], [1, 0], [2, 1]])  # example 0: three classes; 1: two
    counts = agreement_counts(logits_with_argmax(table), torch.tensor([0, 0]))
    assert counts["distinct_classes_hist"] == [0, 1, 1]
    assert counts["all_agree"] == 0 and counts["all_agree_frac"] == 0.0


def test_error_correlation_against_numpy():
    errors = (PRED_TABLE != LABELS).numpy().astype(np.float64)
    expected = np.corrcoef(errors)
    got = error_correlation(HAND_LOGITS, LABELS)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=TOL)
    assert torch.equal(got.diagonal(), torch.ones(3, dtype=torch.float64))


def test_error_correlation_random_against_numpy():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 200, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (200,), generator=g)
    errors = (logits.argmax(-1) != labels).numpy().astype(np.float64)
    np.testing.assert_allclose(error_correlation(logits, labels).numpy(), np.corrcoef(errors),
                               rtol=0, atol=TOL)


def test_error_correlation_zero_variance_is_nan():
    # Member 1 is always right: its error indicator has no variance.
    table = torch.stack([PRED_TABLE[0], LABELS, PRED_TABLE[2]])
    got = error_correlation(logits_with_argmax(table), LABELS)
    assert torch.isnan(got[1]).all() and torch.isnan(got[:, 1]).all()
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.corrcoef((table != LABELS).numpy().astype(np.float64))
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=TOL)  # NaNs match NaNs


@pytest.mark.parametrize("scale", [1.5, 40.0])
def test_pairwise_kl_against_scipy(scale):
    logits = random_logits(scale=scale)
    p = torch.softmax(logits, -1).numpy()
    m, n, _ = p.shape
    expected = np.array([[np.mean([entropy(p[i, k], p[j, k]) for k in range(n)])
                          for j in range(m)] for i in range(m)])
    got = pairwise_kl(logits)
    # Large logits make some probabilities tiny: compare relative to the KL's size.
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-12)
    assert torch.equal(got.diagonal(), torch.zeros(m, dtype=torch.float64))
    assert (got >= 0).all()
    sym = pairwise_kl(logits, symmetric=True)
    np.testing.assert_allclose(sym.numpy(), (expected + expected.T) / 2, rtol=1e-9, atol=1e-12)
    assert torch.equal(sym, sym.T)


def test_pairwise_kl_hand_value_and_extreme_logits():
    # p0 = (1/2, 1/2), p1 = (3/4, 1/4): KL(p0||p1) = 1/2 log(2/3) + 1/2 log 2.
    logits = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]], dtype=torch.float64)
    kl = pairwise_kl(logits)
    assert kl[0, 1].item() == pytest.approx(0.5 * math.log(2 / 3) + 0.5 * math.log(2), abs=TOL)
    assert kl[1, 0].item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=TOL)
    # Logits so large that softmax underflows to exact zeros stay finite (log_softmax).
    big = torch.tensor([[[1000.0, 0.0]], [[0.0, 1000.0]]], dtype=torch.float64)
    kl_big = pairwise_kl(big)
    assert torch.isfinite(kl_big).all()
    assert kl_big[0, 1].item() == pytest.approx(1000.0, rel=1e-12)


def _member(seed: int, shapes: dict[str, tuple[int, ...]], dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(*s, generator=g, dtype=dtype) for k, s in shapes.items()}


SHAPES = {"conv.weight": (4, 3, 3, 3), "conv.bias": (4,), "fc.weight": (2, 16)}


def test_weight_distances_against_numpy():
    params = [_member(s, SHAPES) for s in range(4)]
    vecs = np.stack([np.concatenate([p[k].numpy().ravel() for k in SHAPES]) for p in params])
    l2, cos = weight_distances(params)
    assert l2.dtype == cos.dtype == torch.float64 and l2.shape == cos.shape == (4, 4)
    exp_l2 = np.linalg.norm(vecs[:, None, :] - vecs[None, :, :], axis=-1)
    norms = np.linalg.norm(vecs, axis=1)
    exp_cos = vecs @ vecs.T / np.outer(norms, norms)
    np.testing.assert_allclose(l2.numpy(), exp_l2, rtol=1e-12, atol=0)
    np.testing.assert_allclose(cos.numpy(), exp_cos, rtol=0, atol=1e-12)
    assert torch.equal(l2.diagonal(), torch.zeros(4, dtype=torch.float64))


def test_weight_distances_names_and_float32():
    params = [_member(s, SHAPES, dtype=torch.float32) for s in range(3)]
    l2, _ = weight_distances(params, names=["fc.weight"])
    a, b = params[0]["fc.weight"].double(), params[2]["fc.weight"].double()
    assert l2[0, 2].item() == pytest.approx((a - b).norm().item(), rel=1e-12)


def test_identical_members_and_close_members():
    w = _member(0, SHAPES)
    l2, cos = weight_distances([w, {k: v.clone() for k, v in w.items()}])
    assert l2[0, 1].item() == 0.0
    assert cos[0, 1].item() == pytest.approx(1.0, abs=1e-15)
    # Members close relative to their norm (1e3 apart by 1e-6): a Gram form ||a||^2 + ||b||^2
    # - 2ab would lose the distance to cancellation; the direct difference keeps it.
    big = {k: 1e3 + v for k, v in w.items()}
    step = _member(1, SHAPES)
    near = {k: big[k] + 1e-6 * step[k] for k in w}
    l2, _ = weight_distances([big, near])
    exact = 1e-6 * math.sqrt(sum(float(step[k].square().sum()) for k in w))
    assert l2[0, 1].item() == pytest.approx(exact, rel=1e-6)


def test_zero_weight_vector_cosine_is_nan():
    zero = {k: torch.zeros(s, dtype=torch.float64) for k, s in SHAPES.items()}
    _, cos = weight_distances([zero, _member(0, SHAPES)])
    assert math.isnan(cos[0, 1].item())


def test_weight_distances_errors():
    a, b = _member(0, SHAPES), _member(1, SHAPES)
    missing = {k: v for k, v in b.items() if k != "conv.bias"}
    with pytest.raises(KeyError, match="member 1"):
        weight_distances([a, missing])
    reshaped = dict(b, **{"fc.weight": torch.zeros(16, 2, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"member 1.*fc\.weight"):
        weight_distances([a, reshaped])
    with pytest.raises(ValueError, match=r"member 1.*fc\.weight"):
        weight_distances([a, reshaped], names=["fc.weight"])
    with pytest.raises(KeyError, match=r"member 1.*conv\.bias"):
        weight_distances([a, missing], names=["conv.bias"])
    # Only the named tensors must match.
    weight_distances([a, missing], names=["fc.weight"])
    with pytest.raises(ValueError, match="at least one"):
        weight_distances([])


def test_logits_label_shape_errors():
    with pytest.raises(ValueError, match=r"\(M, N, C\)"):
        pairwise_disagreement(HAND_LOGITS[0])
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        agreement_counts(HAND_LOGITS, LABELS[:4])
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        error_correlation(HAND_LOGITS, LABELS.view(1, 5))
    with pytest.raises(ValueError, match="integer"):
        pair_table(HAND_LOGITS, LABELS.double())
    with pytest.raises(ValueError, match="params has 2 members"):
        pair_table(HAND_LOGITS, LABELS, params=[_member(0, SHAPES), _member(1, SHAPES)])


def test_pair_table_rows():
    params = [_member(s, SHAPES) for s in range(3)]
    rows = pair_table(HAND_LOGITS, LABELS, params=params)
    assert [(r["i"], r["j"]) for r in rows] == [(0, 1), (0, 2), (1, 2)]
    d = pairwise_disagreement(HAND_LOGITS)
    kl = pairwise_kl(HAND_LOGITS)
    rho = error_correlation(HAND_LOGITS, LABELS)
    l2, cos = weight_distances(params)
    for r in rows:
        i, j = r["i"], r["j"]
        assert r["disagreement"] == d[i, j].item()
        assert r["kl_ij"] == kl[i, j].item() and r["kl_ji"] == kl[j, i].item()
        assert r["error_correlation"] == rho[i, j].item()
        assert r["l2"] == l2[i, j].item() and r["cosine"] == cos[i, j].item()
    assert "l2" not in pair_table(HAND_LOGITS, LABELS)[0]


def test_diversity_report_is_strict_json():
    # Member 1 is always right: its error correlations are undefined and must appear as None.
    table = torch.stack([PRED_TABLE[0], LABELS, PRED_TABLE[2]])
    logits = logits_with_argmax(table)
    params = [_member(s, SHAPES) for s in range(3)]
    report = diversity_report(logits, LABELS, params=params)
    text = json.dumps(report, allow_nan=False)
    back = json.loads(text)
    assert back["members"] == 3 and back["examples"] == 5
    assert back["error_correlation"][1] == [None, None, None]
    assert back["pairs"][0]["error_correlation"] is None
    assert back["disagreement"] == pairwise_disagreement(logits).tolist()
    assert set(back) >= {"kl", "l2", "cosine", "agreement", "pairs", "mean_disagreement",
                         "mean_kl", "mean_error_correlation"}
    d = pairwise_disagreement(logits)
    assert back["mean_disagreement"] == pytest.approx(d.sum().item() / 6, abs=TOL)
    # Only the pair (0, 2) has a defined correlation.
    rho = error_correlation(logits, LABELS)
    assert back["mean_error_correlation"] == pytest.approx(rho[0, 2].item(), abs=TOL)
    assert back["agreement"] == agreement_counts(logits, LABELS)


def test_single_member_report():
    report = diversity_report(HAND_LOGITS[:1], LABELS)
    assert report["pairs"] == [] and report["mean_disagreement"] is None
    assert report["agreement"]["all_agree"] == 5
    json.dumps(report, allow_nan=False)
