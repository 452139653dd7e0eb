"""The compare analysis against scipy's Welch t-test."""

import pandas as pd
import pytest
from scipy import stats

from losslab.studies.analyses import compare
from losslab.studies.records import StudyRecords


def _records(values):
    rows, runs = [], []
    for variant, finals in values.items():
        for seed, final in enumerate(finals):
            run_id = f"{variant}-s{seed}"
            runs.append({"run_id": run_id, "variant": variant, "seed": seed, "status": "finished"})
            rows += [{"run_id": run_id, "variant": variant, "epoch": 1, "test_acc": 0.1},
                     {"run_id": run_id, "variant": variant, "epoch": 2, "test_acc": final}]
    return StudyRecords(directory=None, name="t", study={}, base_config={},
                        variants={v: {} for v in values}, variant_keys=[],
                        runs=pd.DataFrame(runs), results=pd.DataFrame(rows), summary=pd.DataFrame())


def test_compare_matches_scipy_welch():
    a, b = [0.90, 0.92, 0.91], [0.95, 0.93, 0.96, 0.94]
    out = compare(_records({"base": a, "new": b}), metric="test_acc", baseline="base")
    row = out["rows"][1]
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert row["p_value"] == pytest.approx(ref.pvalue, rel=1e-10)
    ci = ref.confidence_interval(0.95)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert row["diff"] == pytest.approx(sum(b) / 4 - sum(a) / 3)
    assert out["rows"][0]["std"] == pytest.approx(stats.tstd(a))


def test_compare_at_best_and_degenerate_cases():
    out = compare(_records({"a": [0.05], "b": [0.2, 0.2]}), at="best")
    assert out["baseline"] == "a" and out["rows"][0]["mean"] == 0.1  # best epoch, not final
    assert out["rows"][1]["p_value"] is None  # one seed on the baseline side: no interval
    with pytest.raises(ValueError, match="baseline 'zzz'"):
        compare(_records({"a": [0.5]}), baseline="zzz")
    with pytest.raises(ValueError, match="no metric 'nope'"):
        compare(_records({"a": [0.5]}), metric="nope")
