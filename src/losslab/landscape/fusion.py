"""Graph rewrites that leave a network's evaluation-mode function unchanged but make it cheaper.

The network is traced once with ``torch.fx``; the rewrites work on the traced graph of a
private copy, and every weight they need is read through the graph's own attributes, so
``torch.func.functional_call`` still substitutes any parameter point.

* :func:`fold_batchnorms`: a convolution or linear layer ``z = W x + b`` followed by BatchNorm in
  eval mode, ``γ (z − μ) / √(σ² + ε) + β``, is one layer (Ioffe & Szegedy 2015, §3.2) with

      W' = W · s,   b' = (b − μ) · s + β,   s = γ / √(σ² + ε)   (per output channel).

  The BatchNorm node is removed from the graph; :func:`folded_state` computes ``W'`` and ``b'``
  from a point's parameters and (kept or recomputed) running statistics.
* :func:`fuse_conv_relu` (CPU, float32): ``relu(conv(x))`` and ``relu(conv(x) + other)`` become
  one oneDNN convolution with the ReLU (and the residual sum) as post-ops in the same pass over
  the output (``torch.ops.mkldnn._convolution_pointwise``, the kernel torch's inductor compiler
  emits on CPUs). :func:`pointwise_kernel_works` checks the kernel against ``F.conv2d`` once per
  process; without it (another torch build) nothing is fused.
"""

from __future__ import annotations

import copy
import functools
import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

from losslab.params import ParamDict

__all__ = ["BatchNormPair", "trace", "fold_batchnorms", "bn_affine", "folded_state",
           "fuse_conv_relu", "pointwise_kernel_works"]

log = logging.getLogger(__name__)

_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_RELUS = (F.relu, torch.relu)


def trace(net: nn.Module) -> fx.GraphModule | None:
    """A traced copy of ``net`` (never ``net`` itself), or None when it does not trace."""
    try:
        return fx.symbolic_trace(copy.deepcopy(net))
    except Exception as err:  # data-dependent control flow, untraceable ops: run as it is
        log.debug("graph rewrites skipped, the model does not trace: %s", err)
        return None


def _call_counts(gm: fx.GraphModule) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            counts[node.target] = counts.get(node.target, 0) + 1
    return counts


@dataclass(frozen=True)
class BatchNormPair:
    """A layer and the BatchNorm folded into it (module names in the traced graph)."""

    layer: str
    bn: str
    eps: float
    has_bias: bool


def fold_batchnorms(gm: fx.GraphModule) -> list[BatchNormPair]:
    """Remove every BatchNorm that directly follows a conv/linear layer whose output it alone
    reads; the layer gains a bias if it had none. Returns the folded pairs."""
    modules = dict(gm.named_modules())
    calls = _call_counts(gm)
    pairs = []
    for node in list(gm.graph.nodes):
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, _BatchNorm) or not bn.track_running_stats:
            continue
        src = node.args[0]
        layer = modules.get(src.target) if getattr(src, "op", None) == "call_module" else None
        if not isinstance(layer, _FOLDABLE) or len(src.users) != 1:
            continue  # the layer's output is used elsewhere too: BN cannot be absorbed
        if calls[src.target] != 1 or calls[node.target] != 1:
            continue  # a module called twice: its weights cannot take one folded value
        has_bias = layer.bias is not None
        if not has_bias:  # folded_state supplies the value
            layer.bias = nn.Parameter(torch.zeros(layer.weight.shape[0], dtype=layer.weight.dtype,
                                                  device=layer.weight.device))
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        pairs.append(BatchNormPair(src.target, node.target, float(bn.eps), has_bias))
    if pairs:
        gm.graph.lint()
        gm.recompile()
    return pairs


def bn_affine(state: ParamDict, pair: BatchNormPair) -> tuple[Tensor, Tensor]:
    """``(s, b')`` of a folded pair at ``state``: ``s = γ / √(σ² + ε)`` per output channel and
    ``b' = (b − μ)·s + β``, so the folded layer is ``W' = W·s`` with bias ``b'``."""
    mean, var = state[f"{pair.bn}.running_mean"], state[f"{pair.bn}.running_var"]
    gamma, beta = state.get(f"{pair.bn}.weight"), state.get(f"{pair.bn}.bias")
    scale = torch.rsqrt(var + pair.eps)
    if gamma is not None:
        scale = gamma * scale
    shift = (state[f"{pair.layer}.bias"] - mean if pair.has_bias else -mean) * scale
    if beta is not None:
        shift = shift + beta
    return scale, shift


