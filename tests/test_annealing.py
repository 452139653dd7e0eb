"""SSA and SGD-SA (thesis ch. 3-4): Metropolis statistics, exact rejection, convergence,
equivalence with SGD-that-rejects, determinism and resume, closure convention, memory."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from losslab.models import create_model
from losslab.train.annealing import (
    H1,
    H2,
    SGDSA,
    SSA,
    ExponentialCooling,
    LinearCooling,
    metropolis_accept,
)

DT = torch.float64


def binomial_ok(hits: int, n: int, p: float, z: float = 4.5) -> bool:
    return abs(hits - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


def scripted(values, param=None, grad=True):
    """A closure whose k-th call returns values[k % len(values)], whatever the weights.

    With ``param`` it follows the closure convention (zero_grad + backward when grad is on).
    """
    calls = []

    def closure():
        v = torch.tensor(values[len(calls) % len(values)], dtype=DT)
        calls.append(None if param is None else param.detach().clone())
        if param is not None and torch.is_grad_enabled():
            param.grad = None
            (v + 0.0 * param.sum()).backward()
        return v

    closure.calls = calls
    return closure


def roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# -- temperature and Metropolis ----------------------------------------------------------------
def test_cooling_schedules():
    s = ExponentialCooling(2.0, 0.5)
    assert [s.temperature, s.step(), s.step()] == [2.0, 1.0, 0.5]
    t = ExponentialCooling(1.0, 0.3)
    t.load_state_dict(s.state_dict())
    assert t.temperature == 0.5 and t.alpha == 0.5
    lin = LinearCooling(1.0, 0.0, epochs=4)
    assert [lin.at(k) for k in (0, 2, 4, 9)] == [1.0, 0.5, 0.0, 0.0]
    with pytest.raises(ValueError):
        ExponentialCooling(1.0, 1.5)


@pytest.mark.parametrize("delta,temp", [(0.1, 1.0), (0.5, 1.0), (1.0, 0.5), (2.0, 1.0)])
def test_metropolis_frequency(delta, temp):
    g = torch.Generator().manual_seed(7)
    n = 40_000
    u = torch.rand(n, generator=g, dtype=DT)
    accept, prob = metropolis_accept(torch.full((n,), delta, dtype=DT), temp, u)
    p = math.exp(-delta / temp)
    assert torch.allclose(prob, torch.full_like(prob, p))
    assert binomial_ok(int(accept.sum()), n, p)


def test_metropolis_edges():
    u = torch.tensor([0.0, 0.5, 0.999], dtype=DT)
    for d in (0.0, -1.0):  # not worse: always, at any T (also T = 0, where 0/0 must not leak)
        for temp in (0.0, 1.0):
            assert metropolis_accept(torch.full((3,), d, dtype=DT), temp, u)[0].all()
    assert not metropolis_accept(torch.full((3,), 1e-9, dtype=DT), 0.0, u)[0].any()
    assert not metropolis_accept(torch.full((3,), math.inf, dtype=DT), 1.0, u)[0].any()
    assert not metropolis_accept(torch.full((3,), math.nan, dtype=DT), 1.0, u)[0].any()


@pytest.mark.parametrize("opt_cls", [SSA, SGDSA])
def test_counters_match_metropolis(opt_cls):
    # Every step is worse by exactly d: L0 = 0, the candidate(s) d (SSA: 3 calls, SGD-SA: 2).
    d, temp, scale, n = 3.0, 2.0, 0.5, 3000
    w = torch.nn.Parameter(torch.zeros(3, dtype=DT))
    opt = opt_cls([w], temperature=temp, loss_scale=scale, seed=1)
    closure = scripted([0.0, d, d] if opt_cls is SSA else [0.0, d], w)
    for _ in range(n):
        opt.step(closure)
    out = opt.epoch_end()
    p = math.exp(-d * scale / temp)
    assert out["steps"] == n and out["improving_moves"] == 0 and out["neutral_moves"] == 0
    assert out["worsening_accepted"] + out["worsening_rejected"] == n
    assert out["mean_acceptance_prob"] == pytest.approx(p, rel=1e-12)
    assert binomial_ok(out["worsening_accepted"], n, p)
    assert out["temperature"] == temp and opt.temperature == pytest.approx(temp * opt.cooling.alpha)
    assert opt.epoch_end()["steps"] == 0  # counters were reset


# -- exactness ----------------------------------------------------------------------------------
def _weird_params():
    g = torch.Generator().manual_seed(3)
    return [torch.nn.Parameter(torch.randn(shape, generator=g) * 10 ** torch.randint(-8, 8, shape,
                                                                                       generator=g))
            for shape in [(7, 5), (13,), (2, 3, 4)]]


def test_ssa_rejection_restores_bitwise():
    params = _weird_params()
    before = [p.detach().clone() for p in params]
    opt = SSA(params, eps=0.3, temperature=0.0, seed=0)
    for _ in range(20):
        opt.step(scripted([0.0, 1.0, 2.0]))
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))
    assert opt.epoch_end()["worsening_rejected"] == 20


@pytest.mark.parametrize("values,which", [([1.0, 0.0, 0.5], 1), ([1.0, 0.5, 0.0], 2),
                                          ([1.0, 2.0, 2.0], 0)])
def test_ssa_moves_to_the_evaluated_candidate(values, which):
    # A reject leaves w bitwise and w - eps*Delta is kept in place bitwise; w + eps*Delta is
    # rebuilt as the mirror 2w - b of b = fl(2w - a), a the evaluated point. They differ by two
    # roundings (of b and of the mirror), each at most half an ulp of the largest of |w|, |a|,
    # |b|; the bound below is 1.5 ulps of it, leaving room for the mirror exceeding |a|.
    # The weights span small and large magnitudes so that eps*Delta dominates for some entries.
    g = torch.Generator().manual_seed(11)
    (w,) = params = [torch.nn.Parameter(torch.randn(1000, generator=g)
                                        * 10.0 ** torch.randint(-3, 4, (1000,), generator=g))]
    opt = SSA(params, eps=0.37, temperature=0.0, seed=5)
    for _ in range(5):
        closure = scripted(values, w)
        opt.step(closure)
        if which == 1:
            largest = torch.stack(closure.calls).abs().amax(dim=0)
            three_half_ulps = 1.5 * torch.finfo(w.dtype).eps * largest
            assert ((w - closure.calls[1]).abs() <= three_half_ulps).all()
            assert not torch.equal(w, closure.calls[0])
        else:
            assert torch.equal(w, closure.calls[which])
        assert not torch.equal(closure.calls[1], closure.calls[2])


def test_sgdsa_rejection_restores_bitwise():
    params = _weird_params()
    before = [p.detach().clone() for p in params]
    opt = SGDSA(params, lrs=[3.0], temperature=0.0, seed=0)

    def closure():  # a quadratic: with eta = 3 every step overshoots and worsens
        loss = sum((p.double() ** 2).sum() for p in params)
        if torch.is_grad_enabled():
            opt.zero_grad()
            loss.backward()
        return loss

    for _ in range(10):
        opt.step(closure)
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))
    # A step to inf (loss inf, then NaN) is rejected and still restored exactly.
    opt2 = SGDSA(params, lrs=[1e300], temperature=1.0, seed=0)
    opt2.step(closure)
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))


# -- behaviour ---------------------------------------------------------------------------------
def test_ssa_decreases_a_convex_quadratic():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(10, 10, generator=g, dtype=DT) / 3 + torch.eye(10, dtype=DT)
    b = torch.randn(10, generator=g, dtype=DT)
    w = torch.nn.Parameter(torch.zeros(10, dtype=DT))

    def f():
        return ((a @ w - b) ** 2).sum()

    f0 = f().item()
    opt = SSA([w], eps=0.05, temperature=1e-3, seed=0)
    for _ in range(6):
        for _ in range(60):
            opt.step(f)
        opt.epoch_end()
    assert f().item() < 0.05 * f0


def test_ssa_eps_drops_only_when_improving_share_is_low():
    w = torch.nn.Parameter(torch.zeros(2, dtype=DT))
    opt = SSA([w], eps=1e-2, temperature=1.0, improve_bound=0.6, seed=0)
    for _ in range(10):
        opt.step(scripted([1.0, 0.5, 0.7]))  # improving
    out = opt.epoch_end()
    assert out["improving_share"] == 1.0 and out["eps_drops"] == 0 and out["eps"] == 1e-2
    for _ in range(10):
        opt.step(scripted([1.0, 1.5, 1.7]))  # worsening
    out = opt.epoch_end()
    assert out["improving_share"] == 0.0 and out["eps_drops"] == 1 and out["eps"] == 1e-2
    assert opt.param_groups[0]["eps"] == pytest.approx(1e-3)
    for _ in range(10):
        opt.step(scripted([1.0, 1.0, 1.0]))  # ties are not worsening: no drop
    out = opt.epoch_end()
    assert out["neutral_moves"] == 10 and out["eps_drops"] == 1


def test_sgdsa_single_rate_zero_temperature_is_sgd_that_rejects_worse_steps():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(256, 6, generator=g, dtype=DT), torch.randint(0, 3, (256,), generator=g)
    w0 = torch.randn(6, 3, generator=g, dtype=DT)
    lr = 10.0  # large enough that some steps worsen the minibatch loss

    def loss_of(w, i):
        return F.cross_entropy(x[i:i + 32] @ w, y[i:i + 32])

    w = torch.nn.Parameter(w0.clone())
    opt = SGDSA([w], lrs=[lr], temperature=0.0, seed=0)
    ref = w0.clone()
    rejected = improved = 0
    for _ in range(3):
        for i in range(0, 256, 32):
            def closure(i=i):
                loss = loss_of(w, i)
                if torch.is_grad_enabled():
                    opt.zero_grad()
                    loss.backward()
                return loss
            opt.step(closure)
            r = ref.clone().requires_grad_(True)
            l0 = loss_of(r, i)
            (grad,) = torch.autograd.grad(l0, r)
            cand = ref - lr * grad
            if loss_of(cand, i) <= l0.detach():
                ref = cand
        out = opt.epoch_end()
        assert out["mean_lr"] == lr and out["worsening_accepted"] == 0
        rejected, improved = rejected + out["worsening_rejected"], improved + out["improving_moves"]
        torch.testing.assert_close(w.detach(), ref, rtol=0, atol=1e-12)
    assert rejected > 0 and improved > 0


def test_lr_sets():
    assert H1 == (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.09, 0.08, 0.07, 0.06, 0.05)
    assert H2 == (0.5, 0.4, 0.3, 0.2, 0.1, 0.09, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03, 0.02, 0.01)
    w = torch.nn.Parameter(torch.zeros(2, dtype=DT))
    assert SGDSA([w], lrs="h2").lrs == H2
    with pytest.raises(ValueError):
        SGDSA([w], lrs="H3")
    # eta is uniform over H: the mean drawn rate over many steps is H's mean.
    opt = SGDSA([w], lrs="H1", seed=0)
    for _ in range(4000):
        opt.step(scripted([0.0, 0.0], w))
    assert opt.epoch_end()["mean_lr"] == pytest.approx(sum(H1) / len(H1), rel=0.03)


# -- determinism and resume ---------------------------------------------------------------------
def _problem(opt_cls, seed, **kw):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 5, generator=g, dtype=DT)
    b = torch.randn(8, generator=g, dtype=DT)
    w = torch.nn.Parameter(torch.ones(5, dtype=DT))
    opt = opt_cls([w], seed=seed, temperature=0.5, **kw)

    def closure():
        loss = ((a @ w - b) ** 2).mean()
        if torch.is_grad_enabled():
            opt.zero_grad()
            loss.backward()
        return loss

    return w, opt, closure


def _run(opt, closure, w, steps, epoch_every=7):
    traj = []
    for k in range(steps):
        opt.step(closure)
        if k % epoch_every == epoch_every - 1:
            opt.epoch_end()
        traj.append(w.detach().clone())
    return traj


@pytest.mark.parametrize("opt_cls,kw", [(SSA, {"eps": 0.1}), (SGDSA, {"lrs": "H2"})])
def test_same_seed_same_trajectory_and_exact_resume(opt_cls, kw):
    w1, o1, c1 = _problem(opt_cls, 11, **kw)
    w2, o2, c2 = _problem(opt_cls, 11, **kw)
    t1, t2 = _run(o1, c1, w1, 30), _run(o2, c2, w2, 30)
    assert all(torch.equal(a, b) for a, b in zip(t1, t2, strict=True))
    w3, o3, c3 = _problem(opt_cls, 12, **kw)
    assert not torch.equal(_run(o3, c3, w3, 30)[-1], t1[-1])

    # Resume: 17 steps (two epoch ends and a partial epoch), save, rebuild, load, continue.
    w4, o4, c4 = _problem(opt_cls, 11, **kw)
    _run(o4, c4, w4, 17)
    state, weights = roundtrip(o4.state_dict()), w4.detach().clone()
    assert all("saved" not in s for s in state["state"].values())
    rest = _run(o4, c4, w4, 13)
    w5, o5, c5 = _problem(opt_cls, 999, **kw)
    with torch.no_grad():
        w5.copy_(weights)
    o5.load_state_dict(state)
    assert o5.temperature == o4.cooling.at(2)
    rest2 = _run(o5, c5, w5, 13)
    assert all(torch.equal(a, b) for a, b in zip(rest, rest2, strict=True))
    assert o4.epoch_end() == pytest.approx(o5.epoch_end(), nan_ok=True)


# -- real modules, closure convention, non-differentiable objective, memory, no syncs ------------
def _digits_batch(n=64):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_sgdsa_trains_small_cnn():
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    x, y = _digits_batch()
    opt = SGDSA(model.parameters(), lrs="H2")

    def closure():
        loss = F.cross_entropy(model(x), y)
        if torch.is_grad_enabled():
            opt.zero_grad()
            loss.backward()
        return loss

    first = opt.step(closure)
    assert first.dim() == 0 and not first.requires_grad
    for _ in range(40):
        last = opt.step(closure)
    assert last < first
    out = opt.epoch_end()
    assert out["steps"] == 41 and out["improving_moves"] > 0
    for p in model.parameters():  # one parameter-sized buffer each, nothing else
        (buf,) = opt.state[p].values()
        assert buf.shape == p.shape and buf.data_ptr() != p.data_ptr()


def test_ssa_optimizes_error_rate_of_small_cnn():
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    x, y = _digits_batch()
    opt = SSA(model.parameters(), eps=0.05, temperature=1e-4, seed=3)
    grad_calls = []

    def closure():  # the error rate: piecewise constant, no gradient anywhere
        grad_calls.append(torch.is_grad_enabled())
        return (model(x).argmax(dim=1) != y).double().mean()

    start = closure()
    with torch.no_grad():
        before = [p.clone() for p in model.parameters()]
    for _ in range(40):
        opt.step(closure)
    assert closure() < start
    assert len(grad_calls) == 122 and not any(grad_calls[1:-1])
    out = opt.epoch_end()
    assert out["steps"] == 40 and out["improving_moves"] > 0
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    for p in model.parameters():
        assert len(opt.state[p]) == 1 and opt.state[p]["saved"].numel() == p.numel()


def _step_without_host_syncs(opt, closure, monkeypatch, steps: int = 3) -> None:
    """One step (lazy buffers), then ``steps`` more with every device-to-host read raising."""
    opt.step(closure)

    def boom(*a, **k):
        raise AssertionError("host sync inside step")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, boom)
    for _ in range(steps):
        opt.step(closure)
    monkeypatch.undo()


@pytest.mark.parametrize("opt_cls", [SSA, SGDSA])
def test_step_never_reads_device_values(opt_cls, monkeypatch):
    w, opt, closure = _problem(opt_cls, 0)
    _step_without_host_syncs(opt, closure, monkeypatch)
    assert opt.epoch_end()["steps"] == 4


def test_argument_checks():
    w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError):
        SSA([w], eps=0)
    with pytest.raises(ValueError):
        SSA([w], loss_scale=0)
    with pytest.raises(ValueError):
        SSA([w], generator=torch.Generator(), seed=1)
    with pytest.raises(ValueError):
        SGDSA([w], lrs=[])


# -- the objective's mode and the buffers (BatchNorm) ---------------------------------------------
def _bn_net(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                              torch.nn.Dropout(0.2), torch.nn.Linear(16, 3))
    g = torch.Generator().manual_seed(seed + 1)
    x, y = torch.randn(32, 6, generator=g) * 3 + 1, torch.randint(0, 3, (32,), generator=g)
    return net.train(), x, y


def _model_closure(net, x, y, opt_box, modes=None):
    def closure():
        if modes is not None:
            modes.append(net.training)
        loss = F.cross_entropy(net(x), y)
        if torch.is_grad_enabled():
            opt_box[0].zero_grad()
            loss.backward()
        return loss.detach()
    return closure


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _assert_same(net, before):
    now = net.state_dict()
    assert set(now) == set(before)
    for k, v in before.items():
        assert torch.equal(now[k], v), k  # bitwise: parameters and buffers


def _make(opt_cls, net, mode, temperature, **kw):
    lr, eps = kw.pop("lr", 50.0), kw.pop("eps", 10.0)
    extra = {"lrs": [lr]} if opt_cls is SGDSA else {"eps": eps}
    kwargs = {} if mode is None else {"objective_mode": mode}
    return opt_cls(net.parameters(), temperature=temperature, seed=0, module=net, **extra,
                   **kwargs, **kw)


@pytest.mark.parametrize("opt_cls", [SSA, SGDSA])
@pytest.mark.parametrize("mode", [None, "eval", "train"])  # None: the default (eval)
def test_a_rejected_move_restores_every_parameter_and_buffer(opt_cls, mode):
    net, x, y = _bn_net()
    for _ in range(3):  # running statistics away from their initial values
        net(x)
    before = _state(net)
    box = [None]
    opt = box[0] = _make(opt_cls, net, mode, temperature=0.0)  # T = 0: no worse move is kept
    for _ in range(3):
        opt.step(_model_closure(net, x, y, box))
    out = opt.epoch_end()
    assert out["worsening_rejected"] == 3  # the forced rejections happened
    _assert_same(net, before)
    assert net.training and all(m.training for m in net.modules())


def test_the_objective_is_judged_in_eval_mode_by_default():
    from losslab.runs.config import load_config
    from losslab.train.optim import build_optimizer

    net, x, y = _bn_net()
    assert SSA(net.parameters(), module=net).guard.mode == "eval"
    assert SGDSA(net.parameters(), module=net).guard.mode == "eval"
    for name in ("ssa", "sgdsa"):
        cfg = load_config(overrides=[f"optimizer.name={name}", "schedule.name=constant"])
        assert cfg.optimizer.annealing.objective_mode == "eval"
        opt = build_optimizer(cfg.optimizer, net, seed=0, batch_size=64)
        assert opt.guard.module is net and opt.guard.mode == "eval"
    with pytest.raises(ValueError, match="objective_mode"):
        SSA(net.parameters(), module=net, objective_mode="test")
    # Which mode each closure call ran in; a submodule the caller froze in eval stays frozen.
    net[1].eval()
    for opt_cls, mode, expected in [(SSA, "eval", [False] * 3), (SSA, "train", [True] * 3),
                                    (SGDSA, "eval", [False, True, False]),
                                    (SGDSA, "train", [True, True])]:
        box, modes = [None], []
        opt = box[0] = _make(opt_cls, net, mode, temperature=1.0, lr=0.01, eps=0.01)
        opt.step(_model_closure(net, x, y, box, modes))
        assert modes == expected, (opt_cls.__name__, mode)
        assert net.training and not net[1].training and net[0].training


def _forward_stats(net, params, x):
    """The buffers after one train-mode forward of ``x`` at ``params`` from net's buffers."""
    import copy

    twin = copy.deepcopy(net).train()
    with torch.no_grad():
        for p, q in zip(twin.parameters(), params, strict=True):
            p.copy_(q)
        twin(x)
    return {k: v for k, v in twin.state_dict().items() if "running" in k or "tracked" in k}


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_an_accepted_sgdsa_move_keeps_the_gradient_pass_statistics(mode):
    # SGD's own update of the running statistics (the forward pass at w) is part of the move;
    # a train-mode trial evaluation at w' is not.
    net, x, y = _bn_net()
    expected = _forward_stats(net, [p.detach() for p in net.parameters()], x)
    box = [None]
    opt = box[0] = _make(SGDSA, net, mode, temperature=1e12, lr=1e-3)  # every move is kept
    opt.step(_model_closure(net, x, y, box))
    assert opt.epoch_end()["worsening_rejected"] == 0
    for k, v in expected.items():
        assert torch.equal(net.state_dict()[k], v), k


