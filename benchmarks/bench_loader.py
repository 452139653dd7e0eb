"""One CIFAR-shaped epoch: losslab's DeviceLoader against a classic per-sample DataLoader.

Both pipelines do the same work on random uint8 images (default 50000x3x32x32): random crop
with 4 pixels of zero padding, random horizontal flip, per-channel normalization, batches of
128, delivered as float32 NCHW on ``--device``.

* DeviceLoader: the data set is copied to the device once (reported as "setup"); each batch is
  a few batched gathers plus a multiply-add.
* DataLoader: a ``Dataset`` whose ``__getitem__`` pads, crops, flips and normalizes one image
  in plain torch, collated by ``torch.utils.data.DataLoader`` with ``--workers`` processes
  (worker start-up is part of its epoch, as in a real training loop), then copied to the
  device.

Usage::

    python benchmarks/bench_loader.py                 # CPU, 50000 images, 2 workers
    python benchmarks/bench_loader.py --n 10000 --workers 0
    python benchmarks/bench_loader.py --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from losslab.data import Augment, DeviceLoader, Split
from losslab.errors import ConfigError
from losslab.runs.device import resolve_device

MEAN = (0.4914, 0.4822, 0.4465)  # CIFAR-10's, for realism; any values cost the same
STD = (0.2470, 0.2435, 0.2616)


class PerSampleCIFAR(Dataset):
    """The textbook pipeline: each example padded, cropped, flipped, normalized on its own."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, padding: int = 4) -> None:
        self.x, self.y, self.padding = x, y, padding
        self.mean = torch.tensor(MEAN).reshape(3, 1, 1)
        self.std = torch.tensor(STD).reshape(3, 1, 1)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.x[i]
        _, height, width = image.shape
        p = self.padding
        padded = F.pad(image, (p, p, p, p))
        top, left = torch.randint(0, 2 * p + 1, (2,)).tolist()
        image = padded[:, top:top + height, left:left + width]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        image = (image.float() / 255 - self.mean) / self.std
        return image, self.y[i]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_device_loader(split: Split, args: argparse.Namespace,
                       device: torch.device) -> tuple[float, float, int]:
    """(setup seconds, epoch seconds, batches) for DeviceLoader."""
    start = time.perf_counter()
    loader = DeviceLoader(split, args.batch_size, augment=Augment(crop_padding=4, flip=True),
                          mean=MEAN, std=STD, seed=0, device=device)
    sync(device)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    batches = 0
    for x, y in loader:
        # Same consumer as the DataLoader loop; a no-op here (already on the device).
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        batches += 1
    sync(device)
    return setup, time.perf_counter() - start, batches


def time_data_loader(split: Split, args: argparse.Namespace,
                     device: torch.device) -> tuple[float, int]:
    """(epoch seconds, batches) for a per-sample DataLoader, batches copied to ``device``."""
    loader = DataLoader(PerSampleCIFAR(split.x, split.y), batch_size=args.batch_size,
                        shuffle=True, num_workers=args.workers,
                        pin_memory=device.type == "cuda")
    start = time.perf_counter()
    batches = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        batches += 1
    sync(device)
    return time.perf_counter() - start, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50000, help="number of images (default 50000)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--device", default="cpu",
                        help="cpu (default), cuda (if available), or auto")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except ConfigError as e:
        parser.error(str(e))

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (args.n,), generator=g)
    split = Split(x, y)
    print(f"data: {args.n}x3x32x32 uint8, batch {args.batch_size}, crop (pad 4) + flip + "
          f"normalize, device {device}, torch threads {torch.get_num_threads()}")

    setup, ours, n_ours = time_device_loader(split, args, device)
    print(f"DeviceLoader:            {ours:8.3f} s/epoch ({n_ours} batches; "
          f"one-time setup {setup:.3f} s)")
    theirs, n_theirs = time_data_loader(split, args, device)
    print(f"DataLoader ({args.workers} workers):  {theirs:8.3f} s/epoch ({n_theirs} batches)")
    print(f"DataLoader / DeviceLoader = {theirs / ours:.1f}x "
          f"(including DeviceLoader setup: {theirs / (ours + setup):.1f}x)")


if __name__ == "__main__":
    main()
