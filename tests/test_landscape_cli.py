"""`losslab landscape` on run directories."""

import json

import pytest

from losslab.cli import main
from losslab.runs.config import load_config
from losslab.train.run import train_run

pytestmark = pytest.mark.e2e  # end to end: deselected by `make test-fast`


def test_landscape_cli_surface_and_line(tmp_path, capsys):
    runs = [train_run(load_config(overrides=["epochs=2", f"seed={s}", "log.progress=false",
                                         "log.tensorboard=false"]), tmp_path / f"r{s}")
            for s in (0, 1)]
    assert main(["landscape", "surface", str(runs[0]), "--points", "3", "--examples", "100",
                 "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "landscape_surface.json").read_text())
    assert result["x"][1] == 0.0 and len(result["loss"]) == 3
    assert result["split"] == "train" and result["examples"] == 100  # Li et al.'s default
    centre = f"{result['loss'][1][1]:.4f}"
    assert "3x3 grid" in printed and "train split, 100 examples" in printed
    assert f"loss {centre}" in " ".join(printed.split())  # the centre's loss, first column
    # beside the JSON: the interactive page and every figure as PNG and PDF
    page = (tmp_path / "landscape_surface.html").read_text()
    assert "loss contours" in page and "train split" in page
    pngs = sorted((tmp_path / "figures" / "landscape_surface").glob("*.png"))
    assert len(pngs) == 4 and all(p.stat().st_size > 5000 for p in pngs)
    assert main(["landscape", "line", str(runs[0]), str(runs[1]), "--examples", "100",
                 "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "barrier" in printed and "α = 1" in printed
    assert (tmp_path / "landscape_line.html").exists()
    # `losslab report` redraws every result of the directory from the JSON alone
    import losslab.landscape.study_analysis as computing

    (tmp_path / "landscape_surface.html").unlink()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(computing, "compute_landscape", None)  # calling it would fail
        assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "landscape_surface.html").exists()
    assert "landscape_line.html" in capsys.readouterr().out
    assert main(["landscape", "line", str(runs[0]), "--out", str(tmp_path)]) == 2  # needs two


def test_landscape_cli_takes_checkpoint_files(tmp_path, capsys):
    """A checkpoint file stands for itself; the line from an epoch checkpoint to the final model
    starts at that checkpoint's own test loss (the run logged it for the same weights)."""
    run = train_run(load_config(overrides=["epochs=3", "checkpoints.every=1", "log.progress=false",
                                       "log.tensorboard=false"]), tmp_path / "r")
    first = run / "checkpoints" / "epoch_0001"
    assert main(["landscape", "line", str(first), str(run), "--split", "test", "--out",
                 str(tmp_path)]) == 0
    result = json.loads((tmp_path / "landscape_line.json").read_text())
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    at_start = result["loss"][result["alphas"].index(0.0)]
    at_end = result["loss"][result["alphas"].index(1.0)]
    assert abs(at_start - logged[0]["test_loss"]) < 1e-5 * logged[0]["test_loss"]
    assert abs(at_end - logged[-1]["test_loss"]) < 1e-5 * logged[-1]["test_loss"]
    assert at_start != at_end
    assert main(["landscape", "surface", str(first) + ".safetensors", "--points", "3",
                 "--examples", "50", "--out", str(tmp_path)]) == 0
    assert "3x3 grid" in capsys.readouterr().out
    assert main(["landscape", "trajectory", str(first), "--points", "3", "--examples", "50",
                 "--out", str(tmp_path)]) == 0
    assert "3 epochs on the plane" in capsys.readouterr().out
    assert list((tmp_path / "figures" / "landscape_trajectory").glob("*.png"))
    assert main(["landscape", "surface", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path)]) == 2


def test_landscape_cli_hessian_ratio_map_and_a_subset_larger_than_the_split(tmp_path, capsys,
                                                                           caplog):
    run = train_run(load_config(overrides=["epochs=1", "log.progress=false",
                                           "log.tensorboard=false"]), tmp_path / "r")
    assert main(["landscape", "hessian", str(run), "--examples", "64", "--out",
                 str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "landscape_hessian.json").read_text())
    assert f"trace {result['trace']:.4g}" in printed and "largest" in printed
    assert result["split"] == "train" and result["examples"] == 64
    assert sorted((tmp_path / "figures" / "landscape_hessian").glob("*.png"))
    # more examples than the split holds: all of them, said once, not an error after the work
    assert main(["landscape", "ratio_map", str(run), "--points", "3", "--examples", "10000000",
                 "--lanczos-steps", "8", "--split", "test", "--out", str(tmp_path)]) == 0
    assert "more than the test split's 359; using all of them" in caplog.text
    result = json.loads((tmp_path / "landscape_ratio_map.json").read_text())
    assert result["examples"] == 0 and result["split"] == "test"
    assert "|λmin/λmax|" in capsys.readouterr().out


def test_a_surface_on_the_plane_of_the_top_hessian_eigenvectors(tmp_path, capsys):
    """Along the top eigenvector, the surface's curvature at the centre is λ1 (a second
    difference over a small span: ReLU kinks and float32 rounding bound its accuracy to about
    10% here), and its plane and eigenvalues are recorded."""
    run = train_run(load_config(overrides=["epochs=1", "log.progress=false",
                                           "log.tensorboard=false"]), tmp_path / "r")
    assert main(["landscape", "surface", str(run), "--directions", "hessian_top2",
                 "--normalization", "none", "--examples", "64", "--points", "3", "--span",
                 "0.003", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "landscape_surface.json").read_text())
    assert result["directions"] == "hessian_top2"
    lam1, lam2 = result["directions_extra"]["eigenvalues"]
    assert lam1 >= lam2 > 0 and result["directions_extra"]["converged"]
    loss = result["loss"]  # loss[i][j] at (x[j], y[i]); the first direction is x
    along_x = (loss[1][0] + loss[1][2] - 2 * loss[1][1]) / 0.003 ** 2
    along_y = (loss[0][1] + loss[2][1] - 2 * loss[1][1]) / 0.003 ** 2
    assert along_x == pytest.approx(lam1, rel=0.15) and along_y == pytest.approx(lam2, rel=0.15)
    page = (tmp_path / "landscape_surface.html").read_text()
    assert f"eigenvectors of the largest eigenvalues ({lam1:.4g}, {lam2:.4g}" in page
    # the 1-D cut along the top eigenvector: one run and --directions
    assert main(["landscape", "line", str(run), "--directions", "hessian_top2",
                 "--normalization", "none", "--examples", "64", "--span", "0.003", "--out",
                 str(tmp_path)]) == 0
    assert "line along hessian_top2" in capsys.readouterr().out
    cut = json.loads((tmp_path / "landscape_line.json").read_text())
    ends = (cut["loss"][0] + cut["loss"][-1] - 2 * cut["loss"][20]) / 0.003 ** 2
    assert cut["alphas"][20] == 0.0 and ends == pytest.approx(lam1, rel=0.15)
    assert "the eigenvector of the largest eigenvalue" in \
        (tmp_path / "landscape_line.html").read_text()
    assert main(["landscape", "surface", str(run), "--directions", "hesian_top2", "--out",
                 str(tmp_path / "x")]) == 2
    assert "directions must be one of" in capsys.readouterr().err
