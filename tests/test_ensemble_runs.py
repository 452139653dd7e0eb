"""Ensembles from real runs: members collected at the right iterations, analytics consistent
with the runs' own records, the CLI, and the study analyses."""

import json

import pytest
import torch
import yaml

from losslab.cli import main
from losslab.ensembles import analyze_ensemble, collect_checkpoints
from losslab.runs.checkpoint_set import CheckpointSet
from losslab.runs.config import load_config
from losslab.runs.metrics import read_metrics
from losslab.studies import load_records, run_study
from losslab.train.run import resume_run, train_run
from losslab.train.schedules import FGECycleSchedule, SnapshotCosineSchedule

pytestmark = pytest.mark.e2e  # end to end: deselected by `make test-fast`

QUIET = ["log.progress=false", "log.tensorboard=false", "data.batch_size=128"]
STEPS_PER_EPOCH = 11  # digits: 1438 train - 144 val = 1294 examples, batches of 128


def _schedule_for(cls, **kw):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
    return cls(opt, **kw)


def test_snapshot_members_at_each_cycle_end(tmp_path):
    run = train_run(load_config(overrides=[*QUIET, "epochs=6", "schedule.name=snapshot",
                                       "schedule.cycles=3"]), tmp_path / "sse")
    members = CheckpointSet.from_run(run, role="snapshot")
    schedule = _schedule_for(SnapshotCosineSchedule, total_steps=6 * STEPS_PER_EPOCH, cycles=3)
    assert [r.meta.extra["iteration"] for r in members] == schedule.cycle_end_steps
    assert [r.step for r in members] == [k + 1 for k in schedule.cycle_end_steps]
    assert [r.epoch for r in members] == [2, 4, 6]
    # the member of the last cycle is the final model
    final = CheckpointSet.from_run(run, role="final").load(0).state_dict
    last = members.load(2).state_dict
    assert all(torch.equal(final[k], last[k]) for k in final)


def test_fge_members_at_each_lr_minimum(tmp_path):
    overrides = [*QUIET, "epochs=7", "schedule.name=fge", "schedule.start_epoch=3",
                 "schedule.cycle=2", "schedule.lr_high=0.05", "schedule.lr_low=0.001"]
    members = CheckpointSet.from_run(train_run(load_config(overrides=overrides), tmp_path / "fge"),
                                     role="fge")
    schedule = _schedule_for(FGECycleSchedule, cycle_steps=2 * STEPS_PER_EPOCH, lr_high=0.05,
                             lr_low=0.001, start_step=3 * STEPS_PER_EPOCH)
    expected = [k for k in range(7 * STEPS_PER_EPOCH) if schedule.is_member_step(k)]
    assert len(expected) == 2
    assert [r.meta.extra["iteration"] for r in members] == expected
    # the cycle is 22 iterations (even), so a member's lr is exactly the minimum
    assert [r.meta.extra["lr"] for r in members] == pytest.approx([0.001, 0.001], rel=1e-12)


def test_members_survive_an_interruption(tmp_path):
    from losslab.train.callbacks import Callback

    class Stop(Callback):
        def on_epoch_end(self, trainer, epoch, metrics):
            if epoch == 3:
                raise KeyboardInterrupt

    overrides = [*QUIET, "epochs=6", "schedule.name=snapshot", "schedule.cycles=3"]
    ref = train_run(load_config(overrides=overrides), tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):
        train_run(load_config(overrides=overrides), tmp_path / "run", callbacks=[Stop()])
    resume_run(tmp_path / "run")
    a, b = CheckpointSet.from_run(ref, role="snapshot"), CheckpointSet.from_run(tmp_path / "run",
                                                                               role="snapshot")
    assert [r.step for r in a] == [r.step for r in b]
    for i in range(len(a)):
        sa, sb = a.load(i).state_dict, b.load(i).state_dict
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seeds")
    return [train_run(load_config(overrides=[*QUIET, "epochs=3", f"seed={s}"]), tmp / f"s{s}")
            for s in range(3)]


def test_member_metrics_agree_with_the_runs_own_records(three_seeds):
    result = analyze_ensemble(CheckpointSet.from_runs(three_seeds, role="final"))
    assert result["n_members"] == 3 and result["n_examples"] == 359
    for member, run in zip(result["member_metrics"], three_seeds, strict=True):
        # the ensemble code and the trainer's evaluation see the same test split and model
        assert member["acc"] == pytest.approx(read_metrics(run)[-1]["test_acc"], abs=1e-12)
        assert member["nll"] == pytest.approx(read_metrics(run)[-1]["test_loss"], rel=1e-5)
    assert result["cumulative"][0]["acc"] == result["member_metrics"][0]["acc"]
    assert result["combination"] == "average of the members' softmax probabilities"
    pairs = result["diversity"]["pairs"]
    assert len(pairs) == 3 and all(p["l2"] > 0 and -1 <= p["cosine"] <= 1 for p in pairs)
    # averaging independently trained networks' weights does not give a good network
    assert result["swa"]["acc"] < result["ensemble"]["acc"]


