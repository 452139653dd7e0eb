"""Curve training against plain training: the cost of one epoch (target: curve ≤ 1.3x plain).

Both train the same network on the same device-resident batches with SGD (momentum 0.9):

* plain: ``loss = CE(model(x), y)``, backward, step;
* curve: a :class:`losslab.CurveModel` with one bend between two copies of the network, one
  t ~ U[0, 1] per minibatch, φ(t) as one (3 x P) matrix product split into the parameter dict,
  ``functional_call``, the paper's weight decay ½·wd·‖φ(t)‖² added to the loss, backward into
  the bend, step.

Epochs of the two alternate (machine-load drift hits both alike); the first of each is dropped;
medians are reported.

    python benchmarks/bench_curve.py [--epochs 4] [--skip-resnet] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from losslab import create_model, load_dataset
from losslab.curves import CurveModel
from losslab.data import DeviceLoader
from losslab.data.splits import Split


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_epoch(model, opt, loader) -> None:
    model.train()
    for x, y in loader:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()


def curve_epoch(curve, opt, loader, wd: float) -> None:
    curve.train()
    for x, y in loader:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(curve(x), y) + 0.5 * wd * curve.point_l2()
        loss.backward()
        opt.step()


def compare(name: str, make, loader, epochs: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = make().to(device)
    ends = [make().to(device), make().to(device)]
    curve = CurveModel(model, ends[0], ends[1], bends=1).to(device)
    plain_opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    curve_opt = torch.optim.SGD(curve.parameters(), lr=0.01, momentum=0.9)
    times = {"plain": [], "curve": []}
    for k in range(epochs + 1):
        for which in (("plain", "curve") if k % 2 == 0 else ("curve", "plain")):
            _sync(device)
            t0 = time.perf_counter()
            if which == "plain":
                plain_epoch(model, plain_opt, loader)
            else:
                curve_epoch(curve, curve_opt, loader, 5e-4)
            _sync(device)
            if k > 0:
                times[which].append(time.perf_counter() - t0)
    plain, curve_t = statistics.median(times["plain"]), statistics.median(times["curve"])
    params = sum(p.numel() for p in model.parameters())
    return {"name": name, "params": params, "steps": len(loader), "plain": plain,
            "curve": curve_t, "ratio": curve_t / plain}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=4, help="timed epochs per method")
    ap.add_argument("--resnet-n", type=int, default=2048, help="CIFAR-shaped images")
    ap.add_argument("--skip-resnet", action="store_true")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    results = []
    data = load_dataset("digits")
    loader = DeviceLoader(data.train, 64, shuffle=True, mean=data.mean, std=data.std, seed=0,
                          device=device)
    results.append(compare("small_cnn / digits, batch 64", lambda: create_model(
        "small_cnn", num_classes=10, in_channels=1, image_size=8), loader, args.epochs, device))
    if not args.skip_resnet:
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (args.resnet_n, 3, 32, 32), dtype=torch.uint8, generator=g)
        y = torch.randint(0, 10, (args.resnet_n,), generator=g)
        loader = DeviceLoader(Split(x, y), 128, shuffle=True, mean=(0.5,) * 3, std=(0.25,) * 3,
                              seed=0, device=device)
        results.append(compare(f"resnet20 / {args.resnet_n} CIFAR-shaped, batch 128",
                               lambda: create_model("resnet20"), loader, max(2, args.epochs // 2),
                               device))
    print("\n| config | parameters | steps/epoch | plain s/epoch | curve s/epoch | "
          "curve / plain (target <= 1.3) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['params']:,} | {r['steps']} | {r['plain']:.3f} | "
              f"{r['curve']:.3f} | **{r['ratio']:.3f}** |")


if __name__ == "__main__":
    main()
