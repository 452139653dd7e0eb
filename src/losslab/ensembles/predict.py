"""Ensemble prediction: every member evaluated in one vectorized call, outputs averaged.

An :class:`Ensemble` averages its members' **softmax probabilities** (``combine="probs"``, the
default, as deep ensembles do: Lakshminarayanan et al. 2017) or their **logits**
(``combine="logits"``). What ``forward`` returns is therefore probabilities in the first case
and logits in the second; ``Ensemble.output`` and the repr say which, and
:meth:`Ensemble.predict_proba` gives probabilities in either mode.

Members that share an architecture are stored as stacked tensors (one ``(M, ...)`` tensor per
parameter and buffer name, as :func:`torch.func.stack_module_state` makes them) and evaluated
together::

    torch.vmap(lambda p, b, x: functional_call(base, (p, b), (x,)), in_dims=(0, 0, None))

where ``base`` is a copy of the architecture on the meta device (it holds no weights). The
input is broadcast to every member. Members of different architectures are evaluated one after
the other in a Python loop.

Example::

    from losslab import CheckpointSet
    from losslab.ensembles.predict import Ensemble
    members = CheckpointSet.from_runs(["runs/seed0", "runs/seed1"], role="final")
    ensemble = Ensemble.from_checkpoints(model, members.load_all())   # model: the template
    probs = ensemble(x)                      # (B, C) averaged probabilities
    per_member = ensemble.member_logits(x)   # (M, B, C)
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from losslab.ensembles.member_inputs import checkpoint_name, normalize_weights, state_of
from losslab.ensembles.modules import (
    device_of as _device_of,
)
from losslab.ensembles.modules import (
    difference as _difference,
)
from losslab.ensembles.modules import (
    float_dtype as _float_dtype,
)
from losslab.ensembles.modules import (
    meta_copy as _meta_copy,
)
from losslab.ensembles.modules import (
    module_from_state as _module_from_state,
)
from losslab.ensembles.modules import (
    signature as _signature,
)
from losslab.ensembles.modules import (
    tensor_tree as _tensor_tree,
)
from losslab.errors import InputError
from losslab.runs.checkpoint_set import CheckpointRef, LoadedCheckpoint

__all__ = ["Ensemble"]

_OUTPUT = {"probs": "probabilities", "logits": "logits"}


class Ensemble(nn.Module):
    """The (weighted) average of several networks' predictions, evaluated in one vectorized call.

    Args:
        members: the networks (``nn.Module`` s returning ``(B, C)`` logits). They are copied
            (stacked or deep-copied); the modules passed in are never changed.
        combine: ``"probs"`` (default): ``forward`` returns the weighted average of the members'
            softmax **probabilities**; ``"logits"``: it returns the weighted average of their
            **logits**. :attr:`output` says which; :meth:`predict_proba` gives probabilities in
            both modes (for ``"logits"``, the softmax of the averaged logits).
        weights: one non-negative weight per member, normalized to sum to 1 (default: equal).
        vectorize: ``None`` (default) stacks the members' weights when every member has the
            same architecture (same class, submodule settings, parameter and buffer names,
            shapes, dtypes and devices) and evaluates them in one ``vmap`` call on an
            accelerator and in a loop over the stacked weights on a CPU, where the benchmark
            (``benchmarks/bench_ensemble.py``) measured the loop 1.8-3x faster: under ``vmap``
            the members' convolutions become grouped convolutions and BatchNorm is decomposed
            into several passes. ``True`` always uses ``vmap`` (and requires one architecture:
            an error names the first difference); ``False`` loops over deep copies of the
            members. :attr:`vectorized` says whether the weights are stacked.
        chunk_size: evaluate the vectorized members this many at a time (``torch.vmap``'s
            ``chunk_size``). ``torch.vmap`` runs all M members at once, so a forward needs
            about M times the activation memory of one member's; chunks bound that at the
            cost of speed. ``None`` (default): all at once. Ignored when looping.

    Members always run in **eval mode**: BatchNorm uses its running statistics and dropout is
    off, because an ensemble is for prediction. ``.train()`` is accepted (so generic code that
    toggles modes keeps working) but has no effect: ``ensemble.training`` stays ``False``.

    State: the stacked weights are buffers (``stacked_params.*`` and ``stacked_buffers.*``, each
    ``(M, ...)``; looped members under ``members.<i>.*``) and ``weights`` is a buffer, so
    ``.to(device)``, ``.to(dtype)`` and ``state_dict`` work as for any module. The input must
    be on the ensemble's device and in its dtype.

    Differences between members that neither their tensors nor their submodules' reprs show
    (plain Python attributes read in ``forward``) are not detected; build such ensembles with
    ``vectorize=False``.
    """

    def __init__(self, members: Sequence[nn.Module], *, combine: str = "probs",
                 weights: Sequence[float] | Tensor | None = None, vectorize: bool | None = None,
                 chunk_size: int | None = None):
        super().__init__()
        members = list(members)
        if not members:
            raise InputError("an Ensemble needs at least one member")
        for i, m in enumerate(members):
            if not isinstance(m, nn.Module):
                raise TypeError(f"member {i} is a {type(m).__name__}, not an nn.Module")
        self._request = vectorize
        self._configure(len(members), combine, weights, chunk_size, _float_dtype(members[0]))
        first = _signature(members[0])
        same = [_signature(m) == first for m in members]
        if vectorize is None:
            vectorize = all(same)
        if vectorize:
            if not all(same):
                i = same.index(False)
                raise InputError(f"vectorize=True needs members of one architecture, but member "
                                 f"{i} differs from member 0: "
                                 f"{_difference(members[0], members[i])}. "
                                 "Use vectorize=None to loop over diverse members")
            params, buffers = stack_module_state(members)
            self._init_stacked(_meta_copy(members[0]),
                               {k: v.detach() for k, v in params.items()},
                               {k: v.detach() for k, v in buffers.items()})
        else:
            devices = {str(d) for d in map(_device_of, members) if d is not None}
            if len(devices) > 1:
                raise InputError(f"members are on different devices {sorted(devices)}; move them "
                                 "to one device first")
            reason = "diverse architectures" if not all(same) else "vectorize=False"
            self._init_looped([copy.deepcopy(m) for m in members], reason)

    # construction ----------------------------------------------------------------------------
    @classmethod
    def from_checkpoints(cls, model: nn.Module,
                         checkpoints: Iterable[LoadedCheckpoint | CheckpointRef
                                               | Mapping[str, Tensor]],
                         *, device: torch.device | str | None = None, combine: str = "probs",
                         weights: Sequence[float] | Tensor | None = None,
                         vectorize: bool | None = None,
                         chunk_size: int | None = None) -> Ensemble:
        """An ensemble of ``model``'s architecture with one member per checkpoint.

        ``model`` is the template (it may live on the meta device; it is never changed). Each
        checkpoint is a :class:`LoadedCheckpoint` (its ``params`` and ``buffers``), a
        :class:`CheckpointRef` (loaded here, one at a time) or a full ``state_dict``; its names
        and shapes must match the template's ``state_dict`` exactly. Tensors take the
        template's dtype and the checkpoint's device (or ``device`` when given).
        Non-persistent buffers, which checkpoints do not hold, come from the template.
        All members share the template's architecture, so the ensemble is vectorized unless
        ``vectorize=False``. Other arguments as for :class:`Ensemble`.
        """
        expected = dict(model.state_dict())
        param_names = [n for n, _ in model.named_parameters()]
        template = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        nonpersistent = [n for n, _ in model.named_buffers() if n not in expected]
        states: list[dict[str, Tensor]] = []
        for i, item in enumerate(checkpoints):
            state = state_of(item, i, device)
            missing = [k for k in expected if k not in state]
            unexpected = [k for k in state if k not in expected]
            if missing or unexpected:
                raise InputError(f"{checkpoint_name(item, i)} does not fit the template "
                                 f"{type(model).__name__}: missing {missing[:5]}, unexpected "
                                 f"{unexpected[:5]}")
            for k, t in expected.items():
                if state[k].shape != t.shape:
                    raise InputError(f"{checkpoint_name(item, i)}: {k!r} has shape "
                                     f"{tuple(state[k].shape)}, the template {tuple(t.shape)}")
            first = next(iter(state.values()), None)
            where = device if device is not None else (first.device if first is not None else None)
            full = {k: state[k].detach().to(device=where, dtype=expected[k].dtype)
                    for k in expected}
            for k in nonpersistent:
                if template[k].is_meta:
                    raise InputError(f"buffer {k!r} is not persistent, so checkpoints do not hold "
                                     "it, and the template is on the meta device")
                full[k] = template[k].detach().to(device=where)
            states.append(full)
        if not states:
            raise InputError("an Ensemble needs at least one member: no checkpoints given")

        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self._request = vectorize
        self._configure(len(states), combine, weights, chunk_size, _float_dtype(model))
        if vectorize is None or vectorize:
            names_b = [n for n, _ in model.named_buffers()]
            params = {n: torch.stack([s[n] for s in states]) for n in param_names}
            buffers = {n: torch.stack([s[n] for s in states]) for n in names_b}
            del states
            self._init_stacked(_meta_copy(model), params, buffers)
        else:
            modules = [_module_from_state(model, {k: s[k] for k in expected},
                                          {k: s[k] for k in nonpersistent}) for s in states]
            self._init_looped(modules, "vectorize=False")
        return self

    def _configure(self, count: int, combine: str, weights, chunk_size: int | None,
                   dtype: torch.dtype) -> None:
        if combine not in _OUTPUT:
            raise InputError(f"combine must be 'probs' (average probabilities) or 'logits' "
                             f"(average logits), got {combine!r}")
        if chunk_size is not None and (isinstance(chunk_size, bool)
                                       or not isinstance(chunk_size, int) or chunk_size < 1):
            raise InputError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        self._combine = combine
        self._count = count
        self.chunk_size = chunk_size
        self._weighted = weights is not None
        w = (torch.full((count,), 1.0 / count, dtype=torch.float64) if weights is None
             else normalize_weights(weights, count))
        # In the members' floating dtype (float64 would not move to every device).
        self.register_buffer("weights", w.to(dtype))

    def _init_stacked(self, base: nn.Module, params: dict[str, Tensor],
                      buffers: dict[str, Tensor]) -> None:
        # ``base`` holds no weights (meta device) and is deliberately not a submodule, so that
        # .to()/.train()/state_dict never see it; it is always in eval mode.
        self.__dict__["_base"] = base.eval()
        self.stacked_params = _tensor_tree(params)
        self.stacked_buffers = _tensor_tree(buffers)
        self.members = None
        self._vectorized = True
        self._loop_reason = ""
        self._architecture = type(base).__name__
        super().train(False)

    def _init_looped(self, modules: list[nn.Module], reason: str) -> None:
        self.__dict__["_base"] = None
        self.stacked_params = None
        self.stacked_buffers = None
        for m in modules:  # our own copies: prediction needs no parameter gradients
            m.requires_grad_(False)
        self.members = nn.ModuleList(modules)
        self._vectorized = False
        self._loop_reason = reason
        self._architecture = ""
        super().train(False)

    # description -----------------------------------------------------------------------------
    @property
    def output(self) -> str:
        """What ``forward`` returns: ``"probabilities"`` (combine="probs") or ``"logits"``."""
        return _OUTPUT[self._combine]

    @property
    def combine(self) -> str:
        return self._combine

    @property
    def vectorized(self) -> bool:
        """Whether the members are evaluated in one ``torch.vmap`` call (else in a loop)."""
        return self._vectorized

    @property
    def num_members(self) -> int:
        return self._count

    def extra_repr(self) -> str:
        how = ("vectorized" if self._vectorized else f"looped ({self._loop_reason})")
        if self._vectorized and self._request is None:
            how = "vectorized (vmap on accelerators, a loop over the stacked weights on CPU)"
        parts = [f"{self._count} member{'s' if self._count != 1 else ''}",
                 f"averages {self.output}", how]
        if self._architecture:
            parts.append(f"architecture={self._architecture}")
        if self._weighted:
            parts.append("weights=[" + ", ".join(f"{w:.3g}" for w in self.weights.tolist()) + "]")
        if self.chunk_size is not None and self._vectorized:
            parts.append(f"chunk_size={self.chunk_size}")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def train(self, mode: bool = True) -> Ensemble:
        """No effect: members always run in eval mode (``training`` stays ``False``)."""
        return super().train(False)

    # prediction ------------------------------------------------------------------------------
    def member_logits(self, x: Tensor) -> Tensor:
        """Every member's output on ``x``: ``(M, B, C)`` logits."""
        if self._vectorized:
            base = self.__dict__["_base"]
            params = dict(self.stacked_params.named_buffers())
            buffers = dict(self.stacked_buffers.named_buffers())

            def one(p: dict[str, Tensor], b: dict[str, Tensor], inp: Tensor) -> Tensor:
                return functional_call(base, (p, b), (inp,))

            if not self._use_vmap(x):
                # On a CPU a loop over the stacked members is faster than vmap (grouped
                # convolutions, decomposed BatchNorm): benchmarks/bench_ensemble.py.
                return torch.stack([one({k: v[i] for k, v in params.items()},
                                        {k: v[i] for k, v in buffers.items()}, x)
                                    for i in range(self.num_members)])
            out = torch.vmap(one, in_dims=(0, 0, None), chunk_size=self.chunk_size)(
                params, buffers, x)
            if out.ndim < 2:
                raise InputError(f"members must return (batch, classes) logits, got shape "
                                 f"{tuple(out.shape[1:])}")
            return out
        outs = [m(x) for m in self.members]
        for i, o in enumerate(outs):
            if o.ndim < 1 or o.shape[-1] != outs[0].shape[-1]:
                raise InputError(f"members must predict the same number of classes: member 0 "
                                 f"gives {outs[0].shape[-1]}, member {i} gives "
                                 f"{o.shape[-1] if o.ndim else 'a scalar'}")
            if o.shape != outs[0].shape:
                raise InputError(f"members' outputs differ in shape: member 0 gives "
                                 f"{tuple(outs[0].shape)}, member {i} {tuple(o.shape)}")
        return torch.stack(outs)

    def _use_vmap(self, x: Tensor) -> bool:
        """``vectorize=None`` batches the members with vmap on accelerators only."""
        return self._request is True or (self._request is None and x.device.type != "cpu")

    def _average(self, per_member: Tensor) -> Tensor:
        return torch.tensordot(self.weights.to(per_member.dtype), per_member, dims=1)

    def forward(self, x: Tensor) -> Tensor:
        """The combined prediction ``(B, C)``: probabilities ("probs") or logits ("logits")."""
        logits = self.member_logits(x)
        if self._combine == "probs":
            return self._average(logits.softmax(dim=-1))
        return self._average(logits)

    def predict_proba(self, x: Tensor) -> Tensor:
        """Class probabilities ``(B, C)`` in either mode ("logits": softmax of the average)."""
        out = self(x)
        return out if self._combine == "probs" else out.softmax(dim=-1)
