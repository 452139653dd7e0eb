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
    assert "3x3 grid" in capsys.readouterr().out
    result = json.loads((tmp_path / "landscape_surface.json").read_text())
    assert result["x"][1] == 0.0 and len(result["loss"]) == 3
    assert main(["landscape", "line", str(runs[0]), str(runs[1]), "--examples", "100",
                 "--out", str(tmp_path)]) == 0
    assert "at α=1" in capsys.readouterr().out
    assert main(["landscape", "line", str(runs[0]), "--out", str(tmp_path)]) == 2  # needs two


def test_landscape_cli_takes_checkpoint_files(tmp_path, capsys):
    """A checkpoint file stands for itself; the line from an epoch checkpoint to the final model
    starts at that checkpoint's own test loss (the run logged it for the same weights)."""
    run = train_run(load_config(overrides=["epochs=3", "checkpoints.every=1", "log.progress=false",
                                       "log.tensorboard=false"]), tmp_path / "r")
    first = run / "checkpoints" / "epoch_0001"
    assert main(["landscape", "line", str(first), str(run), "--out", str(tmp_path)]) == 0
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
    assert main(["landscape", "surface", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path)]) == 2
