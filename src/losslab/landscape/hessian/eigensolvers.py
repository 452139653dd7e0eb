"""Extreme eigenvalues of a symmetric operator: Lanczos with full reorthogonalization, and power
iteration (with deflation) as the simple baseline.

Lanczos (Lanczos 1950; Golub & Van Loan, *Matrix Computations*, §10.1; Parlett, *The Symmetric
Eigenvalue Problem*, ch. 13) builds an orthonormal basis q_1..q_m of the Krylov space
K_m(H, q_1) = span{q_1, H q_1, ..., H^{m-1} q_1} by the three-term recurrence

    β_j q_{j+1} = H q_j - α_j q_j - β_{j-1} q_{j-1},   α_j = q_jᵀ H q_j,

so that H Q_m = Q_m T_m + β_m q_{m+1} e_mᵀ with T_m = tridiag(β, α, β). The eigenvalues θ_i
of T_m (Ritz values) approximate the extreme eigenvalues of H, and the Ritz pair
(θ_i, y_i = Q_m s_i) has the residual ‖H y_i - θ_i y_i‖ = |β_m s_{m,i}|, which needs no extra
product: that is the convergence test here, |β_m s_{m,i}| ≤ tol · |θ_i| for every wanted i.

In floating point the q_j lose orthogonality as soon as a Ritz value converges (Paige 1971),
and the plain recurrence then produces spurious copies of converged eigenvalues ("ghost"
eigenvalues, a trap of existing Hessian tools). ``reorthogonalize=True`` (the default)
orthogonalizes every new vector against all previous ones by classical Gram-Schmidt applied
twice ("twice is enough", Giraud et al. 2005), at O(mP) memory and O(m²P) flops. The
recurrence coefficients are kept in float64 whatever the operator's dtype.

Power iteration converges to the eigenvalue of largest *magnitude* at the rate |λ_2/λ_1| per
product; Lanczos at a rate governed by Chebyshev polynomials, roughly sqrt of the gap faster
(Kaniel-Paige-Saad bounds), see ``benchmarks/bench_hessian.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import Tensor

from losslab.errors import InputError

from .operator import random_vector, tracked

__all__ = ["EigenResult", "Tridiagonal", "lanczos", "lanczos_tridiagonal", "power_iteration"]


@dataclass
class EigenResult:
    """Eigenvalue estimates with their cost and convergence.

    ``eigenvalues`` are sorted ascending (numpy float64); ``eigenvectors`` (when requested)
    is a (k, P) tensor whose row i belongs to ``eigenvalues[i]``; ``residuals[i]`` is the
    residual norm ‖H y_i - θ_i y_i‖ (unit y_i); ``converged`` says whether every returned value
    met the tolerance; ``iterations`` counts Lanczos steps (or power iterations, all stages);
    ``num_products`` the operator products used; ``history`` the estimate of the extreme wanted
    eigenvalue after each product (Lanczos: the largest Ritz value, or the smallest for
    ``which="smallest"``; power iteration: the Rayleigh quotient of the current stage).
    """

    eigenvalues: np.ndarray
    eigenvectors: Tensor | None
    num_products: int
    converged: bool
    iterations: int
    residuals: np.ndarray
    history: list[float] = field(default_factory=list, repr=False)

    @property
    def max(self) -> float:
        """The largest returned eigenvalue."""
        return float(self.eigenvalues[-1])

    @property
    def min(self) -> float:
        """The smallest returned eigenvalue."""
        return float(self.eigenvalues[0])


@dataclass
class Tridiagonal:
    """A Lanczos run: T_m's diagonal ``alpha`` (m,), its off-diagonal ``beta[:-1]`` and the
    last residual coupling ``beta[-1]`` = β_m (float64); the basis Q_m as (m, P) rows if kept.
    A restart after breakdown is recorded as a zero in ``beta``."""

    alpha: np.ndarray
    beta: np.ndarray
    basis: Tensor | None
    num_products: int

    def ritz(self, select: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values and T_m's eigenvectors (columns), all or the index range ``select``."""
        return _eigh_t(self.alpha, self.beta[:-1], select)


def _eigh_t(d: np.ndarray, e: np.ndarray, select: tuple[int, int] | None):
    if select is None:
        return eigh_tridiagonal(d, e)
    return eigh_tridiagonal(d, e, select="i", select_range=select)


