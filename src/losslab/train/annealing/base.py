"""The base of the annealing optimizers: what SSA and SGD-SA share.

:class:`Annealer` is a ``torch.optim.Optimizer`` stepped with a closure (``uses_closure``; the
closure convention is in :mod:`losslab.train.annealing.ssa`) that holds the random generator
on the parameters' device (seeded from ``seed`` or from ``torch.initial_seed()``), the cooling
schedule, the loss scale, the per-epoch counters and per-move record as device tensors (read
once per epoch, so no step waits on the host), one scratch buffer per parameter, the
Metropolis decision, and state dicts that restore all of it. Subclasses implement ``step``
and ``epoch_end``, and add their own state with ``_extra_state``/``_load_extra_state``.

Source: M. Stringher, "Unconventional Training of Deep Neural Networks", Master's thesis,
University of Padova, 2019 ("the thesis").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from losslab.errors import InputError, NotFoundError
from losslab.train.annealing.objective import ObjectiveGuard
from losslab.train.annealing.temperature import CoolingSchedule, as_cooling, metropolis_accept

__all__ = ["Annealer", "Closure"]

Closure = Callable[[], Any]

_SEED_SALT = 0x5EED_A22E  # keeps the default stream apart from the global RNG seeded alike


def _default_seed(seed: int | None) -> int:
    """``seed`` as given, else one derived from ``torch.initial_seed()`` (splitmix64 mix).

    The derived seed differs from the global one on purpose: a generator seeded exactly like
    the global RNG would replay the very stream that initialized the weights.
    """
    if seed is not None:
        return int(seed)
    z = (torch.initial_seed() + _SEED_SALT * 0x9E3779B97F4A7C15) % 2**64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    return (z ^ (z >> 31)) % 2**63


class Annealer(torch.optim.Optimizer):
    """What SSA and SGD-SA share: generator, cooling, device counters, state dicts."""

    uses_closure = True  # the trainer passes a closure (the convention: annealing.ssa)
    _COUNTERS: tuple[str, ...] = ("improving", "neutral", "worse_accepted", "worse_rejected",
                                  "prob_sum")

    def __init__(self, params: Iterable, defaults: dict[str, Any],
                 temperature: CoolingSchedule | float | None, alpha: float, loss_scale: float,
                 generator: torch.Generator | None, seed: int | None,
                 module: nn.Module | None = None, objective_mode: str = "eval") -> None:
        super().__init__(params, defaults)
        self.guard = ObjectiveGuard(module, objective_mode)
        if not (loss_scale > 0 and math.isfinite(loss_scale)):
            raise InputError(f"loss_scale must be a positive number, got {loss_scale!r}")
        devices = {p.device for g in self.param_groups for p in g["params"]}
        if len(devices) != 1:
            raise InputError(f"all parameters must be on one device, got {sorted(map(str, devices))}")
        self.device = devices.pop()
        if generator is None:
            generator = torch.Generator(device=self.device).manual_seed(_default_seed(seed))
        elif seed is not None:
            raise InputError("give generator= or seed=, not both")
        if generator.device.type != self.device.type:
            raise InputError(f"generator is on {generator.device}, parameters on {self.device}")
        self.generator = generator
        self.cooling = as_cooling(temperature, alpha)
        self.loss_scale = float(loss_scale)
        # float64 where the device has it: counters are exact integers for 2^53 steps.
        self._fdtype = torch.float32 if self.device.type == "mps" else torch.float64
        self._counters = torch.zeros(len(self._COUNTERS), dtype=self._fdtype, device=self.device)
        self._steps = 0  # steps this epoch: a host count, known without reading the device
        # Per-move record of the epoch (thesis Figs 3.3, 4.1): row 0 the acceptance probability
        # of a worsening move (NaN for a move that did not worsen), row 1 whether it was kept.
        # Written on the device by index (no sync), read with the counters at the epoch's end.
        self._moves = torch.empty(2, 256, dtype=self._fdtype, device=self.device)
        self.last_moves: dict[str, list[float]] = {"prob": [], "accepted": []}

    @property
    def temperature(self) -> float:
        """The current temperature T (the cooling schedule's)."""
        return self.cooling.temperature

    # -- step helpers ------------------------------------------------------------------------
    def _value(self, out: Any) -> Tensor:
        """The closure's result as a detached 0-d tensor on the parameters' device."""
        if isinstance(out, Tensor):
            if out.numel() != 1:
                raise InputError(f"the closure must return a scalar, got shape {tuple(out.shape)}")
            return out.detach().reshape(())
        return torch.tensor(float(out), device=self.device)

    def _buffers(self, params: list[Tensor]) -> list[Tensor]:
        """One scratch buffer per parameter (allocated once; the only per-parameter state)."""
        out = []
        for p in params:
            st = self.state[p]
            if "saved" not in st:
                st["saved"] = torch.empty_like(p, memory_format=torch.preserve_format)
            out.append(st["saved"])
        return out

    def _uniform(self) -> Tensor:
        return torch.rand((), generator=self.generator, device=self.device, dtype=self._fdtype)

    def _decide(self, l0: Tensor, l1: Tensor, u: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Metropolis on l1 against l0 (scaled by ``loss_scale``) and this step's counter values."""
        l0, l1 = l0.to(self._fdtype), l1.to(self._fdtype)
        accept, prob = metropolis_accept((l1 - l0) * self.loss_scale, self.temperature, u)
        improving, neutral = l1 < l0, l1 == l0
        worse = ~(improving | neutral)  # NaN candidates count as worsening (and are rejected)
        wprob = torch.where(worse, prob.nan_to_num(0.0), torch.zeros_like(prob))
        return accept, [improving, neutral, worse & accept, worse & ~accept, wprob]

    def _count(self, values: list[Tensor]) -> None:
        """Add this step's counter values; record its worsening-move probability and decision."""
        self._counters.add_(torch.stack([v.to(self._fdtype) for v in values]))
        if self._steps == self._moves.shape[1]:  # grow on the host's count: no sync
            grown = torch.empty(2, 2 * self._steps, dtype=self._fdtype, device=self.device)
            grown[:, :self._steps] = self._moves
            self._moves = grown
        worse_accepted, worse_rejected, wprob = values[2], values[3], values[4]
        worse = worse_accepted | worse_rejected
        self._moves[0, self._steps] = torch.where(worse, wprob, torch.full_like(wprob, math.nan))
        self._moves[1, self._steps] = worse_accepted.to(self._fdtype)
        self._steps += 1

    def _read_counters(self) -> dict[str, float]:
        """The epoch's counters and per-move record (one host sync), then reset them."""
        steps = self._steps
        flat = torch.cat([self._counters, self._moves[:, :steps].flatten()]).tolist()
        n = len(self._COUNTERS)
        values = dict(zip(self._COUNTERS, flat[:n], strict=True))
        probs, kept = flat[n:n + steps], flat[n + steps:]
        worse = [i for i, p in enumerate(probs) if p == p]  # not NaN
        self.last_moves = {"step": worse, "prob": [probs[i] for i in worse],
                           "accepted": [int(kept[i]) for i in worse]}
        self._counters.zero_()
        self._steps = 0
        worse = values["worse_accepted"] + values["worse_rejected"]
        return {
            "steps": steps,
            "improving_moves": int(values["improving"]),
            "neutral_moves": int(values["neutral"]),
            "worsening_accepted": int(values["worse_accepted"]),
            "worsening_rejected": int(values["worse_rejected"]),
            "mean_acceptance_prob": values["prob_sum"] / worse if worse else math.nan,
            **{k: v for k, v in values.items() if k not in Annealer._COUNTERS},
        }

    # -- state ----------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        """torch's state plus ``"annealing"``: generator, cooling, counters, method extras.

        The scratch buffers are left out: they hold nothing between steps.
        """
        sd = super().state_dict()
        sd["state"] = {k: {n: v for n, v in st.items() if n != "saved"}
                       for k, st in sd["state"].items()}
        sd["annealing"] = {
            "generator": self.generator.get_state(),
            "cooling": self.cooling.state_dict(),
            "loss_scale": self.loss_scale,
            "counters": self._counters.detach().cpu().clone(),
            "steps": self._steps,
            "moves": self._moves[:, :self._steps].detach().cpu().clone(),
            **self._extra_state(),
        }
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        extra = sd.pop("annealing", None)
        if extra is None:
            raise NotFoundError(f"{type(self).__name__}.load_state_dict: no 'annealing' entry")
        super().load_state_dict(sd)
        self.generator.set_state(extra["generator"])
        self.cooling.load_state_dict(extra["cooling"])
        self.loss_scale = float(extra["loss_scale"])
        self._counters.copy_(extra["counters"])
        self._steps = int(extra["steps"])
        moves = extra.get("moves")  # absent in states written before the per-move record
        if moves is None:
            moves = torch.full((2, self._steps), math.nan, dtype=self._fdtype)
        self._moves = torch.empty(2, max(256, 2 * self._steps), dtype=self._fdtype,
                                  device=self.device)
        self._moves[:, :self._steps] = moves.to(self._moves)
        self._load_extra_state(extra)
