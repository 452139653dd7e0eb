"""Evaluating points ``center + Σ_d c_d · directions[d]`` of weight space on a private copy.

The engine behind :func:`~losslab.landscape.evaluate.line`, :func:`~losslab.landscape.evaluate.surface`
and :func:`~losslab.landscape.evaluate.evaluate_points` (see that module for the policies):
it copies the model once (the user's model, modes and buffers are never touched), runs the copy
through :class:`~losslab.landscape.inference.FastForward`, keeps the evaluation batches on the
device, builds each point with multi-tensor ops, applies the BatchNorm policy (``keep``,
``recompute``, ``interpolate``) and accumulates per-point sums of the loss, its square and the
correct predictions in float64 on the device, read back once per chunk of points. Several
named evaluation sets (``{"train": ..., "test": ...}``) share one copy, one residency of their
data and one BatchNorm pass per point (:meth:`PointEvaluator.evaluate_sets`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from losslab.cpu_allocator import keep_freed_memory
from losslab.errors import InputError, NotFoundError
from losslab.landscape.first_layer import FIRST_LAYER_BYTES
from losslab.landscape.inference import FastForward
from losslab.landscape.options import BN_POLICIES, EvalOptions
from losslab.params import ParamDict, check_same_keys

__all__ = ["PointEvaluator"]

Batches = Iterable[tuple[Tensor, Tensor]]


class PointEvaluator:
    """Evaluates points ``center + Σ_d c_d · directions[d]`` on a private copy of the model.

    ``batches`` is one evaluation set or a mapping of named sets. ``options.recompute_batches``
    (the BatchNorm pass) defaults to the first set; one that is also an evaluation set is read
    onto the device once for both uses. ``bn`` is the resolved BatchNorm policy (the map's
    default applied to ``options.bn``).

    Points are evaluated in the centre's floating dtype: directions, floating buffers and
    floating inputs are cast to it (a float32 model's directions may be float64).
    """

    def __init__(self, model: nn.Module, center: ParamDict, buffers: ParamDict,
                 directions: list[ParamDict], batches: Batches | Mapping[str, Batches], *,
                 options: EvalOptions, bn: str, buffer_dirs: list[ParamDict] | None = None):
        loss_fn, recompute_batches = options.loss_fn, options.recompute_batches
        points_per_call, device = options.points_per_call, options.device
        if bn not in BN_POLICIES:
            raise InputError(f"bn must be one of {BN_POLICIES}, got {bn!r}")
        if (bn == "interpolate") != (buffer_dirs is not None):
            raise InputError("bn='interpolate' is for a line between two models, which gives "
                             "both models' buffers")
        sets = dict(batches) if isinstance(batches, Mapping) else {"": batches}
        if not sets:
            raise InputError("batches is empty: no evaluation set")
        named = [(b, "batches") for b in sets.values()] + [(recompute_batches, "recompute_batches")]
        for data, what in named:
            if isinstance(data, Iterator):
                raise TypeError(f"{what} must be re-iterable (a list, a DeviceLoader), not an "
                                "iterator: it is read once per point")
        for d in directions:
            check_same_keys(center, d)
        dev = torch.device(device) if device is not None else next(iter(center.values())).device
        self.device, self.bn, self.loss_fn = dev, bn, loss_fn
        self.points_per_call = points_per_call
        floats = [v.dtype for v in center.values() if v.is_floating_point()]
        self.dtype = floats[0] if floats else torch.get_default_dtype()
        if dev.type == "cpu":
            keep_freed_memory()  # large activations otherwise page-fault in at every layer
        self.buffers = {k: _cast(v.detach().to(dev), self.dtype) for k, v in buffers.items()}
        self.net = copy.deepcopy(model).to(dev).eval()  # ours: modes and momenta may change
        self.fast = FastForward(self.net, center, dev, memory_format=options.memory_format,
                                fuse=options.fuse)
        dtype = self.dtype
        lay = self._input = lambda t: self.fast.layout(_cast(t, dtype))  # noqa: E731
        self.batch_sets = {name: _resident(b, dev, lay) for name, b in sets.items()}
        # the BatchNorm pass reads an evaluation set's resident batches when it is one of
        # them (the first by default), else its own, made resident too
        resident = {id(b): self.batch_sets[name] for name, b in sets.items()}
        if recompute_batches is None:
            recompute_batches = next(iter(sets.values()))
        self.recompute_batches = resident.get(id(recompute_batches))
        if self.recompute_batches is None:
            self.recompute_batches = _resident(recompute_batches, dev, lay)
        self.center = {k: lay(v.detach().to(dev)) for k, v in center.items()}
        # directions in each centre tensor's dtype: a float64 direction of a float32 model
        # would otherwise reach the kernels as a mixed-dtype point
        self.dirs = [{k: lay(d[k].detach().to(dev, center[k].dtype)) for k in center}
                     for d in directions]
        self._dir_values = [list(d.values()) for d in self.dirs]  # in the centre's key order
        self._float_buffers = [k for k, v in self.buffers.items() if v.is_floating_point()]
        self._buffer_dirs = [[_cast(b[k].detach().to(dev), dtype) for k in self._float_buffers]
                             for b in buffer_dirs or []]
        self.bn_prefixes = []
        for name, m in self.net.named_modules():
            if isinstance(m, _BatchNorm) and m.track_running_stats:
                m.momentum = None  # cumulative average in the recompute pass (our copy only)
                self.bn_prefixes.append(f"{name}." if name else "")
        if bn == "recompute":
            for p in self.bn_prefixes:
                for b in ("running_mean", "running_var", "num_batches_tracked"):
                    if p + b not in self.buffers:
                        raise NotFoundError(f"bn='recompute' needs buffer {p + b!r}")
        # the first layer's products with the centre and each direction, per resident batch
        # (one point per forward only: a vmapped forward runs the layer on stacked weights)
        self._bases = {}
        if self.fast.first is not None and points_per_call == 1:
            budget = [FIRST_LAYER_BYTES]
            self._bases = {name: self._first_bases(b, budget)
                           for name, b in self.batch_sets.items()}
        self.examples: dict[str, int] = {}  # examples per evaluation set, once evaluated
        self.evaluations = 0

    @torch.no_grad()
    def _first_bases(self, batches: Iterable, budget: list[int]) -> list | None:
        """Per batch, the split first layer's products ``W* ⋆ u`` and ``Δ_d ⋆ u``
        (:mod:`~losslab.landscape.first_layer`), while they fit in ``budget`` (bytes left,
        shared by the sets); None for a batch beyond it, and for batches that are not
        resident (read again at every point)."""
        if not isinstance(batches, list):
            return None
        key = self.fast.first.weight_key
        weights = [self.center[key], *(d[key] for d in self.dirs)]
        weights = [w if bool(w.any()) else None for w in weights]  # zero centre of a line
        out = []
        for x, *_ in batches:
            bases = self.fast.first.bases(self.fast.first_input(x), weights)
            size = sum(b.numel() * b.element_size() for b in bases if b is not None)
            keep = size <= budget[0] and any(b is not None for b in bases)
            budget[0] -= size if keep else 0
            out.append(bases if keep else None)
        return out

    @property
    def num_examples(self) -> int | None:
        """The number of examples of the (first) evaluation set, once evaluated."""
        return next(iter(self.examples.values()), None)

    def _point(self, c: list[float]) -> ParamDict:
        """``center + Σ_d c_d · dirs[d]``, one fused multi-tensor op per direction."""
        values = list(self.center.values())
        for cd, d in zip(c, self._dir_values, strict=True):
            if cd != 0.0:  # a zero coordinate leaves θ exactly as it is
                values = torch._foreach_add(values, d, alpha=cd)
        return dict(zip(self.center, values, strict=True))

    def _point_buffers(self, c: list[float]) -> ParamDict:
        """The buffers at coordinates ``c`` (``bn="interpolate"``): at an endpoint (one
        coordinate 1, the others 0) exactly that model's; elsewhere running means (and other
        floating-point buffers) ``Σ_d c_d · b_d`` and running variances ``Π_d b_d^{c_d}``
        (log-linear: it equals the linear mix at the ends and stays positive when α leaves
        [0, 1], where a linear mix of variances can turn negative). Integer buffers
        (``num_batches_tracked``) are the first model's."""
        if not self._float_buffers:
            return self.buffers
        nonzero = [i for i, cd in enumerate(c) if cd != 0.0]
        if len(nonzero) == 1 and c[nonzero[0]] == 1.0:
            values = self._buffer_dirs[nonzero[0]]
        else:
            values = []
            for j, key in enumerate(self._float_buffers):
                parts = [(cd, b[j]) for cd, b in zip(c, self._buffer_dirs, strict=True)]
                if key.endswith("running_var"):
                    log = sum(cd * torch.log(t.clamp_min(1e-30)) for cd, t in parts)
                    values.append(torch.exp(log))
                else:
                    values.append(sum(cd * t for cd, t in parts))
        return {**self.buffers, **dict(zip(self._float_buffers, values, strict=True))}

    @torch.no_grad()
    def _recomputed(self, params: ParamDict) -> ParamDict:
        bufs = {k: v.clone() for k, v in self.buffers.items()}
        for p in self.bn_prefixes:
            bufs[p + "running_mean"].zero_()
            bufs[p + "running_var"].fill_(1.0)
            bufs[p + "num_batches_tracked"].zero_()
        seen = 0
        self.net.train()
        try:
            for batch in self.recompute_batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                functional_call(self.net, {**params, **bufs},
                                (self._input(x.to(self.device)),))  # no-ops if resident
                seen += 1
        finally:
            self.net.eval()
        if seen == 0:
            raise InputError("recompute_batches is empty: BatchNorm statistics need data")
        return bufs

    def evaluate(self, coords: Tensor, tick: Callable[[int], None] | None = None
                 ) -> tuple[Tensor, Tensor, Tensor]:
        """(loss, acc, loss_se), float64 CPU tensors (M,), for coordinate rows (M, D), on the
        one evaluation set (``tick`` as for :meth:`evaluate_sets`)."""
        if len(self.batch_sets) != 1:
            raise InputError("several evaluation sets: use evaluate_sets")
        (result,) = self.evaluate_sets(coords, tick).values()
        return result

    @torch.no_grad()
    def evaluate_sets(self, coords: Tensor, tick: Callable[[int], None] | None = None
                      ) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        """(loss, acc, loss_se) per evaluation set, float64 CPU tensors (M,), for coordinate
        rows (M, D); each point is built (and its BatchNorm pass run) once for all sets.
        ``tick(n)`` runs after each chunk of ``n`` points, once its numbers are on the host
        (a progress bar's ``update``: it adds no device synchronisation)."""
        rows = coords.tolist()
        out = torch.empty(len(self.batch_sets), 3, len(rows), dtype=torch.float64)
        step = self.points_per_call
        for s in range(0, len(rows), step):
            chunk = rows[s:s + step]
            state, first = self._state(chunk)
            for i, (name, batches) in enumerate(self.batch_sets.items()):
                out[i, :, s:s + step] = self._measure(state, first, len(chunk), batches, name)
            self.evaluations += len(chunk)
            if tick is not None:
                tick(len(chunk))
        return {name: (o[0], o[1], o[2]) for name, o in zip(self.batch_sets, out, strict=True)}

    def _buffers_at(self, params: ParamDict, row: list[float]) -> ParamDict:
        """The point's buffers under the BatchNorm policy."""
        if self.bn == "recompute":
            return self._recomputed(params)
        if self.bn == "interpolate":
            return self._point_buffers(row)
        return self.buffers

    def _state(self, rows: list[list[float]]) -> tuple[ParamDict, tuple | None]:
        """The (folded) parameters and buffers of the points at ``rows``: one point's, or the
        points' stacked along a new first dimension (M, ...) for a vmapped forward; with them,
        for one point of a network whose first layer is shared, ``(coords, s, b')`` that
        give its first layer's output from the bases (:meth:`FastForward.first_affine`)."""
        full = [{**p, **self._buffers_at(p, r)}
                for p, r in zip(map(self._point, rows), rows, strict=True)]
        states = [self.fast.fold(f) for f in full]
        if len(states) == 1:
            first = (rows[0], *self.fast.first_affine(full[0])) if self._bases else None
            return states[0], first
        return {k: torch.stack([s[k] for s in states]) for k in states[0]}, None

    def _measure(self, state: ParamDict, first: tuple | None, n_points: int,
                 batches: Iterable, name: str) -> Tensor:
        """(3, M): mean loss, accuracy and the loss's standard error of the points on
        ``batches``; a batch with first-layer bases starts from their combination."""
        if n_points > 1:  # (M, ...) stacked points, one vmapped forward
            fwd = vmap(self.fast, in_dims=(0, None))
            loss_of = vmap(self.loss_fn, in_dims=(0, None))
        else:  # one point: the plain forward, viewed as M = 1
            fwd = lambda st, x: self.fast(st, x).unsqueeze(0)  # noqa: E731
            loss_of = lambda lg, y: self.loss_fn(lg[0], y).unsqueeze(0)  # noqa: E731
        shared = self._bases.get(name) if first is not None else None
        acc = _Sums(n_points, self.device)
        for i, (x, y) in enumerate(batches):
            y = y.to(self.device, non_blocking=True)
            if shared is not None and shared[i] is not None:
                h = self.fast.first.combine(shared[i], *first)
                logits = self.fast.rest(state, h).unsqueeze(0)
            else:
                x = self._input(x.to(self.device, non_blocking=True))  # no-ops if resident
                logits = fwd(state, x)
            acc.add(logits, loss_of(logits, y), y)
        if acc.count == 0:
            raise InputError("batches is empty")
        self.examples[name] = acc.count
        return acc.result()


