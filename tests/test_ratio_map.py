"""Hessian eigenvalue-ratio maps (Li et al. 2018, §6) against dense Hessians (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from losslab.landscape.directions import random_direction
from losslab.landscape.hessian import HessianOperator
from losslab.landscape.ratio_map import RATIO_AXIS_CONVENTION, eigenvalue_ratio_map
from losslab.params import buffers_of, parameters_of

SIZES = (6, 10)


def tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()  # P = 26


def tiny_batches():
    gen = torch.Generator().manual_seed(1)
    n = sum(SIZES)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (n,), generator=gen)
    return list(zip(x.split(SIZES), y.split(SIZES), strict=True))


@pytest.fixture(scope="module")
def setup():
    model = tiny_mlp()
    center = {k: v.clone() for k, v in parameters_of(model).items()}
    dirs = [random_direction(center, seed=s) for s in (0, 1)]
    batches = tiny_batches()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    result = eigenvalue_ratio_map(model, center, dirs, batches=batches,
                                  buffers=buffers_of(model),
                                  grid=((-0.5, 0.5, 3), (0.0, 1.0, 2)), max_iter=30, tol=1e-10)
    return model, center, dirs, batches, state, result


def dense_extremes(model, params, batches) -> tuple[float, float]:
    op = HessianOperator(model, params, batches=batches, buffers=buffers_of(model))
    h = op.dense()
    eig = torch.linalg.eigvalsh((h + h.T) / 2)
    return float(eig[0]), float(eig[-1])


def test_centre_matches_the_dense_hessian(setup):
    model, center, _, batches, _, r = setup
    i, j = r.index_of(0.0, 0.0)
    assert (i, j) == (0, 1)
    lo, hi = dense_extremes(model, center, batches)
    assert lo < 0 < hi  # the random net is not at a minimum: negative curvature exists
    assert abs(float(r.lambda_max[i, j]) - hi) <= 1e-6 * abs(hi)
    assert abs(float(r.lambda_min[i, j]) - lo) <= 1e-6 * abs(lo)
    assert float(r.ratio[i, j]) == pytest.approx(abs(lo / hi), rel=1e-6)
    assert bool(r.converged[i, j])


def test_off_centre_point_is_the_hessian_at_that_point(setup):
    model, center, dirs, batches, _, r = setup
    x, y = float(r.x[2]), float(r.y[1])  # value[1, 2] is at (x[2], y[1])
    theta = {k: center[k] + x * dirs[0][k] + y * dirs[1][k] for k in center}
    lo, hi = dense_extremes(model, theta, batches)
    assert float(r.lambda_max[1, 2]) == pytest.approx(hi, rel=1e-6)
    assert float(r.lambda_min[1, 2]) == pytest.approx(lo, rel=1e-6, abs=1e-9)


def test_shapes_axes_and_metadata(setup):
    _, _, _, _, _, r = setup
    assert r.x.tolist() == [-0.5, 0.0, 0.5]
    assert r.y.tolist() == [0.0, 1.0]
    for a in (r.lambda_max, r.lambda_min, r.ratio, r.converged):
        assert a.shape == (2, 3)
    assert r.converged.dtype == torch.bool and bool(r.converged.all())
    assert torch.all(r.lambda_min <= r.lambda_max)
    torch.testing.assert_close(r.ratio, (r.lambda_min / r.lambda_max).abs())
    assert r.metadata["axis_convention"] == RATIO_AXIS_CONVENTION == r.axis_convention
    assert RATIO_AXIS_CONVENTION == "value[i, j] is at (x[j], y[i])"
    assert r.metadata["shape"] == [2, 3] and r.metadata["num_parameters"] == 26
    assert r.num_products == sum(map(sum, r.metadata["products"])) > 0
    assert all(p <= 26 for row in r.metadata["products"] for p in row)


def test_model_is_not_mutated(setup):
    model, _, _, _, state, _ = setup
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])
    assert model.training  # modes restored after the eval-mode products


def test_errors_and_checkpoint_like_centre():
    model = tiny_mlp()
    center = parameters_of(model)
    dirs = [random_direction(center, seed=s) for s in (0, 1)]
    with pytest.raises(ValueError, match="2 directions"):
        eigenvalue_ratio_map(model, center, dirs[:1], batches=tiny_batches())
    with pytest.raises(ValueError, match="no grid point is 0"):
        eigenvalue_ratio_map(model, center, dirs, grid=((-1, 1, 4), (-1, 1, 5)),
                             batches=tiny_batches())

    class Ckpt:  # a LoadedCheckpoint-like centre: its buffers are used when buffers is None
        params, buffers = dict(center), {}

    r = eigenvalue_ratio_map(model, Ckpt(), dirs, grid=(0, 0, 1),
                             batches=tiny_batches()[0], max_iter=26, tol=0.0)
    lo, hi = dense_extremes(model, center, tiny_batches()[:1])
    assert r.lambda_max.shape == (1, 1)
    assert float(r.lambda_max[0, 0]) == pytest.approx(hi, rel=1e-6)
    assert float(r.lambda_min[0, 0]) == pytest.approx(lo, rel=1e-6)


class _Stop(Exception):
    pass


def test_a_stopped_map_continues_from_its_stored_points(setup, tmp_path):
    model, center, dirs, batches, _, full = setup
    kw = dict(batches=batches, buffers=buffers_of(model), grid=((-0.5, 0.5, 3), (0.0, 1.0, 2)),
              max_iter=30, tol=1e-10)
    path = str(tmp_path / "ratio")

    def stop_after_two(done, total):
        if done == 2:
            raise _Stop

    with pytest.raises(_Stop):
        eigenvalue_ratio_map(model, center, dirs, path=path, callback=stop_after_two, **kw)
    computed = []
    again = eigenvalue_ratio_map(model, center, dirs, path=path,
                                 callback=lambda done, total: computed.append(done), **kw)
    assert computed == [3, 4, 5, 6]  # only the four missing points
    for name in ("lambda_max", "lambda_min", "ratio", "converged"):
        assert torch.equal(getattr(again, name), getattr(full, name))
    assert again.num_products == full.num_products
    with pytest.raises(ValueError, match="holds a different ratio map"):  # other Lanczos seed
        eigenvalue_ratio_map(model, center, dirs, path=path, seed=1, **kw)
