"""Checkpoint repulsion: both gradient paths against autograd of an independent reference."""

import io
import math

import pytest
import torch
from torch import nn

from losslab.train.repulsion import CheckpointRepulsion

D = torch.float64


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 5),
        nn.Linear(5, 2, bias=False),
    ).to(D)


def _perturb(model: nn.Module, scale: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _counted(model, weights_only):
    return {
        n: p
        for n, p in model.named_parameters()
        if p.requires_grad and (not weights_only or p.ndim > 1)
    }


def _reference(model, anchors, s, width, weights_only, merge=False):
    """Plain loop over named parameters; ``anchors`` a list of name -> tensor dicts (active only)."""
    params = _counted(model, weights_only)
    if merge:
        if not anchors:
            return torch.zeros((), dtype=D)
        anchors = [{n: sum(a[n] for a in anchors) / len(anchors) for n in params}]
    total = torch.zeros((), dtype=D)
    for a in anchors:
        d = sum(((p - a[n]) ** 2).sum() for n, p in params.items())
        total = total + s * torch.exp(-d / (2 * width))
    return total


def _snap(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _check_both_paths(model, rep, active_snaps, s, width, weights_only, merge=False):
    params = _counted(model, weights_only)
    ref = _reference(model, active_snaps, s, width, weights_only, merge)
    names = list(params)
    ref_grads = torch.autograd.grad(ref, [params[n] for n in names], allow_unused=True)
    ref_grads = [
        torch.zeros_like(params[n]) if g is None else g
        for n, g in zip(names, ref_grads, strict=True)
    ]

    # differentiable forward
    value = rep(model)
    assert value.dim() == 0
    torch.testing.assert_close(value, ref.detach(), rtol=1e-12, atol=1e-14)
    grads = torch.autograd.grad(value, [params[n] for n in names], allow_unused=True)
    for n, g, r in zip(names, grads, ref_grads, strict=True):
        g = torch.zeros_like(r) if g is None else g
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-14, msg=n)

    # add_gradient_
    model.zero_grad(set_to_none=True)
    value2 = rep.add_gradient_(model)
    torch.testing.assert_close(value2, ref.detach(), rtol=1e-12, atol=1e-14)
    for n, r in zip(names, ref_grads, strict=True):
        torch.testing.assert_close(params[n].grad, r, rtol=1e-10, atol=1e-14, msg=n)
    # parameters that are not counted get no gradient
    for n, p in model.named_parameters():
        if n not in params:
            assert p.grad is None, n

    # the flat gradient
    flat = rep.penalty_gradient(model)
    torch.testing.assert_close(flat, torch.cat([r.reshape(-1) for r in ref_grads]))
    return ref


@pytest.mark.parametrize("weights_only", [False, True])
@pytest.mark.parametrize("k", [1, 3])
def test_gradients_match_autograd(weights_only, k):
    model = _model()
    s, width = 7.0, 0.5
    rep = CheckpointRepulsion(strength=s, width=width, weights_only=weights_only)
    snaps = []
    for i in range(k):
        snaps.append(_snap(model))
        assert rep.add_checkpoint(model) == i
        _perturb(model, 0.1, seed=i)
    assert rep.num_checkpoints == k
    assert rep.parameter_names == list(_counted(model, weights_only))
    ref = _check_both_paths(model, rep, snaps, s, width, weights_only)
    assert ref.item() > 0.1  # the test exercises a non-trivial region of the kernel


def test_weights_only_selects_matrices():
    model = _model()
    rep = CheckpointRepulsion(1.0, 1.0, weights_only=True)
    rep.add_checkpoint(model)
    assert rep.parameter_names == ["0.weight", "4.weight", "5.weight"]
    rep_all = CheckpointRepulsion(1.0, 1.0)
    rep_all.add_checkpoint(model)
    assert "1.weight" in rep_all.parameter_names and "0.bias" in rep_all.parameter_names
    assert not any("running" in n for n in rep_all.parameter_names)
    assert rep_all.num_parameters == sum(p.numel() for p in model.parameters())


def test_frozen_parameters_do_not_count():
    model = _model()
    model[4].bias.requires_grad_(False)
    rep = CheckpointRepulsion(1.0, 1.0)
    rep.add_checkpoint(model)
    assert "4.bias" not in rep.parameter_names
    _perturb(model, 0.1, 0)
    _check_both_paths(model, rep, [_snap(model)] * 0 + [rep.checkpoint(0)], 1.0, 1.0, False)


@pytest.mark.parametrize("weights_only", [False, True])
def test_merged(weights_only):
    model = _model()
    s, width = 3.0, 0.7
    rep = CheckpointRepulsion(s, width, merge=True, weights_only=weights_only)
    snaps = []
    for i in range(3):
        snaps.append(_snap(model))
        rep.add_checkpoint(model)
        _perturb(model, 0.1, seed=10 + i)
    _check_both_paths(model, rep, snaps, s, width, weights_only, merge=True)
    # merge over active checkpoints only
    rep2 = CheckpointRepulsion(s, width, merge=True, weights_only=weights_only)
    rep2.add_checkpoint(snaps[0], start_epoch=0, end_epoch=2)
    rep2.add_checkpoint(snaps[1], start_epoch=1)
    rep2.add_checkpoint(snaps[2], start_epoch=3)
    rep2.set_epoch(2)
    _check_both_paths(model, rep2, [snaps[1]], s, width, weights_only, merge=True)
    rep2.set_epoch(1)
    _check_both_paths(model, rep2, snaps[:2], s, width, weights_only, merge=True)


def test_merged_no_active_is_zero():
    model = _model()
    rep = CheckpointRepulsion(3.0, 1.0, merge=True)
    rep.add_checkpoint(model, start_epoch=5)
    rep.set_epoch(0)
    assert rep(model).item() == 0.0
    model.zero_grad(set_to_none=True)
    assert rep.add_gradient_(model).item() == 0.0
    assert all((p.grad == 0).all() for p in model.parameters())


def test_windows():
    model = _model()
    s, width = 2.0, 0.5
    rep = CheckpointRepulsion(s, width)
    snaps = []
    windows = [(0, 2), (1, None), (3, 4)]
    for i, (a, b) in enumerate(windows):
        snaps.append(_snap(model))
        rep.add_checkpoint(model, start_epoch=a, end_epoch=b)
        _perturb(model, 0.1, seed=20 + i)
    assert rep.start_epochs.tolist() == [0, 1, 3] and rep.end_epochs.tolist() == [2, -1, 4]
    # before set_epoch: all active
    assert rep.active.tolist() == [1.0, 1.0, 1.0]
    _check_both_paths(model, rep, snaps, s, width, False)
    expected = {0: [0], 1: [0, 1], 2: [1], 3: [1, 2], 4: [1], 10: [1]}
    for epoch, act in expected.items():
        rep.set_epoch(epoch)
        assert rep.active.tolist() == [float(c in act) for c in range(3)]
        _check_both_paths(model, rep, [snaps[c] for c in act], s, width, False)
    # distances cover all checkpoints whatever the window
    assert rep.distances(model).shape == (3,)


def test_penalty_closed_form():
    model = nn.Linear(2, 1, bias=False).to(D)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 0.0]]))
    rep = CheckpointRepulsion(strength=5.0, width=2.0)
    rep.add_checkpoint(model)
    rep.add_checkpoint({"weight": torch.tensor([[3.0, 4.0]], dtype=D)})
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0]]))
    # d = 1 and (2² + 4²) = 20
    expected = 5.0 * (math.exp(-1 / 4) + math.exp(-20 / 4))
    assert rep(model).item() == pytest.approx(expected, rel=1e-14)
    grad = rep.penalty_gradient(model)
    e1, e2 = 5.0 * math.exp(-1 / 4), 5.0 * math.exp(-20 / 4)
    exp_grad = [-(e1 * 1.0 + e2 * (1 - 3)) / 2.0, -(e1 * 0.0 + e2 * (0 - 4)) / 2.0]
    torch.testing.assert_close(grad, torch.tensor(exp_grad, dtype=D))
    torch.testing.assert_close(rep.distances(model), torch.tensor([1.0, math.sqrt(20)], dtype=D))


