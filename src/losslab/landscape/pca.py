"""PCA directions of an optimization trajectory (Li et al. 2018, §7).

Two random directions in a space of millions of dimensions are nearly orthogonal to any
optimization path, so the path projected on them looks like noise. Li, Xu, Taylor, Studer &
Goldstein 2018 ("Visualizing the Loss Landscape of Neural Nets", arXiv:1712.09913) instead take
the checkpoints ``θ_1 … θ_T`` of a run, form the matrix

    M = [θ_1 − θ_final; …; θ_T − θ_final]          (T × P, offsets from the final point)

and take its principal components as the plot's axes. As the paper's code does
(loss-landscape's ``projection.py`` fits scikit-learn's ``PCA`` to M), the default is PCA
proper: the rows of M are centred on their mean, ``M_c = M − mean(M)``, and the directions
``v_1, v_2`` are the top right-singular vectors of ``M_c`` (unit norm), with explained
variance ratio ``s_k² / Σ_j s_j²`` of ``M_c``'s singular values, equal to scikit-learn's
``explained_variance_ratio_``. ``centered=False`` takes the SVD of M itself (directions of the
largest mean square offset from θ_final rather than of the largest variance). Either way the
path's coordinates are ``c_ik = ⟨θ_i − θ_final, v_k⟩``, so θ_final is at (0, 0), as the
paper's ``project_trajectory`` draws it. The SVD is done in float64. The sign of each
direction is fixed (its largest-magnitude entry positive, scikit-learn's ``svd_flip`` rule for
``PCA``) so the result is deterministic.

Example::

    traj = list(CheckpointSet.from_run("runs/digits", role="epoch").load_all())
    dirs, evr, coords = pca_directions(traj)                # coords[-1] == (0, 0)
    surf = surface(model, traj[-1], dirs, batches=test, grid=(-x, x, 21))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from losslab.errors import InputError
from losslab.landscape.directions import as_params
from losslab.params import ParamDict, check_same_keys, flatten, unflatten

__all__ = ["PCAResult", "pca_directions", "project"]


class PCAResult(NamedTuple):
    """``(directions, explained_variance_ratio (k,), coords (T, k))``, unpackable as a tuple."""

    directions: list[ParamDict]
    explained_variance_ratio: Tensor
    coords: Tensor


def _flat64(p: Mapping[str, Tensor], names: list[str], keep: list[bool]) -> Tensor:
    parts = [p[k].detach().reshape(-1).to(torch.float64) if use
             else torch.zeros(p[k].numel(), dtype=torch.float64, device=p[k].device)
             for k, use in zip(names, keep, strict=True)]
    return torch.cat(parts)


def pca_directions(trajectory: Iterable[ParamDict | Any], final: ParamDict | Any | None = None,
                   k: int = 2, *, ignore: str = "none", centered: bool = True) -> PCAResult:
    """Top-``k`` PCA directions of ``{θ_i − θ_final}`` (Li et al. 2018), of their deviations
    from their mean (``centered``, the default, as scikit-learn's ``PCA``) or of the offsets
    themselves (``centered=False``).

    ``trajectory``: parameter dicts or LoadedCheckpoints (e.g. ``CheckpointSet.load_all()``);
    ``final``: the centre (default: the trajectory's last point). ``ignore="biasbn"`` leaves
    tensors with ``ndim <= 1`` out (zero in the directions), as for random directions.
    Returns unit-norm directions in the parameters' dtype and device, the explained variance
    ratio of each (of the total over all components), and the coordinates ``(T, k)`` of every
    trajectory point (float64; a point equal to ``final`` is at exactly 0).
    """
    if ignore not in ("none", "biasbn"):
        raise InputError(f"ignore must be 'none' or 'biasbn', got {ignore!r}")
    points = [as_params(p) for p in trajectory]
    if not points:
        raise InputError("the trajectory is empty")
    center = as_params(final) if final is not None else points[-1]
    names = list(center)
    keep = [ignore == "none" or center[n].ndim >= 2 for n in names]
    for p in points:
        check_same_keys(center, p)
    c = _flat64(center, names, keep)
    m = torch.stack([_flat64(p, names, keep) - c for p in points])  # (T, P)
    if not 1 <= k <= min(m.shape):
        raise InputError(f"k must be in [1, {min(m.shape)}] for {len(points)} points, got {k}")
    if not bool(m.any()):
        raise InputError("every trajectory point equals the final one: no directions")
    _, s, vh = torch.linalg.svd(m - m.mean(dim=0) if centered else m, full_matrices=False)
    total = s.square().sum()
    if float(total) == 0.0:
        raise InputError("every trajectory point is the same: no variance to take directions "
                         "from (centered=False takes them from the offsets to the final point)")
    v = vh[:k]
    sign = torch.sign(v.gather(1, v.abs().argmax(dim=1, keepdim=True)))
    v = v * torch.where(sign == 0, torch.ones_like(sign), sign)
    evr = (s[:k].square() / total).cpu()
    coords = (m @ v.T).cpu()
    like = {n: center[n] for n in names}
    dirs = [{n: t.to(center[n].dtype) for n, t in unflatten(row, like).items()} for row in v]
    return PCAResult(dirs, evr, coords)


def project(points: Iterable[ParamDict | Any], center: ParamDict | Any,
            directions: Sequence[ParamDict]) -> Tensor:
    """Coordinates ``(T, D)`` (float64) of each point's offset from ``center`` in the span of
    ``directions``: the least-squares ``c`` with ``p − center ≈ Σ_d c_d · dir_d``, i.e.
    ``G c = [⟨p − center, dir_d⟩]_d`` with the Gram matrix ``G``; for orthonormal directions
    (PCA) these are just the dot products."""
    center = as_params(center)
    names = list(center)
    keep = [True] * len(names)
    dirs = []
    for d in directions:
        d = as_params(d)
        check_same_keys(center, d)
        dirs.append(_flat64(d, names, keep))
    basis = torch.stack(dirs)  # (D, P)
    gram = basis @ basis.T
    c = flatten({n: center[n].detach().to(torch.float64) for n in names})
    rhs = torch.stack([basis @ (_flat64(as_params(p), names, keep) - c) for p in points])
    return torch.linalg.solve(gram, rhs.T).T.cpu()
