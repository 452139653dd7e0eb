"""Weight averaging: the mean of state dicts, BatchNorm statistics recomputed, SWA models."""

import pytest
import torch
from torch import nn

from losslab.ensembles.swa import average_weights, recompute_batchnorm, swa_model
from losslab.runs.checkpoint_set import CheckpointSet
from losslab.runs.checkpoints import save_model_checkpoint

D = torch.float64


def _bn_first(seed: int = 0) -> nn.Module:
    """BatchNorm straight over the input: its statistics are the data's own."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.BatchNorm1d(5), nn.Linear(5, 3)).to(D)


def _snapshot(module):
    return module.training, {k: v.clone() for k, v in module.state_dict().items()}


def _unchanged(module, snap) -> bool:
    training, state = snap
    now = module.state_dict()
    return module.training == training and all(torch.equal(now[k], state[k]) for k in state)


def _data(n=60, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g, dtype=D) * torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5], dtype=D)
    return x + torch.tensor([0.0, 1.0, -2.0, 5.0, 0.3], dtype=D)


def _states():
    a = {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=D),
         "bn.running_mean": torch.tensor([0.0, 2.0], dtype=D),
         "bn.num_batches_tracked": torch.tensor(7)}
    b = {"w": torch.tensor([[3.0, -2.0], [1.0, 0.0]], dtype=D),
         "bn.running_mean": torch.tensor([4.0, 1.0], dtype=D),
         "bn.num_batches_tracked": torch.tensor(11)}
    return a, b


def test_average_of_two_state_dicts_is_the_hand_mean():
    a, b = _states()
    avg = average_weights([a, b])
    assert avg.keys() == a.keys()
    torch.testing.assert_close(avg["w"], (a["w"] + b["w"]) / 2, rtol=0, atol=1e-15)
    mean = (a["bn.running_mean"] + b["bn.running_mean"]) / 2
    torch.testing.assert_close(avg["bn.running_mean"], mean, rtol=0, atol=1e-15)
    assert avg["bn.num_batches_tracked"].dtype == torch.int64
    assert int(avg["bn.num_batches_tracked"]) == 7  # integers: from the first member
    assert avg["w"].dtype == D
    weighted = average_weights([a, b], weights=[1.0, 3.0])
    torch.testing.assert_close(weighted["w"], 0.25 * a["w"] + 0.75 * b["w"], rtol=0, atol=1e-15)
    assert torch.equal(a["w"], torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=D))  # inputs unchanged


def test_average_refuses_mismatches():
    a, b = _states()
    with pytest.raises(ValueError,
                       match="checkpoint 1 does not match checkpoint 0: parameter names differ"):
        average_weights([a, {k: v for k, v in b.items() if k != "w"}])
    with pytest.raises(ValueError, match="checkpoint 1 .*'w': shape"):
        average_weights([a, {**b, "w": torch.zeros(3, dtype=D)}])
    with pytest.raises(ValueError, match="non-negative"):
        average_weights([a, b], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="2 given for 1"):
        average_weights([a], weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="more checkpoints"):
        average_weights([a, b], weights=[1.0])
    with pytest.raises(ValueError, match="no checkpoints"):
        average_weights([])


def test_average_of_loaded_checkpoints(tmp_path):
    models = [_bn_first(s) for s in range(3)]
    for i, m in enumerate(models):
        with torch.no_grad():
            m.train()(_data(seed=i))  # distinct running statistics per member
    paths = [save_model_checkpoint(tmp_path, f"m{i}", m, run_id="r", epoch=i, step=i,
                                   role="snapshot") for i, m in enumerate(models)]
    avg = average_weights(CheckpointSet.from_paths(paths).load_all())
    for k, v in models[0].state_dict().items():
        if v.is_floating_point():
            expected = sum(m.state_dict()[k] for m in models) / 3
            torch.testing.assert_close(avg[k], expected, rtol=0, atol=1e-12)
        else:
            assert torch.equal(avg[k], v)


def test_recompute_batchnorm_gives_the_data_statistics():
    model = _bn_first().train()
    snap = _snapshot(model)
    x = _data()
    y = torch.zeros(len(x), dtype=torch.long)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state_snap = {k: v.clone() for k, v in state.items()}

    one = recompute_batchnorm(model, state, [(x, y)])  # a single batch: exact statistics
    torch.testing.assert_close(one["0.running_mean"], x.mean(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(one["0.running_var"], x.var(0, unbiased=True), rtol=0, atol=1e-12)
    assert int(one["0.num_batches_tracked"]) == 1
    assert torch.equal(one["1.weight"], state["1.weight"]) and one["1.weight"].dtype == D

    batches = list(x.split(20))  # equal batches, given as bare tensors
    three = recompute_batchnorm(model, state, batches, device="cpu")
    torch.testing.assert_close(three["0.running_mean"], x.mean(0), rtol=0, atol=1e-12)
    per_batch_var = torch.stack([b.var(0, unbiased=True) for b in batches]).mean(0)
    torch.testing.assert_close(three["0.running_var"], per_batch_var, rtol=0, atol=1e-12)
    assert int(three["0.num_batches_tracked"]) == 3

    assert _unchanged(model, snap)
    assert all(torch.equal(state[k], state_snap[k]) for k in state)
    with pytest.raises(ValueError, match="batches is empty"):
        recompute_batchnorm(model, state, [])


def test_recompute_batchnorm_without_batchnorm_returns_the_state():
    model = nn.Sequential(nn.Linear(5, 3)).to(D)
    state = model.state_dict()
    out = recompute_batchnorm(model, state, [_data()])
    assert out.keys() == state.keys() and all(out[k] is state[k] for k in state)


def test_swa_model_averages_and_recomputes():
    models = [_bn_first(s) for s in range(2)]
    template = _bn_first(5).train()
    snap = _snapshot(template)
    x = _data()
    swa = swa_model(template, [m.state_dict() for m in models])
    assert swa is not template and not swa.training
    torch.testing.assert_close(swa[1].weight, (models[0][1].weight + models[1][1].weight) / 2,
                               rtol=0, atol=1e-15)
    assert torch.equal(swa[0].running_mean, torch.zeros(5, dtype=D))  # no batches: averaged stats
    swa_bn = swa_model(template, [m.state_dict() for m in models], batches=[(x, x[:, 0])],
                       weights=[3, 1])
    torch.testing.assert_close(swa_bn[0].running_mean, x.mean(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(swa_bn[0].running_var, x.var(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(swa_bn[1].bias, 0.75 * models[0][1].bias + 0.25 * models[1][1].bias,
                               rtol=0, atol=1e-15)
    assert _unchanged(template, snap)
