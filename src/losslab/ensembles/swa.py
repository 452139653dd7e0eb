"""Weight averaging (SWA) as the comparison point for ensembles.

Stochastic weight averaging (Izmailov, Podoprikhin, Garipov, Vetrov & Wilson 2018, "Averaging
weights leads to wider optima and better generalization", arXiv:1803.05407) averages the
*weights* of several checkpoints from one basin into a single network, where an ensemble
averages their *predictions*. The averaged network's BatchNorm running statistics do not belong
to its weights, so they are recomputed by one pass over training data
(:func:`recompute_batchnorm`, through :func:`torch.optim.swa_utils.update_bn`).

Example::

    from losslab.ensembles.swa import average_weights, recompute_batchnorm
    state = average_weights(CheckpointSet.from_run("runs/swa", role="snapshot").load_all())
    state = recompute_batchnorm(model, state, train_loader)        # model is not changed
    logits = torch.func.functional_call(model.eval(), state, (x,))
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim.swa_utils import update_bn

from losslab.ensembles.member_inputs import normalize_weights, state_of
from losslab.ensembles.modules import module_from_state
from losslab.errors import InputError
from losslab.params import check_same_keys
from losslab.runs.checkpoint_set import CheckpointRef, LoadedCheckpoint

__all__ = ["average_weights", "recompute_batchnorm", "swa_model"]

Checkpoints = Iterable["LoadedCheckpoint | CheckpointRef | Mapping[str, Tensor]"]


def _averaged(t: Tensor) -> bool:
    return t.is_floating_point() or t.is_complex()


def average_weights(checkpoints: Checkpoints,
                    weights: Sequence[float] | Tensor | None = None) -> dict[str, Tensor]:
    """The (weighted) mean of the checkpoints' parameters and floating-point buffers.

    ``checkpoints`` are :class:`LoadedCheckpoint` s (parameters and buffers), CheckpointRefs
    (loaded on the CPU, one at a time) or full state dicts; they are read one at a time, so a
    generator such as ``CheckpointSet.load_all()`` never holds more than one in memory. Every
    checkpoint must have the names and shapes of the first. Floating-point tensors are averaged
    with ``weights`` (non-negative, one per checkpoint, normalized to sum 1; default equal),
    accumulating in at least float32, and returned in the first checkpoint's dtype and on its
    device. Integer buffers (BatchNorm's ``num_batches_tracked``) are copied from the first.
    The averaged BatchNorm running statistics are only a starting point: recompute them with
    :func:`recompute_batchnorm`.
    """
    w = None if weights is None else normalize_weights(weights, None).tolist()
    first: Mapping[str, Tensor] | None = None
    acc: dict[str, Tensor] = {}
    count = 0
    for i, item in enumerate(checkpoints):
        state = state_of(item, i)
        if w is not None and i >= len(w):
            raise InputError(f"weights: {len(w)} given, but there are more checkpoints")
        wi = 1.0 if w is None else w[i]
        if first is None:
            first = state
            acc = {k: torch.zeros_like(t, dtype=torch.promote_types(t.dtype, torch.float32))
                   for k, t in state.items() if _averaged(t)}
        else:
            try:
                check_same_keys(first, state)
            except (KeyError, ValueError) as e:
                raise InputError(f"checkpoint {i} does not match checkpoint 0: "
                                 f"{e.args[0] if e.args else e}") from None
        for k, a in acc.items():
            t = state[k]
            if not _averaged(t):
                raise InputError(f"checkpoint {i}: {k!r} is {t.dtype}, but checkpoint 0's is "
                                 f"{first[k].dtype}")
            a.add_(t.detach().to(device=a.device, dtype=a.dtype), alpha=wi)
        count += 1
    if first is None:
        raise InputError("no checkpoints to average")
    if w is not None and count != len(w):
        raise InputError(f"weights: {len(w)} given for {count} checkpoints")
    total = float(count) if w is None else 1.0
    return {k: (acc[k] / total).to(t.dtype) if k in acc else t.detach().clone()
            for k, t in first.items()}


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has a BatchNorm layer that tracks running statistics."""
    return any(isinstance(m, _BatchNorm) and m.track_running_stats for m in model.modules())


def _update_bn(module: nn.Module, batches: Iterable, device: torch.device | None) -> None:
    """``update_bn`` on ``module`` (ours, changed in place), refusing an empty ``batches``."""
    seen = 0

    def counted() -> Iterator:
        nonlocal seen
        for batch in batches:
            seen += 1
            yield batch

    update_bn(counted(), module, device=device)
    if seen == 0:
        raise InputError("batches is empty: BatchNorm statistics need at least one batch")


def _infer_device(state: Mapping[str, Tensor], model: nn.Module) -> torch.device:
    for t in state.values():
        if _averaged(t):
            return t.device
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, state: Mapping[str, Tensor],
                        batches: Iterable[tuple[Tensor, Tensor]] | Iterable[Tensor],
                        device: torch.device | str | None = None) -> dict[str, Tensor]:
    """``state`` with BatchNorm running statistics recomputed by one pass over ``batches``.

    ``model`` is the architecture (never changed: the pass runs on a copy holding ``state``);
    ``state`` is its full ``state_dict`` (not changed either). ``batches`` yields input
    tensors or ``(input, target, ...)`` tuples, whose first element is the input; each is
    moved to ``device`` (default: the device of ``state``'s tensors), where the pass runs and
    the returned tensors live; they keep ``state``'s dtypes.

    The running statistics are reset and re-estimated in train mode with cumulative averaging
    (``momentum=None``), by :func:`torch.optim.swa_utils.update_bn`: ``running_mean`` is the
    average of the per-batch means (the exact data mean when batches are equally sized, or a
    single batch) and ``running_var`` the average of the per-batch unbiased variances (the
    exact unbiased variance for a single batch); ``num_batches_tracked`` counts the batches.
    A model without BatchNorm (tracking running statistics) gets ``state`` back unchanged.
    """
    if not has_batchnorm(model):
        return dict(state)
    device = torch.device(device) if device is not None else _infer_device(state, model)
    net = module_from_state(model, {k: v.detach().clone() for k, v in state.items()}).to(device)
    _update_bn(net, batches, device)
    return {k: v.detach() for k, v in net.state_dict().items()}


@torch.no_grad()
def swa_model(model: nn.Module, checkpoints: Checkpoints,
              batches: Iterable[tuple[Tensor, Tensor]] | Iterable[Tensor] | None = None,
              weights: Sequence[float] | Tensor | None = None, *,
              device: torch.device | str | None = None) -> nn.Module:
    """A deep copy of ``model`` holding the checkpoints' weight average, in eval mode.

    The averaged weights (:func:`average_weights`) are copied into the copy's own tensors, so it
    keeps ``model``'s dtype and device. With ``batches``, its BatchNorm running statistics are
    recomputed as in :func:`recompute_batchnorm` (inputs moved to ``device``, default the
    copy's). ``model`` itself is not changed.
    """
    net = copy.deepcopy(model)
    net.load_state_dict(average_weights(checkpoints, weights), strict=True)
    if batches is not None and has_batchnorm(net):
        where = torch.device(device) if device is not None else _infer_device({}, net)
        _update_bn(net, batches, where)
    return net.eval()
