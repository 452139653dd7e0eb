"""Checkpoints are verified, complete and the right shape, or the command says which file is not;
and a landscape surface killed mid-grid continues where it stopped.

Each case damages a copy of a tiny trained run, runs the command that reads it, and checks the
exit status 2, one line ``losslab: error: ...`` naming the file and what was expected, no
traceback, and that the run directory is byte for byte what it was before the command.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from losslab.cli import main
from losslab.errors import CheckpointCorruptError, InputError
from losslab.runs.checkpoint_set import CheckpointSet, check_compatible
from losslab.runs.checkpoints import save_checkpoint
from losslab.runs.config import load_config
from losslab.runs.rundir import RunDir
from losslab.train.run import train_run

pytestmark = pytest.mark.e2e  # trains runs, runs the CLI and kills a subprocess

QUIET = ["log.progress=false", "log.tensorboard=false", "data.batch_size=128"]
MAP = ["--points", "3", "--examples", "50"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A width-32 run with an epoch checkpoint each epoch, and a width-16 run."""
    root = tmp_path_factory.mktemp("runs")
    wide = train_run(load_config(overrides=[*QUIET, "epochs=3", "checkpoints.every=1"]),
                     root / "wide")
    narrow = train_run(load_config(overrides=[*QUIET, "epochs=1", "model.options.width=16"]),
                       root / "narrow")
    return wide, narrow


@pytest.fixture
def wide(trained, tmp_path):
    return Path(shutil.copytree(trained[0], tmp_path / "wide"))


@pytest.fixture
def narrow(trained, tmp_path):
    return Path(shutil.copytree(trained[1], tmp_path / "narrow"))


def _digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _refused(argv, capsys, runs, *expected) -> str:
    """Run the command; it must exit 2 with one error line holding ``expected``, and leave
    every run directory in ``runs`` as it was."""
    before = [_digest(r) for r in runs]
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("losslab: error: "), err
    assert "Traceback" not in err
    for text in expected:
        assert str(text) in lines[0], lines[0]
    assert [_digest(r) for r in runs] == before
    return lines[0]


# the SHA-256 of the weights ----------------------------------------------------------------
@pytest.mark.parametrize("how", ["removed", "empty"])
def test_a_sidecar_without_its_sha256_is_corrupt(wide, tmp_path, capsys, how):
    sidecar = wide / "checkpoints" / "final.json"
    record = json.loads(sidecar.read_text())
    if how == "removed":
        del record["sha256"]
    else:
        record["sha256"] = ""
    sidecar.write_text(json.dumps(record))
    _refused(["landscape", "surface", wide, *MAP, "--out", tmp_path / "out"], capsys, [wide],
             sidecar, "records no SHA-256 of its weights")
    assert not (tmp_path / "out" / "landscape_surface.json").exists()
    with pytest.raises(CheckpointCorruptError, match="records no SHA-256"):
        CheckpointSet.from_run(wide)


# a lost sidecar ------------------------------------------------------------------------------
def test_a_finished_runs_weights_without_sidecar_are_an_error_not_a_smaller_ensemble(
        wide, tmp_path, capsys):
    assert len(CheckpointSet.from_run(wide, role="epoch")) == 3
    (wide / "checkpoints" / "epoch_0002.json").unlink()
    _refused(["ensemble", wide, "--role", "epoch", "--no-swa", "--out", tmp_path / "out"],
             capsys, [wide], wide / "checkpoints" / "epoch_0002.safetensors",
             "has no sidecar epoch_0002.json; the run finished, so the record was lost")
    assert not (tmp_path / "out" / "ensemble.json").exists()
    # the file named directly says the same
    _refused(["landscape", "surface", wide / "checkpoints" / "epoch_0002.safetensors", *MAP,
              "--out", tmp_path / "out"], capsys, [wide], "epoch_0002.safetensors",
             "the record was lost")


def test_an_unfinished_runs_weights_without_sidecar_are_an_interrupted_write(wide):
    """While a run may still write, a weights file without its sidecar is the checkpoint it
    was writing when it stopped: skipped, as before (its resume rewrites it)."""
    (wide / "checkpoints" / "epoch_0002.json").unlink()
    RunDir(wide).update_meta(status="interrupted")
    assert CheckpointSet.from_run(wide, role="epoch").epochs == [1, 3]


def test_optimizer_state_files_are_not_checkpoints_without_sidecars(tmp_path):
    run = train_run(load_config(overrides=[*QUIET, "epochs=1", "checkpoints.optimizer=true"]),
                    tmp_path / "run")
    assert list((run / "checkpoints").glob("*.optimizer.safetensors"))
    assert "final" in CheckpointSet.from_run(run).roles


# weights of another network ---------------------------------------------------------------
def _mismatch(ckpt: Path, config: Path) -> str:
    return (f"checkpoint {ckpt}: tensor features.0.0.weight has shape (16, 1, 3, 3) but the "
            f"run's model (config {config}) expects (32, 1, 3, 3)")