def test_add_gradient_accumulates():
    model = _model()
    rep = CheckpointRepulsion(4.0, 0.5)
    rep.add_checkpoint(model)
    _perturb(model, 0.1, 1)
    model.zero_grad(set_to_none=True)
    rep.add_gradient_(model)
    penalty_only = {n: p.grad.clone() for n, p in model.named_parameters()}
    existing = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.grad = existing[n].clone()
    rep.add_gradient_(model)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, existing[n] + penalty_only[n])
    # creates .grad for parameters that have none, and builds no graph
    model.zero_grad(set_to_none=True)
    value = rep.add_gradient_(model)
    assert not value.requires_grad
    assert all(p.grad is not None and p.grad.grad_fn is None for p in model.parameters())


def test_shadow_mode():
    model = _model()
    rep = CheckpointRepulsion(strength=0.0, width=1.0)
    snap = _snap(model)
    rep.add_checkpoint(model)
    _perturb(model, 0.1, 2)
    assert rep(model).item() == 0.0
    model.zero_grad(set_to_none=True)
    assert rep.add_gradient_(model).item() == 0.0
    assert all((p.grad == 0).all() for p in model.parameters())
    assert (rep.penalty_gradient(model) == 0).all()
    hand = math.sqrt(
        sum(((p.detach() - snap[n]) ** 2).sum().item() for n, p in model.named_parameters())
    )
    assert rep.distances(model).item() == pytest.approx(hand, rel=1e-12)


