"""SGD-SA: gradient steps with a random learning rate, kept or undone by Metropolis (thesis ch. 4).

Source: M. Stringher, "Unconventional Training of Deep Neural Networks" (thesis, Padova 2019),
section 4.1 and Algorithm 7. Per minibatch, with weights w and temperature T:

    L0 = L(w),  v = ∇L(w)                  (one forward + backward: the closure, grad enabled)
    η ~ U(H)                               (uniform over a finite set of learning rates)
    w' = w - η v                           (a plain gradient step: no momentum, no decay)
    L1 = L(w')                             (one forward on the same minibatch, no_grad)
    keep w' if L1 <= L0, else with probability exp(-(L1 - L0)/T), else restore w exactly.

Per epoch T <- αT with T0 = 1, α = 0.93 (section 4.2: "the cooling factor α has been reduced
to 0.93 for all the following tests"). The learning-rate sets of section 4.2:

    H1 = {0.9, 0.8, ..., 0.1, 0.09, ..., 0.05}     H2 = {0.5, 0.4, ..., 0.1, 0.09, ..., 0.01}

T0 = 1 was used with the thesis's objective scale (mean cross-entropy divided by its batch size,
512); ``loss_scale=1/512`` reproduces it whatever the run's batch size, the default 1 compares
the true mean.

The closure follows the convention in :mod:`losslab.train.annealing.ssa`: it is called once with
gradients enabled (it must ``zero_grad`` and ``backward``) and under ``torch.no_grad()`` for
the evaluations that judge the move.

THE OBJECTIVE'S MODE (``module=model``). The gradient pass runs in the caller's mode (train, as
SGD's), so BatchNorm's running statistics take the update SGD would give them. The move is
judged on the objective in ``objective_mode``:

* ``"eval"`` (default; the thesis's code evaluates in eval mode): L0 and L1 are both eval-mode
  evaluations, L0 at (w, B0) before the gradient pass and L1 at (w', B1) after it, B the
  buffers: the objective of the state before the move against the state after it. That costs
  one more forward pass (no grad) than train mode. A rejection restores w and B0 bitwise.
* ``"train"``: L0 is the gradient pass's own loss and L1 a train-mode evaluation (which moves
  the buffers again: that trial update is always undone). Kept: w' with the gradient pass's
  statistics B1; rejected: w and B0, bitwise.

Without ``module`` the closure's calls run in the caller's mode, L0 is the gradient pass's loss
and buffers are the caller's business.
Each param group has an ``lr`` (default 1) that multiplies the drawn η, so a closed-form
learning-rate schedule can scale H; with ``lr=1`` the step is the thesis's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from losslab.errors import InputError
from losslab.train.annealing.base import Annealer, Closure
from losslab.train.annealing.temperature import CoolingSchedule

__all__ = ["SGDSA", "H1", "H2", "LR_SETS"]

H1: tuple[float, ...] = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1,
                         0.09, 0.08, 0.07, 0.06, 0.05)
H2: tuple[float, ...] = (0.5, 0.4, 0.3, 0.2, 0.1,
                         0.09, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03, 0.02, 0.01)
LR_SETS: dict[str, tuple[float, ...]] = {"H1": H1, "H2": H2}


def _resolve_lrs(lrs: str | Sequence[float]) -> tuple[float, ...]:
    if isinstance(lrs, str):
        if lrs.upper() not in LR_SETS:
            raise InputError(f"unknown learning-rate set {lrs!r}; allowed: {', '.join(LR_SETS)}")
        return LR_SETS[lrs.upper()]
    out = tuple(float(x) for x in lrs)
    if not out:
        raise InputError("lrs must hold at least one learning rate")
    if not all(x > 0 and math.isfinite(x) for x in out):
        raise InputError(f"learning rates must be positive numbers, got {out}")
    return out


class SGDSA(Annealer):
    """SGD with simulated annealing (thesis Algorithm 7); see the module docstring.

    Args:
        params: parameters or parameter groups (a group's ``lr`` multiplies the drawn η).
        lrs: the set H, a sequence of learning rates or ``"H1"``/``"H2"`` (default H1).
        temperature: a :class:`CoolingSchedule`, or T0 for ``ExponentialCooling(T0, alpha)``;
            default ``ExponentialCooling(1.0, 0.93)``.
        alpha: the cooling factor used when ``temperature`` is a number or None.
        loss_scale: multiplies the compared objective (``1/512`` = the thesis's scale).
        generator, seed: the random source (on the parameters' device); default a new
            generator seeded from ``seed`` or from ``torch.initial_seed()``.
        module: the model the closure evaluates; with it the move is judged in
            ``objective_mode`` and its buffers are restored with a rejected move.
        objective_mode: ``"eval"`` (default, the thesis's code) or ``"train"``.

    Memory: one scratch buffer per parameter with a gradient (``state[p]["saved"]``, the copy
    of w that a rejection restores). The update ``p.addcmul_(grad, -η)`` needs no temporary,
    and the gradients are left as the closure computed them.
    """

    _COUNTERS = Annealer._COUNTERS + ("eta_sum",)

    def __init__(self, params: Iterable, lrs: str | Sequence[float] = H1,
                 temperature: CoolingSchedule | float | None = None, alpha: float = 0.93,
                 generator: torch.Generator | None = None, seed: int | None = None,
                 loss_scale: float = 1.0, lr: float = 1.0, module: nn.Module | None = None,
                 objective_mode: str = "eval") -> None:
        if not (lr >= 0 and math.isfinite(lr)):
            raise InputError(f"lr must be a non-negative number, got {lr!r}")
        super().__init__(params, {"lr": float(lr)}, temperature, alpha, loss_scale,
                         generator, seed, module, objective_mode)
        self._set_lrs(_resolve_lrs(lrs))

    def _set_lrs(self, lrs: tuple[float, ...]) -> None:
        self.lrs = lrs
        # On the device once, so drawing η is an index into it: no host round trip per step.
        self._lr_table = torch.tensor(lrs, dtype=self._fdtype, device=self.device)

    @torch.no_grad()
    def step(self, closure: Closure) -> Tensor:  # type: ignore[override]
        """One SGD-SA move on the closure's minibatch; returns L0, the objective before it."""
        if closure is None:
            raise InputError("SGDSA.step needs a closure (see the closure convention)")
        guard = self.guard
        eval_mode = guard.active and guard.mode == "eval"
        guard.save("w")                                         # B0 (nothing without buffers)
        if eval_mode:
            with guard.evaluating():
                l0 = self._value(closure())                     # L0 at (w, B0), eval mode
        with torch.enable_grad():
            l_grad = self._value(closure())                     # the gradient pass: B0 -> B1
        if not eval_mode:
            l0 = l_grad
            if guard.active:
                guard.save("grad")                              # B1, kept if the move is
        groups = [(g["lr"], [p for p in g["params"] if p.grad is not None])
                  for g in self.param_groups]
        params = [p for _, ps in groups for p in ps]
        saved = self._buffers(params)
        torch._foreach_copy_(saved, params)                     # saved = w

        g = self.generator
        eta = self._lr_table[torch.randint(len(self.lrs), (), generator=g, device=self.device)]
        u = self._uniform()
        for lr, ps in groups:
            neg = eta * -lr                                     # a 0-d device tensor
            for p in ps:
                p.addcmul_(p.grad, neg)                         # w' = w - lr·η·∇L
        with guard.evaluating():
            l1 = self._value(closure())                         # L1 at (w', B1)
        if guard.active and not eval_mode:
            guard.restore("grad")                               # undo the trial's update

        accept, counts = self._decide(l0, l1, u)
        # Rejected: p = saved, bitwise (torch.where copies; also safe when w' holds inf/NaN).
        for p, s in zip(params, saved, strict=True):
            torch.where(accept, p, s, out=p)
        if guard.active:
            guard.select(accept, "w")                           # B1 kept, or B0 back
        self._count(counts + [eta])
        return l0

    def epoch_end(self) -> dict[str, Any]:
        """The epoch's statistics (one host sync), then cool T.

        Returns ``improving_moves`` (L1 < L0), ``neutral_moves`` (L1 == L0; kept),
        ``worsening_accepted``/``worsening_rejected``, ``mean_acceptance_prob`` (the mean of
        exp(-Δ/T) over worsening moves; NaN if none), ``temperature`` (during the epoch),
        ``mean_lr`` (the mean η drawn from H, before a group's ``lr`` multiplier) and ``steps``.
        """
        out = self._read_counters()
        eta_sum = out.pop("eta_sum")
        out["mean_lr"] = eta_sum / out["steps"] if out["steps"] else math.nan
        out["temperature"] = self.temperature
        self.cooling.step()
        return out

    def _extra_state(self) -> dict[str, Any]:
        return {"lrs": list(self.lrs)}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self._set_lrs(_resolve_lrs(extra["lrs"]))
