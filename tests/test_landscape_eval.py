"""Lines and surfaces through functional_call: exact endpoints and centre, axis layout, BN
policies, resume, vmap, subsets."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

from losslab.data.loader import DeviceLoader
from losslab.data.splits import Split
from losslab.ensembles.swa import recompute_batchnorm
from losslab.landscape import (
    Directions,
    evaluate_points,
    line,
    load_result,
    subset_batches,
    surface,
)
from losslab.landscape.grid_io import load_grid
from losslab.landscape.options import EvalOptions
from losslab.landscape.points import PointEvaluator
from losslab.params import buffers_of, parameters_of


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double()
    with torch.no_grad():  # running statistics far from the data's
        net[1].running_mean.fill_(2.0)
        net[1].running_var.fill_(0.25)
    return net.eval()


def data(n: int = 64, seed: int = 0, batch: int = 16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


def direct_loss(model: nn.Module, state: dict, batches) -> float:
    """The mean per-example cross-entropy of a plain copy holding ``state``."""
    net = copy.deepcopy(model).eval()
    net.load_state_dict(state, strict=False)
    with torch.no_grad():
        total = torch.zeros((), dtype=torch.float64)
        count = 0
        for x, y in batches:
            total += F.cross_entropy(net(x), y, reduction="none").double().sum()
            count += y.shape[0]
    return float(total / count)


def snapshot(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_line_endpoints_are_exact_and_start_is_not_mutated():
    start, end, batches = mlp(0), mlp(1), data()
    start.train()
    before = snapshot(start)
    res = line(start, start, end=end, batches=batches)
    a = res.alphas
    assert len(a) == 41 and float(a.min()) == -0.5 and float(a.max()) == 1.5
    i0, i1 = int(torch.nonzero(a == 0.0)[0]), int(torch.nonzero(a == 1.0)[0])
    assert float(res.loss[i0]) == direct_loss(start, start.state_dict(), batches)
    assert float(res.loss[i1]) == direct_loss(start, end.state_dict(), batches)
    assert res.loss[i0] != res.loss[i1]
    assert torch.isfinite(res.loss).all() and torch.isfinite(res.acc).all()
    assert (res.loss_se > 0).all()
    assert start.training  # mode untouched
    assert all(torch.equal(before[k], v) for k, v in start.state_dict().items())
    assert res.metadata["bn"] == "interpolate" and res.metadata["num_examples"] == 64


def test_line_along_a_direction_and_explicit_alphas():
    model, batches = mlp(0), data()
    params = parameters_of(model)
    d = {k: torch.ones_like(v) for k, v in params.items()}
    res = line(model, params, d, grid=torch.tensor([-1.0, 0.0, 0.5]), batches=batches)
    assert float(res.loss[1]) == direct_loss(model, model.state_dict(), batches)
    with pytest.raises(ValueError, match="contains 0.0"):
        line(model, params, d, grid=torch.tensor([-1.0, 0.5]), batches=batches)
    with pytest.raises(ValueError, match="exactly one"):
        line(model, params, batches=batches)


def test_surface_centre_is_theta_star_and_grid_is_validated():
    model, batches = mlp(0), data()
    dirs = Directions.random(parameters_of(model), n=2, seed=0)
    res = surface(model, model, dirs, grid=((-1, 1, 5), (-0.5, 0.5, 3)), batches=batches)
    assert res.loss.shape == (3, 5) and res.acc.shape == (3, 5)
    assert float(res.x[2]) == 0.0 and float(res.y[1]) == 0.0
    assert float(res.loss[1, 2]) == direct_loss(model, model.state_dict(), batches)
    assert res.metadata["axis_convention"] == "loss[i, j] is at (x[j], y[i])"
    assert res.metadata["directions"]["normalization"] == "filter"
    with pytest.raises(ValueError, match="odd number"):
        surface(model, model, dirs, grid=((-1, 1, 4), (-1, 1, 3)), batches=batches)


def test_surface_axis_convention_with_an_asymmetric_function():
    model, batches = mlp(0), data()
    params = parameters_of(model)
    d1 = {k: torch.zeros_like(v) for k, v in params.items()}
    d2 = {k: torch.zeros_like(v) for k, v in params.items()}
    d1["2.bias"][0] = 1.0   # x moves logit 0 by 1
    d2["2.bias"][0] = 10.0  # y moves it by 10

    def logit0(logits, y):
        return logits[:, 0]

    res = surface(model, params, [d1, d2], grid=((-1, 1, 5), (0, 2, 3)),
                  batches=batches, options=EvalOptions(loss_fn=logit0))
    base = float(res.loss[0, 2])
    expect = base + res.x[None, :] + 10.0 * res.y[:, None]
    torch.testing.assert_close(res.loss, expect, rtol=0, atol=1e-12)
    assert res.value_at(1.0, 2.0) == pytest.approx(base + 21.0)


def test_bn_keep_uses_the_centre_buffers_and_recompute_differs():
    model, batches = bn_net(), data()
    center, bufs = parameters_of(model), buffers_of(model)
    dirs = Directions.random(center, n=2, seed=1)
    coords = torch.tensor([[0.0, 0.0], [0.3, -0.2]], dtype=torch.float64)
    keep, _ = evaluate_points(model, center, list(dirs), batches=batches, coords=coords,
                              buffers=bufs, options=EvalOptions(bn="keep"))
    assert float(keep[0]) == direct_loss(model, model.state_dict(), batches)
    other = {k: v.clone() for k, v in bufs.items()}
    other["1.running_mean"].fill_(-1.0)
    keep2, _ = evaluate_points(model, center, list(dirs), batches=batches, coords=coords[:1],
                               buffers=other)
    assert float(keep2[0]) == direct_loss(model, {**center, **other}, batches)
    rec, _ = evaluate_points(model, center, list(dirs), batches=batches, coords=coords,
                             buffers=bufs, options=EvalOptions(bn="recompute"))
    assert (rec - keep).abs().min() > 1e-3
    oracle = recompute_batchnorm(model, model.state_dict(), batches)  # swa_utils.update_bn
    assert float(rec[0]) == pytest.approx(direct_loss(model, oracle, batches), rel=1e-12)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in bufs.items())
    res = surface(model, model, dirs, grid=(-1, 1, 3), batches=batches,
                  options=EvalOptions(bn="recompute"))
    assert res.metadata["bn"] == "recompute"
    assert float(res.loss[1, 1]) == float(rec[0])


@pytest.mark.parametrize("points_per_call", [1, 2])
def test_named_evaluation_sets_share_one_batchnorm_pass_per_point(points_per_call):
    model, train, test = bn_net(), data(seed=0), data(n=48, seed=1, batch=12)
    center, bufs = parameters_of(model), buffers_of(model)
    dirs = list(Directions.random(center, n=2, seed=1))
    coords = torch.tensor([[0.0, 0.0], [0.3, -0.2], [-0.5, 0.1]], dtype=torch.float64)
    options = EvalOptions(recompute_batches=train, points_per_call=points_per_call,
                          device="cpu")
    ev = PointEvaluator(model, center, bufs, dirs, {"train": train, "test": test},
                        options=options, bn="recompute")
    assert ev.recompute_batches is ev.batch_sets["train"]  # read onto the device once
    passes = []
    recompute = ev._recomputed
    ev._recomputed = lambda params: passes.append(1) or recompute(params)
    together = ev.evaluate_sets(coords)
    assert len(passes) == len(coords) and ev.examples == {"train": 64, "test": 48}
    for name, batches in (("train", train), ("test", test)):
        alone = evaluate_points(model, center, dirs, batches=batches, coords=coords,
                                buffers=bufs, options=options.with_(bn="recompute"),
                                return_stderr=True)
        for a, b in zip(together[name], alone, strict=True):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="evaluate_sets"):
        ev.evaluate(coords)


@pytest.mark.parametrize("make", [mlp, bn_net])
@pytest.mark.parametrize("bn", ["keep", "recompute"])
def test_vmap_points_equal_single_points(make, bn):
    model, batches = make(), data()
    dirs = Directions.random(parameters_of(model), n=2, seed=2)
    g = torch.Generator().manual_seed(0)
    coords = torch.rand(7, 2, generator=g, dtype=torch.float64) * 2 - 1
    one = evaluate_points(model, model, list(dirs), batches=batches, coords=coords,
                          options=EvalOptions(bn=bn), return_stderr=True)
    three = evaluate_points(model, model, list(dirs), batches=batches, coords=coords,
                            options=EvalOptions(bn=bn, points_per_call=3), return_stderr=True)
    for a, b in zip(one, three, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_surface_resumes_after_an_interruption(tmp_path):
    model, batches = mlp(0), data()
    dirs = Directions.random(parameters_of(model), n=2, seed=3)
    calls = {"n": 0}

    def counted(logits, y):
        calls["n"] += 1
        return F.cross_entropy(logits, y, reduction="none")

    kw = dict(grid=((-1, 1, 5), (-1, 1, 3)), batches=batches,
              options=EvalOptions(loss_fn=counted))
    full = surface(model, model, dirs, **kw)
    total = 15

    class Stop(Exception):
        pass

    def stop_after_7(done, _total):
        if done == 7:
            raise Stop

    path = str(tmp_path / "surf")
    with pytest.raises(Stop):
        surface(model, model, dirs, path=path, save_every=3, callback=stop_after_7, **kw)
    arrays, meta = load_grid(path)
    assert int(arrays["done"].sum()) == 7 and meta["complete"] is False
    with pytest.raises(ValueError, match="unfinished"):
        load_result(path)
    calls["n"] = 0
    resumed = surface(model, model, dirs, path=path, save_every=3, **kw)
    assert calls["n"] == (total - 7) * len(batches)
    assert torch.equal(resumed.loss, full.loss) and torch.equal(resumed.acc, full.acc)
    stored = load_result(path)
    assert torch.equal(stored.loss, full.loss) and torch.equal(stored.x, full.x)
    assert stored.metadata["axis_convention"] == "loss[i, j] is at (x[j], y[i])"
    calls["n"] = 0
    surface(model, model, dirs, path=path, **kw)  # finished: nothing left to do
    assert calls["n"] == 0
    with pytest.raises(ValueError, match="different surface"):
        surface(model, model, dirs, path=path, **{**kw, "grid": ((-2, 2, 5), (-1, 1, 3))})


def test_subset_standard_errors_and_correlation():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(512, 4, generator=g, dtype=torch.float64)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    full = [(x[i:i + 128], y[i:i + 128]) for i in range(0, 512, 128)]
    sub = subset_batches((x, y), 128, seed=0, batch_size=64)
    assert len(sub) == 2 and sub.describe() == {"n": 128, "seed": 0, "population": 512}
    model = mlp(0)
    dirs = Directions.random(parameters_of(model), n=2, seed=4)
    kw = dict(grid=(-1, 1, 5))
    a = surface(model, model, dirs, batches=full, **kw)
    b = surface(model, model, dirs, batches=sub, **kw)
    assert b.metadata["data"]["subset"]["n"] == 128 and b.metadata["num_examples"] == 128
    assert (b.loss_se > 0).all() and torch.isfinite(b.loss_se).all()
    assert (b.loss_se > a.loss_se).all()  # fewer examples, larger error
    rho = spearmanr(a.loss.flatten().numpy(), b.loss.flatten().numpy()).statistic
    assert rho >= 0.9
    assert ((a.loss - b.loss).abs() < 5 * b.loss_se + 1e-9).float().mean() > 0.8


def test_subset_from_a_device_loader_is_normalized_and_reproducible():
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (40, 1, 4, 4), generator=g, dtype=torch.uint8),
                  torch.randint(0, 3, (40,), generator=g))
    loader = DeviceLoader(split, 8, shuffle=False, mean=[0.5], std=[0.25])
    sub = subset_batches(loader, 10, seed=7)
    again = subset_batches(loader, 10, seed=7)
    (xs, ys), = sub
    assert torch.equal(xs, again[0][0]) and xs.dtype == torch.float32
    full_x = torch.cat([b[0] for b in loader])
    full_y = torch.cat([b[1] for b in loader])
    idx = [int(torch.nonzero((full_x == row).all(dim=(1, 2, 3)))[0]) for row in xs]
    assert torch.equal(full_y[idx], ys)


def test_loaded_checkpoint_like_start_supplies_buffers():
    model, batches = bn_net(), data()
    ckpt = SimpleNamespace(params=parameters_of(model), buffers=buffers_of(model))
    other = bn_net(1)
    res = line(other, ckpt, end=ckpt, grid=torch.tensor([0.0, 1.0]), batches=batches)
    assert float(res.loss[0]) == direct_loss(model, model.state_dict(), batches)


def test_line_between_two_batchnorm_models_ends_exactly_at_each():
    """Under the default ``interpolate`` policy the BN statistics follow the line, so α = 1 is
    the end model with its own statistics; ``keep`` runs it on the start's (another value)."""
    start, end = bn_net(0), bn_net(1)
    with torch.no_grad():
        end[1].running_mean.fill_(-1.0)
        end[1].running_var.fill_(4.0)
    batches = data()
    res = line(start, start, end=end, batches=batches)
    a = res.alphas
    i0, i1 = int(torch.nonzero(a == 0.0)[0]), int(torch.nonzero(a == 1.0)[0])
    assert res.metadata["bn"] == "interpolate"
    assert float(res.loss[i0]) == pytest.approx(direct_loss(start, start.state_dict(), batches),
                                                rel=1e-12)
    assert float(res.loss[i1]) == pytest.approx(direct_loss(end, end.state_dict(), batches),
                                                rel=1e-12)
    s, e = start.state_dict(), end.state_dict()
    for alpha in (0.5, -0.5):  # means mix linearly, variances log-linearly (positive outside)
        i = int(torch.nonzero(a == alpha)[0])
        mixed = {k: (1 - alpha) * v + alpha * e[k] for k, v in s.items() if v.is_floating_point()}
        mixed["1.running_var"] = s["1.running_var"] ** (1 - alpha) * e["1.running_var"] ** alpha
        assert (1 - alpha) * s["1.running_var"][0] + alpha * e["1.running_var"][0] < 0 or \
            alpha == 0.5  # at -0.5 the linear mix of these variances would be negative
        assert float(res.loss[i]) == pytest.approx(direct_loss(start, mixed, batches),
                                                   rel=1e-10)
    kept = line(start, start, end=end, batches=batches, options=EvalOptions(bn="keep"))
    assert abs(float(kept.loss[i1]) - float(res.loss[i1])) > 1e-3
    with pytest.raises(ValueError, match="needs the end model's buffers"):
        line(start, start, end=parameters_of(end), batches=batches,
             options=EvalOptions(bn="interpolate"))
    with pytest.raises(ValueError, match="for a line between two models"):
        surface(start, start, Directions.random(parameters_of(start), n=2, seed=0),
                grid=(-1, 1, 3), batches=batches, options=EvalOptions(bn="interpolate"))


