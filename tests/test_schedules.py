"""Tests of losslab.train.schedules: agreement with torch's schedulers, exact resume,
param groups, snapshot/member steps and the epoch-based factory.

Comparisons are in float64 (Python floats). Where our closed form and torch's use the same
arithmetic we require bit-for-bit equality with torch's ``_get_closed_form_lr()``; torch's
*recursive* ``step()`` forms (StepLR, MultiStepLR, LinearLR, CosineAnnealingLR) accumulate
products step by step and can differ in the last bits, so against those we allow a relative
error of 1e-12.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch.optim import SGD
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    CyclicLR,
    LinearLR,
    MultiStepLR,
    StepLR,
)

from losslab.train.schedules import (
    EPOCH_PARAMS,
    REQUIRED,
    SCHEDULE_PARAMS,
    ClosedFormSchedule,
    ConstantSchedule,
    CosineSchedule,
    CosineWarmRestartsSchedule,
    DMCSchedule,
    FGECycleSchedule,
    LinearDecaySchedule,
    MultiStepSchedule,
    SnapshotCosineSchedule,
    StepSchedule,
    build_schedule,
)

REL = 1e-12  # tolerance against torch's recursive (chained) forms only


def make_opt(*lrs: float) -> SGD:
    groups = [{"params": [torch.zeros(2, dtype=torch.float64, requires_grad=True)], "lr": lr}
              for lr in lrs]
    return SGD(groups, lr=lrs[0], momentum=0.9)


def trace(sched, n: int) -> list[list[float]]:
    """The lrs of all groups after 0, 1, ..., n steps (optimizer stepped first, as in training)."""
    out = [[g["lr"] for g in sched.optimizer.param_groups]]
    for _ in range(n):
        sched.optimizer.step()
        sched.step()
        out.append([g["lr"] for g in sched.optimizer.param_groups])
    return out


def trace_with_closed_form(ref, n: int) -> tuple[list[list[float]], list[list[float]]]:
    """torch scheduler ``ref`` stepped n times: (stepped lrs, its closed form at each step)."""
    stepped, closed = [], []
    for k in range(n + 1):
        if k:
            ref.optimizer.step()
            ref.step()
        stepped.append([g["lr"] for g in ref.optimizer.param_groups])
        closed.append([float(v) for v in ref._get_closed_form_lr()])
    return stepped, closed


def assert_close(ours, ref, rel=REL, abs_=1e-15):
    assert len(ours) == len(ref)
    for k, (a, b) in enumerate(zip(ours, ref, strict=True)):
        assert a == pytest.approx(b, rel=rel, abs=abs_), f"step {k}: {a} != {b}"


# ---------------------------------------------------------------------------------------------
# Agreement with torch


@pytest.mark.parametrize("step_size,gamma", [(7, 0.1), (1, 0.5), (30, 0.3)])
def test_step_matches_steplr(step_size, gamma):
    n = 200
    ours = trace(StepSchedule(make_opt(0.1, 0.7), step_size, gamma), n)
    stepped, closed = trace_with_closed_form(StepLR(make_opt(0.1, 0.7), step_size, gamma), n)
    assert ours == closed
    assert_close(ours, stepped)


def test_step_restart_every_formula():
    base, n = 0.2, 400
    sched = StepSchedule(make_opt(base), step_size=50, gamma=0.1, restart_every=150)
    ours = [lrs[0] for lrs in trace(sched, n)]
    assert ours == [base * 0.1 ** ((k % 150) // 50) for k in range(n + 1)]
    assert ours[149] == pytest.approx(base * 0.01) and ours[150] == base and ours[300] == base
    assert [k for k in range(n + 1) if sched.is_restart(k)] == [150, 300]
    # without restarts it keeps decaying
    plain = [lrs[0] for lrs in trace(StepSchedule(make_opt(base), 50, 0.1), n)]
    assert plain[150] == pytest.approx(base * 1e-3)


def test_multistep_matches_multisteplr():
    n, milestones = 150, [60, 10, 25, 25, 100]
    ours = trace(MultiStepSchedule(make_opt(0.1, 0.02), milestones, 0.5), n)
    stepped, closed = trace_with_closed_form(MultiStepLR(make_opt(0.1, 0.02), milestones, 0.5), n)
    assert ours == closed
    assert_close(ours, stepped)


@pytest.mark.parametrize("final", [0.0, 0.1, 1.0])
def test_linear_matches_linearlr(final):
    total, n = 97, 150
    ours = trace(LinearDecaySchedule(make_opt(0.1, 0.5), total, final), n)
    ref = LinearLR(make_opt(0.1, 0.5), start_factor=1.0, end_factor=final, total_iters=total)
    stepped, closed = trace_with_closed_form(ref, n)
    assert ours == closed
    assert_close(ours, stepped)
    assert ours[-1] == pytest.approx([0.1 * final, 0.5 * final], rel=1e-12)


@pytest.mark.parametrize("eta_min", [0.0, 1e-4])
def test_cosine_matches_cosineannealinglr(eta_min):
    total, n = 120, 200
    ours = trace(CosineSchedule(make_opt(0.1, 0.3), total, eta_min), n)
    ref = CosineAnnealingLR(make_opt(0.1, 0.3), T_max=total, eta_min=eta_min)
    stepped, closed = trace_with_closed_form(ref, total)
    assert ours[: total + 1] == closed
    assert_close(ours[: total + 1], stepped)  # torch's chained form: equal up to rounding
    # unlike torch (which rises again after T_max), ours stays at eta_min
    assert all(lrs == [eta_min, eta_min] for lrs in ours[total:])


@pytest.mark.parametrize("T_0,T_mult,eta_min", [(10, 1, 0.0), (7, 2, 0.0), (5, 2, 1e-3),
                                                (3, 3, 0.0)])
def test_cosine_restarts_matches_torch(T_0, T_mult, eta_min):
    n = 300
    ours = trace(CosineWarmRestartsSchedule(make_opt(0.1, 0.05), T_0, T_mult, eta_min), n)
    ref = CosineAnnealingWarmRestarts(make_opt(0.1, 0.05), T_0=T_0, T_mult=T_mult,
                                      eta_min=eta_min)
    assert ours == trace(ref, n)  # torch's form is closed in (T_cur, T_i): exact


@pytest.mark.parametrize("total,cycles", [(60, 4), (100, 5), (10, 4), (37, 1)])
def test_snapshot_matches_torch_and_paper(total, cycles):
    n = 2 * total
    sched = SnapshotCosineSchedule(make_opt(0.2, 0.05), total, cycles)
    length = math.ceil(total / cycles)
    assert sched.cycle_length == length
    ours = trace(sched, n)
    ref = CosineAnnealingWarmRestarts(make_opt(0.2, 0.05), T_0=length, eta_min=0)
    assert ours == trace(ref, n)
    # Huang et al., eq. (2), with t = k + 1
    for k, lrs in enumerate(ours):
        t = k + 1
        paper = [a0 / 2 * (math.cos(math.pi * ((t - 1) % length) / length) + 1)
                 for a0 in (0.2, 0.05)]
        assert lrs == pytest.approx(paper, rel=1e-12, abs=1e-18)


@pytest.mark.parametrize("c,start", [(8, 0), (10, 13), (2, 3)])
def test_fge_matches_cycliclr_shifted_and_formula(c, start):
    a1, a2, base, n = 0.05, 5e-4, 0.1, 6 * c + start
    ours = [lrs[0] for lrs in trace(FGECycleSchedule(make_opt(base), c, a1, a2, start), n)]
    ref = CyclicLR(make_opt(base), base_lr=a2, max_lr=a1, step_size_up=c // 2,
                   mode="triangular", cycle_momentum=False)
    cyclic = [lrs[0] for lrs in trace(ref, n + c)]
    assert ours[:start] == [base] * start  # before the cyclic phase: the group's base lr
    for k in range(start, n + 1):
        i = k - start + 1
        assert ours[k] == pytest.approx(cyclic[i + c // 2], rel=REL, abs=1e-15), k
        t = ((i - 1) % c + 1) / c
        direct = (1 - 2 * t) * a1 + 2 * t * a2 if t <= 0.5 else (2 - 2 * t) * a2 + (2 * t - 1) * a1
        assert ours[k] == direct
    assert ours[start + c - 1] == a1  # end of a cycle: back at alpha_1
    assert min(ours[start:]) == a2


# ---------------------------------------------------------------------------------------------
# Resume, purity, param groups

BUILDERS = {
    "constant": lambda o: ConstantSchedule(o),
    "step": lambda o: StepSchedule(o, 9, 0.3, restart_every=40),
    "multistep": lambda o: MultiStepSchedule(o, [5, 30, 31], 0.5),
    "linear": lambda o: LinearDecaySchedule(o, 70, 0.05),
    "cosine": lambda o: CosineSchedule(o, 70, 1e-4),
    "cosine_restarts": lambda o: CosineWarmRestartsSchedule(o, 6, 2, 1e-5),
    "snapshot": lambda o: SnapshotCosineSchedule(o, 70, 5),
    "fge": lambda o: FGECycleSchedule(o, 8, [0.05, 0.02], [5e-4, 1e-4], start_step=20),
    "dmc": lambda o: DMCSchedule(o, 3, 20),
}


def test_builders_cover_all_names():
    assert set(BUILDERS) == set(SCHEDULE_PARAMS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("k", [0, 1, 23, 37])
def test_state_dict_round_trip(name, k):
    opt = make_opt(0.1, 0.03)
    sched = BUILDERS[name](opt)
    trace(sched, k)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    expected = trace(sched, 120)

    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    opt2 = make_opt(0.1, 0.03)
    sched2 = BUILDERS[name](opt2)  # construct first, then load (torch's documented order)
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    assert sched2.last_epoch == k
    assert trace(sched2, 120) == expected


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("k", [0, 1, 23, 37])
def test_jump_to_equals_stepping(name, k):
    """A run restarted from a checkpoint puts its schedule at the checkpoint's step."""
    stepped = BUILDERS[name](make_opt(0.1, 0.03))
    trace(stepped, k)
    jumped = BUILDERS[name](make_opt(0.1, 0.03))
    jumped.jump_to(k)
    assert [g["lr"] for g in jumped.optimizer.param_groups] == stepped.get_last_lr()
    assert jumped.get_last_lr() == stepped.get_last_lr()
    assert trace(jumped, 50) == trace(stepped, 50)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_closed_form_is_pure(name):
    sched = BUILDERS[name](make_opt(0.1, 0.03))
    assert isinstance(sched, ClosedFormSchedule)
    lrs = trace(sched, 150)
    assert lrs == [sched.lr_at(k) for k in range(151)]
    assert sched.get_last_lr() == lrs[-1]
    jump = BUILDERS[name](make_opt(0.1, 0.03))
    with pytest.warns(UserWarning):  # torch deprecates step(epoch); it uses the closed form
        jump.step(77)
    assert jump.get_last_lr() == lrs[77]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_param_groups_are_independent(name):
    bases = (0.1, 0.03)
    multi = trace(BUILDERS[name](make_opt(*bases)), 100)
    for g, base in enumerate(bases):
        sched = BUILDERS[name](make_opt(*bases))
        assert [lrs[g] for lrs in multi] == [sched.lr_for(k, base, g) for k in range(101)]
    if name in ("constant", "step", "multistep", "linear", "snapshot"):
        for lrs in multi:  # these scale with the base lr (cosine's eta_min, FGE's lrs are absolute)
            assert lrs[1] == pytest.approx(lrs[0] * 0.3, rel=1e-12)
    assert multi[0] == pytest.approx(list(bases), rel=1e-12)


