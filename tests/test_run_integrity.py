"""Nothing silent: a run's training state is verified, one writer per run and study directory,
a damaged finished run is trained again, signals end work cleanly and say how to continue."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import yaml

from losslab.cli import main
from losslab.runs.config import load_config
from losslab.runs.metrics import read_metrics
from losslab.runs.state_file import previous_state_path, read_state
from losslab.studies import load_records
from losslab.train.callbacks import Callback
from losslab.train.run import resume_run, train_run

pytestmark = pytest.mark.e2e  # trains runs and studies, kills processes

QUICK = ["epochs=3", "log.progress=false", "log.tensorboard=false", "data.batch_size=128"]
CLI = [sys.executable, "-m", "losslab.cli"]


class StopAt(Callback):
    """Interrupts the run as epoch ``epoch`` starts: the states of the epochs before are saved."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _comparable(records):
    return [{k: v for k, v in r.items() if k != "epoch_time"} for r in records]


def _tree(directory, skip=()):
    """Every file of a directory as relative path -> SHA-256 (what "nothing changed" compares)."""
    out = {}
    for p in sorted(directory.rglob("*")):
        rel = str(p.relative_to(directory))
        if p.is_file() and rel not in skip:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _one_error_line(err):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("losslab: error: ") and "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return train_run(load_config(overrides=QUICK), tmp_path_factory.mktemp("ref") / "run")


@pytest.fixture
def interrupted(tmp_path):
    """A run stopped as epoch 3 starts: trainer.pt holds epoch 2, trainer.prev.pt epoch 1."""
    with pytest.raises(KeyboardInterrupt):
        train_run(load_config(overrides=QUICK), tmp_path / "run", callbacks=[StopAt(3)])
    return tmp_path / "run"


def test_the_state_keeps_its_previous_generation_and_both_verify(interrupted):
    state = interrupted / "state" / "trainer.pt"
    assert read_state(state)["epoch"] == 2
    assert read_state(previous_state_path(state))["epoch"] == 1


