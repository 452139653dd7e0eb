"""Cold restarts: the threshold, the re-initialization, and a run with restarts."""

import json
import math

import pytest
import torch
from torch import nn

from losslab.runs.checkpoint_set import CheckpointSet
from losslab.runs.config import load_config
from losslab.runs.metrics import read_metrics
from losslab.train.callbacks import Callback
from losslab.train.restarts import ColdRestart
from losslab.train.run import resume_run, train_run


class Constant(nn.Module):
    """Predicts fixed logits, so its cross-entropy on any batch is known in closed form."""

    def __init__(self, logit: float):
        super().__init__()
        self.logit = nn.Parameter(torch.tensor([logit, 0.0], dtype=torch.float64))

    def forward(self, x):
        return self.logit.expand(x.shape[0], 2)


def _batches(n=4):
    return [(torch.zeros(8, 1, dtype=torch.float64), torch.zeros(8, dtype=torch.long))] * n


def _loss(logit):
    return math.log(1 + math.exp(-logit))  # cross-entropy of class 0 with logits (logit, 0)


def test_restart_triggers_exactly_when_the_estimate_crosses_eps():
    logit = 2.0
    exact = _loss(logit)
    for eps, expected in ((exact * (1 + 1e-9), True), (exact * (1 - 1e-9), False)):
        model = Constant(logit)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        optimizer.state[model.logit]["momentum_buffer"] = torch.ones(2, dtype=torch.float64)
        restart = ColdRestart(eps, reinit=lambda k: Constant(-1.0), n_batches=3)
        assert restart.check(model, optimizer, _batches(), epoch=5) is expected
        assert restart.last_estimate == pytest.approx(exact, rel=1e-14)
        if expected:
            assert model.logit[0].item() == -1.0  # fresh weights from reinit
            assert len(optimizer.state) == 0      # fresh optimizer state
            assert restart.restart_epochs == [5]
        else:
            assert len(optimizer.state) == 1 and restart.restart_epochs == []


def test_estimate_uses_n_batches_and_the_loss_scale():
    model = Constant(1.0)
    counted = []

    def batches():
        for i in range(10):
            counted.append(i)
            yield torch.zeros(4, 1, dtype=torch.float64), torch.zeros(4, dtype=torch.long)

    restart = ColdRestart(1.0, reinit=lambda k: Constant(0.0), n_batches=3, loss_scale=0.25)
    assert restart.estimate(model, batches()) == pytest.approx(_loss(1.0) * 0.25, rel=1e-12)
    assert counted == [0, 1, 2]
    with pytest.raises(ValueError, match="eps"):
        ColdRestart(0.0, reinit=lambda k: model)


def _restart_run_config(**extra):
    return load_config(overrides=["epochs=8", "restarts.eps=0.08", "optimizer.lr=0.1",
                                  "log.progress=false", "log.tensorboard=false",
                                  "checkpoints.every=1", *[f"{k}={v}" for k, v in extra.items()]])


def test_a_run_with_restarts_records_them_and_keeps_the_best(tmp_path):
    run = train_run(_restart_run_config(), tmp_path / "run")
    records = read_metrics(run)
    restarts = [r["epoch"] for r in records if r["restarted"]]
    assert restarts and all(r["loss_estimate"] > 0 for r in records)
    for r in records:  # restarted exactly where the estimate fell below ε
        assert r["restarted"] == int(r["loss_estimate"] < 0.08 and r["epoch"] < 8)
    after = restarts[0] + 1
    assert records[after - 1]["train_loss"] > records[after - 2]["train_loss"]  # from scratch
    assert [r["restarts"] for r in records][-1] == len(restarts)
    best = CheckpointSet.from_run(run, role="best")[0]
    assert best.epoch == max(records, key=lambda r: (r["val_acc"], -r["val_loss"]))["epoch"]
    # the weights right after a restart are a fresh initialization, not the trained ones
    trained = CheckpointSet.from_run(run, epochs=restarts[0], role="epoch").load(0).params
    assert any(not torch.equal(v, trained[k])
               for k, v in CheckpointSet.from_run(run, epochs=after, role="epoch").load(0).params.items())


def test_a_resumed_run_restarts_the_same_way(tmp_path):
    class Stop(Callback):
        def on_epoch_end(self, trainer, epoch, metrics):
            if epoch == 5:
                raise KeyboardInterrupt

    ref = read_metrics(train_run(_restart_run_config(), tmp_path / "ref"))
    with pytest.raises(KeyboardInterrupt):
        train_run(_restart_run_config(), tmp_path / "run", callbacks=[Stop()])
    resume_run(tmp_path / "run")
    strip = lambda rs: [{k: v for k, v in r.items() if k != "epoch_time"} for r in rs]  # noqa: E731
    assert strip(read_metrics(tmp_path / "run")) == strip(ref)
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["status"] == "finished"