def _orthogonalize(w: Tensor, basis: Tensor) -> Tensor:
    """Classical Gram-Schmidt of ``w`` against the rows of ``basis``, applied twice."""
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def lanczos_tridiagonal(op, start: Tensor, steps: int, *, reorthogonalize: bool = True,
                        keep_basis: bool = False, generator: torch.Generator | None = None,
                        stop: Callable[[list[float], list[float]], bool] | None = None
                        ) -> Tridiagonal:
    """Run up to ``steps`` Lanczos steps from ``start`` (normalized here).

    ``stop(alpha, beta)`` is called after every step with the coefficients so far (``beta[-1]``
    is the current β_m) and ends the run when it returns True. On breakdown (β_m ≈ 0: the
    Krylov space is invariant, its Ritz values are exact eigenvalues) the run continues from a
    random vector orthogonal to the basis when reorthogonalizing with a ``generator`` (T then
    becomes block diagonal, which finds repeated eigenvalues too); otherwise it ends.
    """
    n = op.size
    steps = min(int(steps), n)
    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    dtype, device = op.dtype, op.device
    keep = keep_basis or reorthogonalize
    basis = torch.empty((steps, n), dtype=dtype, device=device) if keep else None
    q = start.detach().to(device=device, dtype=dtype)
    q = q / torch.linalg.vector_norm(q)
    q_prev: Tensor | None = None
    alpha: list[float] = []
    beta: list[float] = []
    eps = torch.finfo(dtype).eps
    products = 0
    for j in range(steps):
        if basis is not None:
            basis[j] = q
        w = op.matvec(q)
        products += 1
        a = float(torch.dot(w, q))
        w = w - a * q
        if q_prev is not None:
            w = w - beta[-1] * q_prev
        if reorthogonalize:
            w = _orthogonalize(w, basis[: j + 1])
        b = float(torch.linalg.vector_norm(w))
        alpha.append(a)
        beta.append(b)
        last = j + 1 == steps
        scale = max(max(abs(x) for x in alpha), max(beta), np.finfo(np.float64).tiny)
        if not last and b <= 100 * eps * scale:
            if not (reorthogonalize and generator is not None):
                break
            w = random_vector(n, generator, dtype=dtype, device=device)
            w = _orthogonalize(w / torch.linalg.vector_norm(w), basis[: j + 1])
            if float(torch.linalg.vector_norm(w)) <= 1e-8:  # no room left (not for j + 1 < n)
                break
            beta[-1] = b = 0.0
        if (stop is not None and stop(alpha, beta)) or last:
            break
        q_prev, q = q, w / (b if b > 0 else torch.linalg.vector_norm(w))
    m = len(alpha)
    return Tridiagonal(np.asarray(alpha), np.asarray(beta),
                       basis[:m] if basis is not None else None, products)


def _wanted(m: int, k: int, which: str) -> list[tuple[int, int]]:
    """Index ranges (inclusive) of the wanted Ritz values among m sorted ones."""
    k = min(k, m)
    if which == "largest":
        return [(m - k, m - 1)]
    if which == "smallest":
        return [(0, k - 1)]
    if 2 * k >= m:
        return [(0, m - 1)]
    return [(0, k - 1), (m - k, m - 1)]


def _ritz_wanted(d: np.ndarray, e_full: np.ndarray, k: int, which: str):
    """Wanted Ritz values, T's eigenvectors for them, and their residual bounds |β_m s_m|."""
    m = len(d)
    parts = [_eigh_t(d, e_full[:-1], r) for r in _wanted(m, k, which)]
    theta = np.concatenate([p[0] for p in parts])
    s = np.concatenate([p[1] for p in parts], axis=1)
    return theta, s, np.abs(e_full[-1] * s[-1, :])


def _converged(theta: np.ndarray, res: np.ndarray, tol: float, floor: float) -> bool:
    return bool(np.all(res <= tol * np.maximum(np.abs(theta), floor)))


