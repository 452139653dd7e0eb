"""The study analysis ``loss_estimate_rmse``: how well k random minibatches estimate the
training loss (the cold-restart thesis's Table 2.1).

For every saved epoch checkpoint of every finished run, the full training loss L (eval mode,
the whole training split) is compared with ``repeats`` estimates from k random minibatches of
the run's batch size, for k = 1..``max_batches``; the RMSE over all checkpoints and repeats is
reported per k, beside the thesis's values (which are on its loss scale, mean / batch size:
``thesis_loss_scale: true`` puts ours on the same scale).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.func import functional_call

from losslab.runs.checkpoint_set import CheckpointSet
from losslab.studies.analyses import register_analysis
from losslab.studies.records import StudyRecords

__all__ = ["loss_estimate_rmse", "THESIS_RMSE"]

#: Table 2.1 of the thesis (VGG16 on CIFAR-10, loss = mean / batch size), k = 1..10.
THESIS_RMSE = [4.470e-05, 3.627e-05, 2.909e-05, 2.368e-05, 2.063e-05,
               2.302e-05, 1.949e-05, 2.150e-05, 1.519e-05, 1.536e-05]


@torch.no_grad()
def _batch_losses(model, state, loader) -> torch.Tensor:
    """The mean loss of every batch of ``loader`` (in order), and their sizes."""
    losses, sizes = [], []
    for x, y in loader:
        logits = functional_call(model, state, (x,))
        losses.append(torch.nn.functional.cross_entropy(logits, y, reduction="sum").double())
        sizes.append(y.shape[0])
    return torch.stack(losses), torch.tensor(sizes, dtype=torch.float64)


@register_analysis("loss_estimate_rmse")
def loss_estimate_rmse(records: StudyRecords, *, max_batches: int = 10, repeats: int = 20,
                       role: str = "epoch", thesis_loss_scale: bool = False,
                       seed: int = 0) -> dict[str, Any]:
    """RMSE of the k-minibatch training-loss estimate against the full training loss."""
    from losslab.ensembles.members import dataset_of, run_config_of, split_loader, template_model

    generator = torch.Generator().manual_seed(seed)
    squared = [[] for _ in range(max_batches)]
    checkpoints = 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for run_dir in records.run_dirs():
        refs = CheckpointSet.from_run(run_dir, role=role)
        if not len(refs):
            continue
        config = run_config_of(refs[0])
        batch_size = config.data.batch_size
        loader = split_loader(dataset_of(config), "train", batch_size, device)
        model = template_model(config).to(device).eval()
        scale = 1.0 / batch_size if thesis_loss_scale else 1.0
        for ref in refs:
            ckpt = ref.load(device)
            sums, sizes = _batch_losses(model, ckpt.state_dict, loader)
            full = (sums.sum() / sizes.sum()).item() * scale
            # whole batches only: the estimate draws minibatches of the training batch size
            whole = (sizes == batch_size).nonzero().flatten()
            for k in range(1, min(max_batches, len(whole)) + 1):
                for _ in range(repeats):
                    pick = whole[torch.randperm(len(whole), generator=generator)[:k]]
                    estimate = (sums[pick].sum() / sizes[pick].sum()).item() * scale
                    squared[k - 1].append((estimate - full) ** 2)
            checkpoints += 1
    if not checkpoints:
        raise ValueError(f"loss_estimate_rmse: no {role!r} checkpoints in the finished runs "
                         "(save some with checkpoints.every)")
    rows = [{"batches": k + 1, "rmse": math.sqrt(sum(s) / len(s)),
             "thesis_rmse": THESIS_RMSE[k] if k < len(THESIS_RMSE) else None}
            for k, s in enumerate(squared) if s]
    return {"checkpoints": checkpoints, "repeats": repeats, "thesis_loss_scale": thesis_loss_scale,
            "rows": rows}
