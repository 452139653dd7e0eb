"""Directions in weight space for loss-landscape plots (Li et al. 2018).

Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the Loss Landscape of Neural Nets"
(NeurIPS, arXiv:1712.09913) plot ``f(α) = L(θ* + α δ)`` and ``f(α, β) = L(θ* + α δ + β η)``
along directions ``δ, η`` drawn from a Gaussian and *filter normalized*:

    d_i ← d_i / ‖d_i‖ · ‖θ_i‖

for every output filter (slice along dim 0) ``i`` of every weight tensor, so a step of size 1
changes each filter by its own scale and plots of networks with different weight scales
(e.g. with and without weight decay) are comparable. Directions here are name-keyed
:data:`~losslab.params.ParamDict` s built from *parameters only*: buffers (BatchNorm running
statistics) are never part of a direction.

Traps of the reference tool (Li et al. 2018's loss-landscape code) avoided here: entries are drawn from N(0, 1), not
U[0, 1); 1-D tensors (biases, BatchNorm weight and bias) are zero in the direction
(``ignore="biasbn"``, Li et al.'s choice) or normalized as a whole tensor to ``‖θ‖``
(``ignore="none"``), never copied from θ.

Example::

    dirs = Directions.random(parameters_of(model), n=2, seed=0)   # filter-normalized
    dirs.save("runs/digits/landscape/dirs")                       # dirs.safetensors + .json
    dirs = Directions.load("runs/digits/landscape/dirs")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from losslab.errors import InputError, MissingFileError
from losslab.params import ParamDict, buffers_of, check_same_keys, dot, parameters_of, sub
from losslab.runs.atomic import atomic_write, atomic_write_json
from losslab.runs.checkpoints import file_sha256
from losslab.runs.readers import read_json

__all__ = ["Directions", "as_params", "random_direction", "interpolation_direction",
           "plane_through", "own_buffers", "point_buffers", "directions_metadata",
           "NORMALIZATIONS", "IGNORES"]

NORMALIZATIONS = ("filter", "layer", "none")
IGNORES = ("biasbn", "none")
_FORMAT = "losslab-directions-v1"


def as_params(x: Any) -> ParamDict:
    """A parameter dict from a ParamDict, a LoadedCheckpoint (its ``.params``) or a module.

    Nothing is copied; a module's parameters are detached views (the module is not changed).
    """
    if isinstance(x, nn.Module):
        return parameters_of(x)
    if hasattr(x, "params") and isinstance(x.params, Mapping):
        return dict(x.params)
    if isinstance(x, Mapping):
        return dict(x)
    raise TypeError(f"expected a ParamDict, a LoadedCheckpoint or an nn.Module, got {type(x)}")


def own_buffers(source: Any) -> ParamDict | None:
    """The buffers that come with ``source`` (a module's, or a LoadedCheckpoint's), else None."""
    if isinstance(source, nn.Module):
        return buffers_of(source)
    if isinstance(getattr(source, "buffers", None), Mapping):
        return dict(source.buffers)
    return None


def point_buffers(point: Any, model: nn.Module, buffers: Mapping[str, Tensor] | None = None
                  ) -> ParamDict:
    """The buffers a map evaluates ``point`` with: ``buffers``, else the point's own (a module's
    or a LoadedCheckpoint's), else the model's."""
    if buffers is not None:
        return dict(buffers)
    own = own_buffers(point)
    return own if own is not None else buffers_of(model)


def directions_metadata(directions: Any, count: int) -> dict[str, Any]:
    """What a result records about its directions: a :class:`Directions`' own metadata, else
    that they were the user's."""
    return (directions.metadata() if isinstance(directions, Directions)
            else {"kind": "user", "count": count})


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"{name} must be one of {allowed}, got {value!r}")


