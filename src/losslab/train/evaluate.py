"""Loss and accuracy of a model over a loader, without a host sync per batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], *,
             loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
             device: torch.device | str | None = None) -> dict[str, float]:
    """Mean loss and accuracy over every example of ``batches`` (in eval mode).

    The mean is per example (a batch's mean loss is weighted by its size), so the result
    does not depend on the batch size. The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    if device is None:
        device = next(model.parameters()).device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        loss_sum += loss_fn(logits, y).double() * y.shape[0]
        correct += (logits.argmax(dim=1) == y).sum()
        count += y.shape[0]
    model.train(was_training)
    if count == 0:
        return {"loss": float("nan"), "acc": float("nan")}
    return {"loss": loss_sum.item() / count, "acc": correct.item() / count}