def test_multiple_groups_against_torch():
    bases = (0.1, 0.01, 1.0)
    ours = trace(CosineWarmRestartsSchedule(make_opt(*bases), 10, 2, 1e-3), 100)
    assert ours == trace(CosineAnnealingWarmRestarts(make_opt(*bases), 10, 2, 1e-3), 100)
    ours = trace(MultiStepSchedule(make_opt(*bases), [10, 40]), 100)
    assert ours == trace_with_closed_form(MultiStepLR(make_opt(*bases), [10, 40]), 100)[1]
    fge = trace(FGECycleSchedule(make_opt(*bases), 4, 0.05, 1e-3, start_step=2), 10)
    assert fge[0] == list(bases) and fge[3] == [1e-3] * 3  # scalars apply to every group


# ---------------------------------------------------------------------------------------------
# Snapshot and member steps


def test_snapshot_cycle_ends():
    total, cycles = 60, 4
    sched = SnapshotCosineSchedule(make_opt(0.1), total, cycles)
    ends = [k for k in range(3 * total) if sched.is_cycle_end(k)]
    assert ends == [14, 29, 44, 59] == sched.cycle_end_steps
    assert len(ends) == cycles == sched.num_cycles
    for k in ends:
        cycle = [sched.lr_at(j)[0] for j in range(k - 14, k + 1)]
        assert sched.lr_at(k)[0] == min(cycle)  # the lowest lr of its cycle
        assert sched.lr_at(k + 1)[0] == 0.1  # restart right after