def _scale_to(d: Tensor, target_norm: Tensor) -> Tensor:
    """``d / ‖d‖ · target_norm`` (a zero ``d`` stays zero)."""
    n = torch.linalg.vector_norm(d)
    return d * (target_norm / n.clamp_min(torch.finfo(d.dtype).tiny))


def random_direction(params: Mapping[str, Tensor] | Any, *, normalization: str = "filter",
                     ignore: str = "biasbn", seed: int = 0,
                     generator: torch.Generator | None = None) -> ParamDict:
    """A random direction shaped like ``params``, normalized as in Li et al. 2018 (§4).

    Entries are drawn i.i.d. from N(0, 1) on a CPU generator (``generator``, or one seeded with
    ``seed``), in the order of ``params`` and in each tensor's dtype, so a direction is the
    same on every device; then, per tensor θ with direction d:

    * ``normalization="filter"`` and ``θ.ndim >= 2``: every slice ``d_i = d[i]`` along dim 0
      (an output filter of a convolution, a row of a linear layer) becomes
      ``d_i / ‖d_i‖ · ‖θ_i‖``;
    * ``normalization="layer"``: the whole tensor becomes ``d / ‖d‖ · ‖θ‖``;
    * ``normalization="none"``: d is left as drawn.

    Tensors with ``ndim <= 1`` (biases, BatchNorm weight and bias): with ``ignore="biasbn"``
    they are **zero** in the direction (Li et al.: the bias and BN parameters are not
    perturbed); with ``ignore="none"`` they are kept and, under "filter" or "layer", scaled as
    a whole tensor to ``‖θ‖`` (per-element "filters" would just be ``±|θ_i|``). Their entries
    are drawn either way, so the weight tensors' directions do not depend on ``ignore``.

    Pass parameters only (``parameters_of(model)``, ``checkpoint.params``): buffers are never
    part of a direction.
    """
    _check_choice("normalization", normalization, NORMALIZATIONS)
    _check_choice("ignore", ignore, IGNORES)
    params = as_params(params)
    gen = generator if generator is not None else torch.Generator("cpu").manual_seed(int(seed))
    out: ParamDict = {}
    for name, theta in params.items():
        if not theta.is_floating_point():
            raise TypeError(f"parameter {name!r} is {theta.dtype}; directions need floats")
        d = torch.randn(theta.shape, generator=gen, dtype=theta.dtype, device="cpu")
        out[name] = normalize_like(d.to(theta.device), theta.detach(), normalization, ignore)
    return out


def normalize_like(d: Tensor, t: Tensor, normalization: str, ignore: str) -> Tensor:
    """One tensor ``d`` of a direction normalized against the parameter ``t`` it perturbs (the
    rules of :func:`random_direction`)."""
    if t.ndim <= 1:
        if ignore == "biasbn":
            return torch.zeros_like(d)
        return d if normalization == "none" else _scale_to(d, torch.linalg.vector_norm(t))
    if normalization == "filter":
        dn = torch.linalg.vector_norm(d.reshape(d.shape[0], -1), dim=1)
        tn = torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1)
        scale = tn / dn.clamp_min(torch.finfo(d.dtype).tiny)
        return d * scale.reshape(-1, *([1] * (d.ndim - 1)))
    if normalization == "layer":
        return _scale_to(d, torch.linalg.vector_norm(t))
    return d


def interpolation_direction(start: Mapping[str, Tensor] | Any,
                            end: Mapping[str, Tensor] | Any) -> ParamDict:
    """``end − start``: θ(α) = start + α (end − start) is the line of Goodfellow et al. 2015
    used by Li et al. 2018 (§3) to compare two solutions (α = 0 start, α = 1 end)."""
    return sub(as_params(end), as_params(start))