def test_float64_directions_of_a_float32_model_are_cast_to_its_dtype():
    """A float32 model with float64 directions (e.g. loaded from a float64 file) is evaluated
    in the model's dtype, by surface and line alike (oneDNN would refuse the mixed point)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 1, 6, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
    batches = [(x, y)]
    params = parameters_of(model)
    d64 = [{k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in params.items()}
           for _ in range(2)]
    d32 = [{k: v.float() for k, v in d.items()} for d in d64]
    grid = (-1, 1, 3)
    a = surface(model, model, d64, batches=batches, grid=grid)
    b = surface(model, model, d32, batches=batches, grid=grid)
    assert torch.equal(a.loss, b.loss)
    la = line(model, model, d64[0], batches=batches, grid=grid)
    lb = line(model, model, d32[0], batches=batches, grid=grid)
    assert torch.equal(la.loss, lb.loss)


def test_one_grid_spec_for_every_map():
    model, batches = mlp(0), data()
    dirs = Directions.random(parameters_of(model), n=2, seed=0)
    both = surface(model, model, dirs, batches=batches, grid=(-1, 1, 3))
    assert both.x.tolist() == both.y.tolist() == [-1.0, 0.0, 1.0]
    explicit = surface(model, model, dirs, batches=batches,
                       grid=(torch.tensor([-1.0, 0.0, 1.0]), (-1, 1, 3)))
    assert torch.equal(explicit.loss, both.loss)
    with pytest.raises(ValueError, match=r"expected \(lo, hi, n\)"):
        surface(model, model, dirs, batches=batches, grid=(-1, 1, 2.5))
    with pytest.raises(ValueError, match="chooses its own range"):
        surface(model, model, dirs, batches=batches, grid=5)
    with pytest.raises(ValueError, match="end="):
        line(model, model, model, batches=batches)
