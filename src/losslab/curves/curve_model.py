"""A mode-connecting curve between two trained models, for any ``nn.Module``.

``CurveModel(model, start, end, bends=1, kind="bezier")`` holds the endpoints ŵ1 = φ(0) and
ŵ2 = φ(1) as fixed buffers and the ``bends`` interior control points θ as one trainable
parameter, initialized on the straight line between the endpoints (Garipov et al. 2018, §3:
θ_i = ŵ1 + i/(n+1) · (ŵ2 − ŵ1)). The curve's point

    φ(t) = c_0(t) · ŵ1 + Σ_i c_i(t) · θ_i + c_{n+1}(t) · ŵ2          (losslab.curves.bases)

is one (n+2)-by-P matrix product of the coefficients with the stacked flat points, split back
into a name-keyed parameter dict; the network runs at φ(t) through ``functional_call`` on a
private copy of ``model`` (no architecture is rewritten as "curve layers", the reference
implementation's approach). Gradients reach only the bends.

Training (``model.train()``) draws one t ~ U[0, 1] per forward from the curve's own seeded
sequence (its position is a buffer, so checkpoints resume it), which minimizes E_t L(φ(t)) by SGD, one t per minibatch;
``curve(x, t=0.3)`` evaluates a given t. The copy's BatchNorm layers use batch statistics while
training; their running statistics mix every t and are meaningless for any one point, so
evaluation recomputes them at each t (``losslab.curves.evaluate``).

Weight decay: the paper decays the curve's point, ½·wd·‖φ(t)‖² at the sampled t
(``point_l2()`` of the last forward; ``weight_decay_on="point"``); ``"bends"`` decays θ alone,
as an optimizer's ``weight_decay`` on ``curve.parameters()`` does.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from losslab.curves.bases import CURVE_KINDS, curve_coefficients
from losslab.errors import InputError
from losslab.landscape.directions import as_params
from losslab.params import ParamDict, check_same_keys, flatten, parameters_of, unflatten

__all__ = ["CurveModel", "segment_lengths"]


class CurveModel(nn.Module):
    """φ(t) between ``start`` and ``end`` (modules, LoadedCheckpoints or parameter dicts with
    the trainable parameters of ``model``) through ``bends`` trainable points."""

    def __init__(self, model: nn.Module, start: Any, end: Any, *, bends: int = 1,
                 kind: str = "bezier", seed: int = 0, eval_t: float | None = None):
        super().__init__()
        if kind not in CURVE_KINDS:
            raise InputError(f"kind must be one of {CURVE_KINDS}, got {kind!r}")
        if isinstance(bends, bool) or not isinstance(bends, int) or bends < 0:
            raise InputError(f"bends must be a non-negative integer, got {bends!r}")
        self.kind, self.num_bends, self.eval_t = kind, bends, eval_t
        self.net = copy.deepcopy(model)
        for p in self.net.parameters():  # the copy's weights are never used: φ(t) replaces them
            p.requires_grad_(False)
        like = parameters_of(model)
        start_p, end_p = as_params(start), as_params(end)
        check_same_keys(like, start_p)
        check_same_keys(like, end_p)
        self._like = {k: torch.empty(v.shape, device="meta") for k, v in like.items()}
        device, dtype = next(iter(like.values())).device, next(iter(like.values())).dtype
        w1 = flatten(start_p, self._like).detach().to(device, dtype)
        w2 = flatten(end_p, self._like).detach().to(device, dtype)
        self.register_buffer("endpoints", torch.stack([w1, w2]))
        frac = torch.arange(1, bends + 1, dtype=dtype, device=device)[:, None] / (bends + 1)
        self.bends = nn.Parameter(w1 + frac * (w2 - w1))  # (bends, P) on the straight line
        # t_k comes from a generator seeded by (seed, k): the draw count is all the state, a
        # tensor that checkpoints and resumes with the weights.
        self.register_buffer("t_seed", torch.tensor(int(seed), dtype=torch.int64))
        self.register_buffer("t_draws", torch.tensor(0, dtype=torch.int64))
        self._last_flat: Tensor | None = None  # φ(t) of the last forward, for point_l2
        self.last_t: float | None = None

    # -- the curve -----------------------------------------------------------------------------
    def coefficients(self, t: float) -> Tensor:
        """c(t) over (ŵ1, θ_1 … θ_n, ŵ2), float64."""
        return curve_coefficients(self.kind, float(t), self.num_bends + 2)

    def control_points(self) -> Tensor:
        """(n + 2, P): ŵ1, the bends, ŵ2, as flat vectors."""
        return torch.cat([self.endpoints[:1], self.bends, self.endpoints[1:]])

    def flat_point(self, t: float) -> Tensor:
        """φ(t) as one flat vector (differentiable in the bends)."""
        c64 = self.coefficients(t)
        if c64[0] == 1.0:  # exactly the endpoints, without rounding
            return self.endpoints[0]
        if c64[-1] == 1.0:
            return self.endpoints[1]
        c = c64.to(self.bends.dtype).to(self.bends.device)
        # c_0·ŵ1 + c_{n+1}·ŵ2 + Σ c_i·θ_i without stacking the (n + 2, P) control points
        return c[[0, -1]] @ self.endpoints + c[1:-1] @ self.bends

    def unflatten(self, flat: Tensor) -> ParamDict:
        """A flat weight vector as the wrapped model's parameter dict (views)."""
        return unflatten(flat, self._like)

    def point(self, t: float) -> ParamDict:
        """φ(t) as a parameter dict for ``functional_call`` on the wrapped model."""
        return self.unflatten(self.flat_point(t))

    def control_point_dicts(self) -> list[ParamDict]:
        """ŵ1, θ_1 … θ_n, ŵ2 as detached parameter dicts (for evaluation engines)."""
        return [self.unflatten(row) for row in self.control_points().detach()]

    # -- as a module ---------------------------------------------------------------------------
    def sample_t(self) -> float:
        """The next t ~ U[0, 1] of this curve's seeded sequence."""
        k = int(self.t_draws)
        self.t_draws += 1
        gen = torch.Generator("cpu").manual_seed(int(self.t_seed) * 1_000_003 + k)
        return float(torch.rand((), generator=gen, dtype=torch.float64))

    def forward(self, x: Tensor, t: float | None = None) -> Tensor:
        """The network at φ(t); without ``t``: t ~ U[0, 1] in training mode, ``eval_t`` in
        eval mode (how a trainer's per-epoch evaluation sees the curve)."""
        if t is None:
            if not self.training and self.eval_t is None:
                raise InputError("in eval mode give t: curve(x, t=0.5), or set eval_t")
            t = self.sample_t() if self.training else self.eval_t
        self.last_t = float(t)
        flat = self.flat_point(t)
        self._last_flat = flat
        # only the parameters are substituted: the copy's own buffers (BatchNorm statistics)
        # serve, as they would in the plain network
        return functional_call(self.net, self.unflatten(flat), (x,))

    def point_l2(self) -> Tensor:
        """‖φ(t)‖² at the t of the last forward (the paper's weight-decay term is ½·wd·this)."""
        if self._last_flat is None:
            raise RuntimeError("point_l2() needs a forward pass first")
        return self._last_flat.square().sum()

    def length(self, points: int = 201) -> float:
        """∫_0^1 ‖φ'(t)‖ dt, as the length of the polygon through ``points`` values of t."""
        with torch.no_grad():
            ts = torch.linspace(0, 1, points, dtype=torch.float64).tolist()
            pts = torch.stack([self.flat_point(t) for t in ts])
            return float(segment_lengths(pts).sum())


def segment_lengths(points: Tensor) -> Tensor:
    """‖p_{i+1} - p_i‖ in float64 for the rows of ``points``: the polygon's segments."""
    return (points[1:] - points[:-1]).double().norm(dim=1)
