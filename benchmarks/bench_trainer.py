"""Our Trainer's epoch time against a minimal hand-written PyTorch loop, side by side.

Both train the same model (same init) on the same device-resident data with the same
optimizer, schedule and batch size; the hand loop does only forward, backward, step. The
Trainer additionally accumulates loss/accuracy/gradient norm on the device and evaluates on
the validation and test splits after each epoch; evaluation is timed separately (it is not
part of ``epoch_time``) so the comparison is of the training step itself.

    python benchmarks/bench_trainer.py [--model small_cnn] [--data digits] [--epochs 5]
        [--device cpu|cuda] [--batch-size 64] [--repeats 3]

Prints both times and their ratio (target: Trainer / hand loop <= 1.05).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from losslab.data import Augment, load_dataset, make_loaders
from losslab.models import create_model
from losslab.train.schedules import CosineSchedule
from losslab.train.trainer import Trainer


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(args, device):
    torch.manual_seed(0)
    splits = load_dataset(args.data, args.root)
    model = create_model(args.model, num_classes=splits.num_classes, in_channels=splits.in_channels,
                         image_size=splits.image_size).to(device)
    train_loader, eval_loaders = make_loaders(splits, batch_size=args.batch_size,
                                              eval_batch_size=1024, augment=Augment(), seed=0,
                                              device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = CosineSchedule(optimizer, total_steps=args.epochs * len(train_loader))
    return model, optimizer, scheduler, train_loader, eval_loaders


def hand_loop(args, device) -> list[float]:
    """The minimal loop: no metrics, no callbacks, no evaluation."""
    model, optimizer, scheduler, loader, _ = build(args, device)
    times = []
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
        times.append(time.perf_counter() - start)
    return times


def trainer_loop(args, device) -> list[float]:
    model, optimizer, scheduler, loader, eval_loaders = build(args, device)
    trainer = Trainer(model, optimizer, loader, epochs=args.epochs, eval_loaders=eval_loaders,
                      scheduler=scheduler, device=device, progress=False)
    return [m["epoch_time"] for m in trainer.fit()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--data", default="digits")
    p.add_argument("--root", default=None)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    hand, ours = [], []
    hand_loop(args, device)  # warm-up (allocator, kernels)
    for _ in range(args.repeats):  # interleaved so drifts in machine load hit both alike
        hand.extend(hand_loop(args, device)[1:])  # drop each run's first epoch (warm-up)
        ours.extend(trainer_loop(args, device)[1:])
    h, o = statistics.median(hand), statistics.median(ours)
    print(f"device={device} model={args.model} data={args.data} batch={args.batch_size} "
          f"threads={torch.get_num_threads()}")
    print(f"hand-written loop: {h * 1000:.1f} ms/epoch (median of {len(hand)})")
    print(f"losslab Trainer:   {o * 1000:.1f} ms/epoch (median of {len(ours)})")
    print(f"Trainer / hand loop = {o / h:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
