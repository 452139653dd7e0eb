"""SSA and SGD-SA inside the trainer: closure steps, per-epoch statistics, exact resume."""

import math

import pytest

from losslab.runs.config import ConfigError, load_config
from losslab.runs.metrics import read_metrics
from losslab.train.annealing_log import read_moves
from losslab.train.callbacks import Callback
from losslab.train.run import resume_run, train_run

pytestmark = pytest.mark.e2e  # runs inside training, end to end: deselected by `make test-fast`

BASE = ["log.progress=false", "log.tensorboard=false", "data.batch_size=128",
        "schedule.name=constant"]


def test_sgdsa_run_logs_its_moves_and_cools(tmp_path):
    records = read_metrics(train_run(load_config(overrides=[
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
    records = read_metrics(train_run(load_config(overrides=[
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
        ref = read_metrics(train_run(config, tmp_path / f"{name}_ref"))
        with pytest.raises(KeyboardInterrupt):
            train_run(config, tmp_path / name, callbacks=[Stop()])
        resume_run(tmp_path / name)
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


def test_annealing_moves_analysis_and_its_report_section(tmp_path):
    import pandas as pd

    from losslab.report import plotly_render, static_render
    from losslab.report.annealing_sections import annealing_moves_section
    from losslab.report.palette import Palette
    from losslab.studies.annealing_moves import annealing_moves
    from losslab.studies.records import StudyRecords

    configs = {  # improve_bound 1: ε drops after every epoch with a worsening move
        "ssa": [*BASE, "epochs=3", "optimizer.name=ssa", "optimizer.annealing.eps=0.05",
                "optimizer.annealing.improve_bound=1.0", "optimizer.annealing.t0=0.01"],
        "sgdsa": [*BASE, "epochs=3", "optimizer.name=sgdsa", "optimizer.annealing.lrs=H1"],
        "sgd": [*BASE, "epochs=2"]}
    runs, rows = [], []
    for variant, overrides in configs.items():
        run_dir = train_run(load_config(overrides=overrides), tmp_path / variant)
        runs.append({"run_id": f"{variant}-s0", "variant": variant, "seed": 0,
                     "status": "finished", "run_dir": str(run_dir)})
        rows += [{"run_id": f"{variant}-s0", "variant": variant, **r}
                 for r in read_metrics(run_dir)]
    records = StudyRecords(directory=tmp_path, name="t", study={}, base_config={},
                           variants={v: {} for v in configs}, variant_keys=[],
                           runs=pd.DataFrame(runs), results=pd.DataFrame(rows),
                           summary=pd.DataFrame())
    out = annealing_moves(records, k=1)
    assert list(out["variants"]) == ["ssa", "sgdsa"]  # the SGD run has no moves
    for row in out["per_run"]:
        metrics = read_metrics(tmp_path / row["variant"])
        acc = [r["worsening_accepted"] for r in metrics]
        rej = [r["worsening_rejected"] for r in metrics]
        assert row["worse_total"] == sum(acc) + sum(rej)
        assert row["both_share"] == pytest.approx(
            sum(a > 0 and r > 0 for a, r in zip(acc, rej, strict=True)) / 3)
        shown = out["variants"][row["variant"]]
        assert shown["accepted"] == acc and shown["rejected"] == rej
        moves = shown["moves"]
        assert len(moves["step"]) == moves["total"] == sum(acc) + sum(rej)
        assert sum(moves["accepted"]) == sum(acc)
        assert all(1 <= s <= 3 * 11 for s in moves["step"])  # steps of the whole run
    ssa = next(r for r in out["per_run"] if r["variant"] == "ssa")
    eps = [r["eps"] for r in read_metrics(tmp_path / "ssa")]
    drops = [e for e, a, b in zip((1, 2), eps, eps[1:], strict=False) if b < a]
    assert drops and ssa["eps_drops"] == len(drops) and out["variants"]["ssa"]["eps_drop_epochs"] == drops

    section = annealing_moves_section(records, out)
    assert len(section.figures) == 4 and len(section.tables[0]) == 2
    bars = section.figures[0]
    assert [s.name for s in bars.stacks] == ["accepted", "rejected"]
    assert bars.markers == [d + 0.5 for d in drops]
    for fig in section.figures:  # both backends draw it
        assert "losslab-plot" in plotly_render.to_div(fig, Palette(), "x")
        static_render.to_matplotlib(fig, Palette())
