"""DMC's two planes (Garipov et al. 2018, the reference plane.py): the train loss plus
½·wd·‖w‖² and the test error (%), against weights rebuilt from the grid coordinates and
evaluated directly, and both drawn in the report with the curve and the straight line."""

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from curve_nets import bn_net, data, mlp
from torch import nn
from torch.func import functional_call

from losslab.curves import CurveModel, curve_plane, curve_runs
from losslab.ensembles.swa import recompute_batchnorm
from losslab.landscape import EvalOptions
from losslab.params import buffers_of, flatten, parameters_of

WD = 5e-2  # large, so the l2 term is a sizeable part of the compared numbers


def bent_curve(make, seed_bend: int = 0) -> tuple[CurveModel, nn.Module]:
    a, b = make(0), make(1)
    if any(isinstance(m, nn.BatchNorm1d) for m in a.modules()):
        for m in (a, b):  # statistics of the training data, as after training
            m.load_state_dict(recompute_batchnorm(m, m.state_dict(), data(seed=0)))
            m.eval()
    curve = CurveModel(a, a, b, bends=1)
    g = torch.Generator().manual_seed(seed_bend)
    with torch.no_grad():
        curve.bends.add_(0.3 * torch.randn(curve.bends.shape, generator=g, dtype=torch.float64))
    return curve, a


def basis(curve: CurveModel, a: nn.Module, b_flat: torch.Tensor):
    """The plane's basis rebuilt here from the models' own parameters (not the library's)."""
    w1 = flatten(parameters_of(a)).double()
    u = b_flat - w1
    e1 = u / u.norm()
    v = curve.bends[0].detach().double() - w1
    v = v - (v @ e1) * e1
    return w1, e1, v / v.norm()


