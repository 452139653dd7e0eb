"""Progress of long computations: a bar on a terminal (or when forced), none in a log, one INFO
line per finished item, resumed maps starting at their finished points, and no change at all
to what the Hessian algorithms compute."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from curve_nets import data, mlp

from losslab.curves import CurveModel, curve_plane, evaluate_curve
from losslab.landscape import Directions, line, surface
from losslab.landscape.hessian import (
    HessianOperator,
    hutch_plus_plus,
    hutchinson,
    lanczos,
    power_iteration,
    spectral_density,
)
from losslab.landscape.ratio_map import eigenvalue_ratio_map
from losslab.params import parameters_of
from losslab.progress import progress_enabled, track


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, caplog):
    """No inherited switches; INFO records of losslab captured."""
    monkeypatch.delenv("LOSSLAB_PROGRESS", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    caplog.set_level(logging.INFO, logger="losslab")


def finished_lines(caplog, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.INFO and r.getMessage().startswith(start)]


def plane(model):
    return Directions.random(parameters_of(model), n=2, seed=3)


def test_a_forced_bar_reaches_the_total_and_the_map_is_logged_once(capsys, caplog):
    model = mlp(0)
    r = surface(model, model, plane(model), batches=data(), grid=(-1, 1, 11), progress=True)
    err = capsys.readouterr().err
    assert "surface" in err and "121/121" in err
    assert r.loss.isfinite().all()
    (msg,) = finished_lines(caplog, "surface:")
    assert msg.startswith("surface: 121 points in ")


def test_a_resumed_surface_starts_at_its_finished_points(tmp_path, capsys, caplog):
    model, batches = mlp(0), data()
    kw = dict(batches=batches, grid=((-1, 1, 5), (-1, 1, 3)), path=str(tmp_path / "s"),
              save_every=1)

    class Stop(Exception):
        pass

    def stop_at_7(done, _total):
        if done == 7:
            raise Stop

    with pytest.raises(Stop):
        surface(model, model, plane(model), callback=stop_at_7, progress=True, **kw)
    assert "7/15" in capsys.readouterr().err
    assert finished_lines(caplog, "surface:")[0].startswith("surface: stopped at 7 of 15 points")
    caplog.clear()
    surface(model, model, plane(model), progress=True, **kw)
    err = capsys.readouterr().err
    assert "7/15" in err and "15/15" in err and " 0/15" not in err
    (msg,) = finished_lines(caplog, "surface:")
    assert msg.startswith("surface: 15 points in ") and msg.endswith("(7 done before)")


def test_no_bar_off_a_terminal_but_one_line_per_finished_item(capsys, caplog):
    model = mlp(0)
    surface(model, model, plane(model), batches=data(), grid=(-1, 1, 3))
    line(model, model, end=mlp(1), batches=data(), grid=(0, 1, 5))
    assert capsys.readouterr().err == ""  # pytest's capture is not a terminal
    assert len(finished_lines(caplog, "surface: 9 points in ")) == 1
    assert len(finished_lines(caplog, "line: 5 points in ")) == 1
    caplog.clear()
    surface(model, model, plane(model), batches=data(), grid=(-1, 1, 3), progress=False)
    assert capsys.readouterr().err == "" and not caplog.records  # False: silent


class _Terminal:
    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize(("env", "tty", "expected"), [
    ({}, False, False), ({}, True, True), ({"TQDM_DISABLE": "1"}, True, False),
    ({"TQDM_DISABLE": "0"}, True, True), ({"LOSSLAB_PROGRESS": "1"}, False, True),
    ({"LOSSLAB_PROGRESS": "0"}, True, False),
    ({"LOSSLAB_PROGRESS": "1", "TQDM_DISABLE": "1"}, False, True)])
def test_the_bar_is_on_only_on_a_terminal_unless_the_environment_says(monkeypatch, env, tty,
                                                                      expected):
    if tty:
        monkeypatch.setattr("sys.stderr", _Terminal())
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert progress_enabled() is expected
    assert progress_enabled(True) is True and progress_enabled(False) is False


def test_nested_items_each_log_their_line(capsys, caplog):
    model = mlp(0)
    with track(2, "analyses", unit="analysis", enabled=True, logger="losslab.test") as outer:
        for _ in range(2):
            surface(model, model, plane(model), batches=data(), grid=(-1, 1, 3))
            outer.update()
    assert "2/2" in capsys.readouterr().err
    assert len(finished_lines(caplog, "surface: 9 points")) == 2
    assert finished_lines(caplog, "analyses: 2 analyses in ")


@pytest.fixture(scope="module")
def op():
    return HessianOperator(mlp(0), batches=data())


def _same(a, b) -> bool:
    """Every field of two results equal, arrays bitwise."""
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, torch.Tensor):
            ok = torch.equal(x, y)
        elif isinstance(x, np.ndarray):
            ok = np.array_equal(x, y)
        else:
            ok = x == y or (x != x and y != y)  # nan == nan here
        if not ok:
            return False
    return True


ALGORITHMS = {
    "lanczos (both)": lambda op, p: lanczos(op, k=2, which="both", max_iter=20, tol=1e-8,
                                           return_eigenvectors=True, progress=p),
    "power iteration": lambda op, p: power_iteration(op, max_iter=15, tol=1e-12, progress=p),
    "hutchinson": lambda op, p: hutchinson(op, num_samples=6, progress=p),
    "hutch++": lambda op, p: hutch_plus_plus(op, num_products=9, progress=p),
    "spectral density": lambda op, p: spectral_density(op, num_vectors=2, lanczos_steps=6,
                                                       grid=50, progress=p),
}


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_a_bar_over_products_changes_nothing_computed(op, name, capsys, caplog):
    run = ALGORITHMS[name]
    before = op.num_products
    quiet = run(op, False)
    used = op.num_products - before
    assert not caplog.records
    shown = run(op, True)
    assert op.num_products - before == 2 * used  # the same products, counted once each
    assert _same(quiet, shown)
    assert f"{used}/" in capsys.readouterr().err
    (msg,) = finished_lines(caplog, f"{name}: ")
    assert " products in " in msg


def test_ratio_map_bar_counts_points_and_its_lanczos_runs_are_silent(capsys, caplog):
    model = mlp(0)
    r = eigenvalue_ratio_map(model, model, plane(model), batches=data(), grid=(-1, 1, 3),
                             max_iter=5, progress=True)
    assert "9/9" in capsys.readouterr().err and r.ratio.shape == (3, 3)
    assert finished_lines(caplog, "ratio map: 9 points in ")
    assert not finished_lines(caplog, "lanczos")


def test_curve_plane_and_evaluation_show_their_points(capsys, caplog):
    a, b = mlp(0), mlp(1)
    curve = CurveModel(a, a, b, bends=1)
    with torch.no_grad():
        curve.bends.add_(0.3)
    curve_plane(curve, batches=data(), grid=3, progress=True)
    evaluate_curve(curve, train=data(), ts=[0.0, 0.5, 1.0], progress=True)
    err = capsys.readouterr().err
    assert "curve plane" in err and "9/9" in err and "6/6" in err
    assert finished_lines(caplog, "curve plane: 9 points in ")
    assert finished_lines(caplog, "curve evaluation: 6 points in ")
