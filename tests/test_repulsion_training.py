"""Checkpoint repulsion inside training: placement, logging, shadows, snapshots, resume."""


import pytest
import torch

from losslab.runs.checkpoint_set import CheckpointSet
from losslab.runs.config import ConfigError, RepulsionConfig, load_config
from losslab.runs.metrics import read_metrics
from losslab.train.callbacks import Callback
from losslab.train.run import build_trainer, resume_run, train_run

pytestmark = pytest.mark.e2e  # runs inside training, end to end: deselected by `make test-fast`

QUIET = ["log.progress=false", "log.tensorboard=false", "data.batch_size=128", "epochs=6",
         "repulsion.first=2", "repulsion.every=2", "repulsion.width=1.0"]


def test_checkpoint_epochs_policy():
    assert RepulsionConfig(first=100, every=150, count=3).checkpoint_epochs(600) == [100, 250, 400]
    assert RepulsionConfig(first=100, every=150).checkpoint_epochs(600) == [100, 250, 400, 550]
    assert RepulsionConfig(first=100).checkpoint_epochs(600) == [100]
    assert RepulsionConfig(epochs=[30, 10, 600]).checkpoint_epochs(600) == [10, 30]
    assert RepulsionConfig().checkpoint_epochs(600) == []
    with pytest.raises(ConfigError, match="repulsion.width"):
        load_config(overrides=["repulsion.width=0"])
    with pytest.raises(ConfigError, match="repulsion.strength"):
        load_config(overrides=["repulsion.strength=-1"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rep")
    shadow = train_run(load_config(overrides=[*QUIET, "repulsion.strength=0"]), tmp / "shadow")
    pushed = train_run(load_config(overrides=[*QUIET, "repulsion.strength=10"]), tmp / "pushed")
    return shadow, pushed


def test_metrics_are_logged_for_baseline_and_repulsion(runs):
    shadow, pushed = map(read_metrics, runs)
    for records in (shadow, pushed):
        assert [r.get("active_checkpoints") for r in records] == [0, 0, 1, 1, 2, 2]
        assert "dist_ckpt_1" not in records[0] and "dist_ckpt_1" in records[1]
        assert records[1]["dist_ckpt_1"] == 0.0  # placed at the end of epoch 2: θ is the anchor
        assert records[3]["dist_ckpt_2"] == 0.0 and records[5]["dist_ckpt_2"] > 0
        # gradient statistics exist from the first epoch with a checkpoint on
        assert ["grad_cosine" in r for r in records] == [False, False, True, True, True, True]
    # the baseline places shadow checkpoints: no penalty, no penalty gradient
    assert all(r["repulsion_penalty"] == 0 and r["penalty_grad_norm"] == 0 for r in shadow[2:])
    assert all(r["task_grad_norm"] > 0 for r in shadow[2:])
    # with strength 10 the penalty acts once a checkpoint is active
    assert pushed[2]["repulsion_penalty"] > 0 and pushed[2]["penalty_grad_norm"] > 0
    assert -1 <= pushed[2]["grad_cosine"] <= 1
    # ...and pushes the weights further from the checkpoint than the baseline drifts
    assert pushed[5]["dist_ckpt_1"] > shadow[5]["dist_ckpt_1"]


def test_penalty_is_bounded_by_the_strength(runs):
    """Each term is s·exp(−d²/(2σ²)) ≤ s: one active checkpoint gives a penalty in (0, s]."""
    records = read_metrics(runs[1])
    assert 0 < records[2]["repulsion_penalty"] <= 10.0
    assert 0 < records[4]["repulsion_penalty"] <= 20.0  # two active checkpoints


def test_snapshots_before_each_checkpoint_form_the_thesis_ensemble(runs):
    for run in runs:
        snapshots = CheckpointSet.from_run(run, role="snapshot")
        assert snapshots.epochs == [2, 4]
        assert [r.meta.extra["checkpoint"] for r in snapshots] == [1, 2]
        ensemble = CheckpointSet.from_run(run, role=["snapshot", "final"])
        assert ensemble.roles == ["snapshot", "snapshot", "final"]


def test_autograd_mode_trains_like_the_analytic_mode(tmp_path):
    """The two ways of applying the penalty give the same training (float32 rounding aside)."""
    cfg = [*QUIET, "repulsion.strength=10", "epochs=4"]
    a = read_metrics(train_run(load_config(overrides=cfg), tmp_path / "a"))
    b = read_metrics(train_run(load_config(overrides=[*cfg, "repulsion.mode=autograd"]), tmp_path / "b"))
    assert ["repulsion_penalty" in r for r in b] == [False, False, True, True]
    for ra, rb in zip(a[2:], b[2:], strict=True):
        assert rb["repulsion_penalty"] == pytest.approx(ra["repulsion_penalty"], rel=1e-3)
    for ra, rb in zip(a, b, strict=True):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-3)


def test_a_resumed_repulsion_run_matches(tmp_path):
    class Stop(Callback):
        def on_epoch_end(self, trainer, epoch, metrics):
            if epoch == 4:
                raise KeyboardInterrupt

    cfg = load_config(overrides=[*QUIET, "repulsion.strength=10"])
    ref = read_metrics(train_run(cfg, tmp_path / "ref"))
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tmp_path / "run", callbacks=[Stop()])
    resume_run(tmp_path / "run")
    strip = lambda rs: [{k: v for k, v in r.items() if k != "epoch_time"} for r in rs]  # noqa: E731
    assert strip(read_metrics(tmp_path / "run")) == strip(ref)


