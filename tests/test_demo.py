"""The main job: `losslab demo` runs the built-in study on digits and prints its report."""

import pandas as pd

from losslab.cli import main
from losslab.studies import load_records


def test_demo_runs_the_whole_study_and_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed
    records = load_records(out)
    assert set(records.runs["status"]) == {"finished"} and len(records.runs) == 24
    summary = pd.read_csv(out / "summary.csv")
    # every schedule learns digits well; the comparison is in the report
    assert (summary["final_test_acc_mean"] > 0.8).all()
    html = (out / "report.html").read_text()
    assert list(records.analyses) == ["compare", "ensembles_from_one_run", "ensembles_independent",
                                      "ensembles_repulsion", "repulsion_cost"]
    for section in ("Compare: final test_acc", "warm_restarts", "Curves: Accuracy",
                    "Ensembles (run, auto)", "Does distance in weight space mean different",
                    "Repulsion: cost per checkpoint", "dist_ckpt_3"):
        assert section in html