def test_an_accepted_ssa_move_carries_its_own_statistics():
    for mode in ("eval", "train"):
        for seed in range(4):  # both candidates get kept across these seeds
            net, x, y = _bn_net(seed)
            before = _state(net)
            box = [None]
            opt = box[0] = _make(SSA, net, mode, temperature=1e12, eps=0.05)
            opt.step(_model_closure(net, x, y, box))
            assert opt.epoch_end()["worsening_rejected"] == 0
            if mode == "eval":  # eval-mode evaluations never touch the buffers
                stats = {k: v for k, v in before.items() if "running" in k or "tracked" in k}
            else:  # the buffers one train-mode forward at the kept point gives, from the old
                start, _, _ = _bn_net(seed)
                start.load_state_dict(before)
                stats = _forward_stats(start, [p.detach() for p in net.parameters()], x)
            for k, v in stats.items():
                torch.testing.assert_close(net.state_dict()[k], v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opt_cls", [SSA, SGDSA])
def test_steps_with_a_module_never_read_device_values(opt_cls, monkeypatch):
    net, x, y = _bn_net()
    box = [None]
    for mode in ("eval", "train"):
        opt = box[0] = _make(opt_cls, net, mode, temperature=1.0, lr=0.1, eps=0.1)
        closure = _model_closure(net, x, y, box)
        _step_without_host_syncs(opt, closure, monkeypatch)
        assert opt.epoch_end()["steps"] == 4


# -- the per-move record (thesis Figs 3.3 and 4.1) ------------------------------------------------
@pytest.mark.parametrize("opt_cls", [SSA, SGDSA])
def test_per_move_probabilities_are_recorded_for_worsening_moves(opt_cls):
    # Steps alternate: worse by d (probability exp(-d/T)), then better (not recorded).
    d, temp = 0.7, 1.0
    w = torch.nn.Parameter(torch.zeros(3, dtype=DT))
    opt = opt_cls([w], temperature=temp, seed=3)
    worse = scripted([0.0, d, d] if opt_cls is SSA else [0.0, d], w)
    better = scripted([1.0, 0.0, 0.5] if opt_cls is SSA else [1.0, 0.0], w)
    for k in range(300):  # past the initial 256-slot record: it grows
        opt.step(worse if k % 2 == 0 else better)
    out = opt.epoch_end()
    moves = opt.last_moves
    assert moves["step"] == list(range(0, 300, 2))
    assert moves["prob"] == pytest.approx([math.exp(-d / temp)] * 150, rel=1e-12)
    assert sum(moves["accepted"]) == out["worsening_accepted"]
    assert set(moves["accepted"]) <= {0, 1}
    opt.epoch_end()
    assert opt.last_moves == {"step": [], "prob": [], "accepted": []}


# -- the thesis's loss scale ------------------------------------------------------------------------
def test_the_thesis_loss_scale_divides_by_512_whatever_the_batch_size():
    from losslab.runs.config import load_config
    from losslab.train.annealing import THESIS_BATCH_SIZE
    from losslab.train.optim import build_optimizer

    assert THESIS_BATCH_SIZE == 512
    net, _, _ = _bn_net()
    for name in ("ssa", "sgdsa"):
        for batch in (32, 64, 512, 1000):
            cfg = load_config(overrides=[f"optimizer.name={name}", "schedule.name=constant",
                                         f"data.batch_size={batch}",
                                         "optimizer.annealing.thesis_loss_scale=true"])
            opt = build_optimizer(cfg.optimizer, net, seed=0, batch_size=batch)
            assert opt.loss_scale == 1 / 512
        cfg = load_config(overrides=[f"optimizer.name={name}", "schedule.name=constant"])
        assert build_optimizer(cfg.optimizer, net, seed=0, batch_size=64).loss_scale == 1.0
    # The Metropolis Δ is (L1 - L0) / 512: a worsening of 512 at T = 1 has p = e^-1.
    w = torch.nn.Parameter(torch.zeros(2, dtype=DT))
    opt = SGDSA([w], lrs=[0.1], temperature=1.0, loss_scale=1 / 512, seed=0)
    opt.step(scripted([0.0, 512.0], w))
    assert opt.epoch_end()["mean_acceptance_prob"] == pytest.approx(math.exp(-1.0), rel=1e-12)


def test_the_restart_threshold_and_loss_estimate_use_the_512_scale():
    from losslab.data import load_dataset
    from losslab.runs.config import load_config
    from losslab.train.restarts_analysis import _squared_errors
    from losslab.train.run import _cold_restart

    for batch in (32, 128):
        cfg = load_config(overrides=[f"data.batch_size={batch}", "restarts.eps=1e-4",
                                     "restarts.thesis_loss_scale=true"])
        splits = load_dataset("digits", None)
        assert _cold_restart(cfg, splits, torch.device("cpu")).loss_scale == 1 / 512
    # Four batches of 2 with mean losses 1, 2, 3, 4 (full mean 2.5) and a last partial one.
    sums = torch.tensor([2.0, 4.0, 6.0, 8.0, 5.0], dtype=DT)
    sizes = torch.tensor([2.0, 2.0, 2.0, 2.0, 1.0], dtype=DT)
    full = 25.0 / 9
    errors = _squared_errors(sums, sizes, 2, 1 / 512, 5, 50, torch.Generator().manual_seed(0))
    assert len(errors[4]) == 0  # only 4 whole batches to draw
    assert errors[3] == pytest.approx([((2.5 - full) / 512) ** 2] * 50, rel=1e-9)
    singles = {round(e * 512 ** 2, 9) for e in errors[0]}
    assert singles <= {round((m - full) ** 2, 9) for m in (1, 2, 3, 4)} and len(singles) > 1
