"""Cooling schedules and the Metropolis acceptance rule.

Source: M. Stringher, "Unconventional Training of Deep Neural Networks" (thesis, Padova 2019),
section 3.2. A worsening move with objective increase Δ > 0 is accepted with probability

    p(Δ, T) = exp(-Δ / T)   if Δ > 0,        p = 1   if Δ <= 0          (thesis eq. 3.1)

and the temperature cools geometrically once per epoch,

    T_{k+1} = α T_k,   i.e.   T_k = T_0 α^k                             (thesis eq. 3.2)

with T_0 = 1 and α = 0.97 for SSA (thesis ch. 3), α = 0.93 for SGD-SA (ch. 4).

Schedules are closed-form functions of the number of epochs cooled, so ``state_dict`` holds
only that count and the constants, and a resumed run sees exactly the same temperatures.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from losslab.errors import InputError, NotFoundError, OptionTypeError

__all__ = ["CoolingSchedule", "ExponentialCooling", "LinearCooling", "as_cooling",
           "metropolis_accept"]


class CoolingSchedule:
    """A temperature that changes once per epoch: ``temperature``, ``step()``, state dicts."""

    def __init__(self) -> None:
        self.epoch = 0  # times step() was called

    @property
    def temperature(self) -> float:
        return self.at(self.epoch)

    def at(self, epoch: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self) -> float:
        """Cool by one epoch; returns the new temperature."""
        self.epoch += 1
        return self.temperature

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = set(state) - set(vars(self))
        if unknown:
            raise NotFoundError(f"{type(self).__name__}: unknown state keys {sorted(unknown)}")
        for k, v in state.items():
            setattr(self, k, v)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class ExponentialCooling(CoolingSchedule):
    """T_k = t0 · alpha^k after k epochs (thesis eq. 3.2: T ← αT once per epoch)."""

    def __init__(self, t0: float = 1.0, alpha: float = 0.97) -> None:
        if not t0 >= 0:
            raise InputError(f"t0 must be >= 0, got {t0!r}")
        if not 0 < alpha <= 1:
            raise InputError(f"alpha must be in (0, 1], got {alpha!r}")
        super().__init__()
        self.t0, self.alpha = float(t0), float(alpha)

    def at(self, epoch: int) -> float:
        # The closed form rather than repeated multiplication: the same value whether a run
        # went straight through or was resumed.
        return self.t0 * self.alpha ** epoch


class LinearCooling(CoolingSchedule):
    """T_k = t0 + (t_end - t0) · min(k / epochs, 1): a straight line, then constant."""

    def __init__(self, t0: float = 1.0, t_end: float = 0.0, epochs: int = 100) -> None:
        if not (t0 >= 0 and t_end >= 0):
            raise InputError(f"temperatures must be >= 0, got t0={t0!r}, t_end={t_end!r}")
        if int(epochs) < 1:
            raise InputError(f"epochs must be >= 1, got {epochs!r}")
        super().__init__()
        self.t0, self.t_end, self.epochs = float(t0), float(t_end), int(epochs)

    def at(self, epoch: int) -> float:
        return self.t0 + (self.t_end - self.t0) * min(epoch / self.epochs, 1.0)


def as_cooling(temperature: CoolingSchedule | float | None, alpha: float,
               default_t0: float = 1.0) -> CoolingSchedule:
    """A schedule as given, or ``ExponentialCooling(temperature, alpha)`` for a number."""
    if temperature is None:
        return ExponentialCooling(default_t0, alpha)
    if isinstance(temperature, CoolingSchedule):
        return temperature
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        return ExponentialCooling(float(temperature), alpha)
    raise OptionTypeError(f"temperature must be a number or a CoolingSchedule, got {temperature!r}")


def metropolis_accept(delta: Tensor, temperature: float, u: Tensor) -> tuple[Tensor, Tensor]:
    """The Metropolis decision for an objective change ``delta`` (eq. 3.1), without a host sync.

    Returns ``(accept, prob)``: ``prob`` = exp(-Δ/T) for Δ > 0 and 1 otherwise, ``accept`` =
    ``prob > u`` for ``u`` ~ U[0, 1). Since P(u < p) = p exactly and u < 1, a non-worsening
    move is always accepted and p = 0 (T = 0, or Δ = inf) is never accepted. A NaN Δ (a
    candidate whose objective is NaN) gives p = NaN, and every comparison with NaN is false,
    so such a move is rejected.
    """
    # Δ/T is computed only where it is used: torch.where picks 1 for Δ <= 0, so T = 0 with
    # Δ = 0 (0/0) never reaches the result. T = 0 with Δ > 0 gives exp(-inf) = 0.
    ratio = delta / temperature if temperature > 0 else delta * float("inf")
    prob = torch.where(delta <= 0, torch.ones_like(delta), torch.exp(-ratio))
    return prob > u, prob
