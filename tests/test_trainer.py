"""The training engine: records, checkpoints, reproducibility and exact resume."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from losslab.runs.checkpoint_set import CheckpointSet
from losslab.runs.config import ConfigError, load_config
from losslab.runs.metrics import read_metrics
from losslab.train.callbacks import Callback
from losslab.train.run import resume_run, train_run
from losslab.train.trainer import Trainer

QUICK = ["epochs=4", "checkpoints.every=2", "log.progress=false", "data.batch_size=128"]
TIMING_KEYS = {"epoch_time"}


def _comparable(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def _final_weights(run_dir):
    return CheckpointSet.from_run(run_dir, role="final").load(0).state_dict


class InterruptAt(Callback):
    """Simulates a kill during epoch ``epoch``: its metrics and state are never written."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_run_directory_holds_the_complete_record(tmp_path):
    run_dir = train_run(load_config(overrides=QUICK), tmp_path / "run")
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "meta.json", "metrics.jsonl", "checkpoints", "tb", "state"} <= names
    records = read_metrics(run_dir)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    required = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                "lr", "epoch_time", "grad_norm", "step"}
    assert required <= set(records[0])
    # the default run learns digits: a small CNN well above chance after 4 epochs
    assert records[-1]["test_acc"] > 0.8 and records[-1]["train_loss"] < records[0]["train_loss"]
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "finished" and meta["seed"] == 0 and meta["device"] == "cpu"
    assert meta["environment"]["torch"] == torch.__version__ and meta["end_time"]
    ckpts = CheckpointSet.from_run(run_dir)
    assert sorted(set(ckpts.roles)) == ["best", "epoch", "final"]
    assert CheckpointSet.from_run(run_dir, role="epoch").epochs == [2, 4]
    best = CheckpointSet.from_run(run_dir, role="best")[0]
    assert best.epoch == max(records, key=lambda r: (r["val_acc"], -r["val_loss"]))["epoch"]
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))


def test_tensorboard_has_the_same_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = train_run(load_config(overrides=QUICK), tmp_path / "run")
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    records = read_metrics(run_dir)
    values = [e.value for e in acc.Scalars("test_acc")]
    assert values == pytest.approx([r["test_acc"] for r in records])


def test_same_seed_same_numbers_different_seed_different(tmp_path):
    a = read_metrics(train_run(load_config(overrides=QUICK), tmp_path / "a"))
    b = read_metrics(train_run(load_config(overrides=QUICK), tmp_path / "b"))
    c = read_metrics(train_run(load_config(overrides=[*QUICK, "seed=1"]), tmp_path / "c"))
    assert _comparable(a) == _comparable(b)
    assert _comparable(a) != _comparable(c)


def test_interrupted_run_resumes_to_the_uninterrupted_numbers(tmp_path):
    overrides = [*QUICK, "data.augment.flip=true", "data.augment.crop_padding=1",
                 "schedule.name=cosine_restarts", "schedule.T_0=1", "optimizer.nesterov=true"]
    config = load_config(overrides=overrides)
    reference = train_run(config, tmp_path / "reference")
    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path / "killed", callbacks=[InterruptAt(3)])
    killed = tmp_path / "killed"
    assert [r["epoch"] for r in read_metrics(killed)] == [1, 2]
    assert json.loads((killed / "meta.json").read_text())["status"] == "interrupted"
    resume_run(killed)
    assert _comparable(read_metrics(killed)) == _comparable(read_metrics(reference))
    ref_w, res_w = _final_weights(reference), _final_weights(killed)
    assert all(torch.equal(ref_w[k], res_w[k]) for k in ref_w)
    assert json.loads((killed / "meta.json").read_text())["status"] == "finished"


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    run_dir = train_run(load_config(overrides=QUICK), tmp_path / "run")
    before = (run_dir / "metrics.jsonl").read_text()
    resume_run(run_dir)
    assert (run_dir / "metrics.jsonl").read_text() == before


def test_existing_run_directory_is_not_overwritten(tmp_path):
    train_run(load_config(overrides=["epochs=1", "log.progress=false"]), tmp_path / "run")
    with pytest.raises(ConfigError, match="losslab resume"):
        train_run(load_config(overrides=["epochs=1"]), tmp_path / "run")


def test_torn_metrics_line_is_dropped_on_resume(tmp_path):
    config = load_config(overrides=QUICK)
    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path / "run", callbacks=[InterruptAt(3)])
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "train_lo')  # a kill in the middle of an append
    resume_run(tmp_path / "run")
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3, 4]


def test_killed_process_resumes_exactly(tmp_path):
    """A real SIGKILL at an arbitrary moment, then `losslab resume`."""
    args = ["epochs=8", "log.progress=false", "data.batch_size=32", "checkpoints.every=1"]
    sets = [x for a in args for x in ("--set", a)]
    cli = [sys.executable, "-m", "losslab.cli"]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run([*cli, "train", "--out", str(tmp_path / "ref"), *sets], check=True, env=env,
                   capture_output=True)
    proc = subprocess.Popen([*cli, "train", "--out", str(tmp_path / "run"), *sets], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(read_metrics(metrics))
    assert done < 8, "the run finished before it could be killed; make it longer"
    subprocess.run([*cli, "resume", str(tmp_path / "run")], check=True, env=env, capture_output=True)
    assert _comparable(read_metrics(tmp_path / "run")) == _comparable(read_metrics(tmp_path / "ref"))
    ref_w, res_w = _final_weights(tmp_path / "ref"), _final_weights(tmp_path / "run")
    assert all(torch.equal(ref_w[k], res_w[k]) for k in ref_w)


def test_trainer_in_a_users_own_setup():
    """The Trainer takes any model, optimizer and iterable of batches (here a DataLoader)."""
    torch.manual_seed(0)
    x = torch.randn(256, 5)
    y = (x[:, 0] > 0).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32,
                                         shuffle=True)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []

    class Count(Callback):
        def on_step_end(self, trainer):
            seen.append(trainer.step)

    trainer = Trainer(model, optimizer, loader, epochs=5, eval_loaders={"test": loader},
                      callbacks=[Count()], progress=False)
    history = trainer.fit()
    assert len(history) == 5 and seen == list(range(1, 5 * 8 + 1))
    assert history[-1]["test_acc"] > 0.9


def test_grad_norm_matches_autograd():
    """The logged gradient norm is the mean over steps of the global L2 norm of the gradient."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.tensor([0, 1] * 4)
    model = nn.Linear(3, 2).double()
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        nn.functional.cross_entropy(model(x), y), list(model.parameters()))]).norm()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), [(x, y)], epochs=1,
                      progress=False)
    assert trainer.fit()[0]["grad_norm"] == pytest.approx(expected.item(), rel=1e-12)


def test_non_finite_metrics_round_trip(tmp_path):
    from losslab.runs.metrics import MetricsLog

    log = MetricsLog(tmp_path, tensorboard=False)
    log.write({"epoch": 1, "a": float("nan"), "b": float("inf"), "c": 1.5, "d": "text"})
    (record,) = read_metrics(tmp_path)
    assert math.isnan(record["a"]) and record["b"] == float("inf") and record["c"] == 1.5
    assert record["d"] == "text"
