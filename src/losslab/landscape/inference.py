"""How a private copy of the model is run when only its loss at many points is wanted.

A landscape map evaluates the same network at hundreds of parameter points, in eval mode and
without gradients, so transforms that leave the function unchanged pay for themselves
(``benchmarks/bench_landscape.py`` measures them side by side):

* **Memory layout.** ``memory_format="auto"`` stores the centre's and the directions' 4-D
  weights and every input batch channels-last (NHWC) on a CPU, the layout oneDNN's fused
  kernels below need; the point ``θ* + Σ c_d d_d`` inherits the layout for free. Elsewhere
  ``"auto"`` keeps the default layout until a benchmark there says otherwise.
* **Fusion** (``fuse=True``, :mod:`~losslab.landscape.fusion`): BatchNorm folded into the
  layer before it (every device), and on a CPU in float32 channels-last, each convolution
  fused with its ReLU and residual sum. Fused and unfused losses agree to floating-point
  rounding (tests: 1e-12 relative in float64 for folding, 1e-5 in float32 for the oneDNN
  kernels); ``fuse=False`` gives bit-for-bit the model's own forward.
* **The first layer shared between points** (``fuse=True``,
  :mod:`~losslab.landscape.first_layer`): the first conv/linear layer is split off the traced
  graph (before the conv+ReLU fusion, after BatchNorm folding); :meth:`FastForward.rest` runs
  the rest from its output, :meth:`FastForward.__call__` the whole network.
* **An allocator that keeps what it frees** (CPU): see :mod:`losslab.cpu_allocator`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from losslab.errors import InputError
from losslab.landscape.first_layer import FirstLayer, split_first_layer
from losslab.landscape.fusion import (
    bn_affine,
    fold_batchnorms,
    folded_state,
    fuse_conv_relu,
    pointwise_kernel_works,
    trace,
)
from losslab.landscape.options import MEMORY_FORMATS
from losslab.params import ParamDict

__all__ = ["MEMORY_FORMATS", "FastForward", "resolve_memory_format"]



def resolve_memory_format(choice: str, device: torch.device, params: ParamDict) -> str:
    """``"channels_last"`` or ``"contiguous"``: ``"auto"`` picks channels-last on a CPU for a
    model with 4-D (convolution) weights."""
    if choice not in MEMORY_FORMATS:
        raise InputError(f"memory_format must be one of {MEMORY_FORMATS}, got {choice!r}")
    if choice != "auto":
        return choice
    has_conv2d = any(t.ndim == 4 for t in params.values())
    return "channels_last" if device.type == "cpu" and has_conv2d else "contiguous"


class FastForward:
    """Evaluation-mode forward of ``net`` at given parameters and buffers, in the chosen
    layout, fused where possible. ``net`` (a private copy) is never changed; the fused graph
    is a traced copy of it. ``describe()`` is recorded in results."""

    def __init__(self, net: nn.Module, params: ParamDict, device: torch.device, *,
                 memory_format: str = "auto", fuse: bool = True):
        self.memory_format = resolve_memory_format(memory_format, device, params)
        self._format = (torch.channels_last if self.memory_format == "channels_last"
                        else torch.contiguous_format)
        self.net, self.pairs, self.fused_convs = net, [], 0
        self.first: FirstLayer | None = None
        gm = trace(net) if fuse else None
        if gm is not None:
            self.pairs = fold_batchnorms(gm)
            dtype = next((t.dtype for t in params.values() if t.is_floating_point()),
                         torch.get_default_dtype())
            self.first = split_first_layer(gm, dtype, device)  # before fusion: stays plain
            if (device.type == "cpu" and self.memory_format == "channels_last"
                    and all(t.dtype == torch.float32 for t in params.values())
                    and pointwise_kernel_works()):
                self.fused_convs = fuse_conv_relu(gm)
            if self.pairs or self.fused_convs or self.first:
                gm.delete_all_unused_submodules()
                self.net = gm.eval()
        self._first_keys = {self.first.weight_key, self.first.bias_key} if self.first else set()
        self._first_pair = next((p for p in self.pairs if self.first and p.layer == self.first.name),
                                None)
        self._keys = {*dict(self.net.named_parameters()), *dict(self.net.named_buffers()),
                      *self._first_keys}

    def layout(self, t: Tensor) -> Tensor:
        """``t`` in the chosen memory format (4-D tensors only; a no-op if already there).

        Channels-last means its exact strides: a tensor of one channel (a grey-scale batch)
        is contiguous and channels-last at once, and ``t.contiguous(memory_format=...)``
        leaves it as it is; oneDNN then picks the NCHW kernels for the whole network, whose
        max-pool was 10x slower on a digits CNN (``benchmarks/bench_peer_surfaces.py``)."""
        if t.ndim != 4:
            return t
        if self._format is not torch.channels_last:
            return t.contiguous()
        n, c, h, w = t.shape
        if t.stride() == (h * w * c, 1, w * c, c):
            return t
        return torch.empty_like(t, memory_format=torch.channels_last).copy_(t)

    def fold(self, state: ParamDict) -> ParamDict:
        """The (fused) network's parameters and buffers for the point ``state`` (the split
        first layer's weight and bias included)."""
        if not self.pairs and not self.fused_convs and not self.first:
            return state
        folded = folded_state(state, self.pairs, self.layout)
        return {k: v for k, v in folded.items() if k in self._keys}

    def first_input(self, x: Tensor) -> Tensor:
        """The split first layer's input ``u`` for the batch ``x``."""
        return self.layout(self.first.pre(self.layout(x)))

    def first_affine(self, state: ParamDict) -> tuple[Tensor | None, Tensor | None]:
        """``(s, b')`` of the split first layer at the unfolded point ``state``: its output is
        ``s ⊙ (W ⋆ u) + b'`` (``s`` None without a folded BatchNorm; ``b'`` its own bias)."""
        if self._first_pair is not None:
            return bn_affine(state, self._first_pair)
        return None, state.get(self.first.bias_key)

    def __call__(self, state: ParamDict, x: Tensor) -> Tensor:
        """Outputs of the network at ``state`` (from :meth:`fold`) on the batch ``x``."""
        if self.first is None:
            return functional_call(self.net, state, (self.layout(x),))
        w, b = state[self.first.weight_key], state.get(self.first.bias_key)
        return self.rest(state, self.first.apply(self.first_input(x), w, b))

    def rest(self, state: ParamDict, h: Tensor) -> Tensor:
        """Outputs of the network after its split first layer, whose output is ``h``."""
        rest = {k: v for k, v in state.items() if k not in self._first_keys}
        return functional_call(self.net, rest, (h,))

    def describe(self) -> dict:
        return {"memory_format": self.memory_format, "folded_batchnorms": len(self.pairs),
                "fused_conv_relu": self.fused_convs,
                "shared_first_layer": self.first.name if self.first else None}