@pytest.mark.parametrize("total,cycles,ends", [(10, 4, [2, 5, 8, 9]), (9, 4, [2, 5, 8]),
                                               (7, 7, list(range(7))), (5, 1, [4])])
def test_snapshot_uneven_cycles(total, cycles, ends):
    sched = SnapshotCosineSchedule(make_opt(0.1), total, cycles)
    assert [k for k in range(-2, 3 * total) if sched.is_cycle_end(k)] == ends
    assert sched.cycle_end_steps == ends and sched.num_cycles == len(ends)


def test_cosine_restarts_cycle_ends():
    sched = CosineWarmRestartsSchedule(make_opt(0.1), 3, 2)
    assert [k for k in range(45) if sched.is_cycle_end(k)] == [2, 8, 20, 44]
    assert [k for k in range(46) if sched.lr_at(k)[0] == 0.1] == [0, 3, 9, 21, 45]


@pytest.mark.parametrize("c,start", [(8, 0), (6, 11), (2, 0)])
def test_fge_members_at_lr_low(c, start):
    a1, a2, cycles = 0.05, 5e-4, 5
    sched = FGECycleSchedule(make_opt(0.1), c, a1, a2, start_step=start)
    steps = range(start + cycles * c)
    members = [k for k in steps if sched.is_member_step(k)]
    assert len(members) == cycles
    assert members == [k for k in steps if k >= start and sched.lr_at(k)[0] == a2]
    assert members[0] == start + c // 2 - 1  # i = c/2, t = 1/2
    assert all(b - a == c for a, b in zip(members, members[1:], strict=False))