RESIDENT_BYTES = 1 << 30


def _cast(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t`` in ``dtype`` if it is floating (integer labels and counters stay as they are)."""
    return t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t


def _resident(batches: Iterable, device: torch.device, layout: Callable) -> Iterable:
    """The batches read once into a list on ``device``, inputs in the evaluation layout
    (normalized by a DeviceLoader once rather than at every point), when they fit in
    ``RESIDENT_BYTES``; else ``batches`` as they are, read again at every point. A batch is
    ``(x, y, ...)`` or an input tensor alone (BatchNorm recomputation needs no targets)."""
    out, total = [], 0
    for batch in batches:
        parts = [batch] if isinstance(batch, Tensor) else list(batch)
        parts = [layout(parts[0].to(device)), *(t.to(device) for t in parts[1:])]
        total += sum(t.numel() * t.element_size() for t in parts)
        if total > RESIDENT_BYTES:
            return batches
        out.append(parts[0] if isinstance(batch, Tensor) else tuple(parts))
    return out


class _Sums:
    """Running sums of M points' losses, squared losses and correct predictions."""

    def __init__(self, n_points: int, device: torch.device):
        self.loss = torch.zeros(n_points, dtype=torch.float64, device=device)
        self.sq = torch.zeros_like(self.loss)
        self.correct = torch.zeros(n_points, dtype=torch.int64, device=device)
        self.count, self.per_example, self.classify = 0, True, True

    def add(self, logits: Tensor, losses: Tensor, y: Tensor) -> None:
        b = y.shape[0]
        losses = losses.double()
        if losses.ndim == 2 and losses.shape[1] == b:
            self.loss += losses.sum(1)
            self.sq += losses.square().sum(1)
        elif losses.ndim == 1:  # a batch mean
            self.loss += losses * b
            self.per_example = False
        else:
            raise InputError(f"loss_fn must return per-example losses ({b},) or a scalar, "
                             f"got shape {tuple(losses.shape[1:])}")
        self.classify = (self.classify and logits.ndim == 3 and y.ndim == 1
                         and not y.is_floating_point())
        if self.classify:
            self.correct += (logits.argmax(-1) == y).sum(1)
        self.count += b

    def result(self) -> Tensor:
        """(3, M) float64 CPU: mean loss, accuracy, standard error of the mean loss."""
        n = self.count
        mean = self.loss / n
        if self.per_example and n > 1:
            var = (self.sq / n - mean.square()).clamp_min(0) * (n / (n - 1))
            se = (var / n).sqrt()
        else:
            se = torch.full_like(mean, float("nan"))
        acc = (self.correct.double() / n if self.classify
               else torch.full_like(mean, float("nan")))
        return torch.stack([mean, acc, se]).cpu()
