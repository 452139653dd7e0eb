"""HessianOperator against closed-form Hessians of convex models (float64, no autograd oracle).

Each test builds the exact Hessian of a model whose second derivatives are known by hand
(linear, logistic and softmax regression) and compares the matrix-free operator, its dense
matrix, its selections and the spectral / trace algorithms run on it with that formula.
Models are built in float64 with ``.double()``; the default dtype is never changed.

Every construction of the operator goes through :func:`_hessian`, the one place that follows
the operator's constructor signature.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losslab.landscape.hessian import HessianOperator, hutch_plus_plus, hutchinson, lanczos
from losslab.landscape.options import EvalOptions

N, D, K = 10, 4, 3
UNEVEN = (7, 3)  # two batches of different sizes: the operator must weight them by size


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread for these tiny tensors (restored after the module): on a busy
    machine with few cores, torch's thread pool makes a 10 x 3 product cost ~20 ms, not ~1 ms."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _hessian(model: nn.Module, batches, loss_fn=None, wrt="all") -> HessianOperator:
    """The operator for the mean of ``loss_fn`` over ``batches`` at the model's parameters.

    ``loss_fn`` follows the loss contract (per-example losses or a 0-d batch mean); None is
    the operator's default, per-example cross-entropy.
    """
    options = EvalOptions() if loss_fn is None else EvalOptions(loss_fn=loss_fn)
    return HessianOperator(model, batches=batches, wrt=wrt, options=options)


# ---------------------------------------------------------------------------------------------
# models, data and losses


def _linear(d: int, k: int, seed: int, scale: float = 1.0) -> nn.Linear:
    """nn.Linear(d, k) in float64 with seeded N(0, scale²) weight and bias (no global RNG)."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Linear(d, k).double()
    with torch.no_grad():
        model.weight.copy_(scale * torch.randn(k, d, generator=gen, dtype=torch.float64))
        model.bias.copy_(scale * torch.randn(k, generator=gen, dtype=torch.float64))
    return model


def _inputs(n: int = N, d: int = D, seed: int = 1) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=torch.float64)


def _augment(x: Tensor) -> Tensor:
    """X̃ = [X, 1] (n, d + 1): the bias is the weight of a constant input."""
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)


def _split(x: Tensor, y: Tensor, sizes=UNEVEN) -> list[tuple[Tensor, Tensor]]:
    return list(zip(x.split(sizes), y.split(sizes), strict=True))


def _theta(model: nn.Linear) -> Tensor:
    """θ = [w, b] for a one-output linear model: the model's flat (weight, bias) order."""
    return torch.cat([model.weight.detach().reshape(-1), model.bias.detach()])


def half_mse(out: Tensor, y: Tensor) -> Tensor:
    """Per-example (w·x_i + b − y_i)² / 2, shape (B,): the 1/2 makes the Hessian X̃ᵀX̃ / n."""
    return 0.5 * (out.squeeze(-1) - y) ** 2


def bce(out: Tensor, y: Tensor) -> Tensor:
    """Binary cross-entropy with logits, the batch mean."""
    return F.binary_cross_entropy_with_logits(out.squeeze(-1), y)


def _vectors(size: int, count: int = 3, seed: int = 5) -> list[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(size, generator=gen, dtype=torch.float64) for _ in range(count)]


