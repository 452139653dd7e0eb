"""A study's analyses are computed once per state of its runs; `losslab report` computes nothing."""

import json

import pytest
import yaml

from losslab.cli import main
from losslab.studies import run_study
from losslab.studies.analyses import register_analysis

pytestmark = pytest.mark.e2e  # end to end: deselected by `make test-fast`

CALLS: list[str] = []


@register_analysis("counted_for_tests")
def counted(records, *, tag: str = "a"):
    """Records each call; its result is the finished runs' final train loss."""
    CALLS.append(tag)
    rows = records.results.sort_values("epoch").groupby("run_id").last()
    return {"tag": tag, "final_train_loss": rows["train_loss"].to_dict()}


def _study(tmp_path, tag="a"):
    tree = {"name": "reuse", "base": {"epochs": 1, "log": {"progress": False,
                                                          "tensorboard": False}},
            "variants": [{"name": "a", "set": {}}], "seeds": [0, 1],
            "analyses": [{"name": "counted_for_tests", "tag": tag}, {"name": "compare"}]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def test_unchanged_inputs_reuse_the_stored_result_and_report_never_computes(tmp_path, capsys):
    CALLS.clear()
    out = tmp_path / "out"
    run_study(_study(tmp_path), out, workers=1)
    assert CALLS == ["a"]
    stored = json.loads((out / "analyses" / "counted_for_tests.json").read_text())
    assert len(stored["inputs"]) == 64
    run_study(_study(tmp_path), out, workers=1)  # nothing changed: nothing is computed again
    assert CALLS == ["a"]
    assert main(["report", str(out)]) == 0
    assert CALLS == ["a"]

    # an option changes: only that analysis is computed again
    run_study(_study(tmp_path, tag="b"), out, workers=1)
    assert CALLS == ["a", "b"]

    # a run is retrained (its record changes): `report` draws the stored result, marked stale
    metrics = out / "runs" / "a-s1" / "metrics.jsonl"
    record = json.loads(metrics.read_text())
    record["train_loss"] += 1.0
    metrics.write_text(json.dumps(record) + "\n")
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert CALLS == ["a", "b"]
    page = (out / "report.html").read_text()
    assert "computed before the study&#39;s runs last changed" in page \
        or "computed before the study's runs last changed" in page
    assert "Out of date: computed before the study" in page  # in compare's drawn section too
    run_study(_study(tmp_path, tag="b"), out, workers=1)  # `run` brings it up to date
    assert CALLS == ["a", "b", "b"]
    again = json.loads((out / "analyses" / "counted_for_tests.json").read_text())
    assert again["final_train_loss"]["a-s1"] == pytest.approx(record["train_loss"])
    assert again["inputs"] != stored["inputs"]


def test_a_failed_analysis_is_tried_again(tmp_path, monkeypatch):
    CALLS.clear()
    out = tmp_path / "out"

    def broken(records, *, tag="a"):
        CALLS.append("broken")
        raise RuntimeError("boom")

    from losslab.studies import analyses

    monkeypatch.setitem(analyses._REGISTRY, "counted_for_tests", broken)
    assert run_study(_study(tmp_path), out, workers=1).failed_analyses
    assert main(["report", str(out)]) == 0  # reports the stored failure, computes nothing
    assert CALLS == ["broken"]
    monkeypatch.setitem(analyses._REGISTRY, "counted_for_tests", counted)
    assert not run_study(_study(tmp_path), out, workers=1).failed_analyses
    assert CALLS == ["broken", "a"]


def test_where_an_analysis_runs_is_not_one_of_its_inputs():
    from losslab.studies.analysis_inputs import analysis_inputs

    runs = [["r0", "finished", "abc"]]
    plain = analysis_inputs("landscape", {"kind": "surface", "points": 3}, runs)
    spread = analysis_inputs("landscape", {"kind": "surface", "points": 3, "backend": "ray",
                                           "workers": 4, "address": "auto",
                                           "worker_threads": 2}, runs)
    assert spread == plain
    assert analysis_inputs("landscape", {"kind": "surface", "points": 5}, runs) != plain
