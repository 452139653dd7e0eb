"""Curve bases: the weights c_j(t) of a curve's points, φ(t) = Σ_j c_j(t) · w_j.

Garipov et al. 2018 ("Loss Surfaces, Mode Connectivity, and Fast Ensembling of DNNs",
arXiv:1802.10026, §3) connect two trained weight vectors w_0 = ŵ1 and w_{n+1} = ŵ2 through n
trainable bends w_1 … w_n:

* **Bezier**: the Bernstein polynomials of degree m = n + 1,
  c_j(t) = C(m, j) · t^j · (1 − t)^(m − j). One bend: (1 − t)² ŵ1 + 2t(1 − t) θ + t² ŵ2.
* **PolyChain**: the piecewise-linear path through the points, placed at t = j / m: the hat
  functions c_j(t) = max(0, 1 − |m·t − j|). One bend: 2(0.5 − t) ŵ1 + 2t θ on [0, 0.5].

Both are partitions of unity (Σ_j c_j(t) = 1) with c(0) = e_0 and c(1) = e_m exactly, so the
curve passes through the endpoints exactly. Coefficients are computed in float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from losslab.errors import InputError

__all__ = ["CURVE_KINDS", "bezier_coefficients", "polychain_coefficients", "curve_coefficients"]

CURVE_KINDS = ("bezier", "polychain")


def _check(t: float, points: int) -> None:
    if points < 2:
        raise InputError(f"a curve needs at least its 2 endpoints, got {points} points")
    if not 0.0 <= t <= 1.0:
        raise InputError(f"t must be in [0, 1], got {t}")


def bezier_coefficients(t: float, points: int) -> Tensor:
    """Bernstein weights of ``points`` control points (endpoints included) at ``t``."""
    _check(t, points)
    m = points - 1
    return torch.tensor([math.comb(m, j) * t ** j * (1.0 - t) ** (m - j) for j in range(points)],
                        dtype=torch.float64)


def polychain_coefficients(t: float, points: int) -> Tensor:
    """Hat-function weights of ``points`` equally spaced (in t) chain points at ``t``."""
    _check(t, points)
    m = points - 1
    return torch.tensor([max(0.0, 1.0 - abs(m * t - j)) for j in range(points)],
                        dtype=torch.float64)


def curve_coefficients(kind: str, t: float, points: int) -> Tensor:
    """The weights of ``kind`` ("bezier" or "polychain") at ``t``, shape ``(points,)``."""
    if kind == "bezier":
        return bezier_coefficients(t, points)
    if kind == "polychain":
        return polychain_coefficients(t, points)
    raise InputError(f"kind must be one of {CURVE_KINDS}, got {kind!r}")