def state_at(a: nn.Module, point: torch.Tensor) -> dict[str, torch.Tensor]:
    state, offset = {}, 0
    for k, p in parameters_of(a).items():
        state[k] = point[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    assert offset == point.numel()
    return state


@pytest.mark.parametrize("make", [mlp, bn_net], ids=["mlp", "batchnorm"])
def test_l2_term_is_half_wd_squared_norm_of_the_rebuilt_point(make):
    curve, a = bent_curve(make)
    w2 = curve.endpoints[1].double()
    plane = curve_plane(curve, batches=data(), weight_decay=WD, grid=5)
    w1, e1, e2 = basis(curve, a, w2)
    # every trainable parameter is in w, BatchNorm's affine weight and bias included
    n_params = sum(p.numel() for p in a.parameters() if p.requires_grad)
    assert w1.numel() == n_params == plane.metadata["l2_parameters"]
    assert plane.metadata["weight_decay"] == WD and "||w||^2" in plane.metadata["l2_formula"]
    for i in range(len(plane.y)):
        for j in range(len(plane.x)):
            w = w1 + plane.x[j] * e1 + plane.y[i] * e2
            expected = 0.5 * WD * float((w * w).sum())
            assert abs(float(plane.l2[i, j]) - expected) < 1e-10
            assert abs(float(plane.train_loss_l2[i, j] - plane.loss[i, j]) - expected) < 1e-10
    assert plane.l2.dtype == torch.float64 and plane.l2.shape == plane.loss.shape
    # no weight decay: the train-loss-plus-l2 plane is the train loss itself
    bare = curve_plane(curve, batches=data(), grid=3)
    assert torch.equal(bare.train_loss_l2, bare.loss) and float(bare.l2.abs().max()) == 0.0
    assert bare.test_error is None and bare.test_loss is None


@pytest.mark.parametrize("make", [mlp, bn_net], ids=["mlp", "batchnorm"])
def test_test_error_against_the_net_evaluated_at_grid_points(make):
    curve, a = bent_curve(make)
    train, test = data(seed=0), data(n=60, batch=20, seed=1)
    plane = curve_plane(curve, batches=train, test_batches=test, weight_decay=WD, grid=5)
    w1, e1, e2 = basis(curve, a, curve.endpoints[1].double())
    bn = any(isinstance(m, nn.BatchNorm1d) for m in a.modules())
    assert plane.metadata["bn"] == ("recompute" if bn else "keep")
    for i, j in [(0, 0), (3, 1), (2, 4)]:
        point = w1 + plane.x[j] * e1 + plane.y[i] * e2
        state = {**state_at(a, point), **buffers_of(a)}
        if bn:  # the statistics of this point, on the training batches (DMC's update_bn)
            state = {**state, **recompute_batchnorm(a, state, train)}
        net = copy.deepcopy(a).eval()
        with torch.no_grad():
            logits = torch.cat([functional_call(net, state, (x,)) for x, _ in test])
        labels = torch.cat([y for _, y in test])
        acc = float((logits.argmax(1) == labels).double().mean())
        assert float(plane.test_error[i, j]) == pytest.approx(100 * (1 - acc), abs=1e-9)
        assert float(plane.test_acc[i, j]) == pytest.approx(acc, abs=1e-12)
        loss = F.cross_entropy(logits, labels).item()
        assert float(plane.test_loss[i, j]) == pytest.approx(loss, rel=1e-10)
    torch.testing.assert_close(plane.test_error, 100 * (1 - plane.test_acc))
    assert float(plane.test_error.max()) > float(plane.test_error.min())  # not a flat plane


def test_plane_of_curve_run_uses_the_runs_weight_decay(monkeypatch):
    curve, _ = bent_curve(mlp)
    train, test, val = data(seed=0), data(seed=1), data(seed=2)
    config = SimpleNamespace(optimizer=SimpleNamespace(weight_decay=WD),
                             curve=SimpleNamespace(weight_decay_on="point"))
    splits = {"train": train, "test": test, "val": val}

    def loaded(path, names):
        return curve, "cpu", [splits[s] for s in names], config

    monkeypatch.setattr(curve_runs, "_loaded", loaded)
    p = curve_runs.plane_of_curve_run("unused", grid=3)
    direct = curve_plane(curve, batches=train, test_batches=test, weight_decay=WD, grid=3)
    assert p["weight_decay"] == WD and p["metadata"]["weight_decay_on"] == "point"
    assert p["loss"] == p["train_loss"] == direct.loss.tolist()  # the old fields: train split
    assert p["acc"] == direct.acc.tolist()
    assert p["train_loss_l2"] == direct.train_loss_l2.tolist()
    assert p["test_error"] == direct.test_error.tolist()
    # another split for the old loss grid: the two planes stay on train and test
    v = curve_runs.plane_of_curve_run("unused", grid=3, split="val")
    assert v["split"] == "val" and v["train_loss_l2"] == p["train_loss_l2"]
    assert v["loss"] == curve_plane(curve, batches=val, grid=3,
                                    options=EvalOptions(recompute_batches=train)).loss.tolist()
    t = curve_runs.plane_of_curve_run("unused", grid=3, split="test")
    assert t["loss"] == p["test_loss"] and t["acc"] == p["test_acc"]


def _analysis(plane: dict) -> dict:
    ts = [0.0, 0.5, 1.0]
    path = {"train_loss": [0.1, 0.5, 0.1], "test_acc": [0.9, 0.8, 0.9]}
    return {"pair": "a-s0 to a-s1", "run": "curves/x", "kind": "bezier", "bends": 1,
            "evaluation": {"ts": ts, "curve": path, "line": path,
                           "barrier": {"curve": 0.4, "line": 0.4},
                           "mean_loss": {"curve": 0.3, "line": 0.3},
                           "length": {"curve": 1.0, "line": 1.0}},
            "plane": plane}


def _rendered(section, tmp_path) -> str:
    from losslab.report.html import _render_sections
    from losslab.report.palette import Palette

    (out,) = _render_sections([section], Palette([]), tmp_path)  # interactive and PNG/PDF
    bodies = "".join(str(f["body"]) for f in out["figures"])
    assert "could not be drawn" not in bodies
    return bodies + str(out["html"])


def test_report_draws_both_planes_and_old_results_as_before(tmp_path):
    from losslab.report.curve_sections import curve_section
    from losslab.report.figures import HeatmapFigure

    curve, _ = bent_curve(mlp)
    p = curve_plane(curve, batches=data(seed=0), test_batches=data(seed=1), weight_decay=5e-4,
                    grid=4)
    plane = {"x": p.x.tolist(), "y": p.y.tolist(), "loss": p.loss.tolist(),
             "acc": p.acc.tolist(), "train_loss_l2": p.train_loss_l2.tolist(),
             "test_error": p.test_error.tolist(), "weight_decay": 5e-4,
             "curve_xy": p.curve_xy.tolist(), "line_xy": p.line_xy.tolist(),
             "control_xy": p.control_xy.tolist(), "split": "train", "metadata": p.metadata}
    section = curve_section(None, _analysis(plane))
    maps = [f for f in section.figures if isinstance(f, HeatmapFigure)]
    assert [m.title.split(": ", 1)[1].split(" on the plane")[0] for m in maps] == [
        "train loss + l2 (wd=0.0005)", "test error (%)"]
    for m in maps:  # the curve and the straight line on both, one unit as long on both axes
        assert m.equal_aspect and [s.name for s in m.paths][:2] == ["curve", "straight line"]
    assert maps[1].z.tolist() == plane["test_error"]
    html = _rendered(section, tmp_path)
    assert "train loss + l2 (wd=0.0005)" in html and "test error (%)" in html
    assert len(list((tmp_path / "figures").glob("*.png"))) == len(section.figures)
    # an analysis written before the two planes: one loss map, titled as before
    old = {k: v for k, v in plane.items() if k not in ("train_loss_l2", "test_error",
                                                      "weight_decay")}
    maps = [f for f in curve_section(None, _analysis(old)).figures
            if isinstance(f, HeatmapFigure)]
    assert [m.title for m in maps] == [
        "a-s0 to a-s1 (bezier): train loss on the plane through ŵ1, θ, ŵ2"]
