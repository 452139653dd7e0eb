"""The first layer's products with the centre and the directions are computed once per batch
and combined at every point: the same losses as the plain forward (float64, 1e-12), for
convolutions with and without a folded BatchNorm, linear layers after a flatten, lines
between two models (a zero centre), every BatchNorm policy, a memory budget that shares only
some batches, and networks that must not be split."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from losslab.landscape import Directions, EvalOptions, evaluate_points, line
from losslab.landscape import points as points_module
from losslab.landscape.first_layer import FirstLayer, pays, split_first_layer
from losslab.landscape.points import PointEvaluator
from losslab.params import buffers_of, parameters_of

F64 = torch.float64


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return self.fc(F.relu(self.conv2(h)).mean(dim=(2, 3)))


class TinyCNN(nn.Module):  # no BatchNorm: the first layer's own bias is the shift
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 5, 3, padding=1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        return self.fc(F.relu(self.conv2(h)).mean(dim=(2, 3)))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 8, bias=False), nn.Tanh(), nn.Linear(8, 3))


def randomized(net: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(4, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(4, generator=g) + 0.5)
                m.weight.copy_(torch.rand(4, generator=g) + 0.5)
    return net.double().eval()


def data(n: int = 24):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 6, 6, generator=g, dtype=F64)
    y = torch.randint(0, 3, (n,), generator=g)
    return [(x[i:i + 8], y[i:i + 8]) for i in range(0, n, 8)]


COORDS = torch.tensor([[0.0, 0.0], [0.5, -0.25], [-1.0, 1.0], [0.0, 0.75]], dtype=F64)


def both(net, batches, options=EvalOptions()):
    dirs = list(Directions.random(parameters_of(net), n=2, seed=1))
    shared = evaluate_points(net, net, dirs, batches=batches, coords=COORDS, options=options,
                             return_stderr=True)
    plain = evaluate_points(net, net, dirs, batches=batches, coords=COORDS,
                            options=options.with_(fuse=False), return_stderr=True)
    return shared, plain


@pytest.mark.parametrize("make", [ConvBN, TinyCNN, mlp])
@pytest.mark.parametrize("bn", ["keep", "recompute"])
def test_shared_first_layer_gives_the_plain_losses(make, bn):
    torch.manual_seed(0)
    net = randomized(make())
    batches = data()
    ev = PointEvaluator(net, parameters_of(net), buffers_of(net), [parameters_of(net)],
                        batches, options=EvalOptions(bn=bn), bn=bn)
    assert ev.fast.first is not None
    assert all(b is not None for b in ev._bases[""])  # every batch shared
    shared, plain = both(net, batches, EvalOptions(bn=bn))
    for a, b in zip(shared, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_points_use_the_bases_and_never_run_the_first_layer(monkeypatch):
    net = randomized(TinyCNN())
    batches = data()
    dirs = list(Directions.random(parameters_of(net), n=2, seed=1))
    ev = PointEvaluator(net, parameters_of(net), buffers_of(net), dirs, batches,
                        options=EvalOptions(), bn="keep")
    calls = []
    real = FirstLayer.apply
    monkeypatch.setattr(FirstLayer, "apply", lambda self, *a: calls.append(1) or real(self, *a))
    loss, *_ = ev.evaluate(COORDS)
    assert calls == []  # 4 points x 3 batches, all from the bases
    with torch.no_grad():  # and the centre is the model's own loss
        direct = torch.cat([F.cross_entropy(net(x), y, reduction="none") for x, y in batches])
    assert float(loss[0]) == pytest.approx(float(direct.mean()), rel=1e-14)


def test_a_budget_shares_the_batches_that_fit(monkeypatch):
    net = randomized(ConvBN())
    batches = data()
    one_batch = 3 * 8 * 4 * 36 * 8  # centre + 2 directions, 8 examples, 4 x 6 x 6, float64
    monkeypatch.setattr(points_module, "FIRST_LAYER_BYTES", one_batch)
    dirs = list(Directions.random(parameters_of(net), n=2, seed=1))
    ev = PointEvaluator(net, parameters_of(net), buffers_of(net), dirs, batches,
                        options=EvalOptions(), bn="keep")
    assert [b is not None for b in ev._bases[""]] == [True, False, False]
    shared, plain = both(net, batches)
    for a, b in zip(shared, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_vmapped_points_run_the_layer_on_stacked_weights():
    net = randomized(ConvBN())
    shared, plain = both(net, data(), EvalOptions(points_per_call=3))
    for a, b in zip(shared, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_a_line_between_two_models_has_a_zero_centre_and_exact_ends():
    torch.manual_seed(0)
    a, b = randomized(ConvBN()), randomized(ConvBN())
    batches = data()
    got = line(a, a, end=b, batches=batches, grid=(0.0, 1.0, 5), progress=False)
    plain = line(a, a, end=b, batches=batches, grid=(0.0, 1.0, 5), progress=False,
                 options=EvalOptions(fuse=False))
    assert got.metadata["inference"]["shared_first_layer"] == "conv1"
    torch.testing.assert_close(got.loss, plain.loss, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        end = torch.cat([F.cross_entropy(b(x), y, reduction="none") for x, y in batches])
    assert float(got.loss[-1]) == pytest.approx(float(end.mean()), rel=1e-13)


def test_combine_of_zero_terms_is_the_shift():
    layer = FirstLayer("conv", nn.Conv2d(1, 2, 1), fx.symbolic_trace(nn.Identity()))
    base = torch.ones(1, 2, 2, 2, dtype=F64)
    shift = torch.tensor([0.5, -1.0], dtype=F64)
    out = layer.combine([None, base], [0.0], None, shift)
    assert torch.equal(out, shift.reshape(1, 2, 1, 1).expand(1, 2, 2, 2))


class InputReadTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) + x  # a skip connection from the input


class LayerCalledTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(torch.tanh(self.fc(x)))


class NormalizedFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn, self.fc = nn.BatchNorm1d(4), nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.bn(x))  # the layer's input depends on buffers


class ShapeReadLater(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 6)

    def forward(self, x):
        return self.fc(x).view(x.size(0), 2, 3)


@pytest.mark.parametrize("make", [InputReadTwice, LayerCalledTwice, NormalizedFirst,
                                  ShapeReadLater])
def test_networks_that_cannot_be_split_are_left_whole(make):
    gm = fx.symbolic_trace(make().eval())
    before = gm.code
    assert split_first_layer(gm) is None
    assert gm.code == before
    net = make().double().eval()
    x = torch.randn(8, 4, dtype=F64)
    y = torch.randint(0, 3, (8,))
    ev = PointEvaluator(net, parameters_of(net), buffers_of(net), [parameters_of(net)],
                        [(x, y)], options=EvalOptions(loss_fn=lambda o, t: o.sum(-1) if
                                                      o.ndim == 2 else o.sum((1, 2))), bn="keep")
    assert ev.fast.first is None and ev._bases == {}


def test_split_graph_starts_at_the_first_layer_output():
    gm = fx.symbolic_trace(mlp().eval())
    first = split_first_layer(gm)
    assert first is not None and first.name == "1"
    placeholders = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    assert placeholders == ["first_layer_output"]
    x = torch.randn(2, 1, 6, 6)
    assert first.pre(x).shape == (2, 36)  # the flatten runs once per batch, in pre


def test_sharing_is_chosen_where_it_was_measured_to_pay():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    small_conv, wide = nn.Conv2d(1, 32, 3), nn.Linear(64, 10)
    assert pays(small_conv, F64, cpu) and pays(wide, F64, cpu)
    assert not pays(small_conv, torch.float32, cpu)  # oneDNN's fused conv is as fast
    assert pays(wide, torch.float32, cpu) and not pays(nn.Linear(36, 8), torch.float32, cpu)
    assert not pays(wide, F64, gpu)  # not measured there
    grouped = nn.Conv2d(64, 64, 3, groups=64)  # 9 multiply-adds per output
    assert not pays(grouped, torch.float32, cpu)
    gm = fx.symbolic_trace(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()))
    assert split_first_layer(gm, torch.float32, cpu) is None


def test_a_float32_mlp_shares_its_wide_first_layer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 3, (32,), generator=g)
    dirs = list(Directions.random(parameters_of(net), n=2, seed=1))
    ev = PointEvaluator(net, parameters_of(net), buffers_of(net), dirs, [(x, y)],
                        options=EvalOptions(), bn="keep")
    assert ev.fast.describe()["shared_first_layer"] == "1"
    shared = evaluate_points(net, net, dirs, batches=[(x, y)], coords=COORDS)
    plain = evaluate_points(net, net, dirs, batches=[(x, y)], coords=COORDS,
                            options=EvalOptions(fuse=False))
    for a, b in zip(shared, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
