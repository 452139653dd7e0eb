"""Curves between trained models: bases against closed forms, exact endpoints, gradients only in
the bends (equal to the chain rule through a plain model), evaluation along t."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from curve_nets import bn_net, data, mlp
from torch.func import functional_call

from losslab.curves import (
    CurveModel,
    bezier_coefficients,
    curve_plane,
    evaluate_curve,
    polychain_coefficients,
)
from losslab.ensembles.swa import recompute_batchnorm
from losslab.params import buffers_of, flatten, parameters_of

TS = [0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 1.0]


@pytest.mark.parametrize("t", TS)
def test_bezier_against_closed_forms(t):
    one = bezier_coefficients(t, 3)
    torch.testing.assert_close(one, torch.tensor([(1 - t) ** 2, 2 * t * (1 - t), t ** 2],
                                                 dtype=torch.float64), rtol=0, atol=1e-15)
    two = bezier_coefficients(t, 4)
    expect = [(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t ** 2 * (1 - t), t ** 3]
    torch.testing.assert_close(two, torch.tensor(expect, dtype=torch.float64), rtol=0, atol=1e-15)
    assert float(bezier_coefficients(t, 6).sum()) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("t", TS)
def test_polychain_against_closed_forms(t):
    c = polychain_coefficients(t, 3)  # the seed's linear chain with one bend
    expect = [1 - 2 * t, 2 * t, 0.0] if t <= 0.5 else [0.0, 2 - 2 * t, 2 * t - 1]
    torch.testing.assert_close(c, torch.tensor(expect, dtype=torch.float64), rtol=0, atol=1e-15)
    assert float(polychain_coefficients(t, 5).sum()) == pytest.approx(1.0, abs=1e-15)


def test_bases_reject_bad_input():
    with pytest.raises(ValueError, match="t must be in"):
        bezier_coefficients(1.5, 3)
    with pytest.raises(ValueError, match="at least its 2 endpoints"):
        polychain_coefficients(0.5, 1)
    with pytest.raises(ValueError, match="kind must be one of"):
        CurveModel(mlp(0), mlp(0), mlp(1), kind="spline")


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
@pytest.mark.parametrize("bends", [1, 3])
def test_endpoints_are_exact_and_bends_start_on_the_line(kind, bends):
    a, b = mlp(0), mlp(1)
    curve = CurveModel(a, a, b, bends=bends, kind=kind)
    start, end = curve.point(0.0), curve.point(1.0)
    assert all(torch.equal(start[k], v) for k, v in parameters_of(a).items())
    assert all(torch.equal(end[k], v) for k, v in parameters_of(b).items())
    w1, w2 = flatten(parameters_of(a)), flatten(parameters_of(b))
    for t in TS:  # both bases reproduce linear functions: the initial curve is the line
        torch.testing.assert_close(curve.flat_point(t), (1 - t) * w1 + t * w2, rtol=0,
                                   atol=1e-12)
    x = data()[0][0]
    curve.eval()
    with torch.no_grad():
        assert torch.equal(curve(x, t=0.0), a(x)) and torch.equal(curve(x, t=1.0), b(x))
    assert curve.length() == pytest.approx(float((w2 - w1).norm()), rel=1e-9)


def test_gradients_reach_only_the_bends_and_follow_the_chain_rule():
    a, b = mlp(0), mlp(1)
    curve = CurveModel(a, a, b, bends=2)
    with torch.no_grad():
        curve.bends.add_(0.1 * torch.randn_like(curve.bends))  # off the line
    x, y = data()[0]
    t = 0.3
    F.cross_entropy(curve(x, t=t), y).backward()
    assert [n for n, p in curve.named_parameters() if p.requires_grad] == ["bends"]
    assert all(p.grad is None for p in curve.net.parameters())
    # dL/dθ_i = c_i(t) · ∇_w L(w) at w = φ(t)
    w = {k: v.detach().clone().requires_grad_(True) for k, v in curve.point(t).items()}
    F.cross_entropy(functional_call(copy.deepcopy(a), w, (x,)), y).backward()
    grad_w = flatten({k: v.grad for k, v in w.items()})
    c = curve.coefficients(t)
    for i in range(2):
        torch.testing.assert_close(curve.bends.grad[i], c[i + 1] * grad_w, rtol=1e-12,
                                   atol=1e-14)


def test_training_draws_t_reproducibly_and_resumes():
    a, b = mlp(0), mlp(1)
    curve = CurveModel(a, a, b, seed=3).train()
    x = data()[0][0]
    curve(x)
    state = copy.deepcopy(curve.state_dict())
    later = [curve.sample_t() for _ in range(3)]
    again = CurveModel(a, a, b, seed=99)
    again.load_state_dict(state)
    assert [again.sample_t() for _ in range(3)] == later
    assert 0.0 <= curve.last_t <= 1.0
    torch.testing.assert_close(curve.point_l2(),
                               curve.flat_point(curve.last_t).square().sum())
    with pytest.raises(ValueError, match="in eval mode give t"):
        curve.eval()(x)
    with pytest.raises(RuntimeError, match="size mismatch for bends"):
        CurveModel(a, a, b, bends=2).load_state_dict(state)
    assert all(isinstance(v, torch.Tensor) for v in state.values())  # safetensors can hold it


def test_evaluation_along_t_without_batchnorm():
    a, b = mlp(0), mlp(1)
    curve = CurveModel(a, a, b, bends=1)
    train, test = data(seed=0), data(seed=1)
    res = evaluate_curve(curve, train=train, test=test, ts=[0.0, 0.25, 0.5, 0.75, 1.0])
    assert res.metadata["bn"] == "keep"
    with torch.no_grad():
        direct = [F.cross_entropy(torch.cat([m(x) for x, _ in test]),
                                  torch.cat([y for _, y in test])).item() for m in (a, b)]
    assert float(res.curve["test_loss"][0]) == pytest.approx(direct[0], rel=1e-12)
    assert float(res.curve["test_loss"][-1]) == pytest.approx(direct[1], rel=1e-12)
    # bends on the line: the curve is the line
    torch.testing.assert_close(res.curve["train_loss"], res.line["train_loss"], rtol=1e-12,
                               atol=1e-12)
    loss = res.line["train_loss"]
    assert res.barrier["line"] == pytest.approx(float(loss.max() - (loss[0] + loss[-1]) / 2))
    assert res.length["curve"] == pytest.approx(res.length["line"], rel=1e-9)
    assert min(loss) <= res.mean_loss["line"] <= max(loss)


def test_evaluation_recomputes_batchnorm_at_every_t():
    a, b = bn_net(0), bn_net(1)
    for m in (a, b):  # statistics of the training data, as after training
        recompute = recompute_batchnorm(m, m.state_dict(), data(seed=0))
        m.load_state_dict(recompute)
        m.eval()
    curve = CurveModel(a, a, b, bends=1)
    with torch.no_grad():
        curve.bends.add_(0.05)
    train = data(seed=0)
    res = evaluate_curve(curve, train=train, ts=[0.0, 0.5, 1.0])
    assert res.metadata["bn"] == "recompute"
    for i, t in enumerate([0.0, 0.5, 1.0]):
        state = {**curve.point(t), **buffers_of(a)}
        oracle = recompute_batchnorm(a, state, train)  # swa_utils.update_bn on a plain copy
        net = copy.deepcopy(a)
        net.load_state_dict({**state, **oracle}, strict=False)
        with torch.no_grad():
            direct = F.cross_entropy(torch.cat([net(x) for x, _ in train]),
                                     torch.cat([y for _, y in train])).item()
        assert float(res.curve["train_loss"][i]) == pytest.approx(direct, rel=1e-10)


def test_plane_through_the_endpoints_and_the_bend():
    a, b = mlp(0), mlp(1)
    curve = CurveModel(a, a, b, bends=1)
    train = data()
    with pytest.raises(ValueError, match="lies on the straight line"):
        curve_plane(curve, batches=train)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        curve.bends.add_(0.3 * torch.randn(curve.bends.shape, generator=g, dtype=torch.float64))
    plane = curve_plane(curve, batches=train, grid=5)
    w1, w2 = flatten(parameters_of(a)), flatten(parameters_of(b))
    torch.testing.assert_close(plane.control_xy[0], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(plane.control_xy[-1], torch.tensor([float((w2 - w1).norm()), 0.0],
                                                                  dtype=torch.float64))
    assert float(plane.control_xy[1, 1]) > 0  # the bend is off the line, on the +e2 side
    assert plane.curve_off_plane < 1e-9  # a one-bend Bezier curve lies in its plane
    # a grid value against the loss of the point rebuilt from its coordinates
    u = w2 - w1
    e1 = u / u.norm()
    v = curve.bends[0].detach() - w1
    e2 = (v - (v @ e1) * e1) / (v - (v @ e1) * e1).norm()
    i, j = 3, 1
    point = w1 + plane.x[j] * e1 + plane.y[i] * e2
    net = copy.deepcopy(a)
    state, offset = {}, 0
    for k, p in parameters_of(a).items():
        state[k] = point[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    with torch.no_grad():
        direct = F.cross_entropy(torch.cat([functional_call(net, state, (x,)) for x, _ in train]),
                                 torch.cat([y for _, y in train])).item()
    assert float(plane.loss[i, j]) == pytest.approx(direct, rel=1e-10)
    assert plane.metadata["axis_convention"] == "loss[i, j] is at (x[j], y[i])"


def test_curve_model_is_in_the_public_api():
    import losslab

    assert losslab.CurveModel is CurveModel and "CurveModel" in losslab.__all__
