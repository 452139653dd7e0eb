"""The study analysis of restarts, ``loss_estimate_rmse``: how well k random minibatches
estimate the training loss, the estimate :class:`~losslab.train.restarts.ColdRestart` decides
on (the cold-restart thesis's Table 2.1).

For every saved epoch checkpoint of every finished run, the full training loss L (eval mode,
the whole training split) is compared with ``repeats`` estimates from k random minibatches of
the run's batch size (drawn without replacement, whole batches only), for k = 1..``max_batches``:

    RMSE_k = sqrt( mean over checkpoints c and draws r of (L̂_k(c, r) − L(c))² )

reported pooled over all runs (``rows``, beside the thesis's values) and per run (``per_run``:
``rmse_1`` .. ``rmse_K`` for each run, so a finding can compare rmse_1 with rmse_10 across
seeds). The thesis's values are on its loss scale, the mean cross-entropy divided by its batch
size, 512: ``thesis_loss_scale: true`` puts ours on the same scale (``thesis_batch_size``,
whatever the runs' batch size). The losses are computed on the device the runs' config names
(``device``; ``auto``: CUDA when available).

Source: M. Stringher, "Unconventional Training of Deep Neural Networks", Master's thesis,
University of Padova, 2019 ("the thesis").
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.func import functional_call

from losslab.errors import InputError
from losslab.runs.checkpoint_set import CheckpointSet
from losslab.runs.device import resolve_device
from losslab.runs.rebuild import (
    check_fits_run,
    config_path_of,
    dataset_of,
    run_config_of,
    split_loader,
    template_model,
)
from losslab.studies.analyses import register_analysis
from losslab.studies.records import StudyRecords

__all__ = ["loss_estimate_rmse", "THESIS_RMSE", "THESIS_SETTING"]

#: Table 2.1 of the thesis (VGG16 on CIFAR-10, loss = mean / 512), k = 1..10.
THESIS_RMSE = [4.470e-05, 3.627e-05, 2.909e-05, 2.368e-05, 2.063e-05,
               2.302e-05, 1.949e-05, 2.150e-05, 1.519e-05, 1.536e-05]
THESIS_SETTING = "VGG16, CIFAR-10, batch 512, loss = mean cross-entropy / 512"


@torch.no_grad()
def _batch_losses(model, state, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed loss of every batch of ``loader`` (in order), and their sizes."""
    losses, sizes = [], []
    for x, y in loader:
        logits = functional_call(model, state, (x,))
        losses.append(torch.nn.functional.cross_entropy(logits, y, reduction="sum").double())
        sizes.append(y.shape[0])
    return torch.stack(losses), torch.tensor(sizes, dtype=torch.float64)


def _squared_errors(sums: torch.Tensor, sizes: torch.Tensor, batch_size: int, scale: float,
                    max_batches: int, repeats: int,
                    generator: torch.Generator) -> list[list[float]]:
    """(L̂_k − L)² for k = 1..max_batches, ``repeats`` draws each, for one checkpoint."""
    full = (sums.sum() / sizes.sum()).item() * scale
    whole = (sizes == batch_size).nonzero().flatten()  # the estimate draws full minibatches
    out: list[list[float]] = [[] for _ in range(max_batches)]
    for k in range(1, min(max_batches, len(whole)) + 1):
        for _ in range(repeats):
            pick = whole[torch.randperm(len(whole), generator=generator)[:k]]
            estimate = (sums[pick].sum() / sizes[pick].sum()).item() * scale
            out[k - 1].append((estimate - full) ** 2)
    return out


def _rmse(squared: list[float]) -> float:
    return math.sqrt(sum(squared) / len(squared)) if squared else math.nan


@register_analysis("loss_estimate_rmse")
def loss_estimate_rmse(records: StudyRecords, *, max_batches: int = 10, repeats: int = 20,
                       role: str = "epoch", thesis_loss_scale: bool = False,
                       thesis_batch_size: int = 512, seed: int = 0) -> dict[str, Any]:
    """RMSE of the k-minibatch training-loss estimate against the full training loss."""
    if max_batches < 1 or repeats < 1 or thesis_batch_size < 1:
        raise InputError("loss_estimate_rmse: max_batches, repeats and thesis_batch_size must "
                         "be >= 1")
    pooled: list[list[float]] = [[] for _ in range(max_batches)]
    per_run: list[dict[str, Any]] = []
    checkpoints = 0
    scale = 1.0 / thesis_batch_size if thesis_loss_scale else 1.0
    finished = records.runs[records.runs["status"] == "finished"]
    for run in finished.itertuples(index=False):
        refs = CheckpointSet.from_run(run.run_dir, role=role)
        if not len(refs):
            continue
        config = run_config_of(refs[0])
        device = resolve_device(config.device)  # the study's device, as its runs trained on
        batch_size = config.data.batch_size
        loader = split_loader(dataset_of(config), "train", batch_size, device)
        model = template_model(config).to(device).eval()
        mine: list[list[float]] = [[] for _ in range(max_batches)]
        # A run's draws depend on its own seed only, not on which other runs the study has.
        generator = torch.Generator().manual_seed(seed * 1_000_003 + int(run.seed))
        for ref in refs:
            loaded = ref.load(device)
            check_fits_run(model, loaded, config_path_of(ref))
            sums, sizes = _batch_losses(model, loaded.state_dict, loader)
            for k, errors in enumerate(_squared_errors(sums, sizes, batch_size, scale,
                                                       max_batches, repeats, generator)):
                mine[k].extend(errors)
                pooled[k].extend(errors)
            checkpoints += 1
        row: dict[str, Any] = {"run_id": run.run_id, "variant": run.variant,
                               "seed": int(run.seed), "checkpoints": len(refs)}
        row.update({f"rmse_{k + 1}": _rmse(s) for k, s in enumerate(mine)})
        per_run.append(row)
    if not checkpoints:
        raise InputError(f"loss_estimate_rmse: no {role!r} checkpoints in the finished runs "
                         "(save some with checkpoints.every)")
    rows = [{"batches": k + 1, "rmse": _rmse(s),
             "thesis_rmse": THESIS_RMSE[k] if k < len(THESIS_RMSE) else None}
            for k, s in enumerate(pooled) if s]
    return {"checkpoints": checkpoints, "repeats": repeats, "thesis_loss_scale": thesis_loss_scale,
            "thesis_batch_size": thesis_batch_size, "thesis_setting": THESIS_SETTING,
            "rows": rows, "per_run": per_run}
