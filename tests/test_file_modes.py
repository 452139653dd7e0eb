"""Created files follow the user's umask, as any other tool's (not mkstemp's 0600), so a
colleague on a shared disk can read a run, a checkpoint or a report."""

import os
import stat
import subprocess
import sys

import pytest
import torch

from losslab.runs.atomic import atomic_write_json, atomic_write_text
from losslab.runs.checkpoints import save_checkpoint
from losslab.runs.lock import DirectoryLock
from losslab.runs.state_file import write_state


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    def set_to(value):
        os.umask(value)
    before = os.umask(0o022)
    yield set_to
    os.umask(before)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_every_writer_follows_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write_text(tmp_path / "a.txt", "x\n")
    atomic_write_json(tmp_path / "b.json", {"x": 1})
    save_checkpoint(tmp_path / "ckpt", "final", {"w": torch.ones(2)}, {}, run_id="r", epoch=1,
                    step=1, role="final")
    write_state(tmp_path / "state" / "trainer.pt", {"epoch": 1})
    with DirectoryLock(tmp_path / "run"):
        pass
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 6
    assert {p.name: _mode(p) for p in files} == {p.name: expected for p in files}


@pytest.mark.e2e
def test_a_trained_run_is_readable_by_the_group_and_others_under_umask_022(tmp_path):
    out = tmp_path / "run"
    code = ("import os, sys; os.umask(0o022); from losslab.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "train", "--out", str(out), "--set",
                           "epochs=1", "--set", "log.progress=false"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    modes = {str(p.relative_to(out)): _mode(p) for p in out.rglob("*")}
    assert len(modes) > 8
    assert modes == {p: 0o755 if (out / p).is_dir() else 0o644 for p in modes}
