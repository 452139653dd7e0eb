"""Findings: intervals against scipy, the verdict logic, reductions, validation, end to end."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from losslab.cli import main
from losslab.report.findings_section import findings_rows
from losslab.runs.config import ConfigError
from losslab.studies import load_records, load_study, run_study
from losslab.studies.findings import FindingSpec, evaluate_finding, reduce_series, verdict
from losslab.studies.records import StudyRecords
from losslab.studies.stats import difference, mean_ci
from losslab.studies.suite import load_suite, run_suite

# -- intervals ------------------------------------------------------------------------------


def test_mean_ci_is_students_t_interval():
    x = [0.91, 0.93, 0.90, 0.94, 0.92]
    ci = mean_ci(x)
    low, high = stats.t.interval(0.95, 4, loc=np.mean(x), scale=stats.sem(x))
    assert (ci.low, ci.high) == pytest.approx((low, high), rel=1e-12)
    assert ci.half == pytest.approx((high - low) / 2) and ci.n == 5
    assert mean_ci([0.5]).low is None and mean_ci([0.5, math.nan]).n == 1
    assert mean_ci([]).n == 0


def test_difference_welch_paired_and_one_sample_match_scipy():
    a, b = [0.95, 0.93, 0.96, 0.94], [0.90, 0.92, 0.91]
    d = difference(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert (d.low, d.high, d.p_value) == pytest.approx((ci.low, ci.high, ref.pvalue), rel=1e-10)
    assert d.test == "welch" and d.diff == pytest.approx(np.mean(a) - np.mean(b))
    b4 = [0.90, 0.92, 0.91, 0.95]
    d = difference(a, b4, paired=True)
    ci = stats.ttest_rel(a, b4).confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((ci.low, ci.high), rel=1e-10) and d.test == "paired"
    d = difference(a, 0.9)  # against a constant: the interval of mean(a) − 0.9
    ci = stats.ttest_1samp(a, 0.9).confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((ci.low - 0.9, ci.high - 0.9), rel=1e-10)
    assert difference([1.0], [2.0, 3.0]).low is None  # one seed: no interval
    exact = difference([2.0, 2.0], [1.0, 1.0])        # no spread: the difference is exact
    assert (exact.low, exact.high) == (1.0, 1.0)


# -- verdicts on synthetic intervals ----------------------------------------------------------


@pytest.mark.parametrize("low, high, expect, margin, want", [
    (0.01, 0.03, "greater", None, "reproduced"),
    (-0.03, -0.01, "greater", None, "contradicted"),
    (-0.01, 0.03, "greater", None, "not resolved"),
    (-0.002, 0.003, "greater", 0.01, "contradicted"),   # resolved: no effect of that size
    (-0.002, 0.03, "greater", 0.01, "not resolved"),
    (-0.03, -0.01, "less", None, "reproduced"),
    (0.01, 0.03, "less", None, "contradicted"),
    (-0.004, 0.004, "similar", 0.01, "reproduced"),
    (0.02, 0.05, "similar", 0.01, "contradicted"),
    (0.0, 0.05, "similar", 0.01, "not resolved"),
    (None, None, "greater", None, "not resolved"),
])
def test_verdict(low, high, expect, margin, want):
    assert verdict(low, high, expect, margin)[0] == want


def test_reductions():
    x = [0.5, 0.8, 0.6, 0.9, 0.7]
    assert reduce_series(x, "final") == 0.7 and reduce_series(x, "max") == 0.9
    assert reduce_series(x, "best", "val_acc") == 0.9 and reduce_series(x, "best", "val_loss") == 0.5
    assert reduce_series(x, "drop") == pytest.approx(0.2)  # 0.8 -> 0.6 and 0.9 -> 0.7
    assert reduce_series(x, "first:2") == pytest.approx(0.65)
    assert reduce_series(x, "last:2") == pytest.approx(0.8)
    assert reduce_series([math.nan, 0.3], "final") == 0.3


# -- evaluation on synthetic records ---------------------------------------------------------


def _records(values, per_run=None):
    """``values``: variant -> per seed, a list of per-epoch val_acc."""
    rows, runs = [], []
    for variant, seeds in values.items():
        for seed, series in enumerate(seeds):
            run_id = f"{variant}-s{seed}"
            runs.append({"run_id": run_id, "variant": variant, "seed": seed, "status": "finished"})
            rows += [{"run_id": run_id, "variant": variant, "epoch": e + 1, "val_acc": v}
                     for e, v in enumerate(series)]
    analyses = {"ens": {"per_run": per_run}} if per_run is not None else {}
    return StudyRecords(directory=None, name="t", study={}, base_config={},
                        variants={v: {} for v in values}, variant_keys=[], runs=pd.DataFrame(runs),
                        results=pd.DataFrame(rows), summary=pd.DataFrame(), analyses=analyses)


def _finding(**kw):
    return FindingSpec(**{"id": "f", "claim": "c", "source": "s", "metric": "val_acc",
                          "at": "final", "a": "new", "b": "base", "expect": "greater", **kw})


def test_evaluate_between_variants_within_a_variant_and_from_an_analysis():
    recs = _records({"base": [[0.5, 0.80], [0.5, 0.81], [0.5, 0.79]],
                     "new": [[0.6, 0.90], [0.6, 0.92], [0.6, 0.91]]},
                    per_run=[{"variant": "new", "seed": s, "agree": 0.7 + 0.01 * s}
                             for s in range(3)])
    out = evaluate_finding(recs, _finding())
    assert out["verdict"] == "reproduced" and out["difference"]["test"] == "welch"
    assert out["difference"]["diff"] == pytest.approx(0.91 - 0.80)
    out = evaluate_finding(recs, _finding(expect="less"))
    assert out["verdict"] == "contradicted"
    # one variant, two epochs: paired by seed
    out = evaluate_finding(recs, _finding(a={"variant": "new", "at": "epoch:2"},
                                          b={"variant": "new", "at": "epoch:1"}))
    assert out["difference"]["test"] == "paired" and out["verdict"] == "reproduced"
    # an analysis's per-run value against a constant
    out = evaluate_finding(recs, _finding(metric="ens.agree", b={"value": 0.9}, expect="less"))
    assert out["verdict"] == "reproduced" and out["a"]["n"] == 3
    out = evaluate_finding(recs, _finding(metric="ens.nope", b={"value": 0.9}))
    assert out["verdict"] == "not resolved" and "no per-run 'nope'" in out["reason"]


def test_declared_pairing_removes_the_spread_the_variants_of_a_seed_share():
    # Each seed shifts both variants alike (a shared prefix); the treatment adds 0.01 to each.
    # Welch sees the seed spread and cannot resolve the effect; the paired interval can.
    shift = [0.0, 0.05, -0.04, 0.08, -0.06]
    noise = [0.001, -0.002, 0.0015, 0.0, -0.001]
    recs = _records({"base": [[0.8 + s] for s in shift],
                     "new": [[0.81 + s + e] for s, e in zip(shift, noise, strict=True)]})
    welch = evaluate_finding(recs, _finding())
    assert welch["difference"]["test"] == "welch" and welch["verdict"] == "not resolved"
    paired = evaluate_finding(recs, _finding(paired=True))
    d = stats.ttest_rel([0.81 + s + e for s, e in zip(shift, noise, strict=True)],
                        [0.8 + s for s in shift]).confidence_interval()
    assert paired["difference"]["test"] == "paired" and paired["verdict"] == "reproduced"
    assert (paired["difference"]["low"], paired["difference"]["high"]) == pytest.approx(
        (d.low, d.high), rel=1e-10)
    assert "(paired, 5 seeds)" in findings_rows([paired])["a − b [95% CI]"].iloc[0]
    with pytest.raises(ValueError, match="side b is a constant"):
        _finding(paired=True, b={"value": 0.5})


# -- validation at load, end to end -----------------------------------------------------------

BASE = {"epochs": 2, "log": {"progress": False, "tensorboard": False},
        "data": {"name": "synthetic", "batch_size": 64, "options": {"n": 256}},
        "model": {"name": "mlp"}}
VARIANTS = [{"name": "slow", "set": {"optimizer.lr": 0.001}},
            {"name": "fast", "set": {"optimizer.lr": 0.1}}]
GOOD = {"id": "faster_learns", "claim": "a larger lr lowers the training loss sooner",
        "source": "test", "metric": "train_loss", "at": "final", "a": "fast", "b": "slow",
        "expect": "less"}


def _study(tmp_path, name="t", **fields):
    tree = {"name": name, "base": BASE, "variants": VARIANTS, "seeds": [0, 1], **fields}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


@pytest.mark.parametrize("bad, words", [
    ({"a": "fastest"}, ["finding 'faster_learns'", "no variant 'fastest'", "slow"]),
    ({"metric": "train_los"}, ["unknown metric 'train_los'"]),
    ({"metric": "ensemble.acc"}, ["names no analysis of the study 'ensemble'"]),
    ({"at": "last"}, ["at 'last'"]),
])
def test_a_bad_finding_is_one_line_before_any_run(tmp_path, bad, words, capsys):
    path = _study(tmp_path, findings=[{**GOOD, **bad}])
    with pytest.raises(ConfigError) as e:
        load_study(path)
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()  # nothing was trained
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="needs a margin"):
        load_study(_study(tmp_path, findings=[{**GOOD, "expect": "similar"}]))


def test_study_writes_findings_and_the_report_shows_them(tmp_path):
    path = _study(tmp_path, findings=[GOOD, {**GOOD, "id": "also", "published":
                                             {"value": 1.5, "setting": "a paper's net"}}])
    outcome = run_study(path, tmp_path / "out")
    saved = json.loads((outcome.directory / "findings.json").read_text())["findings"]
    assert [f["id"] for f in saved] == ["faster_learns", "also"]
    f = saved[0]
    recs = load_records(outcome.directory)
    finals = {v: [float(recs.results[recs.results.run_id == f"{v}-s{s}"]
                        .sort_values("epoch")["train_loss"].iloc[-1]) for s in (0, 1)]
              for v in ("fast", "slow")}
    assert f["difference"]["diff"] == pytest.approx(np.mean(finals["fast"]) - np.mean(finals["slow"]))
    assert f["verdict"] in ("reproduced", "not resolved", "contradicted")
    html = outcome.report.read_text()
    assert 'id="findings"' in html and "faster_learns" in html and "a paper&#39;s net" in html
    summary = pd.read_csv(outcome.directory / "summary.csv").set_index("variant")
    low, high = stats.t.interval(0.95, 1, loc=np.mean(finals["fast"]),
                                 scale=stats.sem(finals["fast"]))
    assert summary.loc["fast", "final_train_loss_ci95"] == pytest.approx((high - low) / 2)


def test_suite_gathers_every_studys_findings(tmp_path):
    _study(tmp_path, "one", findings=[GOOD])
    _study(tmp_path, "two", findings=[{**GOOD, "id": "second"}])
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "s", "studies": ["one.yaml", "two.yaml"]}))
    outcome = run_suite(suite, tmp_path / "out", workers=2)
    assert [f["id"] for f in outcome.findings] == ["faster_learns", "second"]
    assert set(outcome.times) == {"one", "two"} and outcome.failed_runs == 0
    md = (tmp_path / "out" / "findings.md").read_text()
    assert "| one | faster_learns |" in md and "Machine:" in md
    table = pd.read_csv(tmp_path / "out" / "findings.csv")
    assert list(table["study"]) == ["one", "two"]
    suite.write_text(yaml.safe_dump({"name": "s", "studies": ["one.yaml", "gone.yaml"]}))
    with pytest.raises(ConfigError, match="no study file"):
        load_suite(suite)
