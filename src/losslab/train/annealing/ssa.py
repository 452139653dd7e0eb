"""SSA: stochastic simulated annealing, a derivative-free optimizer (thesis chapter 3).

Source: M. Stringher, "Unconventional Training of Deep Neural Networks" (thesis, Padova 2019),
section 3.3 and Algorithm 6. Per minibatch, with weights w, step size ε and temperature T:

    Δ ~ N(0, I)                                   (one draw for every parameter)
    L0 = L(w),  L+ = L(w + εΔ),  L- = L(w - εΔ)   (three forward passes, no backward)
    w_best = argmin(L+, L-)
    w <- w_best  if  L_best <= L0,
    w <- w_best  with probability exp(-(L_best - L0)/T) otherwise (Metropolis, eq. 3.1),
    w <- w       otherwise (rejected: the parameters are restored bit for bit).

Per epoch (``epoch_end``): T <- αT (eq. 3.2) and, when the share of minibatches whose best
candidate was not worse than L0 falls below ``improve_bound``, ε <- ε · ``eps_factor``
(section 3.4: "if the value of ε leads to a worse objective function value, ε is decreased by
a factor of 10"; 0.6 is the bound in the thesis's code).

Defaults ε0 = 1e-2, T0 = 1, α = 0.97 are the thesis's (Figures 3.5-3.7). They were tuned for
the thesis's objective scale, the mean cross-entropy divided by its batch size, 512: to
reproduce its runs pass ``loss_scale=1/512`` (``THESIS_BATCH_SIZE``) whatever batch size the
run uses; it multiplies every compared objective (the Metropolis Δ) and nothing else. With the
default ``loss_scale=1`` Δ is on the true mean's scale.

THE OBJECTIVE'S MODE. With ``module=model`` the optimizer evaluates the objective for the
acceptance decision in eval mode (``objective_mode="eval"``, the default, as the thesis's code
does: ``model.eval()`` around the evaluations, each submodule's mode restored after), or in
train mode (``"train"``). In eval mode the buffers (BatchNorm running statistics) are never
touched; in train mode every evaluation moves them, so they are snapshot and a rejected move
puts them back bitwise, an accepted one keeps the statistics its own evaluation produced
(:mod:`losslab.train.annealing.objective`). Without ``module`` the closure runs in whatever
mode the caller left the model in, and buffers are the caller's business.

CLOSURE CONVENTION (shared with :class:`~losslab.train.annealing.SGDSA` and the trainer)::

    def closure():
        loss = F.cross_entropy(model(x), y)       # the objective on the current minibatch
        if torch.is_grad_enabled():                # SSA never enables it; SGD-SA does once
            optimizer.zero_grad()
            loss.backward()
        return loss                                # a 0-d tensor; SSA may get e.g. the error rate

SSA calls the closure three times per step, always under ``torch.no_grad()``; what it returns is
what Metropolis compares, so it need not be differentiable (thesis: "we can optimize over
discrete functions, such as the accuracy"). The optimizer moves parameters; buffers follow the
objective's mode (above).

No host syncs in ``step``: the candidate choice and the accept/reject decision are tensor
arithmetic (``torch.where``), the random numbers come from ``generator`` on the parameters'
device, and the per-epoch counters are device tensors read once by ``epoch_end``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from losslab.errors import InputError
from losslab.train.annealing.base import Annealer, Closure
from losslab.train.annealing.temperature import CoolingSchedule

__all__ = ["SSA", "THESIS_BATCH_SIZE"]

#: The batch size the thesis trained with; its loss scale is the mean cross-entropy / 512.
THESIS_BATCH_SIZE = 512


class SSA(Annealer):
    """Stochastic simulated annealing (thesis Algorithm 6); see the module docstring.

    Args:
        params: parameters or parameter groups (a group may set its own ``eps``).
        eps: initial step ε of the random move ±εΔ (thesis: 1e-2 at ``loss_scale=1/batch``).
        temperature: a :class:`CoolingSchedule`, or T0 for ``ExponentialCooling(T0, alpha)``;
            default ``ExponentialCooling(1.0, 0.97)``.
        alpha: the cooling factor used when ``temperature`` is a number or None.
        improve_bound: ε drops at an epoch's end when the share of non-worsening steps is
            below it (thesis code: 0.6).
        eps_factor: the factor ε is multiplied by when it drops (thesis: 0.1).
        loss_scale: multiplies the compared objective (``1/512`` = the thesis's scale).
        generator, seed: the random source (on the parameters' device); default a new
            generator seeded from ``seed`` or from ``torch.initial_seed()``.
        module: the model the closure evaluates; with it the objective is judged in
            ``objective_mode`` and its buffers are restored with a rejected move.
        objective_mode: ``"eval"`` (default, the thesis's code) or ``"train"``.

    Memory: one scratch buffer per parameter (``state[p]["saved"]``). The saved copy of w is
    the only extra storage: Δ is drawn into the parameters themselves, the candidate w - εΔ is
    built as the mirror image b = 2w - a of the one evaluated first, a = w + εΔ. A rejected
    step leaves w bitwise unchanged and a kept b is bitwise the point evaluated; a kept a is
    rebuilt as the mirror 2w - b, which equals the evaluated a up to two roundings (drawing Δ
    again would make it exact, but the generator is the dearest part of a step on a small
    model: ``benchmarks/bench_annealing.py``).
    """

    def __init__(self, params: Iterable, eps: float = 1e-2,
                 temperature: CoolingSchedule | float | None = None, alpha: float = 0.97,
                 improve_bound: float = 0.6, eps_factor: float = 0.1, loss_scale: float = 1.0,
                 generator: torch.Generator | None = None, seed: int | None = None,
                 module: nn.Module | None = None, objective_mode: str = "eval") -> None:
        if not (eps > 0 and math.isfinite(eps)):
            raise InputError(f"eps must be a positive number, got {eps!r}")
        if not 0 <= improve_bound <= 1:
            raise InputError(f"improve_bound must be in [0, 1], got {improve_bound!r}")
        if not 0 < eps_factor <= 1:
            raise InputError(f"eps_factor must be in (0, 1], got {eps_factor!r}")
        super().__init__(params, {"eps": float(eps)}, temperature, alpha, loss_scale,
                         generator, seed, module, objective_mode)
        self.improve_bound, self.eps_factor = float(improve_bound), float(eps_factor)
        self.eps_drops = 0  # times ε was multiplied by eps_factor, over the whole run

    @torch.no_grad()
    def step(self, closure: Closure) -> Tensor:  # type: ignore[override]
        """One SSA move on the closure's minibatch; returns L0, the objective before the move."""
        if closure is None:
            raise InputError("SSA.step needs a closure (see the closure convention)")
        groups = [(g["eps"], list(g["params"])) for g in self.param_groups if g["params"]]
        params = [p for _, ps in groups for p in ps]
        saved = self._buffers(params)
        bufs = [(eps, ps, saved[i:i + len(ps)])
                for (eps, ps), i in zip(groups, _offsets(groups), strict=True)]
        u = self._uniform()
        guard = self.guard
        # Train mode: every evaluation moves the buffers; each starts from the step's own
        # ("w"), and the first candidate's result is kept aside ("a") in case it wins.
        track = guard.active and guard.mode == "train"
        with guard.evaluating():
            if track:
                guard.save("w")
            l0 = self._value(closure())
            if track:
                guard.restore("w")

            torch._foreach_copy_(saved, params)                    # saved = w
            for p in params:
                p.normal_(generator=self.generator)                # p = Δ
            for eps, ps, ss in bufs:
                torch._foreach_mul_(ps, eps)
                torch._foreach_add_(ps, ss)                        # p = a = w + εΔ
            l_plus = self._value(closure())
            if track:
                guard.save("a")
                guard.restore("w")

            for _, ps, ss in bufs:
                torch._foreach_neg_(ps)
                torch._foreach_add_(ps, ss, alpha=2.0)             # p = b = 2w - a (one rounding)
            l_minus = self._value(closure())

        take_plus = (l_plus < l_minus) | torch.isnan(l_minus)
        best = torch.where(take_plus, l_plus, l_minus)
        accept, counts = self._decide(l0, best, u)
        keep_minus, keep_plus = accept & ~take_plus, accept & take_plus
        if track:  # buffers: a's statistics, b's (as they are), or the step's own
            guard.select3(keep_plus, "a", keep_minus, "w")

        # p = b if b is kept, w if the move is rejected (both bitwise), and the mirror
        # 2w - b if a is kept: that is a up to two roundings (of b and of 2w - b), which spares a
        # second draw of Δ (the generator is the dearest part of an SSA step on a small model).
        # The temporaries live one parameter at a time; the optimizer's state stays one buffer.
        for p, s in zip(params, saved, strict=True):
            mirrored = s.mul(2.0).sub_(p)
            torch.where(keep_plus, mirrored, torch.where(keep_minus, p, s), out=p)
        self._count(counts)
        return l0

    def epoch_end(self) -> dict[str, Any]:
        """The epoch's statistics (one host sync), then cool T and maybe drop ε.

        Returns ``improving_moves`` (best candidate strictly better than L0), ``neutral_moves``
        (equal: accepted with probability 1, common with a discrete objective),
        ``worsening_accepted``/``worsening_rejected``, ``mean_acceptance_prob`` (the mean of
        exp(-Δ/T) over worsening moves; NaN if there were none), ``improving_share`` (the share
        of steps that were not worsening: the thesis drops ε when worsening moves exceed a
        threshold, so ties count as not worsening, or a discrete objective would shrink ε
        forever), ``temperature`` and ``eps`` (the values used during the epoch), ``eps_drops``
        (the total so far, counting a drop decided now) and ``steps``.
        """
        out = self._read_counters()
        steps = out["steps"]
        share = (out["improving_moves"] + out["neutral_moves"]) / steps if steps else math.nan
        out.update(improving_share=share, temperature=self.temperature,
                   eps=self.param_groups[0]["eps"])
        self.cooling.step()
        if steps and share < self.improve_bound:
            for g in self.param_groups:
                g["eps"] *= self.eps_factor
            self.eps_drops += 1
        out["eps_drops"] = self.eps_drops
        return out

    def _extra_state(self) -> dict[str, Any]:
        return {"eps_drops": self.eps_drops, "improve_bound": self.improve_bound,
                "eps_factor": self.eps_factor}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.eps_drops = int(extra["eps_drops"])
        self.improve_bound = float(extra["improve_bound"])
        self.eps_factor = float(extra["eps_factor"])


def _offsets(groups: list[tuple[Any, list[Tensor]]]) -> list[int]:
    out, i = [], 0
    for _, ps in groups:
        out.append(i)
        i += len(ps)
    return out
