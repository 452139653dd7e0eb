"""Starting a run from another run's checkpoint (``init``), as FGE starts from an independent
network in Garipov et al.'s fge.py: weights, momentum and the lr at the hand-over."""

import copy
import json

import pytest
import torch
import yaml

from losslab.runs.checkpoint_set import CheckpointSet
from losslab.runs.config import ConfigError
from losslab.runs.metrics import read_metrics
from losslab.runs.optimizer_state import optimizer_state_path
from losslab.runs.rundir import RunDir
from losslab.studies import load_study, plan_runs, run_study
from losslab.train.callbacks import Callback
from losslab.train.run import train_run

pytestmark = pytest.mark.e2e  # end to end: deselected by `make test-fast`

LOG = {"progress": False, "tensorboard": False}
IND = {"epochs": 6, "log": LOG, "data": {"batch_size": 128}, "model": {"name": "mlp"},
       "optimizer": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
       "schedule": {"name": "dmc"}, "checkpoints": {"epochs": [4], "optimizer": True}}
FGE = {"epochs": 2, "log": LOG, "data": {"batch_size": 128}, "model": {"name": "mlp"},
       "optimizer": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
       "schedule": {"name": "fge", "cycle": 2, "lr_high": 0.01, "lr_low": 0.0005},
       "checkpoints": {"save_initial": True}}


class Capture(Callback):
    """Copies of the model, the momentum buffers and the lr: at the end of ``epoch`` (or, with
    ``epoch=None``, at the start of training, when the lr is the first step's)."""

    def __init__(self, epoch=None):
        self.epoch, self.state = epoch, None

    def _take(self, trainer):
        self.state = (copy.deepcopy(trainer.model.state_dict()),
                      [copy.deepcopy(trainer.optimizer.state[p].get("momentum_buffer"))
                       for p in trainer.model.parameters()], trainer.current_lr())

    def on_train_start(self, trainer):
        if self.epoch is None:
            self._take(trainer)

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch == self.epoch:
            self._take(trainer)


def test_fge_starts_where_the_independent_run_was_at_the_hand_over(tmp_path):
    at_160 = Capture(epoch=4)
    ind = train_run(IND, tmp_path / "ind", callbacks=[at_160])
    weights, momentum, _ = at_160.state
    start = Capture()
    fge = train_run({**FGE, "init": {"run": str(ind), "epoch": 4}}, tmp_path / "fge", callbacks=[start])
    got_weights, got_momentum, first_lr = start.state
    for k, v in weights.items():  # the weights, exactly
        assert torch.equal(got_weights[k], v), k
    for a, b in zip(got_momentum, momentum, strict=True):  # SGD's momentum, exactly
        assert a is not None and torch.equal(a, b)
    initial = CheckpointSet.from_run(fge, role="epoch", epochs=0).load(0)
    assert all(torch.equal(initial.state_dict[k], v) for k, v in weights.items())
    # the lr: the independent run's epoch 4 of 6 ran the DMC schedule's 1 - (4/6 - .5)/.4 * .99,
    # and FGE's first step runs its own cycle from lr_high (fge.py: lr_1), not a constant
    ind_lrs = [row["lr"] for row in read_metrics(ind)]
    assert ind_lrs[3] == pytest.approx(0.05 * (1 - (4 / 6 - 0.5) / 0.4 * 0.99), rel=1e-12)
    c = 2 * len_steps(fge)  # a 2-epoch cycle; step 0 is at t = 1/c of it
    assert first_lr == pytest.approx(0.01 * (1 - 2 / c) + 0.0005 * 2 / c, rel=1e-12)
    meta = RunDir(fge).read_meta()["init"]
    assert meta["epoch"] == 4 and meta["run_id"] == "ind" and meta["optimizer"] is True


def len_steps(run_dir) -> int:
    """Steps per epoch of a finished run."""
    return read_metrics(run_dir)[0]["step"]