def test_cli_ensemble(three_seeds, tmp_path, capsys):
    assert main(["ensemble", *map(str, three_seeds), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "3 members on test" in printed and "all members agree on" in printed
    result = json.loads((tmp_path / "ensemble.json").read_text())
    # the pairwise diversity table: one row per pair, with its disagreement
    assert "pairwise diversity" in printed
    for pair in result["diversity"]["pairs"]:
        assert f"{pair['disagreement']:.4f}" in printed
    assert (tmp_path / "ensemble.html").exists()
    assert list((tmp_path / "figures" / "ensemble").glob("*.png"))
    assert result["members"][0].startswith("s0:final@3")
    final = CheckpointSet.from_run(three_seeds[0], role="final")[0].path
    assert collect_checkpoints([final, three_seeds[1]]).roles == ["final", "final"]
    with pytest.raises(FileNotFoundError, match="no checkpoints with role 'fge'"):
        collect_checkpoints([three_seeds[0]], role="fge")


def test_study_ensemble_analyses(tmp_path):
    study = {
        "name": "ens", "base": {"epochs": 4, "log": {"progress": False, "tensorboard": False},
                                "data": {"batch_size": 128}},
        "variants": [{"name": "G", "set": {}},
                     {"name": "adam", "set": {"optimizer.name": "adam", "optimizer.lr": 0.003}},
                     {"name": "sse", "set": {"schedule.name": "snapshot", "schedule.cycles": 2}},
                     {"name": "fge", "set": {"schedule.name": "fge", "schedule.start_epoch": 2,
                                             "schedule.cycle": 1, "schedule.lr_high": 0.05,
                                             "schedule.lr_low": 0.001}}],
        "seeds": [0, 1],
        "analyses": [
            {"name": "ensemble", "id": "one_run", "members": "auto", "group": "run",
             "variants": ["sse", "fge"]},
            {"name": "ensemble", "id": "with_g", "group": "with_first", "variants": ["G", "adam"]},
            {"name": "ensemble_budgets", "ind": "G", "sse": {1: "sse"}, "fge": {1: "fge"},
             "published": {"Ind": [6.75], "SSE": [6.57], "FGE": [6.48]},
             "published_setting": "VGG-16, CIFAR-10, B = 200 epochs"}],
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    outcome = run_study(path, tmp_path / "out", workers=2)
    assert outcome.counts == {"finished": 8}
    analyses = load_records(outcome.directory).analyses
    assert list(analyses) == ["one_run", "with_g", "ensemble_budgets"]  # the study's order
    one_run = analyses["one_run"]
    assert [g["name"] for g in one_run["groups"]] == ["sse-s0", "sse-s1", "fge-s0", "fge-s1"]
    assert [g["result"]["n_members"] for g in one_run["groups"]] == [2, 2, 2, 2]
    assert [r["variant"] for r in one_run["summary"]] == ["sse", "fge"]
    with_g = analyses["with_g"]
    assert [g["name"] for g in with_g["groups"]] == ["G + adam (seed 0)", "G + adam (seed 1)"]
    rows = {(r["method"], r["budget"]): r for r in analyses["ensemble_budgets"]["rows"]}
    assert rows[("Ind", "1B")]["published"] == 6.75 and rows[("FGE", "1B")]["runs"] == 2
    ind = rows[("Ind", "1B")]["error"]
    g0 = read_metrics(outcome.directory / "runs" / "G-s0")[-1]["test_acc"]
    assert ind == pytest.approx(100 * (1 - g0))  # Ind at 1B is the first seed's network
    per_run = {(r["variant"], r["seed"]): r for r in analyses["ensemble_budgets"]["per_run"]}
    assert per_run[("G", 0)]["error_1B"] == pytest.approx(100 * (1 - g0))
    g1 = read_metrics(outcome.directory / "runs" / "G-s1")[-1]["test_acc"]
    assert per_run[("G", 1)]["error_1B"] == pytest.approx(100 * (1 - g1))
    fge_rows = [r for r in analyses["ensemble_budgets"]["per_run"] if r["variant"] == "fge"]
    assert [r["seed"] for r in fge_rows] == [0, 1] and all(r["n_members"] == 2 for r in fge_rows)
    assert rows[("FGE", "1B")]["error"] == pytest.approx(
        sum(r["error"] for r in fge_rows) / 2)
    assert rows[("FGE", "1B")]["epochs"] == 4
    html = (outcome.directory / "report.html").read_text()
    for title in ("Ensembles (run, auto)", "Ensembles (with_first, final)", "Ensembles at equal budgets",
                  "measured in its setting: VGG-16, CIFAR-10, B = 200 epochs"):
        assert title in html


def test_a_snapshot_that_is_the_final_model_counts_once(tmp_path):
    """Cosine warm restarts whose last cycle ends with the run: the snapshot at the last epoch
    and the final model are the same weights; the ensemble has each member once."""
    from losslab.ensembles.members import distinct_checkpoints

    run = train_run(load_config(overrides=[*QUIET, "epochs=4", "schedule.name=cosine_restarts",
                                       "schedule.T_0=2"]), tmp_path / "sgdr")
    both = CheckpointSet.from_run(run, role=["snapshot", "final"])
    assert sorted((r.role, r.epoch) for r in both) == [("final", 4), ("snapshot", 2),
                                                       ("snapshot", 4)]
    members, dropped = distinct_checkpoints(both)
    assert [(r.role, r.epoch) for r in members] == [("snapshot", 2), ("final", 4)]
    assert dropped == ["sgdr:snapshot@4 = sgdr:final@4"]
    # different weights are never merged: a run's snapshots at different cycles all stay
    snapshots, none = distinct_checkpoints(CheckpointSet.from_run(run, role="snapshot"))
    assert len(snapshots) == 2 and none == []


def test_ensemble_study_counts_members_once_and_gives_per_run_rows(tmp_path):
    study = {
        "name": "sgdr", "base": {"epochs": 4, "log": {"progress": False, "tensorboard": False},
                                 "data": {"batch_size": 128}},
        "variants": [{"name": "sgdr", "set": {"schedule.name": "cosine_restarts",
                                              "schedule.T_0": 2}},
                     {"name": "repulsion", "set": {"schedule.name": "constant",
                                                   "repulsion.first": 1, "repulsion.every": 1,
                                                   "repulsion.count": 2,
                                                   "repulsion.strength": 10.0}},
                     {"name": "plain", "set": {"schedule.name": "constant"}}],
        "seeds": [0, 1],
        "analyses": [{"name": "ensemble", "members": "snapshot+final", "group": "run",
                      "variants": ["sgdr", "repulsion"], "swa": False},
                     {"name": "ensemble", "id": "single", "members": "final", "group": "run",
                      "variants": ["plain"], "swa": False}],
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    outcome = run_study(path, tmp_path / "out", workers=2)
    assert outcome.counts == {"finished": 6}
    result = load_records(outcome.directory).analyses["ensemble"]
    groups = {g["name"]: g for g in result["groups"]}
    # cosine restarts: snapshots at 2 and 4, the one at 4 is the final model: 2 members
    assert groups["sgdr-s0"]["result"]["n_members"] == 2
    assert groups["sgdr-s0"]["duplicates"] == ["sgdr-s0:snapshot@4 = sgdr-s0:final@4"]
    # repulsion: snapshots just before the checkpoints at 1 and 2, and the final model at 4
    assert groups["repulsion-s1"]["result"]["n_members"] == 3
    assert "duplicates" not in groups["repulsion-s1"]
    rows = result["per_run"]
    assert [(r["variant"], r["seed"]) for r in rows] == [("sgdr", 0), ("sgdr", 1),
                                                        ("repulsion", 0), ("repulsion", 1)]
    for row in rows:
        r = groups[row["run_id"]]["result"]
        accs = [m["acc"] for m in r["member_metrics"]]
        assert row["ensemble_acc"] == r["ensemble"]["acc"]
        assert row["mean_member_acc"] == pytest.approx(sum(accs) / len(accs), abs=1e-12)
        assert row["final_acc"] == accs[-1]
        assert row["ensemble_gain"] == pytest.approx(row["ensemble_acc"] - row["mean_member_acc"])
        assert row["gain_over_final"] == pytest.approx(row["ensemble_acc"] - accs[-1])
        assert row["agreement"] == r["diversity"]["agreement"]["all_agree_frac"]
        assert 0 < row["agreement"] < 1  # the members differ somewhere on 359 test images
    # the final model of the run's record is the last member
    final = read_metrics(outcome.directory / "runs" / "repulsion-s0")[-1]["test_acc"]
    assert rows[2]["final_acc"] == pytest.approx(final, abs=1e-12)
    # one member: it agrees with itself everywhere and gains nothing
    single = load_records(outcome.directory).analyses["single"]["per_run"]
    assert all(r["agreement"] == 1.0 and r["ensemble_gain"] == 0.0 and r["n_members"] == 1
               for r in single)


def test_published_numbers_need_their_setting():
    from losslab.studies.published import check_published_setting

    check_published_setting("curve", None, None)  # no numbers: nothing to label
    check_published_setting("curve", {"bezier": [6.79, 7.75]}, "VGG16, CIFAR-10, 600 epochs")
    with pytest.raises(ValueError, match="curve: published numbers need published_setting"):
        check_published_setting("curve", {"bezier": [6.79, 7.75]}, " ")
