"""Module plumbing for ensembles: weightless architecture copies, modules rebuilt from state
dicts, stacked weights as a module of buffers, and what makes members share an architecture.

Used by :class:`~losslab.ensembles.predict.Ensemble`; kept apart so that file reads as the
ensemble itself.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from losslab.errors import InputError

__all__ = ["meta_copy", "module_from_state", "tensor_tree", "signature", "difference",
           "float_dtype", "device_of"]


def meta_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters and buffers are on the meta device (no memory).

    It keeps the architecture (submodules, their settings, hooks) and serves as the ``base`` of
    :func:`torch.func.functional_call`, which swaps real tensors in for every call.
    """
    memo: dict[int, object] = {}
    for p in module.parameters():
        memo[id(p)] = nn.Parameter(p.detach().to("meta"), requires_grad=p.requires_grad)
    for b in module.buffers():
        memo[id(b)] = b.detach().to("meta")
    return copy.deepcopy(module, memo)


def module_from_state(template: nn.Module, state: Mapping[str, Tensor],
                       extra_buffers: Mapping[str, Tensor] | None = None) -> nn.Module:
    """A new module shaped like ``template`` holding ``state``'s tensors (their dtype and device).

    ``state`` is a full ``state_dict`` (loaded strictly); non-persistent buffers, which a state
    dict does not hold, come from ``extra_buffers`` or else from the template.
    """
    module = meta_copy(template)
    module.load_state_dict(state, strict=True, assign=True)
    persistent = set(state)
    real = dict(template.named_buffers())
    for name, _ in list(module.named_buffers()):
        if name in persistent:
            continue
        value = (extra_buffers or {}).get(name, real[name])
        if value.is_meta:
            raise InputError(f"buffer {name!r} is not in the state dict (it is not persistent) and "
                             "the template holds no value for it (it is on the meta device)")
        owner, _, leaf = name.rpartition(".")
        module.get_submodule(owner).register_buffer(leaf, value.detach().clone(),
                                                    persistent=False)
    return module


def tensor_tree(tensors: Mapping[str, Tensor]) -> nn.Module:
    """Register each tensor as a buffer under its dotted name (``a.b.w`` -> submodule a.b, w).

    The stacked weights are buffers, so ``.to()``, ``.double()`` and ``state_dict`` treat them
    as the module's own, and ``dict(tree.named_buffers())`` gives the names back.
    """
    root = nn.Module()
    for name, t in tensors.items():
        *path, leaf = name.split(".")
        node = root
        for part in path:
            child = node._modules.get(part)
            if child is None:
                child = nn.Module()
                node.add_module(part, child)
            node = child
        node.register_buffer(leaf, t)
    return root


def signature(m: nn.Module) -> tuple:
    """What must agree for members to share one vectorized call."""
    return (type(m),
            tuple((n, type(s), s.extra_repr()) for n, s in m.named_modules()),
            tuple((n, tuple(p.shape), p.dtype, p.device) for n, p in m.named_parameters()),
            tuple((n, tuple(b.shape), b.dtype, b.device) for n, b in m.named_buffers()))


def difference(a: nn.Module, b: nn.Module) -> str:
    """The first way in which ``b``'s architecture differs from ``a``'s, in words."""
    if type(a) is not type(b):
        return f"class {type(b).__name__} != {type(a).__name__}"
    sa, sb = signature(a), signature(b)
    for label, xa, xb in (("parameter", sa[2], sb[2]), ("buffer", sa[3], sb[3])):
        na, nb = [x[0] for x in xa], [x[0] for x in xb]
        if na != nb:
            only_a, only_b = sorted(set(na) - set(nb)), sorted(set(nb) - set(na))
            return (f"{label} names differ (only in member 0: {only_a[:3]}, only in this one: "
                    f"{only_b[:3]})" if only_a or only_b else f"{label} order differs")
        for (n, *ta), (_, *tb) in zip(xa, xb, strict=True):
            if ta != tb:
                return f"{label} {n!r}: shape/dtype/device {tuple(tb)} != {tuple(ta)}"
    for (n, ta, ra), (_, tb, rb) in zip(sa[1], sb[1], strict=False):
        if (ta, ra) != (tb, rb):
            return f"submodule {n!r}: {tb.__name__}({rb}) != {ta.__name__}({ra})"
    return "submodule structure differs"


def float_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of the module's first floating-point tensor (default dtype if none)."""
    for t in (*module.parameters(), *module.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def device_of(module: nn.Module) -> torch.device | None:
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return None