def test_distances_by_hand():
    model = _model()
    snaps = []
    rep = CheckpointRepulsion(1.0, 1.0, weights_only=True)
    for i in range(3):
        snaps.append(_snap(model))
        rep.add_checkpoint(model)
        _perturb(model, 0.05 * (i + 1), 30 + i)
    counted = _counted(model, True)
    hand = [
        math.sqrt(sum(((p.detach() - s[n]) ** 2).sum().item() for n, p in counted.items()))
        for s in snaps
    ]
    dist = rep.distances(model)
    assert dist.tolist() == pytest.approx(hand, rel=1e-12)
    # a Mapping works too (extra keys such as buffers are ignored)
    state = model.state_dict()
    assert rep.distances(state).tolist() == pytest.approx(hand, rel=1e-12)
    torch.testing.assert_close(rep(state), rep(model))
    torch.testing.assert_close(
        rep.flat_parameters(model), torch.cat([p.reshape(-1) for p in counted.values()])
    )


def test_mapping_source_skips_buffers():
    model = _model()
    rep = CheckpointRepulsion(1.0, 1.0)
    rep.add_checkpoint(model.state_dict())
    assert rep.parameter_names == [n for n, _ in model.named_parameters()]


def test_state_dict_round_trip_and_to():
    model = _model()
    rep = CheckpointRepulsion(3.0, 0.5, weights_only=True)
    for i in range(3):
        rep.add_checkpoint(model, start_epoch=i, end_epoch=None if i != 1 else 5)
        _perturb(model, 0.1, 40 + i)
    rep.set_epoch(2)
    buf = io.BytesIO()
    torch.save(rep.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)

    fresh = CheckpointRepulsion(3.0, 0.5, weights_only=True)
    fresh.load_state_dict(state)
    assert fresh.num_checkpoints == 3
    assert fresh.parameter_names == rep.parameter_names
    assert fresh.epoch == 2
    for name in ("anchors", "start_epochs", "end_epochs", "active"):
        assert torch.equal(getattr(fresh, name), getattr(rep, name)), name
    assert fresh.anchors.dtype == D
    torch.testing.assert_close(fresh(model), rep(model))
    torch.testing.assert_close(fresh.penalty_gradient(model), rep.penalty_gradient(model))

    # load into an instance that already has a different number of checkpoints
    other = CheckpointRepulsion(3.0, 0.5, weights_only=True)
    other.add_checkpoint(model)
    other.load_state_dict(state)
    assert torch.equal(other.anchors, rep.anchors)

    f32 = fresh.to(torch.float32)
    assert f32.anchors.dtype == torch.float32 and f32.active.dtype == torch.float32
    assert f32.start_epochs.dtype == torch.int64
    model32 = model.to(torch.float32)
    torch.testing.assert_close(
        f32.distances(model32), rep.distances(model).float(), rtol=1e-5, atol=1e-6
    )
    model32.zero_grad(set_to_none=True)
    f32.add_gradient_(model32)
    assert all(p.grad.dtype == torch.float32 for p in _counted(model32, True).values())


