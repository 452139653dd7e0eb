"""Per-layer curvature: the top eigenvalues and the trace of each diagonal block, and their shares.

Order the parameters by groups g = 1..G (a module's weight and bias, or any set of names).
The curvature matrix C (the Hessian H, the generalized Gauss-Newton G, the Fisher F or the
empirical Fisher) then has blocks C_gh, and the *diagonal block* C_gg = ∂²L/∂θ_g∂θ_gᵀ (for
the Hessian) is the curvature seen by the group's parameters with every other parameter held
fixed: exactly the operator built with ``wrt=`` the group's names. For each group this module
reports λ_1(C_gg), ..., λ_k(C_gg) (Lanczos) and tr(C_gg) (exact or Hutch++), next to the
same numbers for the whole matrix, and the shares

    trace_share_g  = tr(C_gg) / tr(C),      lambda_share_g = λ_max(C_gg) / λ_max(C).

What the shares obey (for groups that partition the parameters; overlapping or partial groups
have no such identities):

* **trace**: tr(C) = Σ_i C_ii = Σ_g tr(C_gg), since the diagonal blocks hold the whole
  diagonal, so the trace shares sum to exactly 1, and the reported ones up to the estimators'
  errors (zero when every trace is computed exactly, see below). For the Hessian a share can
  be negative or above 1 (a block with negative curvature); for a PSD C they lie in [0, 1].
* **top eigenvalue**: C_gg is a principal submatrix of C, so by Cauchy's interlacing theorem
  (equivalently, the Rayleigh quotient over a coordinate subspace) λ_min(C) ≤ λ_max(C_gg) ≤
  λ_max(C) for *any* symmetric C, the Hessian included: with λ_max(C) > 0, lambda_share ≤ 1
  (and it is negative for a block whose curvature is all negative). For a PSD C (GGN,
  Fishers) moreover λ_max(C) ≤ Σ_g λ_max(C_gg) (Cauchy-Schwarz on the off-diagonal blocks,
  |v_gᵀ C_gh v_h|² ≤ v_gᵀ C_gg v_g · v_hᵀ C_hh v_h), so the lambda shares lie in [0, 1] and
  sum to at least 1: the sharpest direction of the network lies mostly in the layers with the
  largest shares, and a sum near 1 says the blocks barely couple in that direction.
  Lanczos' Ritz values are lower bounds of the true eigenvalues, so the estimated shares obey
  these bounds up to the solver's tolerance (see the ``converged`` flags).

The layer-wise view of the Hessian follows Sankar, Khasbage, Vigneswaran & Balasubramanian
(2021), "A deeper look at the Hessian eigenspectrum of deep neural networks and its
applications to regularization" (AAAI), which compares each layer's Hessian block with the
full Hessian; the block structure of the Gauss-Newton / Fisher follows Papyan (2020), "Traces
of class/cross-class structure pervade deep learning spectra" (JMLR), and the block-diagonal
approximations of K-FAC (Martens & Grosse 2015).

Cost. A product with C_gg costs about one product with C (the forward and backward passes
run through the whole network whatever ``wrt`` is), so the table costs
(G + 1) · (Lanczos steps + trace products) full products; ``total_products`` counts them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from losslab.errors import InputError, NotFoundError
from losslab.landscape.options import EvalOptions

from .curvature import OPERATORS, FisherOperator, operator_class
from .eigensolvers import lanczos
from .operator import DEFAULTS, select_parameters
from .trace import hutch_plus_plus

__all__ = ["per_layer_curvature", "OPERATORS", "module_groups", "resolve_groups"]

GroupSpec = str | Sequence[str] | Mapping[str, str | Sequence[str]]


def module_groups(names: Sequence[str]) -> dict[str, list[str]]:
    """One group per module that owns parameters directly, in the model's order.

    A parameter's module is its name before the last dot (``features.0.weight`` ->
    ``features.0``); a parameter without a dot (a module's own ``nn.Parameter`` at the top
    level) is its own group.
    """
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(n.rsplit(".", 1)[0] if "." in n else n, []).append(n)
    return groups


def resolve_groups(names: Sequence[str], groups: GroupSpec) -> dict[str, list[str]]:
    """The parameter names of each group, each list in the model's order.

    ``groups``: ``"modules"`` (:func:`module_groups`); a list of prefixes, one group each,
    named by the prefix (a prefix is a module path such as ``"classifier"`` or a full
    parameter name, as :func:`~losslab.landscape.hessian.operator.select_parameters` reads
    it); or a dict ``name -> prefix or list of prefixes`` (the group is their union). A prefix
    matching no parameter raises :class:`~losslab.errors.NotFoundError` naming it and the
    nearest layers.
    """
    names = list(names)
    if isinstance(groups, str):
        if groups == "modules":
            return module_groups(names)
        raise InputError(f"groups must be 'modules', a list of prefixes or a dict of name -> "
                         f"prefixes, got the string {groups!r} (for one group pass "
                         f"[{groups!r}])")
    if isinstance(groups, Mapping):
        spec = {str(k): [v] if isinstance(v, str) else list(v) for k, v in groups.items()}
    else:
        spec = {}
        for prefix in groups:
            if not isinstance(prefix, str):
                raise InputError(f"a group prefix must be a string, got {prefix!r}")
            if prefix in spec:
                raise InputError(f"the prefix {prefix!r} is given twice")
            spec[prefix] = [prefix]
    if not spec:
        raise InputError("groups is empty: give 'modules' or at least one prefix")
    out: dict[str, list[str]] = {}
    for name, prefixes in spec.items():
        if not prefixes:
            raise InputError(f"the group {name!r} has no prefixes")
        chosen: set[str] = set()
        for prefix in prefixes:
            if not isinstance(prefix, str):
                raise InputError(f"a group prefix must be a string, got {prefix!r} "
                                 f"(group {name!r})")
            try:
                chosen.update(select_parameters(names, prefix))
            except NotFoundError as e:  # it names the prefix and the nearest layers
                if name == prefix:
                    raise
                raise NotFoundError(f"group {name!r}: {e}") from None
        out[name] = [n for n in names if n in chosen]
    return out


def _number(x: float) -> float | None:
    """A float for JSON: None for NaN and infinities."""
    x = float(x)
    return x if math.isfinite(x) else None


def _share(part: float | None, whole: float | None) -> float | None:
    if part is None or whole is None or whole == 0.0:
        return None
    return _number(part / whole)


def _exact_trace(op) -> float:
    """Σ_i e_iᵀ C e_i: the trace from ``size`` products with the unit vectors."""
    eye = torch.zeros(op.size, dtype=op.dtype, device=op.device)
    total = []
    for i in range(op.size):
        eye[i] = 1.0
        total.append(float(op.matvec(eye)[i]))
        eye[i] = 0.0
    return math.fsum(total)


def _block(op, *, name: str, top_k: int, trace_products: int, max_iter: int, tol: float,
           seed: int, progress: bool | None) -> dict[str, Any]:
    """One row of the table: the operator's top eigenvalues and trace, with their costs."""
    k = min(top_k, op.size)
    eig = lanczos(op, k=k, which="largest", max_iter=max_iter, tol=tol, seed=seed,
                  progress=progress)
    eigen_products = op.num_products
    if op.size <= trace_products:
        trace, se, method = _exact_trace(op), 0.0, "exact"
    else:
        t = hutch_plus_plus(op, num_products=trace_products, seed=seed, progress=progress)
        trace, se, method = t.estimate, t.std_error, "hutch++"
    return {"name": name, "parameters": list(op.names), "size": int(op.size),
            "top_eigenvalues": [_number(v) for v in eig.eigenvalues[::-1]],
            "converged": bool(eig.converged),
            "residuals": [_number(r) for r in eig.residuals[::-1]],
            "trace": _number(trace), "trace_std_error": _number(se), "trace_method": method,
            "eigen_products": int(eigen_products),
            "trace_products": int(op.num_products - eigen_products),
            "products": int(op.num_products)}


