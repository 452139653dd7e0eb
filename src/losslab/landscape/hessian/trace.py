"""Stochastic trace estimation: Hutchinson and Hutch++.

Hutchinson (1989): for random z with E[z zᵀ] = I (Rademacher ±1 or Gaussian entries),
E[zᵀ H z] = tr(H), so the mean of m quadratic forms is unbiased, with variance
2(‖H‖_F² - Σ_i H_ii²)/m for Rademacher and 2‖H‖_F²/m for Gaussian vectors; the reported
standard error is the sample standard deviation over sqrt(m).

Hutch++ (Meyer, Musco, Musco & Woodruff 2021, "Hutch++: Optimal Stochastic Trace
Estimation"): with a budget of m products, take a sketch S of s = m/3 random vectors,
Q = orth(H S) (s products), compute tr(Qᵀ H Q) exactly (s products), and estimate the rest,
tr((I - QQᵀ) H (I - QQᵀ)), by Hutchinson with the remaining m - 2s vectors projected off Q.
The top of the spectrum is captured exactly, so on matrices with decaying spectra (Hessians)
the error falls like 1/m instead of 1/sqrt(m).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from losslab.errors import InputError

from .operator import random_vector, tracked

__all__ = ["TraceResult", "hutchinson", "hutch_plus_plus"]


@dataclass
class TraceResult:
    """A trace estimate, its standard error, the products used and the sample count.

    ``converged`` is None when no tolerance was asked for (a fixed budget), else whether the
    relative standard error reached it before the sample budget ran out.
    """

    estimate: float
    std_error: float
    num_products: int
    num_samples: int
    converged: bool | None = None


def _mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, float("nan")
    var = math.fsum((x - mean) ** 2 for x in values) / (n - 1)
    return mean, math.sqrt(var / n)


def hutchinson(op, num_samples: int = 100, seed: int = 0, distribution: str = "rademacher", *,
               tol: float | None = None, min_samples: int = 10,
               progress: bool | None = None) -> TraceResult:
    """Hutchinson's estimate (1/m) Σ z_iᵀ H z_i of tr(H), one product per sample.

    With ``tol``, sampling stops early once ``std_error ≤ tol · |estimate|`` (checked from
    ``min_samples`` samples on) and ``converged`` reports whether that happened within
    ``num_samples``. ``progress``: a bar over the products (:func:`~losslab.progress.track`;
    None: on a terminal, and the finished estimate logged in one line; False: silent).
    """
    if num_samples < 1:
        raise InputError(f"num_samples must be >= 1, got {num_samples}")
    gen = torch.Generator().manual_seed(seed)
    values: list[float] = []
    converged = None if tol is None else False
    with tracked(op, num_samples, "hutchinson", progress, __name__) as seen:
        for i in range(num_samples):
            z = random_vector(op.size, gen, dtype=op.dtype, device=op.device,
                              distribution=distribution)
            values.append(float(torch.dot(z, seen.matvec(z))))
            if tol is not None and i + 1 >= max(min_samples, 2):
                est, se = _mean_se(values)
                if se <= tol * abs(est):
                    converged = True
                    break
    est, se = _mean_se(values)
    return TraceResult(est, se, len(values), len(values), converged)


def hutch_plus_plus(op, num_products: int = 99, seed: int = 0,
                    distribution: str = "rademacher", progress: bool | None = None
                    ) -> TraceResult:
    """Hutch++ with a total budget of ``num_products`` products (at least 3).

    s = num_products // 3 products form H S, and s more give tr(Qᵀ H Q) exactly for
    Q = orth(H S); the remaining num_products - 2s vectors g give Hutchinson's estimate of the
    deflated part, gᵀ (I - QQᵀ) H (I - QQᵀ) g. ``std_error`` is that part's standard error
    (the first part is exact given Q). When Q spans the whole space the trace is exact.
    ``progress``: a bar over the products, as for :func:`hutchinson`.
    """
    if num_products < 3:
        raise InputError(f"Hutch++ needs at least 3 products, got {num_products}")
    s = min(num_products // 3, op.size)
    total = num_products if s < op.size else 2 * s
    with tracked(op, total, "hutch++", progress, __name__) as seen:
        return _hutch_plus_plus(seen, num_products, s, seed, distribution)


def _hutch_plus_plus(op, num_products: int, s: int, seed: int, distribution: str
                     ) -> TraceResult:
    """:func:`hutch_plus_plus` with a sketch of ``s`` vectors (arguments checked there)."""
    gen = torch.Generator().manual_seed(seed)
    n, dtype, device = op.size, op.dtype, op.device
    sketch = [op.matvec(random_vector(n, gen, dtype=dtype, device=device,
                                      distribution=distribution)) for _ in range(s)]
    q, _ = torch.linalg.qr(torch.stack(sketch, dim=1))  # (n, s), orthonormal columns
    exact = math.fsum(float(torch.dot(q[:, j], op.matvec(q[:, j]))) for j in range(s))
    used = 2 * s
    values: list[float] = []
    if s < n:
        for _ in range(num_products - used):
            g = random_vector(n, gen, dtype=dtype, device=device, distribution=distribution)
            g = g - q @ (q.T @ g)
            values.append(float(torch.dot(g, op.matvec(g))))
    if not values:
        return TraceResult(exact, 0.0 if s == n else float("nan"), used, 0)
    rest, se = _mean_se(values)
    return TraceResult(exact + rest, se, used + len(values), len(values))