def test_window_switches_the_term_off_again(tmp_path):
    records = read_metrics(train_run(load_config(overrides=[
        *QUIET, "repulsion.strength=10", "repulsion.every=0", "repulsion.window=2"]),
        tmp_path / "w"))
    assert [r["active_checkpoints"] for r in records] == [0, 0, 1, 1, 0, 0]
    assert records[4]["repulsion_penalty"] == 0 and "dist_ckpt_1" in records[5]
    assert records[3]["repulsion_penalty"] > 0


def test_weights_only_and_merge_options_reach_the_module():
    trainer = build_trainer(load_config(overrides=[*QUIET, "repulsion.merge=true",
                                                   "repulsion.weights_only=true"]))
    callback = trainer.callbacks[-1]
    assert callback.repulsion.merge
    names = [n for n, p in trainer.model.named_parameters() if p.ndim > 1]
    callback.repulsion.add_checkpoint(trainer.model)
    assert callback.repulsion.parameter_names == names
    assert isinstance(callback.repulsion.distances(trainer.model), torch.Tensor)


def _timing(epoch_medians, penalty_steps, steps=10, logged_extra=0.05):
    pairs = []
    for on in (False, True):
        for k, (e, p) in enumerate(zip(epoch_medians, penalty_steps, strict=True)):
            extra = logged_extra if on else 0.0
            pairs.append({"log_gradients": on, "checkpoints": k,
                          "epoch_time": {"median": e + extra, "min": e, "max": e + 0.1, "n": 3},
                          "penalty_step_time": {"median": p, "min": p, "max": p, "n": 3}})
    return {"steps_per_epoch": steps, "strength": 10.0, "pairs": pairs}


def test_cost_rows_known_answers():
    from losslab.train.repulsion_cost import _row_for

    # every checkpoint costs the same: 1 ms a step, 10 ms an epoch; epochs 1.0 + 0.1 k s
    row = _row_for(_timing([1.0, 1.1, 1.2, 1.3], [0.0, 0.001, 0.002, 0.003]), [0, 1, 2, 3])
    assert row["seconds_per_checkpoint"] == pytest.approx(0.1)
    assert row["share_per_checkpoint"] == pytest.approx(0.1)
    assert row["penalty_seconds_per_checkpoint"] == pytest.approx(0.01)
    assert row["penalty_share_per_checkpoint"] == pytest.approx(0.01)
    assert row["linearity"] == pytest.approx(1.0)
    assert row["logging_share"] == pytest.approx(0.05 / 1.0)
    assert [row[f"epoch_time_{k}"] for k in range(4)] == pytest.approx([1.0, 1.1, 1.2, 1.3])
    # a fixed cost: the first checkpoint costs 1 ms a step, further ones nothing
    row = _row_for(_timing([1.0, 1.01, 1.01, 1.01], [0.0, 0.001, 0.001, 0.001]), [0, 1, 2, 3])
    assert row["linearity"] == pytest.approx(0.0)
    # least squares through (0, 0), (1, .01), (2, .01), (3, .01): slope 0.003
    assert row["penalty_seconds_per_checkpoint"] == pytest.approx(0.003)


def test_cost_analysis_times_interleaved_epochs(tmp_path):
    import yaml

    from losslab.studies import load_records, run_study

    study = {"name": "cost", "base": {"epochs": 2, "log": {"progress": False, "tensorboard": False},
                                      "data": {"batch_size": 128}},
             "variants": [{"name": "shadow", "set": {"repulsion.first": 1}},
                          {"name": "pushed", "set": {"repulsion.first": 1,
                                                     "repulsion.strength": 10.0}}],
             "seeds": [0, 1],
             "analyses": [{"name": "repulsion_cost", "max_checkpoints": 2, "repeats": 2,
                           "calls": 5}]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    outcome = run_study(path, tmp_path / "out", workers=2)
    result = load_records(outcome.directory).analyses["repulsion_cost"]
    assert "error" not in result, result.get("error")
    # by default only the runs that apply the penalty are timed
    assert [(r["variant"], r["seed"]) for r in result["per_run"]] == [("pushed", 0), ("pushed", 1)]
    assert result["checkpoints"] == [0, 1, 2] and result["threads"] == 1
    assert [(c["checkpoints"], c["log_gradients"]) for c in result["per_count"]] == [
        (0, False), (1, False), (2, False), (0, True), (1, True), (2, True)]
    for timing in result["timings"]:
        assert len(timing["pairs"]) == 6
        for p in timing["pairs"]:
            e = p["epoch_time"]
            assert e["n"] == 2 and 0 < e["min"] <= e["median"] <= e["max"]
            assert p["penalty_step_time"]["median"] > 0
    for c in result["per_count"]:
        assert c["epoch_time_min"] <= c["epoch_time_median"] <= c["epoch_time_max"]
        assert (c["penalty_step_time_median"] > 0) == (c["checkpoints"] > 0)
    for row in result["per_run"]:
        assert {"seconds_per_checkpoint", "penalty_share_per_checkpoint", "linearity",
                "logging_share", "epoch_time_0"} <= set(row)
        assert row["penalty_share_per_checkpoint"] > 0
    assert result["thesis"]["setting"].startswith("MobileNetV2")
    assert result["in_run"]  # the runs' own epoch times, kept for reference
    assert "Repulsion: cost per checkpoint" in (outcome.directory / "report.html").read_text()
    # an unknown variant is a one-line error naming it
    from losslab.train.repulsion_cost import repulsion_cost

    with pytest.raises(ValueError, match="unknown variants"):
        repulsion_cost(load_records(outcome.directory), variants=["nope"])
