"""The study analysis `curve`: a curve between two seeds' final models, fitted once as a run of
its own, evaluated along t and drawn on its plane in the report."""

import pytest
import yaml

from losslab.studies import load_records, run_study

pytestmark = pytest.mark.e2e  # end to end: deselected by `make test-fast`


def test_curve_analysis_in_a_study(tmp_path):
    study = {
        "name": "connect",
        "base": {"epochs": 3, "log": {"progress": False, "tensorboard": False}},
        "seeds": [0, 1],
        "analyses": [{"name": "curve", "variants": ["base", "base"], "seeds": [0, 1],
                      "set": {"epochs": 3, "optimizer.lr": 0.05}, "points": 5, "grid": 3,
                      "published": {"endpoints": [6.79, 6.94], "bezier": [6.79, 7.75]},
                      "published_setting": "VGG16, CIFAR-10, 600 epochs"}],
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    outcome = run_study(path, tmp_path / "out", workers=2)
    assert outcome.counts == {"finished": 2}
    result = load_records(outcome.directory).analyses["curve"]
    assert "error" not in result and "error" not in result["plane"]
    assert result["pair"] == "base-s0 → base-s1"
    e = result["evaluation"]
    assert e["ts"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert e["curve"]["train_loss"][0] == e["line"]["train_loss"][0]  # the same endpoint
    assert e["barrier"]["curve"] < e["barrier"]["line"]  # the curve goes around the barrier
    assert len(result["plane"]["loss"]) == 3
    ens = result["ensemble"]
    assert ens["ts"] == [0.0, 0.25, 0.5, 0.75, 1.0] and len(ens["member_acc"]) == 5
    # the members are the evaluated points: same weights, same recomputed statistics
    for t, acc in zip(ens["ts"], ens["member_acc"], strict=True):
        assert acc == e["curve"]["test_acc"][e["ts"].index(t)]
    assert ens["ensemble_acc"] >= min(ens["member_acc"])
    html = (outcome.directory / "report.html").read_text()
    for text in ("Curve: base-s0 → base-s1 (bezier)", "train loss along t", "test error along t",
                 "plane through", "published test error (%), VGG16, CIFAR-10, 600 epochs", "6.79-7.75",
                 "Ensemble of 5 points along the curve"):
        assert text in html
    # running the study again reuses the fitted curve instead of training it anew
    curve_run = outcome.directory / "curves" / "base-s0--base-s1-bezier1"
    stamp = (curve_run / "metrics.jsonl").stat().st_mtime_ns
    run_study(path, tmp_path / "out", workers=2)
    assert (curve_run / "metrics.jsonl").stat().st_mtime_ns == stamp
    assert (curve_run / "curve_source.json").exists()
    # other options: the old curve is archived (nothing lost) and the curve fitted anew
    study["analyses"][0]["set"]["optimizer.lr"] = 0.04
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    run_study(path, tmp_path / "out", workers=2)
    assert (curve_run / "metrics.jsonl").stat().st_mtime_ns != stamp
    assert yaml.safe_load((curve_run / "config.yaml").read_text())["optimizer"]["lr"] == 0.04
    (archived,) = (outcome.directory / "curves" / "archive").iterdir()
    assert archived.name.endswith("base-s0--base-s1-bezier1")
    assert (archived / "metrics.jsonl").stat().st_mtime_ns == stamp


def test_curve_pairs_give_findings_one_row_per_pair(tmp_path):
    study = {
        "name": "pairs",
        "base": {"epochs": 2, "log": {"progress": False, "tensorboard": False}},
        "seeds": [0, 1, 2, 3],
        "analyses": [{"name": "curve", "id": "bezier", "variants": ["base", "base"],
                      "pairs": [[0, 1], [2, 3]], "set": {"epochs": 2}, "points": 5, "grid": 0,
                      "ensemble": []}],
        "findings": [{"id": "line_worse", "claim": "the line has a barrier", "source": "test",
                      "metric": "bezier.line_barrier", "a": "base",
                      "b": {"variant": "base", "metric": "bezier.curve_barrier"},
                      "expect": "greater"}],
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    outcome = run_study(path, tmp_path / "out", workers=2)
    result = load_records(outcome.directory).analyses["bezier"]
    assert result["pair"] == "base-s0 → base-s1"  # the first pair is the one drawn
    rows = result["per_run"]
    assert [(r["pair"], r["seed"]) for r in rows] == [("base-s0 → base-s1", 0),
                                                      ("base-s2 → base-s3", 2)]
    e = result["evaluation"]
    error = [100 * (1 - a) for a in e["line"]["test_acc"]]
    assert rows[0]["line_barrier"] == e["barrier"]["line"]
    assert rows[0]["line_error_rise"] == max(error) - (error[0] + error[-1]) / 2
    assert (outcome.directory / "curves" / "base-s2--base-s3-bezier1").is_dir()
    (finding,) = load_records(outcome.directory).findings
    assert finding["a"]["n"] == 2 and finding["difference"]["test"] == "paired"