def test_init_without_optimizer_state_or_epoch_is_a_clear_error(tmp_path):
    ind = train_run({**IND, "checkpoints": {"epochs": [4]}}, tmp_path / "ind")
    assert not optimizer_state_path(ind / "checkpoints" / "epoch_0004.safetensors").exists()
    with pytest.raises(ConfigError, match="no optimizer state.*init.optimizer: false"):
        train_run({**FGE, "init": {"run": str(ind), "epoch": 4}}, tmp_path / "a")
    assert not (tmp_path / "a").exists()  # nothing left behind: a corrected retry can start
    with pytest.raises(ConfigError, match=r"no checkpoint of epoch 3 \(it saved epochs \[4\]\)"):
        train_run({**FGE, "init": {"run": str(ind), "epoch": 3, "optimizer": False}}, tmp_path / "b")
    cold = train_run({**FGE, "init": {"run": str(ind), "epoch": 4, "optimizer": False}}, tmp_path / "c")
    assert RunDir(cold).read_meta()["init"]["optimizer"] is False


def test_corrupt_optimizer_state_is_detected(tmp_path):
    ind = train_run(IND, tmp_path / "ind")
    path = optimizer_state_path(ind / "checkpoints" / "epoch_0004.safetensors")
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(Exception, match="corrupt"):
        train_run({**FGE, "init": {"run": str(ind), "epoch": 4}}, tmp_path / "fge")


def _study(tmp_path, variants, seeds=(0, 1)):
    tree = {"name": "t", "base": {k: v for k, v in IND.items() if k != "checkpoints"},
            "variants": variants, "seeds": list(seeds)}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


FGE_SET = {"epochs": 2, "schedule.name": "fge", "schedule.cycle": 2, "schedule.lr_high": 0.01,
           "schedule.lr_low": 0.0005, "init.run": "ind", "init.epoch": 4}
IND_SET = {"checkpoints.epochs": [4], "checkpoints.optimizer": True}


def test_a_study_variant_starts_from_another_variants_run_of_the_same_seed(tmp_path):
    path = _study(tmp_path, [{"name": "fge", "set": FGE_SET}, {"name": "ind", "set": IND_SET}])
    spec, root = load_study(path)
    plan = {r.run_id: r for r in plan_runs(spec, root)}
    assert plan["fge-s1"].init_from == "ind-s1" and plan["ind-s0"].init_from is None
    assert plan["fge-s1"].config["init"]["run"] == "ind"  # the plan keeps the variant's name
    out = run_study(path, tmp_path / "out", workers=2, progress=False)
    assert out.counts == {"finished": 4}
    for seed in (0, 1):
        runs = out.directory / "runs"
        assert len(CheckpointSet.from_run(runs / f"fge-s{seed}", role="fge")) == 1  # one cycle
        meta = RunDir(out.directory / "runs" / f"fge-s{seed}").read_meta()["init"]
        assert meta["run_id"] == f"ind-s{seed}" and meta["epoch"] == 4
    # the stored config is as planned, so a second run of the study finds nothing changed
    assert run_study(path, tmp_path / "out", progress=False).counts == {"finished": 4}


def test_study_refuses_an_init_its_source_cannot_serve(tmp_path):
    path = _study(tmp_path, [{"name": "ind", "set": {"checkpoints.epochs": [3]}},
                             {"name": "fge", "set": FGE_SET}])
    spec, root = load_study(path)
    with pytest.raises(ConfigError) as e:
        plan_runs(spec, root)
    assert "does not save epoch 4" in str(e.value)
    assert "checkpoints.optimizer: true" in str(e.value)
    loop = _study(tmp_path, [{"name": "a", "set": {"init.run": "b"}},
                             {"name": "b", "set": {"init.run": "a"}}])
    spec, root = load_study(loop)
    with pytest.raises(ConfigError, match="cycle: a -> b -> a"):
        plan_runs(spec, root)


def test_failed_source_fails_its_dependents_without_starting_them(tmp_path):
    broken = {**IND_SET, "data.name": "mnist", "data.root": str(tmp_path / "no_data")}
    path = _study(tmp_path, [{"name": "ind", "set": broken}, {"name": "fge", "set": FGE_SET}],
                  seeds=[0])
    out = run_study(path, tmp_path / "out", progress=False)
    status = json.loads((out.directory / "status.json").read_text())
    assert status["ind-s0"]["status"] == "failed"
    assert status["fge-s0"]["status"] == "failed"
    assert "did not finish" in status["fge-s0"]["error"]
    assert not (out.directory / "runs" / "fge-s0").exists()  # never started
