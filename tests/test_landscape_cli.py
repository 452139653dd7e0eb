"""`losslab landscape` on run directories."""

import json

from losslab.cli import main
from losslab.runs.config import load_config
from losslab.train.run import train


def test_landscape_cli_surface_and_line(tmp_path, capsys):
    runs = [train(load_config(overrides=["epochs=2", f"seed={s}", "log.progress=false",
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