def test_fge_odd_cycle_member_is_first_minimum():
    c, a1, a2 = 7, 0.05, 5e-4
    sched = FGECycleSchedule(make_opt(0.1), c, a1, a2)
    members = [k for k in range(3 * c) if sched.is_member_step(k)]
    assert members == [2, 9, 16]
    cycle = [sched.lr_at(k)[0] for k in range(c)]
    assert cycle[2] == pytest.approx(min(cycle), rel=1e-12)
    assert cycle[2] == pytest.approx(cycle[3], rel=1e-12)
    assert cycle[2] == pytest.approx(a2 + (a1 - a2) / c, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Factory


def test_factory_converts_epochs_to_iterations():
    spe, epochs = 10, 30
    opt = make_opt(0.1)
    kw = {"steps_per_epoch": spe, "epochs": epochs}

    s = build_schedule("step", opt, **kw, step_size=5, gamma=0.5, restart_every=15)
    assert isinstance(s, StepSchedule)
    assert (s.step_size, s.gamma, s.restart_every) == (50, 0.5, 150)
    s = build_schedule("step", make_opt(0.1), **kw, step_size=2.5)
    assert (s.step_size, s.restart_every, s.gamma) == (25, None, 0.1)
    s = build_schedule("multistep", make_opt(0.1), **kw, milestones=[10, 2.5, 20])
    assert s.milestones == [25, 100, 200]
    s = build_schedule("linear", make_opt(0.1), **kw, final_factor=0.01)
    assert (s.total_steps, s.final_factor) == (300, 0.01)
    s = build_schedule("cosine", make_opt(0.1), **kw)
    assert isinstance(s, CosineSchedule) and (s.total_steps, s.eta_min) == (300, 0.0)
    s = build_schedule("cosine_restarts", make_opt(0.1), **kw, T_0=3, T_mult=2, eta_min=1e-4)
    assert (s.T_0, s.T_mult, s.eta_min) == (30, 2, 1e-4)
    s = build_schedule("snapshot", make_opt(0.1), **kw, cycles=6)
    assert (s.total_steps, s.cycles, s.cycle_length) == (300, 6, 50)
    s = build_schedule("fge", make_opt(0.1), **kw, cycle=2, lr_high=0.05, lr_low=5e-4,
                       start_epoch=20)
    assert (s.cycle_steps, s.start_step, s.lr_high, s.lr_low) == (20, 200, [0.05], [5e-4])
    s = build_schedule("constant", make_opt(0.1), steps_per_epoch=3, epochs=0)
    assert isinstance(s, ConstantSchedule)
    # the schedule that is built behaves as the class it names
    s = build_schedule("cosine_restarts", make_opt(0.1), **kw, T_0=1)
    assert trace(s, 40) == trace(CosineWarmRestartsSchedule(make_opt(0.1), 10), 40)


def test_factory_params_table():
    assert list(SCHEDULE_PARAMS) == ["constant", "step", "multistep", "linear", "cosine",
                                     "cosine_restarts", "snapshot", "fge", "dmc"]
    assert EPOCH_PARAMS <= {p for params in SCHEDULE_PARAMS.values() for p in params}
    assert repr(REQUIRED) == "REQUIRED"
    assert SCHEDULE_PARAMS["fge"]["lr_high"] is REQUIRED
    assert SCHEDULE_PARAMS["step"]["gamma"] == 0.1 and SCHEDULE_PARAMS["cosine"] == {"eta_min": 0.0}


def test_factory_errors():
    kw = {"steps_per_epoch": 10, "epochs": 5}
    with pytest.raises(ValueError, match=r"unknown schedule 'cosin'.*constant.*cosine.*fge"):
        build_schedule("cosin", make_opt(0.1), **kw)
    with pytest.raises(ValueError, match=r"no parameter 'step_size_epochs'.*step_size, gamma"):
        build_schedule("step", make_opt(0.1), **kw, step_size_epochs=2)
    with pytest.raises(ValueError, match=r"'constant' has no parameter 'gamma'; allowed: none"):
        build_schedule("constant", make_opt(0.1), **kw, gamma=0.1)
    with pytest.raises(ValueError, match=r"missing required parameter\(s\) 'lr_high', 'lr_low'"):
        build_schedule("fge", make_opt(0.1), **kw, cycle=2)
    with pytest.raises(ValueError, match=r"missing required parameter\(s\) 'step_size'"):
        build_schedule("step", make_opt(0.1), **kw)
    with pytest.raises(ValueError, match=r"step_size=0.01 epochs is 0 iterations"):
        build_schedule("step", make_opt(0.1), **kw, step_size=0.01)
    with pytest.raises(ValueError, match=r"T_0 must be a number of epochs"):
        build_schedule("cosine_restarts", make_opt(0.1), **kw, T_0="3")
    with pytest.raises(ValueError, match=r"milestones must be a list"):
        build_schedule("multistep", make_opt(0.1), **kw, milestones=3)
    with pytest.raises(ValueError, match=r"steps_per_epoch must be an integer >= 1"):
        build_schedule("cosine", make_opt(0.1), steps_per_epoch=0, epochs=5)
    with pytest.raises(ValueError, match=r"needs epochs >= 1"):
        build_schedule("cosine", make_opt(0.1), steps_per_epoch=10, epochs=0)
    with pytest.raises(ValueError, match=r"T_mult must be an integer >= 1"):
        build_schedule("cosine_restarts", make_opt(0.1), **kw, T_0=1, T_mult=1.5)
    with pytest.raises(ValueError, match=r"cycles \(60\) must not exceed total_steps \(50\)"):
        build_schedule("snapshot", make_opt(0.1), **kw, cycles=60)
    with pytest.raises(ValueError, match=r"lr_high has 1 values for 2 param groups"):
        build_schedule("fge", make_opt(0.1, 0.2), **kw, cycle=1, lr_high=[0.1], lr_low=0.01)


def test_constructor_validation():
    with pytest.raises(ValueError, match="step_size"):
        StepSchedule(make_opt(0.1), 0)
    with pytest.raises(ValueError, match="restart_every"):
        StepSchedule(make_opt(0.1), 5, restart_every=0)
    with pytest.raises(ValueError, match="milestone"):
        MultiStepSchedule(make_opt(0.1), [3, -1])
    with pytest.raises(ValueError, match="final_factor"):
        LinearDecaySchedule(make_opt(0.1), 10, -0.5)
    with pytest.raises(ValueError, match="cycle_steps"):
        FGECycleSchedule(make_opt(0.1), 1, 0.1, 0.01)
    with pytest.raises(ValueError, match="total_steps"):
        CosineSchedule(make_opt(0.1), 0)


def _dmc_reference(base_lr: float, epoch: int, total_epochs: int) -> float:
    """``learning_rate_schedule`` of timgaripov/dnn-mode-connectivity's train.py, written out."""
    alpha = epoch / total_epochs
    if alpha <= 0.5:
        factor = 1.0
    elif alpha <= 0.9:
        factor = 1.0 - (alpha - 0.5) / 0.4 * 0.99
    else:
        factor = 0.01
    return factor * base_lr


def test_dmc_matches_reference_per_epoch():
    spe, epochs = 7, 200
    sched = build_schedule("dmc", make_opt(0.05), steps_per_epoch=spe, epochs=epochs)
    lrs = trace(sched, spe * epochs - 1)
    for k, (lr,) in enumerate(lrs):
        assert lr == _dmc_reference(0.05, k // spe + 1, epochs), f"step {k}"
    # VGG-16 in DMC: epoch 160 of 200 (1-based) runs at 0.0129, where fge.py takes over
    assert lrs[159 * spe][0] == pytest.approx(0.05 * (1 - 0.3 / 0.4 * 0.99), rel=1e-15)
    assert lrs[159 * spe][0] == pytest.approx(0.012875, rel=1e-12)
    assert lrs[-1][0] == pytest.approx(0.0005, rel=1e-12)


def test_dmc_validation():
    with pytest.raises(ValueError, match="flat < decay_end"):
        DMCSchedule(make_opt(0.1), 5, 10, flat=0.9, decay_end=0.5)
