"""Name-keyed parameter dicts: the one place for vector arithmetic on weights.

A ``ParamDict`` maps parameter (or buffer) names, as ``nn.Module.named_parameters``
gives them, to tensors. Every analysis in losslab evaluates other weights with
``torch.func.functional_call(model, params, x)`` rather than by assigning ``.data``
or zipping ``model.parameters()`` by position, so a model is never mutated to
evaluate a point and a mismatch of names is an error rather than a silent bug.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from losslab.errors import InputError, NotFoundError

ParamDict = dict[str, Tensor]

__all__ = [
    "ParamDict",
    "parameters_of",
    "buffers_of",
    "clone",
    "flatten",
    "unflatten",
    "axpy",
    "sub",
    "dot",
    "norm",
    "check_same_keys",
]


def parameters_of(model: nn.Module, *, trainable_only: bool = True, detach: bool = True) -> ParamDict:
    """The model's parameters by name (detached views unless ``detach=False``)."""
    out = {}
    for name, p in model.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        out[name] = p.detach() if detach else p
    return out


def buffers_of(model: nn.Module) -> ParamDict:
    """The model's buffers (e.g. BatchNorm running statistics) by name, detached."""
    return {name: b.detach() for name, b in model.named_buffers()}


def clone(params: Mapping[str, Tensor], device: torch.device | str | None = None) -> ParamDict:
    """An independent copy, optionally moved to ``device``."""
    return {k: v.detach().to(device=device, copy=True) for k, v in params.items()}


def check_same_keys(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> None:
    """Raise ``KeyError`` naming the difference when two dicts do not describe the same weights."""
    if a.keys() != b.keys():
        only_a = sorted(set(a) - set(b))
        only_b = sorted(set(b) - set(a))
        raise NotFoundError(f"parameter names differ: only in first {only_a[:5]}, only in second {only_b[:5]}")
    for k in a:
        if a[k].shape != b[k].shape:
            raise InputError(f"parameter {k!r}: shape {tuple(a[k].shape)} != {tuple(b[k].shape)}")


def flatten(params: Mapping[str, Tensor], names: Iterable[str] | None = None) -> Tensor:
    """Concatenate the tensors (in ``names`` order, default the dict's order) into one vector."""
    names = list(params) if names is None else list(names)
    return torch.cat([params[k].reshape(-1) for k in names])


def unflatten(vector: Tensor, like: Mapping[str, Tensor]) -> ParamDict:
    """Split a vector made by :func:`flatten` back into a dict shaped like ``like``."""
    out, offset = {}, 0
    for k, t in like.items():
        n = t.numel()
        out[k] = vector[offset : offset + n].view_as(t)
        offset += n
    if offset != vector.numel():
        raise InputError(f"vector has {vector.numel()} elements, the dict needs {offset}")
    return out


def axpy(alpha: float | Tensor, x: Mapping[str, Tensor], y: Mapping[str, Tensor]) -> ParamDict:
    """``y + alpha * x`` per name, out of place."""
    check_same_keys(x, y)
    return {k: y[k] + alpha * x[k] for k in y}


def sub(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> ParamDict:
    """``a - b`` per name."""
    check_same_keys(a, b)
    return {k: a[k] - b[k] for k in a}


def dot(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> Tensor:
    """Euclidean inner product of two dicts seen as one flat vector (a 0-d tensor, no host sync)."""
    check_same_keys(a, b)
    return sum((a[k].reshape(-1) @ b[k].reshape(-1)) for k in a)  # type: ignore[return-value]


def norm(a: Mapping[str, Tensor]) -> Tensor:
    """Euclidean norm of a dict seen as one flat vector (a 0-d tensor, no host sync)."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(a.values()))))
