"""Hessian spectra of the loss: a matrix-free operator and the algorithms that use it.

* :class:`GGNOperator`, :class:`FisherOperator` (Monte Carlo, labels from the model's
  predictive) and :class:`EmpiricalFisherOperator`: the output-space curvatures Jᵀ M J, with the
  same batches, weights and ``wrt=`` as the Hessian;
* :class:`HessianOperator`: H v for the Hessian of the *mean* loss over a fixed set of batches
  (batch-size-weighted average of per-batch products), w.r.t. all parameters, the weights only,
  a layer or a list of names, with the model in eval mode and never mutated;
  :class:`MatrixOperator` for explicit matrices (tests, benchmarks);
* :func:`lanczos` (full reorthogonalization, residual-bound convergence) and
  :func:`power_iteration` (largest magnitude, deflation for top-k) -> :class:`EigenResult`;
* :func:`hutchinson` and :func:`hutch_plus_plus` -> :class:`TraceResult`;
* :func:`spectral_density` (stochastic Lanczos quadrature) -> :class:`DensityResult`.

Every result reports the operator products it used and whether it converged.
"""

from .curvature import EmpiricalFisherOperator, FisherOperator, GGNOperator
from .density import DensityResult, spectral_density
from .eigensolvers import EigenResult, Tridiagonal, lanczos, lanczos_tridiagonal, power_iteration
from .operator import (
    HessianOperator,
    MatrixOperator,
    SymmetricOperator,
    random_vector,
    select_parameters,
)
from .trace import TraceResult, hutch_plus_plus, hutchinson

__all__ = [
    "HessianOperator",
    "GGNOperator",
    "FisherOperator",
    "EmpiricalFisherOperator",
    "MatrixOperator",
    "SymmetricOperator",
    "select_parameters",
    "random_vector",
    "EigenResult",
    "Tridiagonal",
    "lanczos",
    "lanczos_tridiagonal",
    "power_iteration",
    "TraceResult",
    "hutchinson",
    "hutch_plus_plus",
    "DensityResult",
    "spectral_density",
]