def lanczos(op, k: int = 1, which: str = "largest", max_iter: int = 100, tol: float = 1e-6,
            seed: int = 0, reorthogonalize: bool = True, return_eigenvectors: bool = False,
            start: Tensor | None = None, progress: bool | None = None) -> EigenResult:
    """The ``k`` largest / smallest (or both: k of each) eigenvalues of a symmetric operator.

    Runs Lanczos from a seeded Gaussian start (or ``start``) for at most ``max_iter`` steps (one
    product each; capped at P, where the Krylov space is the whole space and the spectrum is
    exact), stopping once every wanted Ritz value satisfies |β_m s_{m,i}| ≤ tol · |θ_i|
    (|θ_i| floored at sqrt(eps) · max|θ| so eigenvalues near zero are judged against the
    spectrum's scale; ``tol=0`` runs all ``max_iter`` steps). ``converged=False`` flags a
    result that ran out of steps first.

    Lanczos from one vector sees one copy of each eigenvalue: an eigenvalue of multiplicity > 1
    is found once (unless the Krylov space is exhausted and the run restarts).

    ``progress``: a bar over the products (:func:`~losslab.progress.track`; None: on a
    terminal, and the finished run logged in one line; False: silent).
    """
    if which not in ("largest", "smallest", "both"):
        raise InputError(f"which must be 'largest', 'smallest' or 'both', got {which!r}")
    if k < 1 or k > op.size:
        raise InputError(f"k must be in [1, {op.size}], got {k}")
    need = min(k * (2 if which == "both" else 1), op.size)
    gen = torch.Generator().manual_seed(seed)
    if start is None:
        start = random_vector(op.size, gen, dtype=op.dtype, device=op.device)
    floor_rel = float(np.sqrt(torch.finfo(op.dtype).eps))
    history: list[float] = []

    def stop(alpha: list[float], beta: list[float]) -> bool:
        d, e = np.asarray(alpha), np.asarray(beta)
        top = len(d) - 1
        ext = (top, top) if which != "smallest" else (0, 0)
        history.append(float(_eigh_t(d, e[:-1], ext)[0][0]))
        if len(d) < need:
            return False
        theta, _, res = _ritz_wanted(d, e, k, which)
        return _converged(theta, res, tol, floor_rel * float(np.max(np.abs(theta))))

    steps = max(max_iter, need)
    with tracked(op, min(steps, op.size), f"lanczos ({which})", progress, __name__) as seen:
        tri = lanczos_tridiagonal(seen, start, steps, reorthogonalize=reorthogonalize,
                                  keep_basis=return_eigenvectors, generator=gen, stop=stop)
    m = len(tri.alpha)
    theta, s, res = _ritz_wanted(tri.alpha, tri.beta, k, which)
    floor = floor_rel * float(np.max(np.abs(theta)))
    converged = m >= need and _converged(theta, res, tol, floor)
    order = np.argsort(theta, kind="stable")
    vectors = None
    if return_eigenvectors:
        coeff = torch.as_tensor(s[:, order], dtype=op.dtype, device=op.device)
        vectors = coeff.T @ tri.basis
    return EigenResult(theta[order], vectors, tri.num_products, converged, m, res[order],
                       history)


def power_iteration(op, k: int = 1, max_iter: int = 1000, tol: float = 1e-4, seed: int = 0,
                    progress: bool | None = None) -> EigenResult:
    """The eigenvalue of largest **magnitude** (and with ``k > 1`` the next ones, by deflation).

    v ← H v / ‖H v‖ with the Rayleigh quotient θ = vᵀ H v. Each stage stops when the residual
    ‖H v - θ v‖ ≤ tol · |θ| (computed from the same product, so it costs nothing); the
    eigenvalue's own error is then about the residual squared over the gap. With ``k > 1``,
    stage i iterates the projected operator (I - V Vᵀ) H (I - V Vᵀ) where V holds the i
    vectors found so far (projection deflation; more stable than Hotelling's H - Σ λ v vᵀ),
    so the values are the k largest in magnitude. ``max_iter`` is per stage; the result is
    sorted ascending and ``converged`` is False if any stage ran out of iterations.

    Power iteration converges like |λ_2/λ_1|^t: slowly for a small gap (see :func:`lanczos`).
    ``progress``: a bar over the products, as for :func:`lanczos`.
    """
    if k < 1 or k > op.size:
        raise InputError(f"k must be in [1, {op.size}], got {k}")
    if max_iter < 1:
        raise InputError(f"max_iter must be >= 1, got {max_iter}")
    with tracked(op, k * max_iter, "power iteration", progress, __name__) as seen:
        return _power_stages(seen, k, max_iter, tol, seed)


def _power_stages(op, k: int, max_iter: int, tol: float, seed: int) -> EigenResult:
    """The ``k`` deflated stages of :func:`power_iteration` (arguments checked there)."""
    gen = torch.Generator().manual_seed(seed)
    dtype, device = op.dtype, op.device
    tiny = float(torch.finfo(dtype).tiny)
    found = torch.empty((0, op.size), dtype=dtype, device=device)
    values, residuals, history = [], [], []
    products = iterations = 0
    all_converged = True

    def project(x: Tensor) -> Tensor:
        return x - found.T @ (found @ x) if found.shape[0] else x

    for _ in range(k):
        v = project(random_vector(op.size, gen, dtype=dtype, device=device))
        v = v / torch.linalg.vector_norm(v)
        theta, res, ok = 0.0, float("inf"), False
        for _ in range(max_iter):
            w = project(op.matvec(v))
            products += 1
            iterations += 1
            theta = float(torch.dot(v, w))
            res = float(torch.linalg.vector_norm(w - theta * v))
            history.append(theta)
            if res <= tol * max(abs(theta), tiny):
                ok = True
                break
            nw = torch.linalg.vector_norm(w)
            if float(nw) == 0.0:  # v in the null space: θ = 0 is exact (caught above)
                break
            v = project(w / nw)
            v = v / torch.linalg.vector_norm(v)
        all_converged &= ok
        values.append(theta)
        residuals.append(res)
        found = torch.cat([found, v[None]])
    order = np.argsort(np.asarray(values), kind="stable")
    return EigenResult(np.asarray(values)[order], found[torch.as_tensor(order, device=device)],
                       products, all_converged, iterations, np.asarray(residuals)[order],
                       history)