def plane_through(a: Mapping[str, Tensor] | Any, b: Mapping[str, Tensor] | Any,
                  c: Mapping[str, Tensor] | Any) -> tuple[ParamDict, ParamDict, ParamDict]:
    """``(origin, d1, d2)`` spanning the plane through three models, with orthogonal axes.

    ``origin = a``, ``d1 = b − a`` and ``d2`` is the part of ``c − a`` orthogonal to ``d1``
    (Gram-Schmidt, as in the planes of Garipov et al. 2018), rescaled to ``‖d1‖`` so both axes
    have the same unit. Then ``a`` is at (0, 0), ``b`` at (1, 0) and ``c`` at
    ``(⟨c−a, d1⟩/‖d1‖², ‖d2'‖/‖d1‖)``, where ``d2'`` is the orthogonal part (see
    :func:`losslab.landscape.pca.project` for coordinates). Raises if the models are collinear.
    """
    a, b, c = as_params(a), as_params(b), as_params(c)
    check_same_keys(a, b)
    check_same_keys(a, c)
    u = sub(b, a)
    w = sub(c, a)
    uu = dot(u, u)
    if float(uu) == 0.0:
        raise InputError("plane_through: a and b are the same point")
    coef = dot(w, u) / uu
    v = {k: w[k] - coef * u[k] for k in w}
    vv = dot(v, v)
    if float(vv) <= 1e-12 * float(dot(w, w)):
        raise InputError("plane_through: the three models are collinear")
    scale = torch.sqrt(uu / vv)
    return dict(a), u, {k: t * scale for k, t in v.items()}