def test_a_flipped_byte_in_the_state_is_an_error_and_from_checkpoint_recovers(
        interrupted, reference, capsys):
    state = interrupted / "state" / "trainer.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    before = _tree(interrupted)
    assert main(["resume", str(interrupted)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(state) in line and "SHA-256" in line and "--from-checkpoint" in line
    assert _tree(interrupted) == before  # nothing trained, nothing rewritten

    assert main(["resume", str(interrupted), "--from-checkpoint"]) == 0
    # the epoch before was replayed exactly: the numbers of the uninterrupted run
    assert _comparable(read_metrics(interrupted)) == _comparable(read_metrics(reference))


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_truncated_or_empty_state_is_one_line(interrupted, damage, capsys):
    state = interrupted / "state" / "trainer.pt"
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"")
    before = _tree(interrupted)
    assert main(["resume", str(interrupted)]) == 2
    assert str(state) in _one_error_line(capsys.readouterr().err)
    assert _tree(interrupted) == before


def test_a_kill_between_the_two_renames_resumes_from_the_previous_state(interrupted, reference):
    (interrupted / "state" / "trainer.pt").unlink()  # only trainer.prev.pt (epoch 1) is left
    resume_run(interrupted)
    assert _comparable(read_metrics(interrupted)) == _comparable(read_metrics(reference))


def _hold_lock(directory, what):
    """A real second process holding ``directory``'s lock until it is killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from losslab.runs.lock import DirectoryLock
        DirectoryLock({str(directory)!r}, what={what!r}).acquire()
        print("held", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_resume_while_the_run_is_held_is_refused_naming_the_holder(interrupted, reference,
                                                                      capsys, caplog):
    holder = _hold_lock(interrupted, "run")
    try:
        before = _tree(interrupted, skip={".lock"})
        assert main(["resume", str(interrupted)]) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert f"pid {holder.pid}" in line and str(interrupted) in line and "in use" in line
        assert _tree(interrupted, skip={".lock"}) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder died holding it: the lock is taken over, with a word
    assert main(["resume", str(interrupted)]) == 0
    assert f"stale lock of pid {holder.pid}" in caplog.text
    assert [r["epoch"] for r in read_metrics(interrupted)] == [1, 2, 3]


def test_two_trainings_into_one_directory_are_refused(tmp_path, capsys):
    holder = _hold_lock(tmp_path / "run", "run")
    try:
        assert main(["train", "--out", str(tmp_path / "run"), *sum((["--set", o] for o in QUICK),
                                                                   [])]) == 2
        assert f"pid {holder.pid}" in _one_error_line(capsys.readouterr().err)
        assert not (tmp_path / "run" / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()


class RemoveRunDir(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.epoch:
            shutil.rmtree(trainer.state_path.parent.parent)


def test_a_run_whose_directory_is_removed_stops_without_recreating_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="removed or moved while it trained"):
        train_run(load_config(overrides=QUICK), tmp_path / "run", callbacks=[RemoveRunDir(2)])
    assert not (tmp_path / "run").exists()


# -- studies ---------------------------------------------------------------------------------
STUDY = {"name": "t", "base": {"epochs": 2, "log": {"progress": False, "tensorboard": False},
                                "data": {"batch_size": 128}},
         "variants": [{"name": "a", "set": {"optimizer.lr": 0.05}},
                      {"name": "b", "set": {"optimizer.lr": 0.1}}], "seeds": [0, 1]}


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY, sort_keys=False))
    assert main(["run", str(path), "--out", str(root / "out"), "--workers", "2"]) == 0
    return path, root / "out"


@pytest.fixture
def study(finished_study, tmp_path):
    path, out = finished_study
    shutil.copytree(out, tmp_path / "out")
    return path, tmp_path / "out"


def _rows(out):
    return len(pd.read_parquet(out / "results.parquet"))


@pytest.mark.parametrize("lost", ["metrics.jsonl", "checkpoints/final.safetensors",
                                  "checkpoints/final.json"])
def test_a_finished_run_with_a_lost_record_is_trained_again_not_dropped(study, lost, caplog):
    path, out = study
    assert _rows(out) == 8
    (out / "runs" / "a-s1" / lost).unlink()
    others = {r: _tree(out / "runs" / r) for r in ("a-s0", "b-s0", "b-s1")}
    assert main(["run", str(path), "--out", str(out)]) == 0
    assert "a-s1" in caplog.text and "damaged" in caplog.text
    assert _rows(out) == 8  # every run's rows, none twice
    assert [r["epoch"] for r in read_metrics(out / "runs" / "a-s1")] == [1, 2]
    assert (out / "runs" / "a-s1" / "checkpoints" / "final.safetensors").exists()
    assert {r: _tree(out / "runs" / r) for r in others} == others  # the others untouched
    assert list(out.glob("archive/*-damaged/a-s1"))  # set aside, not deleted


def test_a_checkpoint_changed_after_the_run_finished_is_found(study, caplog):
    path, out = study
    weights = out / "runs" / "b-s0" / "checkpoints" / "final.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01
    weights.write_bytes(bytes(data))
    assert main(["run", str(path), "--out", str(out)]) == 0
    assert "b-s0" in caplog.text and "SHA-256" in caplog.text
    assert _rows(out) == 8


@pytest.mark.parametrize("damage", ["meta", "metrics"])
def test_one_unreadable_run_record_leaves_the_report_usable(study, damage, capsys, caplog):
    _, out = study
    run = out / "runs" / "a-s0"
    if damage == "meta":
        target = run / "meta.json"
        target.write_text(target.read_text()[:40])  # truncated
    else:
        target = run / "metrics.jsonl"
        lines = target.read_text().splitlines()
        target.write_text("\n".join(['{"epoch": 1, "train_loss" 0.5}', *lines[1:]]) + "\n")
    assert main(["report", str(out)]) == 0
    assert str(target) in caplog.text
    records = load_records(out)
    row = records.runs.set_index("run_id").loc["a-s0"]
    assert row["status"] == "damaged" and str(target) in row["error"]
    assert set(records.results["run_id"]) == {"a-s1", "b-s0", "b-s1"}
    assert "1 damaged" in capsys.readouterr().out


def test_a_second_driver_of_one_study_is_refused(study, capsys):
    path, out = study
    holder = _hold_lock(out, "study")
    try:
        before = _tree(out, skip={".lock"})
        for argv in (["run", str(path), "--out", str(out)], ["report", str(out)]):
            assert main(argv) == 2
            line = _one_error_line(capsys.readouterr().err)
            assert f"pid {holder.pid}" in line and "study directory" in line
        assert _tree(out, skip={".lock"}) == before
    finally:
        holder.kill()
        holder.wait()


# -- signals ---------------------------------------------------------------------------------
def _wait_for_epoch(run_dir, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if read_metrics(run_dir):
            return
        time.sleep(0.2)
    raise AssertionError(f"no epoch finished: {proc.communicate()}")


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated")])
def test_a_signalled_training_stops_cleanly_and_prints_the_real_command(tmp_path, sig, code, word):
    out = tmp_path / "run"
    proc = subprocess.Popen([*CLI, "train", "--out", str(out), "--set", "epochs=200",
                             "--set", "log.progress=false", "--set", "data.batch_size=128"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    _wait_for_epoch(out, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"losslab: {word}; continue with `losslab resume {out}`"
    assert json.loads((out / "meta.json").read_text())["status"] == "interrupted"
    assert not list(out.rglob("*.tmp"))


def test_with_no_intact_state_from_checkpoint_restarts_from_the_newest_epoch_checkpoint(
        tmp_path, caplog):
    config = load_config(overrides=[*QUICK, "epochs=4", "checkpoints.every=1",
                                    "checkpoints.optimizer=true", "checkpoints.keep_best=false",
                                    "schedule.name=cosine"])
    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path / "run", callbacks=[StopAt(4)])
    run = tmp_path / "run"
    for state in (run / "state" / "trainer.pt", run / "state" / "trainer.prev.pt"):
        state.write_bytes(state.read_bytes()[:100])
    weights = run / "checkpoints" / "epoch_0003.safetensors"  # the newest epoch's is corrupt too
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    assert main(["resume", str(run)]) == 2
    assert main(["resume", str(run), "--from-checkpoint"]) == 0
    assert "restarted from" in caplog.text and "epoch_0002" in caplog.text
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert records[2]["step"] == 3 * records[0]["step"]  # the step count went on from epoch 2
    reference = train_run(config, tmp_path / "reference")
    assert _comparable(records[:2]) == _comparable(read_metrics(reference)[:2])
    # the schedule was put back at the checkpoint's step: epoch 3 starts at the reference's lr
    assert records[2]["lr"] == read_metrics(reference)[2]["lr"]


def test_a_failed_analysis_makes_the_run_exit_non_zero_after_everything_else(study, capsys):
    path, out = study
    tree = yaml.safe_load(path.read_text())
    # a trajectory needs epoch checkpoints, which these runs do not save: each variant fails
    tree["analyses"] = [{"name": "landscape", "id": "huge", "kind": "trajectory", "points": 3},
                        {"name": "compare", "metric": "test_acc"}]
    failing = path.parent / "failing.yaml"
    failing.write_text(yaml.safe_dump(tree, sort_keys=False))
    assert main(["run", str(failing), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "analysis huge failed: results/a: InputError:" in printed
    assert "a trajectory needs saved epoch checkpoints" in printed
    assert (out / "analyses" / "compare.json").exists()  # the other analysis still ran
    assert (out / "report.html").exists()
