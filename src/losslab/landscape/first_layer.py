"""Sharing the first layer's work between the points of a map.

Every point of a map ``θ = θ* + Σ_d c_d · δ_d`` is evaluated on the same inputs, and a
network's first layer is linear in its weight: for a convolution or linear layer ``W``,

    W(θ) ⋆ u = W* ⋆ u + Σ_d c_d · (Δ_d ⋆ u),

where ``u`` is the input after any parameter-free steps (a flatten, say) and ``Δ_d`` the
direction's part of ``W``. The ``D + 1`` products ``W* ⋆ u`` and ``Δ_d ⋆ u`` (the *bases*) are
computed once per batch; each point then costs ``D + 1`` scaled additions of activations
instead of the layer itself. A BatchNorm folded into the layer (``W' = W·s``, ``b'``; see
:mod:`~losslab.landscape.fusion`) multiplies each output channel by ``s``, so the layer's
output at a point is

    h(θ) = Σ_d k_d ⊙ B_d + b',    k_* = s,  k_d = c_d · s   (per output channel),

exact in real arithmetic; it differs from the layer applied to ``W'(θ)`` by floating-point
rounding only (tests: 1e-12 relative in float64). The bases take ``D + 1`` first-layer
activations per batch; batches are shared while they fit in ``FIRST_LAYER_BYTES`` (1 GiB; the
rest run the first layer at every point). Where it pays is measured, not assumed
(:func:`pays`): the sum is one pass over memory per term, so it beats a layer that does many
multiply-adds per output (float64 convolutions, wide linear layers), not oneDNN's fused
float32 convolution of a one- or three-channel image.

The split applies when the traced network's single input reaches exactly one conv/linear
module (called once) through parameter-free steps only, nothing else reads the input, and
the measurements of :func:`pays` say it is faster for the layer, dtype and device.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

__all__ = ["FirstLayer", "split_first_layer", "pays", "FIRST_LAYER_BYTES"]

FIRST_LAYER_BYTES = 1 << 30
_CONVS = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


@dataclass
class FirstLayer:
    """The first layer of a network split off its traced graph: ``pre`` maps the input to
    the layer's input ``u``; :meth:`apply` is the layer; the graph now starts at its output."""

    name: str
    module: nn.Module
    pre: fx.GraphModule

    @property
    def weight_key(self) -> str:
        return f"{self.name}.weight"

    @property
    def bias_key(self) -> str:
        return f"{self.name}.bias"

    def _bias_shape(self, out: Tensor) -> tuple[int, ...]:
        """Per output channel: dimension 1 of a convolution's output, the last of a linear."""
        if isinstance(self.module, nn.Linear):
            return (-1,)
        return (1, -1, *[1] * (out.ndim - 2))

    def apply(self, u: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """The layer at ``weight`` (and ``bias``) on ``u``."""
        m = self.module
        if isinstance(m, nn.Linear):
            return F.linear(u, weight, bias)
        return _CONVS[type(m)](u, weight, bias, m.stride, m.padding, m.dilation, m.groups)

    def bases(self, u: Tensor, weights: Sequence[Tensor | None]) -> list[Tensor | None]:
        """``W ⋆ u`` for each weight (the centre's, then each direction's); None for a zero
        weight (a line between two models has a zero centre), whose product is zero."""
        return [None if w is None else self.apply(u, w) for w in weights]

    def combine(self, bases: list[Tensor | None], coefs: Sequence[float], scale: Tensor | None,
                shift: Tensor | None) -> Tensor:
        """``h = Σ_d k_d ⊙ B_d + shift`` with ``k = scale · (1, c_1, …, c_D)`` per channel
        (``scale`` None: 1)."""
        terms = [(b, c) for b, c in zip(bases, (1.0, *coefs), strict=True)
                 if b is not None and c != 0.0]
        if not terms:  # every term is zero: the output is the bias alone
            ref = next(b for b in bases if b is not None)
            return torch.zeros_like(ref) + (0 if shift is None else
                                            shift.reshape(self._bias_shape(ref)))
        shape = self._bias_shape(terms[0][0])
        out = None
        for b, c in terms:
            if scale is None:
                out = b * c if out is None else out.add_(b, alpha=c)
            else:
                k = (scale * c).reshape(shape)
                out = b * k if out is None else out.addcmul_(b, k)
        return out if shift is None else out.add_(shift.reshape(shape))


def _param_free(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """A step that reads no weights: a function or method call, or a module without
    parameters or buffers (a flatten, an identity, a dropout in evaluation mode)."""
    if node.op in ("call_function", "call_method"):
        return True
    if node.op == "call_module":
        m = modules[node.target]
        return next(m.parameters(), None) is None and next(m.buffers(), None) is None
    return False


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen, todo = set(), [node]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(n.all_input_nodes)
    return seen


def _pre_module(gm: fx.GraphModule, nodes: Iterable[fx.Node], out: fx.Node) -> fx.GraphModule:
    """A graph module computing ``out`` from the input, from ``nodes`` (in graph order)."""
    graph, env = fx.Graph(), {}
    for n in gm.graph.nodes:
        if n in nodes:
            env[n] = graph.node_copy(n, lambda a: env[a])
    graph.output(env[out])
    return fx.GraphModule(gm, graph)


def pays(module: nn.Module, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether sharing ``module`` was measured to be faster than running it at every point.

    On a 2-core CPU (float64 has no oneDNN kernel, and torch's own is slow): always in
    float64 (a digits CNN's 1 → 16 and 1 → 32 convolutions 1.9 → 0.5 and 3.1 → 1.2 ms per batch
    of 256; a 3 → 64 one on 250 CIFAR images 271 → 211 ms); in float32 only when the layer has
    at least 64 multiply-adds per output (a linear layer of 64 or more inputs: 0.063 → 0.023 ms),
    because oneDNN's fused convolution with 9 or 27 multiply-adds per output is as fast as the
    combination, a pass over memory per term (1 → 32 channels: 0.68 against 1.63 ms). Off
    elsewhere (not measured on a GPU)."""
    if device.type != "cpu":
        return False
    if isinstance(module, nn.Linear):
        macs = module.in_features
    else:
        macs = module.in_channels // module.groups * math.prod(module.kernel_size)
    return dtype == torch.float64 or macs >= 64


def split_first_layer(gm: fx.GraphModule, dtype: torch.dtype = torch.float64,
                      device: torch.device = torch.device("cpu")) -> FirstLayer | None:
    """Rewrite ``gm`` so its input is its first layer's output; None (``gm`` unchanged) when
    the network does not start with one conv/linear module reached only from its input, or
    when sharing it does not pay in ``dtype`` on ``device`` (:func:`pays`)."""
    modules = dict(gm.named_modules())
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        return None
    layer = None
    for node in gm.graph.nodes:
        if node.op == "call_module" and type(modules[node.target]) in (*_CONVS, nn.Linear):
            layer = node
            break
    if layer is None or len(layer.args) != 1 or layer.kwargs:
        return None
    module = modules[layer.target]
    if getattr(module, "padding_mode", "zeros") != "zeros" or not pays(module, dtype, device):
        return None
    if sum(n.op == "call_module" and n.target == layer.target for n in gm.graph.nodes) != 1:
        return None  # a layer called twice cannot be replaced by its first output
    ancestors = _ancestors(layer.args[0])
    if inputs[0] not in ancestors or not all(
            n is inputs[0] or _param_free(n, modules) for n in ancestors):
        return None
    if any(u not in ancestors and u is not layer for n in ancestors for u in n.users):
        return None  # the input is read elsewhere too (a shape, a skip connection)
    pre = _pre_module(gm, ancestors, layer.args[0])
    with gm.graph.inserting_before(inputs[0]):
        h = gm.graph.placeholder("first_layer_output")
    layer.replace_all_uses_with(h)
    for n in reversed(list(gm.graph.nodes)):
        if n in ancestors or n is layer:
            gm.graph.erase_node(n)
    gm.graph.lint()
    gm.recompile()
    return FirstLayer(str(layer.target), module, pre)