def folded_state(state: ParamDict, pairs: list[BatchNormPair],
                 layout: Callable[[Tensor], Tensor] = lambda t: t) -> ParamDict:
    """``state`` (a point's parameters and buffers) with each pair's layer replaced by
    ``W' = W·s`` and bias ``b'`` (:func:`bn_affine`); W' is put in ``layout``."""
    out = dict(state)
    for p in pairs:
        w = state[f"{p.layer}.weight"]
        scale, out[f"{p.layer}.bias"] = bn_affine(state, p)
        out[f"{p.layer}.weight"] = layout(w * scale.reshape(-1, *[1] * (w.ndim - 1)))
    return out


# -- convolution + ReLU (+ residual sum) -------------------------------------------------------
def _conv_relu(x: Tensor, weight: Tensor, bias: Tensor | None, padding: list[int],
               stride: list[int], dilation: list[int], groups: int) -> Tensor:
    """relu(conv2d(x)) in one oneDNN kernel."""
    return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, padding, stride, dilation,
                                                   groups, "relu", [], "")


def _conv_add_relu(x: Tensor, other: Tensor, weight: Tensor, bias: Tensor | None,
                   padding: list[int], stride: list[int], dilation: list[int],
                   groups: int) -> Tensor:
    """relu(conv2d(x) + other) in one oneDNN kernel."""
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, other.contiguous(memory_format=torch.channels_last), weight, bias, padding, stride,
        dilation, groups, "add", None, "relu", [], "")


@functools.cache
def pointwise_kernel_works() -> bool:
    """Whether the fused kernels exist here and agree with ``F.conv2d`` (checked once)."""
    try:
        g = torch.Generator().manual_seed(0)
        cl = torch.channels_last
        x = torch.randn(2, 3, 5, 5, generator=g).contiguous(memory_format=cl)
        w = torch.randn(4, 3, 3, 3, generator=g).contiguous(memory_format=cl)
        b = torch.randn(4, generator=g)
        other = torch.randn(2, 4, 3, 3, generator=g)
        with torch.no_grad():
            ref = F.conv2d(x, w, b, 2, 1)
            ok = torch.allclose(_conv_relu(x, w, b, [1, 1], [2, 2], [1, 1], 1), F.relu(ref),
                                rtol=1e-5, atol=1e-5)
            ok = ok and torch.allclose(_conv_add_relu(x, other, w, b, [1, 1], [2, 2], [1, 1], 1),
                                       F.relu(ref + other), rtol=1e-5, atol=1e-5)
        return bool(ok)
    except Exception as err:  # no oneDNN, or the internal op changed
        log.debug("conv+ReLU fusion unavailable: %s", err)
        return False


def _is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_function" and node.target in _RELUS:
        return len(node.args) == 1 and not node.kwargs.get("inplace", False)
    if node.op == "call_module":
        return type(modules.get(node.target)) is nn.ReLU
    return node.op == "call_method" and node.target == "relu" and len(node.args) == 1


def _residual_operand(add: fx.Node, conv: fx.Node) -> fx.Node | None:
    """``other`` when ``add`` is ``conv + other`` (either order), else None."""
    if not (add.op == "call_function" and add.target in (operator.add, torch.add)
            and len(add.args) == 2 and not add.kwargs and len(add.users) == 1):
        return None
    a, b = add.args
    other = b if a is conv else a
    return other if isinstance(other, fx.Node) and other is not conv else None


def fuse_conv_relu(gm: fx.GraphModule) -> int:
    """Rewrite ``relu(conv(x))`` and ``relu(conv(x) + other)`` as fused oneDNN calls that read
    the convolution's own weight and bias attributes; returns how many were fused."""
    modules = dict(gm.named_modules())
    calls = _call_counts(gm)
    fused = 0
    for node in list(gm.graph.nodes):
        conv = modules.get(node.target) if node.op == "call_module" else None
        if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" \
                or isinstance(conv.padding, str) or len(node.users) != 1 or calls[node.target] != 1:
            continue
        user = next(iter(node.users))
        other = _residual_operand(user, node)
        relu = next(iter(user.users)) if other is not None else user
        if not _is_relu(relu, modules):
            continue
        with gm.graph.inserting_before(relu):
            weight = gm.graph.get_attr(f"{node.target}.weight")
            bias = gm.graph.get_attr(f"{node.target}.bias") if conv.bias is not None else None
            attrs = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
            if other is None:
                new = gm.graph.call_function(_conv_relu, (node.args[0], weight, bias, *attrs))
            else:
                new = gm.graph.call_function(_conv_add_relu,
                                             (node.args[0], other, weight, bias, *attrs))
        relu.replace_all_uses_with(new)
        fused += 1
    if fused:
        gm.graph.eliminate_dead_code()  # the replaced relu, add and conv nodes
        gm.graph.lint()
        gm.recompile()
    return fused
