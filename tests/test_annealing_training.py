"""SSA and SGD-SA inside the trainer: closure steps, per-epoch statistics, exact resume."""

import math

import pytest

from losslab.runs.config import ConfigError, load_config
from losslab.runs.metrics import read_metrics
from losslab.train.annealing_log import read_moves
from losslab.train.callbacks import Callback
from losslab.train.run import resume, train

BASE = ["log.progress=false", "log.tensorboard=false", "data.batch_size=128",
        "schedule.name=constant"]


def test_sgdsa_run_logs_its_moves_and_cools(tmp_path):
    records = read_metrics(train(load_config(overrides=[
        *BASE, "epochs=4", "optimizer.name=sgdsa", "optimizer.annealing.lrs=H2"]), tmp_path / "r"))
    temperatures = [r["temperature"] for r in records]
    assert temperatures == pytest.approx([0.93 ** k for k in range(4)], rel=1e-12)
    moves = read_moves(tmp_path / "r")
    for r, m in zip(records, moves, strict=True):
        total = r["worsening_accepted"] + r["worsening_rejected"] + r["improving_moves"]
        assert total + r.get("neutral_moves", 0) == 11  # every minibatch step is one move
        assert 0.01 <= r["mean_lr"] <= 0.5  # drawn from H2
        # the per-move file holds exactly the epoch's worsening moves, with their probabilities
        assert m["epoch"] == r["epoch"] and m["steps"] == 11
        assert len(m["prob"]) == r["worsening_accepted"] + r["worsening_rejected"]
        assert sum(m["accepted"]) == r["worsening_accepted"]
        if m["prob"]:
            assert sum(m["prob"]) / len(m["prob"]) == pytest.approx(r["mean_acceptance_prob"])
    assert records[-1]["val_acc"] > 0.8  # SGD-SA learns digits


def test_ssa_run_with_the_error_objective(tmp_path):
    records = read_metrics(train(load_config(overrides=[
        *BASE, "epochs=3", "optimizer.name=ssa", "optimizer.annealing.objective=error",
        "optimizer.annealing.eps=0.05"]), tmp_path / "r"))
    assert [r["temperature"] for r in records] == pytest.approx([1.0, 0.97, 0.97 ** 2])
    assert all("eps" in r and "improving_share" in r and "grad_norm" not in r for r in records)
    # It moves, derivative-free: some steps lowered the minibatch error. (The loss is not what
    # it minimizes: judged in eval mode, with BatchNorm's initial statistics, it may grow.)
    assert sum(r["improving_moves"] for r in records) > 0
    assert all(r["worsening_accepted"] + r["worsening_rejected"] + r["improving_moves"]
               + r["neutral_moves"] == r["steps"] for r in records)


def test_annealing_runs_resume_exactly(tmp_path):
    class Stop(Callback):
        def on_epoch_end(self, trainer, epoch, metrics):
            if epoch == 2:
                raise KeyboardInterrupt

    for name in ("ssa", "sgdsa"):
        config = load_config(overrides=[*BASE, "epochs=4", f"optimizer.name={name}"])
        ref = read_metrics(train(config, tmp_path / f"{name}_ref"))
        with pytest.raises(KeyboardInterrupt):
            train(config, tmp_path / name, callbacks=[Stop()])
        resume(tmp_path / name)
        assert _comparable(read_metrics(tmp_path / name)) == _comparable(ref)
        # The per-move record: one line per epoch, the redone epoch written once.
        assert read_moves(tmp_path / name) == read_moves(tmp_path / f"{name}_ref")
        assert [r["epoch"] for r in read_moves(tmp_path / name)] == [1, 2, 3, 4]


def _comparable(records):
    """Without timings, and NaN (no worsening move in an epoch) made comparable to itself."""
    return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v)
             for k, v in r.items() if k != "epoch_time"} for r in records]


def test_annealing_optimizers_need_the_constant_schedule():
    with pytest.raises(ConfigError, match="schedule.name=constant"):
        load_config(overrides=["optimizer.name=sgdsa"])
