"""Sharpness tracking: λmax of the training Hessian logged every N epochs."""

import numpy as np
import pytest
import torch

from losslab.landscape.hessian import GGNOperator, HessianOperator
from losslab.landscape.sharpness import SharpnessTracker
from losslab.runs.config import load_config
from losslab.runs.metrics import read_metrics
from losslab.train.run import train_run
from losslab.train.trainer import Trainer


def test_tracked_lambda_max_equals_the_dense_hessian():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randint(0, 2, (20,))
    batches = [(x[:12], y[:12]), (x[12:], y[12:])]
    tracker = SharpnessTracker(batches, every=1, max_iter=50, tol=1e-10)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches, epochs=1,
                      progress=False)
    measured = tracker.measure(trainer)
    dense = HessianOperator(model, batches=batches).dense()
    expected = torch.linalg.eigvalsh(dense).max().item()
    assert measured["sharpness"] == pytest.approx(expected, rel=1e-6)
    assert measured["sharpness_converged"] and measured["sharpness_products"] > 0
    both = SharpnessTracker(batches, every=1, max_iter=50, tol=1e-10,
                            operators=["hessian", "ggn"]).measure(trainer)
    ggn = torch.linalg.eigvalsh(GGNOperator(model, batches=batches).dense()).max().item()
    assert both["sharpness"] == measured["sharpness"]
    assert both["sharpness_ggn"] == pytest.approx(ggn, rel=1e-6) and both["sharpness_ggn_converged"]
    with pytest.raises(ValueError, match="sharpness operators must be among"):
        SharpnessTracker(batches, operators=["fisher"])


def test_sharpness_is_logged_every_n_epochs(tmp_path):
    records = read_metrics(train_run(load_config(overrides=[
        "epochs=4", "log.sharpness_every=2", "log.progress=false", "log.tensorboard=false",
        "data.batch_size=128", "log.sharpness_operators=[hessian, ggn]"]), tmp_path / "run"))
    assert ["sharpness" in r for r in records] == [False, True, False, True]
    assert all(r["sharpness_ggn"] > 0 for r in records[1::2])
    assert all(np.isfinite(r["sharpness"]) and r["sharpness"] > 0 for r in records[1::2])
