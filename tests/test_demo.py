"""The main job: `losslab demo` runs the built-in study on digits and prints its report."""

import numpy as np
import pandas as pd
import pytest

from losslab.cli import main
from losslab.runs.metrics import read_metrics
from losslab.studies import load_records

pytestmark = pytest.mark.e2e  # end to end: deselected by `make test-fast`


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
                                      "ensembles_repulsion", "repulsion_cost",
                                      "landscape_surface", "landscape_line",
                                      "landscape_trajectory", "landscape_spectra", "curve"]
    for section in ("Compare: final test_acc", "warm_restarts", "Curves: Accuracy",
                    "Ensembles (run, auto)", "Does distance in weight space mean different",
                    "Repulsion: cost per checkpoint", "dist_ckpt_3", "worsening_accepted",
                    "mean_acceptance_prob", "Landscape: surface", "Landscape: line",
                    "trajectory on its PCA plane", "Spectral density of the Hessian",
                    "sharpness", "Curve: cosine-s0 → cosine-s1 (bezier)", "plane through"):
        assert section in html
    _check_landscape(records, out)
    curve = records.analyses["curve"]["evaluation"]
    assert curve["barrier"]["curve"] < curve["barrier"]["line"]


def _check_landscape(records, out) -> None:
    """The maps describe the trained models: the interpolation starts and ends at the two
    runs' own logged test losses, the surface's centre is its minimum's neighbourhood, the
    spectra converged, and λmax was tracked during the cosine runs."""
    line = records.analyses["landscape_line"]["results"]["constant → cosine"]
    final = {}
    for variant in ("constant", "cosine"):
        run = records.runs[(records.runs["variant"] == variant) & (records.runs["seed"] == 0)]
        final[variant] = read_metrics(run["run_dir"].item())[-1]
    a = line["alphas"]
    assert line["loss"][a.index(0.0)] == pytest.approx(final["constant"]["test_loss"], rel=1e-5)
    assert line["loss"][a.index(1.0)] == pytest.approx(final["cosine"]["test_loss"], rel=1e-5)
    surface = records.analyses["landscape_surface"]["results"]["cosine"]
    loss = np.array(surface["loss"])
    assert loss.shape == (11, 11) and loss[5, 5] <= np.percentile(loss, 10)
    trajectory = records.analyses["landscape_trajectory"]["results"]["snapshot"]
    assert len(trajectory["member_labels"]) == 4 and sum(trajectory["explained_variance"]) <= 1
    for spectrum in records.analyses["landscape_spectra"]["results"].values():
        assert spectrum["converged"] and spectrum["eigenvalues"][-1] > 0
    assert "sharpness" in final["cosine"]