def per_layer_curvature(model: nn.Module, point: Mapping[str, Tensor] | Any = None, *,
                        batches: Iterable[tuple[Any, Any]] | tuple[Tensor, Tensor],
                        buffers: Mapping[str, Tensor] | None = None,
                        operator: str = "hessian", groups: GroupSpec = "modules",
                        options: EvalOptions = DEFAULTS, top_k: int = 1, trace_products: int = 30,
                        max_iter: int = 100, tol: float = 1e-6, seed: int = 0,
                        dtype: torch.dtype | None = None,
                        operator_kwargs: Mapping[str, Any] | None = None,
                        progress: bool | None = False) -> dict[str, Any]:
    """The per-layer curvature table: each group's diagonal block against the whole matrix.

    Args:
        model, point, batches, buffers, options, dtype: as for
            :class:`~losslab.landscape.hessian.operator.HessianOperator` (the batches are
            materialized once and shared by every block, so a loader is read once).
        operator: ``"hessian"``, ``"ggn"``, ``"fisher"`` (Monte Carlo, labels drawn with
            ``seed``; the same labels for every block, so the blocks are those of one matrix)
            or ``"empirical_fisher"``.
        groups: ``"modules"`` (one group per module owning parameters, named by its path,
            e.g. ``"features.0"``, ``"classifier"``), a list of prefixes, or a dict
            ``name -> prefixes`` (see :func:`resolve_groups`).
        top_k: how many of the largest eigenvalues per block (capped at the block's size).
        trace_products: the Hutch++ budget per block; a block with at most this many
            parameters gets its exact trace from its unit vectors instead (``size``
            products, ``trace_std_error`` 0, ``trace_method`` ``"exact"``). At least 3.
        max_iter, tol, seed: Lanczos' steps (capped at the block's size, where the
            eigenvalues are exact), its relative residual tolerance and the seed of every
            random start and probe.
        operator_kwargs: extra keyword arguments for the operator's constructor (e.g.
            ``{"mc_samples": 4}`` for the Fisher).
        progress: bars over each solver's products (False: silent, the default).

    Returns a JSON-ready dict (floats, ints, bools, strings, lists; a non-finite number or an
    undefined share is None)::

        {"operator": str, "num_examples": int,
         "groups": [row, ...],            # one per group, in the given order
         "whole": row,                    # wrt="all": every trainable parameter
         "partition": bool,               # the groups are disjoint and cover every parameter
         "trace_share_sum": float|None,   # Σ trace_share (1 up to estimation if partition)
         "lambda_share_sum": float|None,  # Σ lambda_share (≥ 1 for a PSD operator if partition)
         "block_trace_sum": float|None,   # Σ_g trace: another estimate of tr(C) if partition
         "block_trace_std_error": float|None,  # its error, sqrt(Σ_g trace_std_error²)
         "all_converged": bool,           # every Lanczos run converged
         "total_products": int,
         "settings": {"top_k", "trace_products", "max_iter", "tol", "seed"}}

    with each ``row``::

        {"name": str, "parameters": [str], "size": int,
         "top_eigenvalues": [float],      # largest first, min(top_k, size) of them
         "converged": bool, "residuals": [float],   # Lanczos' residual norms, same order
         "trace": float, "trace_std_error": float, "trace_method": "exact" | "hutch++",
         "eigen_products": int, "trace_products": int, "products": int,
         "trace_share": float|None,       # trace / whole trace
         "lambda_share": float|None}      # top eigenvalue / whole top eigenvalue

    (``whole`` has ``name`` ``"all"`` and both shares 1.0.) See the module docstring for the
    identities the shares obey.
    """
    cls = operator_class(operator)
    for label, value, least in (("top_k", top_k, 1), ("max_iter", max_iter, 1),
                                ("trace_products", trace_products, 3)):
        if int(value) < least:
            raise InputError(f"{label} must be >= {least}, got {value}")
    if isinstance(batches, tuple) and len(batches) == 2 and isinstance(batches[0], Tensor):
        batches = [batches]
    batches = list(batches)
    kwargs = dict(operator_kwargs or {})
    if cls is FisherOperator:
        kwargs.setdefault("seed", seed)

    def build(wrt):
        return cls(model, point, batches=batches, buffers=buffers, wrt=wrt, options=options,
                   dtype=dtype, **kwargs)

    settings = {"top_k": int(top_k), "trace_products": int(trace_products),
                "max_iter": int(max_iter), "tol": float(tol), "seed": int(seed)}
    solve = {**settings, "progress": progress}
    whole_op = build("all")
    resolved = resolve_groups(whole_op.names, groups)  # errors before any product
    whole = _block(whole_op, name="all", **solve)
    num_examples = int(whole_op.num_examples)
    del whole_op
    rows = []
    for name, names in resolved.items():
        op = build(names)
        rows.append(_block(op, name=name, **solve))
        del op
    top = whole["top_eigenvalues"][0]
    for row in rows:
        row["trace_share"] = _share(row["trace"], whole["trace"])
        row["lambda_share"] = _share(row["top_eigenvalues"][0], top)
    whole["trace_share"] = 1.0 if _share(whole["trace"], whole["trace"]) is not None else None
    whole["lambda_share"] = 1.0 if _share(top, top) is not None else None
    counts: dict[str, int] = {}
    for names in resolved.values():
        for n in names:
            counts[n] = counts.get(n, 0) + 1
    partition = all(counts.get(n) == 1 for n in whole["parameters"])

    def total(key: str) -> float | None:
        values = [r[key] for r in rows]
        return None if any(v is None for v in values) else _number(math.fsum(values))

    ses = [r["trace_std_error"] for r in rows]
    block_se = None if any(v is None for v in ses) else _number(math.sqrt(math.fsum(
        v * v for v in ses)))
    return {"operator": operator, "num_examples": num_examples, "groups": rows,
            "whole": whole, "partition": bool(partition),
            "trace_share_sum": total("trace_share"), "lambda_share_sum": total("lambda_share"),
            "block_trace_sum": total("trace"), "block_trace_std_error": block_se,
            "all_converged": bool(whole["converged"] and all(r["converged"] for r in rows)),
            "total_products": int(whole["products"] + sum(r["products"] for r in rows)),
            "settings": settings}
