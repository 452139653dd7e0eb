"""One call from checkpoints to every ensemble number: accuracy as members are added,
each member's own metrics, diversity, weight distances, and the weight average (SWA).

Used by ``losslab ensemble`` and by the study analysis ``ensemble``; returns a JSON-able dict.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.func import functional_call

from losslab.ensembles.diversity import diversity_report
from losslab.ensembles.members import predict_members
from losslab.ensembles.metrics import cumulative_metrics, member_metrics
from losslab.ensembles.swa import average_weights, recompute_batchnorm
from losslab.errors import InputError
from losslab.runs.checkpoint_set import CheckpointSet
from losslab.runs.device import resolve_device
from losslab.runs.rebuild import dataset_of, run_config_of, split_loader, template_model

__all__ = ["analyze_ensemble"]

COMBINE_TEXT = {"probs": "average of the members' softmax probabilities",
                "logits": "softmax of the average of the members' logits"}


@torch.no_grad()
def _swa_metrics(checkpoints: CheckpointSet, split: str, device: torch.device) -> dict[str, Any]:
    """Metrics of the members' weight average, BatchNorm statistics recomputed on train data."""
    config = run_config_of(checkpoints[0])
    data = dataset_of(config)
    template = template_model(config).to(device)
    state = average_weights([ref.load(device) for ref in checkpoints])
    state = recompute_batchnorm(template, state, split_loader(data, "train", 1024, device),
                                device=device)
    template.eval()
    loader = split_loader(data, split, 1024, device)
    logits = torch.cat([functional_call(template, state, (x,)).double().cpu() for x, _ in loader])
    labels = torch.cat([y.cpu() for _, y in loader])
    return member_metrics(logits.unsqueeze(0), labels)[0]


def analyze_ensemble(checkpoints: CheckpointSet, *, split: str = "test", combine: str = "probs",
                     swa: bool = True, device: torch.device | str | None = None) -> dict[str, Any]:
    """Everything about the ensemble of ``checkpoints`` (in their order) on ``split``."""
    if combine not in COMBINE_TEXT:
        raise InputError(f"combine must be one of {sorted(COMBINE_TEXT)}, got {combine!r}")
    device = resolve_device(device)
    preds = predict_members(checkpoints, split=split, device=device)
    members = member_metrics(preds.logits, preds.labels)
    for name, m in zip(preds.names, members, strict=True):
        m["name"] = name
    cumulative = cumulative_metrics(preds.logits, preds.labels, combine=combine)
    out: dict[str, Any] = {
        "split": split, "combine": combine, "combination": COMBINE_TEXT[combine],
        "members": preds.names, "n_members": len(preds.names), "n_examples": len(preds.labels),
        "member_metrics": members, "cumulative": cumulative, "ensemble": cumulative[-1],
        "mean_member_acc": sum(m["acc"] for m in members) / len(members),
        "diversity": diversity_report(preds.logits, preds.labels,
                                      preds.params if preds.same_architecture else None),
    }
    if not preds.same_architecture:
        out["note"] = "members differ in architecture: no weight distances and no weight average"
    elif swa and len(checkpoints) > 1:
        out["swa"] = _swa_metrics(checkpoints, split, device)
    return out