def test_anchors_are_copies():
    model = _model()
    before = _snap(model)
    rep = CheckpointRepulsion(1.0, 1.0)
    rep.add_checkpoint(model)
    after = _snap(model)
    assert all(torch.equal(before[n], after[n]) for n in before)
    anchors = rep.anchors.clone()
    _perturb(model, 1.0, 50)
    assert torch.equal(rep.anchors, anchors)
    # the same through a mapping source
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    rep.add_checkpoint(state)
    anchors = rep.anchors.clone()
    for t in state.values():
        t.add_(1.0)
    assert torch.equal(rep.anchors, anchors)


def test_bad_arguments():
    with pytest.raises(ValueError, match="width.*0"):
        CheckpointRepulsion(1.0, 0.0)
    with pytest.raises(ValueError, match="width=-1.0"):
        CheckpointRepulsion(1.0, -1.0)
    with pytest.raises(ValueError, match="strength=-0.5"):
        CheckpointRepulsion(-0.5, 1.0)
    rep = CheckpointRepulsion(1.0, 1.0)
    with pytest.raises(ValueError, match="end_epoch"):
        rep.add_checkpoint(_model(), start_epoch=3, end_epoch=3)


def test_before_the_first_checkpoint_there_is_no_penalty():
    model = _model().double()
    rep = CheckpointRepulsion(1.0, 1.0)
    value = rep(model)
    assert value.item() == 0.0 and value.dtype == torch.float64 and value.ndim == 0
    assert rep(dict(model.named_parameters())).item() == 0.0
    assert rep.add_gradient_(model).item() == 0.0
    assert all(p.grad is None for p in model.parameters())  # nothing was added
    assert rep.distances(model).shape == (0,)
    rep.add_checkpoint(model)  # from then on, as usual
    assert rep(model).item() == pytest.approx(1.0)


def test_bad_checkpoints_name_the_parameter():
    model = _model()
    rep = CheckpointRepulsion(1.0, 1.0)
    rep.add_checkpoint(model)
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    missing = dict(state)
    del missing["4.bias"]
    with pytest.raises(KeyError, match="4.bias"):
        rep.add_checkpoint(missing)
    bad = dict(state)
    bad["5.weight"] = torch.zeros(3, 5, dtype=D)
    with pytest.raises(ValueError, match="5.weight"):
        rep.add_checkpoint(bad)
    other = nn.Sequential(nn.Linear(3, 3)).to(D)
    with pytest.raises(ValueError, match="0.weight"):
        rep.add_checkpoint(other)
    with pytest.raises(ValueError, match="5.weight"):
        rep(bad)
    assert rep.num_checkpoints == 1
    # a model with an extra trainable parameter is a different model
    bigger = _model()
    bigger.add_module("6", nn.Linear(2, 2).to(D))
    with pytest.raises(KeyError, match="6.weight"):
        rep.add_checkpoint(bigger)