def _assert_operator_is(op: HessianOperator, h: Tensor) -> None:
    """op.dense() == h, and op.matvec(v) == op @ v == h v for random v."""
    torch.testing.assert_close(op.dense(), h, rtol=1e-12, atol=1e-12)
    for v in _vectors(op.size):
        torch.testing.assert_close(op.matvec(v), h @ v, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(op @ v, h @ v, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# closed forms


def linreg_hessian(x: Tensor) -> Tensor:
    """H = X̃ᵀX̃ / n for L = (1/n) Σ_i (θ·x̃_i − y_i)² / 2, θ = [w, b] (independent of θ, y)."""
    xt = _augment(x)
    return xt.T @ xt / x.shape[0]


def logreg_hessian(x: Tensor, theta: Tensor) -> Tensor:
    """H = X̃ᵀ diag(p(1 − p)) X̃ / n, p = σ(X̃θ), for the mean BCE with logits (independent of y).

    ℓ_i = softplus(z_i) − y_i z_i with z_i = θ·x̃_i, so ℓ_i'' = σ(z_i)(1 − σ(z_i)) and
    ∇²ℓ_i = ℓ_i'' x̃_i x̃_iᵀ.
    """
    xt = _augment(x)
    p = torch.sigmoid(xt @ theta)
    return (xt * (p * (1 - p))[:, None]).T @ xt / x.shape[0]


def torch_index(k: int, j: int, n_classes: int, d: int) -> int:
    """Position of the coefficient of input coordinate j (j = d: the bias) in class k's logit
    in the flat vector of nn.Linear(d, K)'s (weight, bias).

    named_parameters order is weight then bias; weight is (K, d) row-major, so
    weight[k, j] sits at k·d + j, and bias[k] follows all K·d weights, at K·d + k.
    """
    return k * d + j if j < d else n_classes * d + k


def softmax_hessian(x: Tensor, model: nn.Linear) -> Tensor:
    """H = (1/n) Σ_i (diag(p_i) − p_i p_iᵀ) ⊗ x̃_i x̃_iᵀ in the model's flat (weight, bias) order.

    The logits are z_i = W̃ x̃_i with W̃ = [W, b] (K, d + 1); the CE Hessian w.r.t. z_i is
    A_i = diag(p_i) − p_i p_iᵀ, p_i = softmax(z_i), whatever the label, and z_i = (I_K ⊗ x̃_iᵀ)
    vec_row(W̃), so w.r.t. vec_row(W̃) (class k's row at k(d + 1) … k(d + 1) + d) the Hessian is
    the Kronecker sum above. Row/column k(d + 1) + j of that matrix is moved to
    :func:`torch_index` (k, j): H_torch[π(a), π(b)] = H_kron[a, b].
    """
    n, d = x.shape
    n_classes = model.out_features
    xt = _augment(x)
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)
    a = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # (n, K, K)
    h_kron = sum(torch.kron(a[i], torch.outer(xt[i], xt[i])) for i in range(n)) / n
    perm = torch.tensor([torch_index(k, j, n_classes, d)
                         for k in range(n_classes) for j in range(d + 1)])
    h = torch.zeros_like(h_kron)
    h[perm[:, None], perm[None, :]] = h_kron
    return h


def _softmax_problem(n: int = N, d: int = D, n_classes: int = K):
    x = _inputs(n, d)
    gen = torch.Generator().manual_seed(2)
    y = torch.randint(0, n_classes, (n,), generator=gen)
    model = _linear(d, n_classes, seed=3)
    return model, x, y


# ---------------------------------------------------------------------------------------------
# 1. linear regression, MSE


def test_linear_regression_hessian_is_xtx_over_n():
    """H = X̃ᵀX̃ / n, X̃ = [X, 1], for the mean of (w·x + b − y)²/2 over 7 + 3 examples.

    One batch of 10 and two uneven batches (7, 3) give the same matrix: the batch losses are
    weighted by n_b / N (their unweighted mean, a different matrix, is rejected).
    """
    x = _inputs()
    y = _inputs(N, 1, seed=4).squeeze(1)
    model = _linear(D, 1, seed=0)
    h = linreg_hessian(x)

    whole = _hessian(model, [(x, y)], half_mse)
    assert whole.names == ["weight", "bias"] and whole.size == D + 1
    _assert_operator_is(whole, h)

    op = _hessian(model, _split(x, y), half_mse)
    _assert_operator_is(op, h)
    per_batch = [linreg_hessian(xb) for xb in x.split(UNEVEN)]
    assert not torch.allclose(sum(per_batch) / len(per_batch), h, rtol=1e-3)

    # without the 1/2, and as a 0-d batch mean (the other form of the loss contract): 2 X̃ᵀX̃ / n
    def mse(out, y):
        return F.mse_loss(out.squeeze(-1), y)

    _assert_operator_is(_hessian(model, _split(x, y), mse), 2 * h)


def test_linear_regression_hessian_does_not_depend_on_the_point():
    """The loss is quadratic in θ = [w, b], so H = X̃ᵀX̃ / n at every θ and for every y."""
    x = _inputs()
    y = _inputs(N, 1, seed=4).squeeze(1)
    h = linreg_hessian(x)
    for seed, scale in [(0, 1.0), (7, 10.0), (8, 0.0)]:
        model = _linear(D, 1, seed=seed, scale=scale)
        _assert_operator_is(_hessian(model, _split(x, y), half_mse), h)
    _assert_operator_is(_hessian(_linear(D, 1, seed=0), _split(x, 5 * y - 3), half_mse), h)


def test_linear_regression_lanczos_equals_eigvalsh_of_the_closed_form():
    """lanczos(op) top-3 = top-3 of numpy.linalg.eigvalsh(X̃ᵀX̃ / n), to 1e-10 relative."""
    x = _inputs()
    y = _inputs(N, 1, seed=4).squeeze(1)
    op = _hessian(_linear(D, 1, seed=0), _split(x, y), half_mse)
    true = np.linalg.eigvalsh(linreg_hessian(x).numpy())
    assert np.all(np.diff(true) > 1e-3 * true[-1])  # distinct: Lanczos sees each one
    res = lanczos(op, k=3, which="largest", max_iter=op.size, tol=1e-13, seed=0)
    assert res.converged
    np.testing.assert_allclose(res.eigenvalues, true[-3:], rtol=1e-10, atol=0)
    low = lanczos(op, k=1, which="smallest", max_iter=op.size, tol=1e-13, seed=1)
    np.testing.assert_allclose(low.eigenvalues, true[:1], rtol=1e-10, atol=0)


# ---------------------------------------------------------------------------------------------
# 2. logistic regression, BCE with logits


def test_logistic_regression_hessian():
    """H = X̃ᵀ diag(p(1 − p)) X̃ / n, p = σ(X̃θ), θ = [w, b], over uneven batches (7, 3).

    At two points (the Hessian depends on θ here, unlike linear regression) and with two
    label vectors (it does not depend on y).
    """
    x = _inputs()
    gen = torch.Generator().manual_seed(6)
    y = torch.randint(0, 2, (N,), generator=gen).double()
    dense = []
    for seed, scale in [(0, 1.0), (9, 0.3)]:
        model = _linear(D, 1, seed=seed, scale=scale)
        h = logreg_hessian(x, _theta(model))
        op = _hessian(model, _split(x, y), bce)
        assert op.names == ["weight", "bias"]
        _assert_operator_is(op, h)
        _assert_operator_is(_hessian(model, _split(x, 1 - y), bce), h)
        dense.append(op.dense())
    assert not torch.allclose(dense[0], dense[1], rtol=1e-3)  # the two points differ


# ---------------------------------------------------------------------------------------------
# 3. softmax regression, cross-entropy


def test_torch_index_matches_the_flat_parameter_order():
    """torch_index(k, j) is where weight[k, j] / bias[k] land in op's flat (weight, bias) vector."""
    model = _linear(D, K, seed=3)
    op = _hessian(model, [(_inputs(), torch.zeros(N, dtype=torch.long))], F.cross_entropy)
    assert op.names == ["weight", "bias"]
    flat = torch.cat([op.params[name].reshape(-1) for name in op.names])
    for k in range(K):
        for j in range(D):
            assert flat[torch_index(k, j, K, D)] == model.weight[k, j]
        assert flat[torch_index(k, D, K, D)] == model.bias[k]


def test_softmax_regression_hessian_is_the_kronecker_sum():
    """H = (1/n) Σ_i (diag(p_i) − p_i p_iᵀ) ⊗ x̃_i x̃_iᵀ (reordered to (weight, bias)), 7 + 3.

    The default per-example loss and F.cross_entropy's batch mean give the same H. Also PSD:
    the smallest eigenvalue of op.dense() is ≥ −1e-12.
    """
    model, x, y = _softmax_problem()
    h = softmax_hessian(x, model)
    op = _hessian(model, _split(x, y))  # the default loss: per-example cross-entropy
    assert op.size == K * (D + 1)
    _assert_operator_is(op, h)
    _assert_operator_is(_hessian(model, _split(x, y), F.cross_entropy), h)  # a 0-d batch mean
    eig = np.linalg.eigvalsh(op.dense().numpy())
    assert eig[0] >= -1e-12 and eig[-1] > 1e-2


def test_softmax_regression_null_space():
    """Adding one vector c to every class row (and one α to every bias) leaves every softmax,
    hence the loss, unchanged: v = [c, …, c, α·1_K] (row-major weight, then bias) has H v = 0.

    These d + 1 directions are the whole null space: H has rank (K − 1)(d + 1) when n ≥ d + 1,
    so exactly d + 1 eigenvalues of op.dense() are ~0 and the others are clearly positive.
    """
    model, x, y = _softmax_problem()
    op = _hessian(model, _split(x, y))
    gen = torch.Generator().manual_seed(8)
    for _ in range(3):
        c = torch.randn(D, generator=gen, dtype=torch.float64)
        alpha = torch.randn((), generator=gen, dtype=torch.float64)
        v = torch.cat([c.repeat(K), alpha * torch.ones(K, dtype=torch.float64)])
        assert float(op.matvec(v).norm()) <= 1e-13 * float(v.norm())
    for j in range(D + 1):  # the unit direction of each input coordinate, the bias last
        v = torch.zeros(op.size, dtype=torch.float64)
        v[[torch_index(k, j, K, D) for k in range(K)]] = 1.0
        assert float(op.matvec(v).norm()) <= 1e-13
    eig = np.linalg.eigvalsh(op.dense().numpy())
    small = np.abs(eig) <= 1e-12 * eig[-1]
    assert small.sum() == D + 1 and eig[~small].min() > 1e-6 * eig[-1]


def test_softmax_trace_estimators_within_four_standard_errors():
    """hutchinson and hutch_plus_plus estimate tr(H) = (1/n) Σ_i tr(A_i) ‖x̃_i‖², with
    tr(A_i) = 1 − ‖p_i‖², to within 4 of their reported standard errors.

    A larger problem (n = 30, d = 12, K = 5: P = 65, rank (K − 1)(d + 1) = 52) so that Hutch++'s
    sketch (s = 30 of 90 products) does not span the range of H and its deflated part keeps 30
    random samples: the standard error is then both non-zero and a reliable scale.
    """
    n, d, n_classes = 30, 12, 5
    model, x, y = _softmax_problem(n, d, n_classes)
    xt = _augment(x)
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)
    trace = float(((1 - (p**2).sum(1)) * (xt**2).sum(1)).mean())
    h = softmax_hessian(x, model)
    assert abs(trace - float(torch.trace(h))) <= 1e-12 * trace
    op = _hessian(model, _split(x, y, (20, 10)))
    assert op.size == n_classes * (d + 1)
    errors = {}
    for distribution in ("rademacher", "gaussian"):
        res = hutchinson(op, num_samples=100, seed=0, distribution=distribution)
        assert res.num_samples == 100 and 0 < res.std_error < 0.1 * trace
        assert abs(res.estimate - trace) <= 4 * res.std_error, (distribution, res)
        errors[distribution] = res.std_error
    pp = hutch_plus_plus(op, num_products=90, seed=0)
    assert pp.num_products == 90 and pp.num_samples == 30 and 0 < pp.std_error
    assert abs(pp.estimate - trace) <= 4 * pp.std_error, pp
    # the sketch takes the top of the spectrum exactly: a smaller error on fewer products
    assert pp.std_error < 0.5 * errors["rademacher"]


# ---------------------------------------------------------------------------------------------
# 4. selection


@pytest.mark.parametrize("problem", ["linear", "softmax"])
def test_weights_selection_is_the_weight_block(problem):
    """wrt="weights" (the parameters with ndim ≥ 2: the weight matrix) gives the closed form's
    weight block H[:K·d, :K·d] (weight first in the flat order); selecting "bias" the rest."""
    if problem == "linear":
        x = _inputs()
        y = _inputs(N, 1, seed=4).squeeze(1)
        model, loss_fn, h, k = _linear(D, 1, seed=0), half_mse, linreg_hessian(x), 1
    else:
        model, x, y = _softmax_problem()
        loss_fn, h, k = None, softmax_hessian(x, model), K
    op = _hessian(model, _split(x, y), loss_fn, wrt="weights")
    assert op.names == ["weight"] and op.size == k * D
    _assert_operator_is(op, h[: k * D, : k * D])
    bias = _hessian(model, _split(x, y), loss_fn, wrt=["bias"])
    assert bias.names == ["bias"]
    _assert_operator_is(bias, h[k * D :, k * D :])