@dataclass
class Directions:
    """Directions with what made them, reusable across runs (:meth:`save` / :meth:`load`).

    ``kind`` is "random", "interpolation", "plane", "pca" or anything the user chooses;
    ``normalization``, ``ignore`` and ``seed`` are None where they do not apply. ``names`` and
    ``shapes`` describe the parameters (checked against every direction).
    """

    directions: list[ParamDict]
    kind: str = "random"
    normalization: str | None = None
    ignore: str | None = None
    seed: int | None = None
    names: list[str] = field(default_factory=list)
    shapes: list[list[int]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.directions:
            raise InputError("Directions needs at least one direction")
        first = self.directions[0]
        for d in self.directions[1:]:
            check_same_keys(first, d)
        if not self.names:
            self.names = list(first)
        if not self.shapes:
            self.shapes = [list(first[k].shape) for k in self.names]
        if list(first) != self.names or [list(first[k].shape) for k in self.names] != self.shapes:
            raise InputError("Directions: names/shapes do not match the directions")

    def __len__(self) -> int:
        return len(self.directions)

    def __getitem__(self, i: int) -> ParamDict:
        return self.directions[i]

    def __iter__(self):
        return iter(self.directions)

    @classmethod
    def random(cls, params: Mapping[str, Tensor] | Any, n: int = 2, *,
               normalization: str = "filter", ignore: str = "biasbn",
               seed: int = 0) -> Directions:
        """``n`` independent :func:`random_direction` s drawn from one generator seeded ``seed``."""
        gen = torch.Generator("cpu").manual_seed(int(seed))
        dirs = [random_direction(params, normalization=normalization, ignore=ignore,
                                 generator=gen) for _ in range(n)]
        return cls(dirs, kind="random", normalization=normalization, ignore=ignore,
                   seed=int(seed))

    @classmethod
    def eigenvectors(cls, op: Any, params: Mapping[str, Tensor] | Any, k: int = 2, *,
                     which: str = "largest", normalization: str = "none",
                     ignore: str = "none", max_iter: int = 100, tol: float = 1e-6,
                     seed: int = 0) -> Directions:
        """The ``k`` eigenvectors of a curvature operator (a Hessian, GGN or Fisher of
        :mod:`losslab.landscape.hessian`, built at ``params``) with the largest (or smallest)
        eigenvalues, by Lanczos, the first direction the most extreme: the plane of the
        sharpest (or flattest, or most negative) curvature around the point (Li et al. 2018,
        §6 after Dauphin et al. 2014). ``normalization`` ``"none"`` keeps them unit vectors of
        weight space; ``"filter"`` / ``"layer"`` (with ``ignore``) rescale them as random
        directions are. The eigenvalues, their convergence and the operator are in ``extra``.
        """
        from losslab.landscape.hessian import lanczos

        _check_choice("normalization", normalization, NORMALIZATIONS)
        _check_choice("ignore", ignore, IGNORES)
        params = as_params(params)
        r = lanczos(op, k=k, which=which, max_iter=max_iter, tol=tol, seed=seed,
                    return_eigenvectors=True)
        order = list(range(k))[::-1] if which == "largest" else list(range(k))
        dirs = []
        for i in order:
            vec = op.to_dict(r.eigenvectors[i])
            dirs.append({name: normalize_like(vec[name].to(t.dtype) if name in vec
                                              else torch.zeros_like(t), t.detach(),
                                              normalization, ignore)
                         for name, t in params.items()})
        extra = {"operator": type(op).__name__, "which": which,
                 "eigenvalues": [float(r.eigenvalues[i]) for i in order],
                 "converged": bool(r.converged), "products": int(r.num_products)}
        return cls(dirs, kind=f"eigenvectors_{which}", normalization=normalization,
                   ignore=ignore, seed=int(seed), extra=extra)

    def metadata(self) -> dict[str, Any]:
        """JSON-serializable description (no tensors)."""
        return {"format": _FORMAT, "kind": self.kind, "normalization": self.normalization,
                "ignore": self.ignore, "seed": self.seed, "count": len(self.directions),
                "names": self.names, "shapes": self.shapes, "extra": self.extra}

    def to(self, device: torch.device | str | None = None,
           dtype: torch.dtype | None = None) -> Directions:
        dirs = [{k: t.to(device=device, dtype=dtype) for k, t in d.items()}
                for d in self.directions]
        return Directions(dirs, self.kind, self.normalization, self.ignore, self.seed,
                          list(self.names), [list(s) for s in self.shapes], dict(self.extra))

    def save(self, path: str | Path) -> Path:
        """Write ``PATH.safetensors`` (tensors ``"{i}/{name}"``) then the sidecar ``PATH.json``
        (metadata and the weights' SHA-256), each atomically; returns the weights path."""
        weights = Path(path).with_suffix(".safetensors")
        tensors = {f"{i}/{k}": t.detach().to("cpu").contiguous().clone()
                   for i, d in enumerate(self.directions) for k, t in d.items()}
        atomic_write(weights, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
        meta = {**self.metadata(), "sha256": file_sha256(weights)}
        atomic_write_json(weights.with_suffix(".json"), meta)
        return weights

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> Directions:
        """Read what :meth:`save` wrote; a hash mismatch or a missing tensor is an error."""
        weights = Path(path).with_suffix(".safetensors")
        side = weights.with_suffix(".json")
        if not side.exists():
            raise MissingFileError(f"directions {weights} have no sidecar {side.name}")
        meta = read_json(side, what="a directions sidecar (a JSON object)")
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise InputError(f"{side} is not a losslab directions file")
        if meta.get("sha256") and file_sha256(weights) != meta["sha256"]:
            raise InputError(f"directions file {weights} does not match its recorded SHA-256")
        tensors = load_file(weights, device=str(device))
        dirs = []
        for i in range(int(meta["count"])):
            missing = [k for k in meta["names"] if f"{i}/{k}" not in tensors]
            if missing:
                raise InputError(f"directions file {weights} lacks {i}/{missing[0]}")
            dirs.append({k: tensors[f"{i}/{k}"] for k in meta["names"]})
        return cls(dirs, kind=meta["kind"], normalization=meta["normalization"],
                   ignore=meta["ignore"], seed=meta["seed"], names=list(meta["names"]),
                   shapes=[list(s) for s in meta["shapes"]], extra=dict(meta.get("extra", {})))