def test_a_narrower_networks_checkpoint_in_a_run_is_refused_by_every_analysis(
        wide, narrow, tmp_path, capsys):
    """The pair of files of a width-16 run copied over a width-32 run's final checkpoint (a
    valid checkpoint, its hash intact): the analyses rebuild the network from the run's config,
    and the functional evaluation would have run the narrow weights through it (exit 0)."""
    for name in ("final.safetensors", "final.json"):
        shutil.copy(narrow / "checkpoints" / name, wide / "checkpoints" / name)
    final = wide / "checkpoints" / "final.safetensors"
    out = tmp_path / "out"
    message = _mismatch(final, wide / "config.yaml")
    for argv in (["landscape", "surface", wide, *MAP], ["landscape", "hessian", wide,
                                                        "--examples", "50"],
                 ["ensemble", wide, "--no-swa"]):
        _refused([*argv, "--out", out], capsys, [wide, narrow], message)
    assert not out.exists() or not list(out.iterdir())


def test_a_line_between_networks_of_different_widths_is_refused(wide, narrow, tmp_path, capsys):
    _refused(["landscape", "line", wide, narrow, "--examples", "50", "--out", tmp_path],
             capsys, [wide, narrow],
             f"checkpoint {narrow / 'checkpoints' / 'final.safetensors'}: tensor "
             f"features.0.0.weight has shape (16, 1, 3, 3) but the run's model (config "
             f"{wide / 'config.yaml'}) expects (32, 1, 3, 3)")


def test_a_trajectory_with_one_epoch_replaced_by_another_networks_is_refused(
        wide, narrow, tmp_path, capsys):
    ckpt = CheckpointSet.from_run(narrow, role="final").load(0)
    save_checkpoint(wide / "checkpoints", "epoch_0002", ckpt.params, ckpt.buffers,
                    run_id="wide", epoch=2, step=22, role="epoch")
    _refused(["landscape", "trajectory", wide, *MAP, "--out", tmp_path], capsys, [wide],
             _mismatch(wide / "checkpoints" / "epoch_0002.safetensors", wide / "config.yaml"))


def test_missing_and_unexpected_names_are_listed():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    check_compatible(model, state, {}, "c.safetensors")  # fits: no error
    state["2.weight"] = torch.zeros(1)
    del state["0.bias"]
    with pytest.raises(InputError, match=r"checkpoint c.safetensors does not fit the model: it "
                       r"lacks \['0.bias'\] and has unexpected \['2.weight'\]"):
        check_compatible(model, state, {}, "c.safetensors")


# a killed surface continues ---------------------------------------------------------------
SLOW_CLI = """
import sys, time
from losslab.landscape import points
evaluate = points.PointEvaluator.evaluate_sets
def slow(self, coords, tick=None):  # the kill must land mid-grid, however fast the machine is
    time.sleep(0.05 * len(coords))
    return evaluate(self, coords, tick)
points.PointEvaluator.evaluate_sets = slow
from losslab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _count_points(monkeypatch) -> list[int]:
    from losslab.landscape import points

    counted, evaluate = [], points.PointEvaluator.evaluate_sets  # what every map calls

    def counting(self, coords, tick=None):
        counted.append(len(coords))
        return evaluate(self, coords, tick)

    monkeypatch.setattr(points.PointEvaluator, "evaluate_sets", counting)
    return counted


def test_a_killed_landscape_surface_continues_from_its_stored_points(
        wide, narrow, tmp_path, capsys, monkeypatch):
    argv = ["landscape", "surface", str(wide), "--points", "7", "--examples", "50"]
    out = tmp_path / "killed"
    partial = out / "landscape_surface.partial.npz"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CLI, *argv, "--out", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the surface ended before it could be killed"
    with np.load(partial) as f:
        stored = int(f["done"].sum())
    assert 0 < stored < 49
    assert not (out / "landscape_surface.json").exists()

    # other arguments never reuse the stored points: another grid, data, split or run
    for other in (["--span", "0.5"], ["--examples", "60"], ["--split", "val"]):
        _refused([*argv, *other, "--out", out], capsys, [wide, out], partial,
                 "holds a different surface")
    _refused(["landscape", "surface", narrow, "--points", "7", "--examples", "50", "--out", out],
             capsys, [narrow, out], partial, "holds a different surface")

    counted = _count_points(monkeypatch)
    assert main([*argv, "--out", str(out)]) == 0
    assert sum(counted) == 49 - stored  # only the missing points
    assert "continuing from" in capsys.readouterr().out
    assert not partial.exists() and not partial.with_suffix(".json").exists()
    counted.clear()
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    assert sum(counted) == 49
    resumed = json.loads((out / "landscape_surface.json").read_text())
    whole = json.loads((tmp_path / "whole" / "landscape_surface.json").read_text())
    assert resumed["loss"] == whole["loss"] and resumed["acc"] == whole["acc"]
    assert resumed["x"] == whole["x"] and resumed["y"] == whole["y"]
