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
    assert set(records.runs["status"]) == {"finished"} and len(records.runs) == 30
    summary = pd.read_csv(out / "summary.csv")
    # every gradient-based variant learns digits well; the comparison is in the report
    trained = summary[summary["variant"] != "ssa"]
    assert (trained["final_test_acc_mean"] > 0.8).all()
    # derivative-free SSA is slow (the thesis's finding) but well above chance (0.1)
    assert summary.loc[summary["variant"] == "ssa", "final_test_acc_mean"].item() > 0.2
    html = (out / "report.html").read_text()
    assert list(records.analyses) == ["compare", "ensembles_from_one_run", "ensembles_independent",
                                      "ensembles_repulsion", "repulsion_cost"]
    for section in ("Compare: final test_acc", "warm_restarts", "Curves: Accuracy",
                    "Ensembles (run, auto)", "Does distance in weight space mean different",
                    "Repulsion: cost per checkpoint", "dist_ckpt_3", "worsening_accepted",
                    "mean_acceptance_prob"):
        assert section in html
