"""Our Trainer's epoch time against a minimal hand-written PyTorch loop, side by side.

Both train the same model (same init) on the same device-resident data with the same
optimizer, schedule and batch size; the hand loop does only forward, backward, step. The
Trainer additionally accumulates loss/accuracy/gradient norm on the device. Both evaluate on
the validation and test splits after each epoch, untimed (evaluation is not part of the
Trainer's ``epoch_time``), so the comparison is of the training epoch itself.

    python benchmarks/bench_trainer.py [--model small_cnn] [--data digits] [--epochs 5]
        [--device cpu|cuda] [--batch-size 64] [--repeats 3] [--data-option KEY=VALUE ...]

Prints both times and their ratio (target: Trainer / hand loop <= 1.05).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
import yaml

from losslab.data import Augment, load_dataset, make_loaders
from losslab.models import create_model
from losslab.runs.device import resolve_device
from losslab.train.schedules import CosineSchedule
from losslab.train.trainer import Trainer


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(args, device):
    torch.manual_seed(0)
    options = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.data_option)}
    splits = load_dataset(args.data, args.root, **options)
    model = create_model(args.model, num_classes=splits.num_classes, in_channels=splits.in_channels,
                         image_size=splits.image_size).to(device)
    train_loader, eval_loaders = make_loaders(splits, batch_size=args.batch_size,
                                              eval_batch_size=1024, augment=Augment(), seed=0,
                                              device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = CosineSchedule(optimizer, total_steps=args.epochs * len(train_loader))
    return model, optimizer, scheduler, train_loader, eval_loaders


@torch.no_grad()
def hand_evaluate(model, loaders) -> None:
    """What any loop does between epochs (untimed in both): a pass over val and test."""
    model.eval()
    for loader in loaders.values():
        for x, y in loader:
            F.cross_entropy(model(x), y)


def hand_epochs(args, device) -> Iterator[float]:
    """The minimal loop, one epoch per ``next``: forward, backward, step; nothing else timed."""
    model, optimizer, scheduler, loader, eval_loaders = build(args, device)
    for epoch in range(1, args.epochs + 1):
        loader.set_epoch(epoch)
        model.train()
        _sync(device)
        start = time.perf_counter()
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            scheduler.step()
        _sync(device)
        yield time.perf_counter() - start
        hand_evaluate(model, {k: v for k, v in eval_loaders.items() if v is not None})


def trainer_epochs(args, device) -> Iterator[float]:
    """The same epochs through :class:`Trainer` (its own ``epoch_time``, evaluation excluded)."""
    model, optimizer, scheduler, loader, eval_loaders = build(args, device)
    trainer = Trainer(model, optimizer, loader, epochs=args.epochs, eval_loaders=eval_loaders,
                      scheduler=scheduler, device=device, progress=False)
    for epoch in range(1, args.epochs + 1):
        yield trainer.run_epoch(epoch)["epoch_time"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--data", default="digits")
    p.add_argument("--root", default=None)
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="data set argument, e.g. --data synthetic --data-option image_size=32")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto", help="auto (default: cuda if available), cpu, cuda")
    args = p.parse_args()
    device = resolve_device(args.device)
    hand, ours = [], []
    for _ in range(args.repeats):
        # Epochs alternate between the two loops, so drifts in machine load hit both alike;
        # each run's first epoch (warm-up) is dropped.
        pairs = list(zip(hand_epochs(args, device), trainer_epochs(args, device), strict=True))[1:]
        hand.extend(h for h, _ in pairs)
        ours.extend(o for _, o in pairs)
    h, o = statistics.median(hand), statistics.median(ours)
    ratio = statistics.median(b / a for a, b in zip(hand, ours, strict=True))
    print(f"device={device} model={args.model} data={args.data} batch={args.batch_size} "
          f"threads={torch.get_num_threads()}")
    print(f"hand-written loop: {h * 1000:.1f} ms/epoch (median of {len(hand)})")
    print(f"losslab Trainer:   {o * 1000:.1f} ms/epoch (median of {len(ours)})")
    print(f"Trainer / hand loop = {ratio:.3f} (median of per-epoch ratios; target <= 1.05)")


if __name__ == "__main__":
    main()
