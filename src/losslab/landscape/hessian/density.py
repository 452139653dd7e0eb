"""Spectral density of a symmetric operator by stochastic Lanczos quadrature (SLQ).

The spectral density ρ(λ) = (1/P) Σ_i δ(λ - λ_i) is smoothed by a Gaussian g_σ:
ρ_σ(λ) = (1/P) Σ_i g_σ(λ - λ_i) = (1/P) tr g_σ(λ I - H). For a random unit vector v
(normalized Rademacher or Gaussian), E[vᵀ f(H) v] = tr f(H)/P, and vᵀ f(H) v is the integral of
f against the spectral measure of H seen from v, which m Lanczos steps started at v turn into
an m-point Gauss quadrature (Golub & Meurant 1994): nodes θ_j = eigenvalues of T_m and weights
τ_j = (first component of T_m's j-th eigenvector)², Σ_j τ_j = 1. Averaging over n_v vectors,

    ρ_σ(λ) ≈ (1/n_v) Σ_v Σ_j τ_j^(v) g_σ(λ - θ_j^(v))

(Lin, Saad & Yang 2016; Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019 for neural
network Hessians). The density integrates to 1 (up to the grid's truncation), and its mean
Σ τ θ / n_v is exactly the average of vᵀ H v, i.e. a Hutchinson estimate of tr(H)/P.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from losslab.errors import InputError

from .eigensolvers import lanczos_tridiagonal
from .operator import random_vector, tracked

__all__ = ["DensityResult", "spectral_density"]


@dataclass
class DensityResult:
    """ρ_σ on ``grid`` (numpy float64), the quadrature ``nodes`` and ``weights`` (one row
    per starting vector; rows padded with weight-0 nodes when a run stopped early on an
    invariant subspace), ``sigma``, ``mass`` = ∫ρ_σ over the grid (trapezoid rule; below 1
    when the grid cuts off mass or is too coarse for σ) and the products used.
    ``converged`` is None: SLQ spends a fixed budget and has no stopping test (as
    :class:`~losslab.landscape.hessian.trace.TraceResult` without a tolerance)."""

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    mass: float
    num_products: int
    converged: bool | None = None

    def mean(self) -> float:
        """∫ λ ρ(λ) dλ from the quadrature itself (≈ tr(H)/P)."""
        return float((self.nodes * self.weights).sum() / self.nodes.shape[0])


def spectral_density(op, num_vectors: int = 5, lanczos_steps: int = 80,
                     grid: np.ndarray | int | None = None, sigma: float | None = None,
                     seed: int = 0, distribution: str = "rademacher",
                     reorthogonalize: bool = True, progress: bool | None = None
                     ) -> DensityResult:
    """Estimate the spectral density of ``op`` by SLQ (``num_vectors`` × ``lanczos_steps``
    products at most).

    ``grid``: the λ values to evaluate ρ_σ at, or a number of points (default 1000) spread
    over [min node - 5σ, max node + 5σ]. ``sigma`` (default 1% of the node range) is the
    Gaussian broadening; choose the grid spacing well below it so the density integrates to
    ~1 (see ``mass``). The Lanczos runs use full reorthogonalization by default, so no ghost
    copies of converged eigenvalues appear among the nodes. ``progress``: a bar over the
    products of all vectors (:func:`~losslab.progress.track`; None: on a terminal, and the
    finished density logged in one line; False: silent).
    """
    if num_vectors < 1 or lanczos_steps < 1:
        raise InputError("num_vectors and lanczos_steps must be >= 1")
    gen = torch.Generator().manual_seed(seed)
    steps = min(lanczos_steps, op.size)
    nodes = np.zeros((num_vectors, steps))
    weights = np.zeros((num_vectors, steps))
    products = 0
    with tracked(op, num_vectors * steps, "spectral density", progress, __name__) as seen:
        for i in range(num_vectors):
            v = random_vector(op.size, gen, dtype=op.dtype, device=op.device,
                              distribution=distribution)
            # No restart on breakdown: the quadrature of vᵀ f(H) v lives in v's Krylov space.
            tri = lanczos_tridiagonal(seen, v, steps, reorthogonalize=reorthogonalize)
            products += tri.num_products
            theta, s = tri.ritz()
            m = len(theta)
            nodes[i, :m] = theta
            nodes[i, m:] = theta[-1]
            weights[i, :m] = s[0, :] ** 2
    span = float(nodes.max() - nodes.min())
    if sigma is None:
        sigma = 0.01 * span if span > 0 else max(abs(float(nodes.max())), 1.0) * 1e-3
    if sigma <= 0:
        raise InputError(f"sigma must be positive, got {sigma}")
    if grid is None or isinstance(grid, int):
        lo, hi = float(nodes.min()) - 5 * sigma, float(nodes.max()) + 5 * sigma
        grid = np.linspace(lo, hi, 1000 if grid is None else grid)
    grid = np.asarray(grid, dtype=np.float64)
    density = np.zeros_like(grid)
    norm = 1.0 / (num_vectors * sigma * math.sqrt(2 * math.pi))
    for i in range(num_vectors):
        diff = (grid[:, None] - nodes[i][None, :]) / sigma
        density += norm * (np.exp(-0.5 * diff**2) @ weights[i])
    mass = float(np.trapezoid(density, grid)) if len(grid) > 1 else float("nan")
    return DensityResult(grid, density, nodes, weights, float(sigma), mass, products)
