"""`losslab curve fit|evaluate|plane` on run directories."""

import json

import pytest

from losslab.cli import main
from losslab.curves.members import save_curve_points
from losslab.runs.config import load_config
from losslab.runs.metrics import read_metrics
from losslab.train.run import train_run

pytestmark = pytest.mark.e2e  # end to end: deselected by `make test-fast`


def test_curve_fit_evaluate_plane(tmp_path, capsys):
    quiet = ["log.progress=false", "log.tensorboard=false"]
    runs = [train_run(load_config(overrides=[*quiet, "epochs=3", f"seed={s}"]), tmp_path / f"r{s}")
            for s in (0, 1)]
    curve = tmp_path / "curve"
    assert main(["curve", "fit", str(runs[0]), str(runs[1]), "--out", str(curve),
                 "--set", "epochs=2", "--set", "optimizer.lr=0.05"]) == 0
    assert len(read_metrics(curve)) == 2
    # a fit ends with what it is for: the objective, and the error along the curve it found
    printed = capsys.readouterr().out
    fitted = json.loads((curve / "curve_evaluate.json").read_text())
    assert len(fitted["ts"]) == 11 and fitted["curve_kind"] == "bezier" and fitted["bends"] == 1
    assert f"train objective (loss at a random t + weight decay) " \
           f"{read_metrics(curve)[-1]['train_loss']:.4f}" in printed
    worst = 100 * (1 - min(fitted["curve"]["test_acc"]))
    assert f"{worst:.2f}" in printed and "endpoints" in printed and "val_acc" not in printed
    assert (curve / "curve_evaluate.html").exists()
    assert main(["curve", "evaluate", str(curve), "--points", "5", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "barrier" in printed and "curve" in printed and "line" in printed
    result = json.loads((tmp_path / "curve_evaluate.json").read_text())
    assert result["ts"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert f"{result['barrier']['line']:.4f}" in printed
    assert len(list((tmp_path / "figures" / "curve_evaluate").glob("*.png"))) == 2
    ends = [read_metrics(r)[-1]["test_loss"] for r in runs]  # each endpoint's own test loss
    for name in ("curve", "line"):  # (BN statistics recomputed on the train split: close)
        loss = result[name]["test_loss"]
        assert abs(loss[0] - ends[0]) < 0.1 * ends[0] and abs(loss[-1] - ends[1]) < 0.1 * ends[1]
    assert result["curve"]["train_loss"][0] == result["line"]["train_loss"][0]
    assert main(["curve", "plane", str(curve), "--grid", "3", "--out", str(tmp_path)]) == 0
    plane = json.loads((tmp_path / "curve_plane.json").read_text())
    assert len(plane["loss"]) == 3 and plane["control_xy"][0] == [0.0, 0.0]
    assert "3x3 grid" in capsys.readouterr().out
    assert len(list((tmp_path / "figures" / "curve_plane").glob("*.png"))) == 2
    # points along the curve are ordinary checkpoints: the ensemble command takes them
    points = save_curve_points(curve, [0.0, 0.5, 1.0])
    assert [r.meta.extra["t"] for r in points] == [0.0, 0.5, 1.0]
    assert main(["ensemble", str(curve), "--role", "curve_point", "--out", str(tmp_path)]) == 0
    ensemble = json.loads((tmp_path / "ensemble.json").read_text())
    assert ensemble["n_members"] == 3
    assert main(["curve", "evaluate", str(runs[0]), "--out", str(tmp_path)]) == 2  # not a curve
    assert main(["curve", "fit", str(runs[0]), "--out", str(tmp_path / "x")]) == 2
