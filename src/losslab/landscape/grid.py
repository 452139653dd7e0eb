"""The one grid spec of every map: an axis is ``(lo, hi, n)`` or explicit coordinates.

Lines, surfaces, ratio maps, trajectory planes and curve planes all take ``grid=``:

* an **axis** is ``(lo, hi, n)`` (``n`` evenly spaced values, :func:`make_axis`) or a 1-D
  tensor/array of explicit coordinates;
* a **plane** (2-D maps) is one axis, used for both x and y, or a pair ``(x_axis, y_axis)``;
* where a map can choose a range itself (a trajectory plane around its path, a curve plane
  around its control points) an axis may be an ``int n``: ``n`` points on the map's own range.

Every map's exact points must be grid points: 0 on every axis that spans it (so the centre
of a surface is exactly θ*), and 0 and 1 on an interpolation line (so both endpoints are
exactly the two models). A value within 1e-9 steps of such a point is set to it exactly;
farther, the grid is refused with a one-line error (e.g. ``(-1, 1, 20)`` has no 0: use an
odd count for a symmetric range). Values are float64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from torch import Tensor

from losslab.errors import InputError

__all__ = ["make_axis", "axis_of", "plane_of", "snap_exact", "is_count"]

Axis = tuple[float, float, int] | Sequence[float] | Tensor | np.ndarray | int


def make_axis(lo: float, hi: float, n: int, *, name: str = "x",
              exact: Sequence[float] = (0.0,)) -> Tensor:
    """``n`` evenly spaced float64 values from ``lo`` to ``hi``, ``v_i = (lo(n−1−i) + hi·i)/(n−1)``,
    with every value of ``exact`` inside ``[lo, hi]`` a grid point (see the module docstring)."""
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
        raise InputError(f"{name}: the number of points must be a positive int, got {n!r}")
    n = int(n)
    if n == 1:
        values = torch.tensor([float(lo)], dtype=torch.float64)
    else:
        i = torch.arange(n, dtype=torch.float64)
        values = (float(lo) * (n - 1 - i) + float(hi) * i) / (n - 1)
    return snap_exact(values, exact, f"{name} range ({lo}, {hi}, {n})",
                      hint=" (for a symmetric range use an odd number of points, e.g. 21)")


def snap_exact(values: Tensor, exact: Sequence[float], what: str, hint: str = "") -> Tensor:
    """``values`` with each of ``exact`` that lies in their range set exactly on its nearest
    grid point; refused when that point is farther than 1e-9 grid steps."""
    values = values.to(torch.float64).clone()
    span = float(values.max() - values.min()) if values.numel() > 1 else 0.0
    tol = 1e-9 * span / max(values.numel() - 1, 1)
    for e in exact:
        if not float(values.min()) <= e <= float(values.max()):
            continue
        k = int(torch.argmin((values - e).abs()))
        if abs(float(values[k]) - e) > tol:
            raise InputError(f"{what} contains {e} but no grid point is {e}: the point "
                             f"θ at {e} would never be evaluated{hint}")
        values[k] = e
    return values


def is_count(spec: Any) -> bool:
    """Whether an axis spec is a bare count ``n`` (a map's own range of ``n`` points)."""
    return isinstance(spec, Integral) and not isinstance(spec, bool)


def _is_range(spec: Any) -> bool:
    return (isinstance(spec, (tuple, list)) and len(spec) == 3
            and all(isinstance(v, Real) and not isinstance(v, bool) for v in spec)
            and isinstance(spec[2], Integral))


def axis_of(spec: Axis, *, name: str = "x", exact: Sequence[float] = (0.0,),
            auto: Callable[[int], Tensor] | None = None) -> Tensor:
    """The coordinates of one axis: ``(lo, hi, n)``, explicit coordinates (a 1-D tensor or
    array), or, where the map gives its own range ``auto`` (a function of ``n``), ``n``."""
    if is_count(spec):
        if auto is None:
            raise InputError(f"grid {name}: a bare count ({spec}) needs a map that chooses its "
                             "own range; give (lo, hi, n)")
        return auto(int(spec))
    if _is_range(spec):
        return make_axis(spec[0], spec[1], spec[2], name=name, exact=exact)
    if isinstance(spec, (Tensor, np.ndarray)):
        values = torch.as_tensor(spec, dtype=torch.float64)
        if values.ndim != 1 or values.numel() == 0:
            raise InputError(f"grid {name}: explicit coordinates must be a non-empty 1-D "
                             f"tensor, got shape {tuple(values.shape)}")
        return snap_exact(values, exact, f"grid {name}")
    raise InputError(f"grid {name}: expected (lo, hi, n) with an int n or a 1-D tensor of "
                     f"coordinates, got {spec!r}")


def plane_of(grid: Any, *, exact: Sequence[float] = (0.0,),
             auto_x: Callable[[int], Tensor] | None = None,
             auto_y: Callable[[int], Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """``(x, y)`` of a plane: one axis for both, or a pair ``(x_axis, y_axis)``."""
    pair = isinstance(grid, (tuple, list)) and len(grid) == 2  # one axis is never 2 numbers
    xs, ys = grid if pair else (grid, grid)
    return (axis_of(xs, name="x", exact=exact, auto=auto_x),
            axis_of(ys, name="y", exact=exact, auto=auto_y))
