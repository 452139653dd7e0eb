"""Fitting a curve through the trainer: a ``curve:`` run trains only the bends, with the
paper's weight decay on the curve point, resumes exactly, and evaluates along t."""

from __future__ import annotations

import pytest
import torch

from losslab.curves import CurveModel, evaluate_curve
from losslab.runs.checkpoint_set import CheckpointSet, resolve_checkpoint
from losslab.runs.config import ConfigError, load_config
from losslab.runs.metrics import read_metrics
from losslab.runs.rebuild import dataset_of, split_loader, template_model
from losslab.train.callbacks import Callback
from losslab.train.run import resume_run, train_run

pytestmark = pytest.mark.e2e  # end to end: deselected by `make test-fast`

QUIET = ["log.progress=false", "log.tensorboard=false"]


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ends")
    return [train_run(load_config(overrides=[*QUIET, "epochs=3", f"seed={s}"]), root / f"e{s}")
            for s in (0, 1)]


def curve_config(endpoints, *extra):
    return load_config(overrides=[*QUIET, "epochs=3", "optimizer.lr=0.05",
                                  f"curve.start={endpoints[0]}", f"curve.end={endpoints[1]}",
                                  *extra])


def test_curve_run_trains_the_bends_only_and_keeps_the_endpoints(endpoints, tmp_path):
    run = train_run(curve_config(endpoints), tmp_path / "curve")
    final = resolve_checkpoint(run).load()
    start = resolve_checkpoint(endpoints[0]).load()
    end = resolve_checkpoint(endpoints[1]).load()
    names = list(start.params)
    w1 = torch.cat([start.params[k].reshape(-1) for k in names])
    w2 = torch.cat([end.params[k].reshape(-1) for k in names])
    assert torch.equal(final.buffers["endpoints"][0], w1)
    assert torch.equal(final.buffers["endpoints"][1], w2)
    init = (w1 + w2) / 2  # one bend starts at the midpoint of the line
    assert float((final.params["bends"][0] - init).norm()) > 1e-3  # it moved
    records = read_metrics(run)
    assert len(records) == 3 and all("test_acc" in r for r in records)
    cfg = curve_config(endpoints)
    steps = -(-len(dataset_of(cfg).train.y) // cfg.data.batch_size)  # batches per epoch
    assert int(final.buffers["t_draws"]) == 3 * steps  # one t per minibatch


def test_weight_decay_goes_on_the_point_or_the_bends(endpoints, tmp_path):
    point = train_run(curve_config(endpoints, "optimizer.weight_decay=0.01"), tmp_path / "p")
    bends = train_run(curve_config(endpoints, "optimizer.weight_decay=0.01",
                               "curve.weight_decay_on=bends"), tmp_path / "b")
    a = resolve_checkpoint(point).load().params["bends"]
    b = resolve_checkpoint(bends).load().params["bends"]
    assert not torch.equal(a, b)


def test_a_resumed_curve_run_matches(endpoints, tmp_path):
    class Stop(Callback):
        def on_epoch_end(self, trainer, epoch, metrics):
            if epoch == 2:
                raise KeyboardInterrupt

    cfg = curve_config(endpoints)
    ref = train_run(cfg, tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tmp_path / "run", callbacks=[Stop()])
    resume_run(tmp_path / "run")
    a = resolve_checkpoint(ref).load()
    b = resolve_checkpoint(tmp_path / "run").load()
    assert torch.equal(a.params["bends"], b.params["bends"])
    assert torch.equal(a.buffers["t_draws"], b.buffers["t_draws"])


def test_bad_curve_configs_are_clear(endpoints, tmp_path):
    with pytest.raises(ConfigError, match="curve.start"):
        train_run(load_config(overrides=[*QUIET, f"curve.start={tmp_path / 'none'}",
                                     f"curve.end={endpoints[1]}"]), tmp_path / "x")
    with pytest.raises(ConfigError, match="does not fit model .mlp."):
        train_run(load_config(overrides=[*QUIET, "model.name=mlp", f"curve.start={endpoints[0]}",
                                     f"curve.end={endpoints[1]}"]), tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_trained_curve_evaluates_along_t(endpoints, tmp_path):
    cfg = curve_config(endpoints, "epochs=4")
    run = train_run(cfg, tmp_path / "c")
    final = resolve_checkpoint(run).load()
    template = template_model(cfg)
    start = resolve_checkpoint(endpoints[0]).load()
    curve = CurveModel(template, start, resolve_checkpoint(endpoints[1]).load(), bends=1)
    curve.load_state_dict({**final.params, **final.buffers}, strict=False)
    data = dataset_of(cfg)
    train_b, test_b = split_loader(data, "train", 512, "cpu"), split_loader(data, "test", 512,
                                                                          "cpu")
    res = evaluate_curve(curve, train=train_b, test=test_b, ts=[0.0, 0.25, 0.5, 0.75, 1.0])
    assert res.metadata["bn"] == "recompute"
    # the trained curve's middle is far better than the straight line's
    assert float(res.curve["train_loss"][2]) < float(res.line["train_loss"][2])
    assert res.barrier["curve"] < res.barrier["line"]
    assert len(CheckpointSet.from_run(run, role="final")) == 1
