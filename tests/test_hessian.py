"""Hessian operator and spectral algorithms against dense oracles (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from losslab.landscape.hessian import (
    HessianOperator,
    MatrixOperator,
    hutch_plus_plus,
    hutchinson,
    lanczos,
    power_iteration,
    select_parameters,
    spectral_density,
)
from losslab.landscape.options import EvalOptions
from losslab.params import flatten, parameters_of, unflatten

# torch.func.hessian (the oracle) loads torch's jvp decompositions, which call torch.jit.script
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

SIZES = (5, 11, 3)  # batches of different sizes: the average must be weighted by them


def tiny_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def tiny_data(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    n = sum(SIZES)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (n,), generator=gen)
    batches = list(zip(x.split(SIZES), y.split(SIZES), strict=True))
    return x, y, batches


def dense_oracle(model, x, y, names):
    """torch.func.hessian of the full-data mean loss w.r.t. ``names`` (others fixed)."""
    point = parameters_of(model)
    sub = {k: point[k] for k in names}

    def loss(flat):
        params = {**point, **unflatten(flat, sub)}
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    return torch.func.hessian(loss)(flatten(sub))


@pytest.fixture(scope="module")
def tiny():
    model = tiny_mlp()
    x, y, batches = tiny_data()
    op = HessianOperator(model, batches=batches)
    dense = dense_oracle(model, x, y, op.names)
    return model, op, dense, torch.linalg.eigvalsh(dense).numpy()


def spectrum_matrix(n: int = 200, seed: int = 0):
    """Clustered spectrum: 5 distinct top values, a bulk near 0, 5 distinct negative values."""
    top = torch.tensor([10.0, 9.0, 8.0, 7.0, 6.0])
    bottom = torch.tensor([-3.0, -2.5, -2.0, -1.5, -1.0])
    bulk = torch.linspace(0.0, 1.0, n - 10)
    lam = torch.cat([top, bulk, bottom]).double()
    return MatrixOperator.from_eigenvalues(lam, seed=seed), torch.sort(lam).values.numpy()


def test_matvec_is_the_size_weighted_average_over_batches(tiny):
    model, op, dense, _ = tiny
    assert op.size == 26 and op.num_examples == sum(SIZES)
    v = torch.randn(op.size, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    before = op.num_products
    torch.testing.assert_close(op.matvec(v), dense @ v, rtol=1e-10, atol=1e-12)
    assert op.num_products == before + 1
    torch.testing.assert_close(op.dense(), dense, rtol=1e-10, atol=1e-12)
    # the trap: an unweighted mean (or the sum) of the per-batch Hessians is a different matrix
    per_batch = [HessianOperator(model, batches=[b]).dense() for b in op.batches]
    assert not torch.allclose(sum(per_batch) / len(per_batch), dense, rtol=1e-3)


@pytest.mark.parametrize(("selection", "names"), [
    ("weights", ["0.weight", "2.weight"]),
    ("2", ["2.weight", "2.bias"]),  # one layer, by its prefix
    (["2.weight", "0.bias"], ["0.bias", "2.weight"]),  # names, kept in the model's order
])
def test_matvec_on_a_parameter_subset(selection, names):
    model = tiny_mlp()
    x, y, batches = tiny_data()
    op = HessianOperator(model, batches=batches, wrt=selection)
    assert op.names == names
    dense = dense_oracle(model, x, y, op.names)
    torch.testing.assert_close(op.dense(), dense, rtol=1e-10, atol=1e-12)


def test_select_parameters_errors():
    names = ["features.0.weight", "features.1.weight", "features.1.bias", "fc.weight"]
    shapes = {"features.0.weight": (2, 3), "features.1.weight": (2,), "features.1.bias": (2,),
              "fc.weight": (1, 2)}
    assert select_parameters(names, "weights", shapes) == ["features.0.weight", "fc.weight"]
    assert select_parameters(names, "features.1") == ["features.1.weight", "features.1.bias"]
    with pytest.raises(KeyError, match="did you mean"):
        select_parameters(names, "feature.1")
    with pytest.raises(KeyError, match="unknown parameter"):
        select_parameters(names, ["fc.wieght"])


def test_batchnorm_eval_mode_and_no_mutation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).double()
    model[1].running_mean.uniform_(-0.5, 0.5)
    model[1].running_var.uniform_(0.5, 2.0)
    model.train()
    model[3].eval()  # a mixed mode must come back as it was
    x, y, batches = tiny_data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    op = HessianOperator(model, batches=batches, options=EvalOptions(loss_fn=F.cross_entropy))
    h = op.dense()
    assert model.training and model[1].training and not model[3].training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    model.eval()  # the oracle: the Hessian of the eval-mode (running-statistics) loss
    torch.testing.assert_close(h, dense_oracle(model, x, y, op.names), rtol=1e-10, atol=1e-12)


def test_lanczos_extremes_of_the_tiny_net(tiny):
    _, op, _, true = tiny
    assert np.all(np.diff(true[:4]) > 1e-6) and np.all(np.diff(true[-4:]) > 1e-6)
    top = lanczos(op, k=1, which="largest")
    assert top.converged and top.num_products == top.iterations <= op.size
    assert abs(top.max - true[-1]) <= 1e-6 * abs(true[-1])
    low = lanczos(op, k=1, which="smallest")
    assert low.converged and abs(low.min - true[0]) <= 1e-6 * abs(true[0])
    both = lanczos(op, k=3, which="both", return_eigenvectors=True)
    assert both.converged
    np.testing.assert_allclose(both.eigenvalues, np.r_[true[:3], true[-3:]], rtol=1e-6)
    for value, vec in zip(both.eigenvalues, both.eigenvectors, strict=True):
        assert abs(float(vec.norm()) - 1) < 1e-8
        assert float((op.matvec(vec) - value * vec).norm()) < 1e-5 * abs(true).max()


def test_lanczos_known_spectrum_top_and_bottom():
    op, true = spectrum_matrix()
    res = lanczos(op, k=5, which="both", max_iter=150)
    assert res.converged and res.num_products < 150
    np.testing.assert_allclose(res.eigenvalues, np.r_[true[:5], true[-5:]], rtol=1e-9)
    assert np.all(res.residuals <= 1e-6 * np.abs(res.eigenvalues))


def test_full_reorthogonalization_prevents_ghosts():
    op, true = spectrum_matrix()
    # tol=0: run all 100 steps, long past convergence of the top values
    good = lanczos(op, k=5, which="largest", max_iter=100, tol=0.0)
    assert good.iterations == 100 and not good.converged
    np.testing.assert_allclose(good.eigenvalues, true[-5:], rtol=1e-10)
    assert np.min(np.diff(good.eigenvalues)) > 0.5  # distinct
    bad = lanczos(op, k=5, which="largest", max_iter=100, tol=0.0, reorthogonalize=False)
    # the plain recurrence loses orthogonality and repeats the converged λmax (ghosts)
    assert np.sum(np.abs(bad.eigenvalues - true[-1]) < 1e-6) >= 2


def test_lanczos_unconverged_is_flagged():
    op, true = spectrum_matrix()
    res = lanczos(op, k=5, which="smallest", max_iter=6)
    assert not res.converged and res.num_products == 6 and len(res.eigenvalues) == 5


def test_lanczos_full_space_and_repeated_eigenvalues():
    lam = torch.tensor([3.0, 3.0, 1.0, 0.0, 0.0, -2.0], dtype=torch.float64)
    op = MatrixOperator.from_eigenvalues(lam, seed=2)
    res = lanczos(op, k=6, which="largest", max_iter=50)  # breakdown, then restarts
    np.testing.assert_allclose(res.eigenvalues, np.sort(lam.numpy()), atol=1e-10)
    assert res.num_products == 6 and res.converged


def test_power_iteration():
    op, true = spectrum_matrix()
    res = power_iteration(op, max_iter=2000, tol=1e-6, seed=1)
    assert res.converged and 0 < res.num_products == len(res.history) < 2000
    assert abs(res.max - true[-1]) <= 1e-9 * true[-1]
    assert res.eigenvectors.shape == (1, op.size)
    top2 = power_iteration(op, k=2, max_iter=2000, tol=1e-6)
    np.testing.assert_allclose(top2.eigenvalues, true[-2:], rtol=1e-9)
    short = power_iteration(op, max_iter=3)
    assert not short.converged and short.num_products == 3


def test_power_iteration_on_the_tiny_net(tiny):
    _, op, _, true = tiny
    res = power_iteration(op, max_iter=5000, tol=1e-7)
    dominant = true[np.argmax(np.abs(true))]
    assert res.converged and abs(res.max - dominant) <= 1e-8 * abs(dominant)


def test_trace_estimators():
    op, true = spectrum_matrix()
    trace = float(true.sum())
    h = hutchinson(op, num_samples=300, seed=0)
    assert h.num_products == 300 and h.converged is None
    assert abs(h.estimate - trace) <= 4 * h.std_error
    early = hutchinson(op, num_samples=1000, seed=0, tol=0.02)
    assert early.converged and early.num_products < 1000
    pp = hutch_plus_plus(op, num_products=90, seed=0)
    assert pp.num_products == 90 and abs(pp.estimate - trace) <= 4 * pp.std_error
    small = MatrixOperator.from_eigenvalues(torch.arange(1.0, 7.0))
    assert abs(hutch_plus_plus(small, num_products=30).estimate - 21.0) < 1e-10  # Q spans all


def test_hutch_plus_plus_beats_hutchinson_on_a_decaying_spectrum():
    lam = 100.0 * 0.8 ** torch.arange(300, dtype=torch.float64)
    op = MatrixOperator.from_eigenvalues(lam, seed=4)
    trace = float(lam.sum())
    err_h, err_pp = [], []
    for seed in range(10):
        err_h.append((hutchinson(op, num_samples=60, seed=seed).estimate - trace) ** 2)
        err_pp.append((hutch_plus_plus(op, num_products=60, seed=seed).estimate - trace) ** 2)
    assert np.sqrt(np.mean(err_pp)) < 0.1 * np.sqrt(np.mean(err_h))


def test_spectral_density_slq():
    op, true = spectrum_matrix()
    d = spectral_density(op, num_vectors=10, lanczos_steps=60, seed=0)
    assert d.num_products == 600 and d.density.shape == d.grid.shape
    assert abs(d.mass - 1.0) < 1e-3
    np.testing.assert_allclose(d.weights.sum(axis=1), 1.0, rtol=1e-10)
    mean = float(np.trapezoid(d.grid * d.density, d.grid))
    assert abs(mean - d.mean()) < 1e-3
    assert abs(mean - true.mean()) < 0.05 * (true.max() - true.min())
    # the isolated top eigenvalue carries weight ~1/P at its node
    near_top = np.abs(d.nodes - true[-1]) < 1e-6
    assert abs(d.weights[near_top].sum() / 10 - 1 / op.size) < 2 / op.size


def test_weights_are_every_matrix_whatever_its_name():
    """``wrt="weights"`` is every parameter with two or more dimensions, as the directions and
    PCA code choose them: MultiheadAttention's ``in_proj_weight`` and a custom matrix count."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
            self.mix = nn.Parameter(torch.randn(4, 3))  # a matrix not named "weight"
            self.norm = nn.LayerNorm(3)

        def forward(self, x):
            h, _ = self.attn(x, x, x)
            return self.norm(h @ self.mix).mean(1)

    torch.manual_seed(0)
    net = Net().double()
    x, y = torch.randn(6, 5, 4, dtype=torch.float64), torch.randint(0, 3, (6,))
    op = HessianOperator(net, batches=[(x, y)], wrt="weights")
    assert op.names == ["mix", "attn.in_proj_weight", "attn.out_proj.weight"]  # model order
    assert all(p.ndim >= 2 for p in op.params.values())
    dense = dense_oracle(net, x, y, op.names)
    torch.testing.assert_close(op.dense(), dense, rtol=1e-10, atol=1e-12)


def test_frozen_parameters_are_held_fixed_in_the_operators_dtype():
    """A frozen parameter (left out of ``parameters_of``) is still cast to the operator's dtype
    and held at its value, so a float32 model's Hessian can be taken in float64."""
    torch.manual_seed(0)
    model = tiny_mlp().float()
    model[0].weight.requires_grad_(False)
    x, y, batches = tiny_data()
    op = HessianOperator(model, batches=batches, dtype=torch.float64)
    assert "0.weight" not in op.names
    oracle = dense_oracle(model.double(), x, y, op.names)
    torch.testing.assert_close(op.dense(), oracle, rtol=1e-6, atol=1e-8)
