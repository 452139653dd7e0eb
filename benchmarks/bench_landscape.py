"""Loss-surface evaluation: ``losslab.landscape.surface`` against the reference tool's method.

Both evaluate ``f(x, y) = L(θ* + x·d1 + y·d2)`` on the same model, data, filter-normalized
random directions (``Directions.random``, biases/BN zeroed) and grid, with the centre's
BatchNorm statistics (``bn="keep"``, the model in eval mode):

* ours: :func:`losslab.landscape.surface` on batches already on the device (a non-shuffled,
  non-augmented :class:`~losslab.data.DeviceLoader` from ``split_loader``; normalization is
  one batched multiply-add), every point run through ``functional_call`` on a private copy;
* reference (the method of the original loss-landscape tool, re-implemented here from its
  description): one grid point at a time, the model's weights overwritten in place
  (``p.data.copy_(θ* + x·d1 + y·d2)``), then a pass over a ``torch.utils.data.DataLoader``
  whose ``Dataset`` converts and normalizes every example in ``__getitem__`` (what
  torchvision's ``ToTensor`` + ``Normalize`` do: HWC uint8 -> CHW float / 255, minus the mean,
  over the std), summing ``cross_entropy`` over the batches.

Two configurations: the small digits CNN (trained 3 epochs with plain SGD here, so the surface
is not flat) and a randomly initialized ResNet-20 on CIFAR-shaped random uint8 images. For
each: seconds per grid point for both methods and the ratio reference / ours (target >= 1.5 on
a 2-core CPU), and the largest absolute difference between the two loss grids (they evaluate
the same points, so it must be at float rounding level). Then subset mode: our surface on a
fixed random 1/10 of the data (``subset_batches``) against the full-data surface: Spearman rank
correlation of the two grids (target >= 0.99), the time ratio subset / full (ideal 0.1) and the
mean standard error the subset run reports.

    python benchmarks/bench_landscape.py [--grid 5] [--range 1.0] [--n 500] [--repeats 3]
        [--resnet-repeats 1] [--batch 512] [--ref-batch 128] [--workers 0]
        [--subset-frac 0.1] [--skip-resnet] [--device cpu|cuda]

Repeats of the two methods alternate (machine-load drift hits both alike), each after one
untimed warm-up point; medians are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn
from torch.utils.data import DataLoader, Dataset

from losslab import create_model, load_dataset
from losslab.data import DeviceLoader
from losslab.data.splits import Split
from losslab.landscape import Directions, surface
from losslab.landscape.evaluate import evaluate_points, subset_batches
from losslab.params import buffers_of, parameters_of


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- the reference tool's method ---------------------------------------------------------------
class PerSampleDataset(Dataset):
    """Examples stored HWC (uint8, or float already on [0, 1]), as images come from disk;
    ``__getitem__`` applies ToTensor + Normalize to one example at a time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean, std):
        self.x = x.permute(0, 2, 3, 1).contiguous().cpu()  # N, H, W, C
        self.y = y.cpu()
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int):
        img = self.x[i].permute(2, 0, 1)  # ToTensor: HWC -> CHW, uint8 -> float / 255
        img = img.float().div(255) if img.dtype == torch.uint8 else img.float()
        img = img.sub(self.mean).div(self.std)  # Normalize
        return img, int(self.y[i])


class ReferenceSurface:
    """One point at a time: overwrite the model's weights in place, then a DataLoader pass."""

    def __init__(self, model: nn.Module, dirs: list[dict], loader: DataLoader,
                 device: torch.device):
        self.model, self.loader, self.device = model.to(device).eval(), loader, device
        self.names = [n for n, _ in model.named_parameters()]
        params = dict(model.named_parameters())
        self.params = [params[n] for n in self.names]
        self.w0 = [p.detach().clone() for p in self.params]  # θ*
        self.d1 = [dirs[0][n].to(device) for n in self.names]
        self.d2 = [dirs[1][n].to(device) for n in self.names]

    @torch.no_grad()
    def set_weights(self, x: float, y: float) -> None:
        for p, w, a, b in zip(self.params, self.w0, self.d1, self.d2, strict=True):
            p.data.copy_(w + x * a + y * b)

    @torch.no_grad()
    def loss(self) -> float:
        total, count = 0.0, 0
        for xb, yb in self.loader:
            xb, yb = xb.to(self.device), yb.to(self.device)
            total += F.cross_entropy(self.model(xb), yb, reduction="sum").item()
            count += yb.shape[0]
        return total / count

    def grid(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        out = np.empty((len(ys), len(xs)))
        for i, yv in enumerate(ys):  # same layout as ours: loss[i, j] at (x[j], y[i])
            for j, xv in enumerate(xs):
                self.set_weights(float(xv), float(yv))
                out[i, j] = self.loss()
        self.set_weights(0.0, 0.0)
        return out


# -- one configuration -------------------------------------------------------------------------
def compare(name: str, model: nn.Module, split: Split, mean, std, args, repeats: int,
            device: torch.device) -> dict:
    model = model.to(device).eval()
    center = {k: v.clone() for k, v in parameters_of(model).items()}
    bufs = {k: v.clone() for k, v in buffers_of(model).items()}
    dirs = Directions.random(center, n=2, normalization="filter", ignore="biasbn", seed=0)
    g, r = args.grid, args.range
    xrange = yrange = (-r, r, g)

    ours_batches = DeviceLoader(split, args.batch, shuffle=False, mean=mean, std=std,
                                device=device)
    ref_loader = DataLoader(PerSampleDataset(split.x, split.y, mean, std),
                            batch_size=args.ref_batch, shuffle=False,
                            num_workers=args.workers, persistent_workers=args.workers > 0)
    ref_model = create_like(model)
    ref = ReferenceSurface(ref_model, dirs.directions, ref_loader, device)

    def run_ours(batches):
        return surface(model, center, dirs, xrange=xrange, yrange=yrange, batches=batches,
                       buffers=bufs, bn="keep", device=device)

    # warm-up: one point each, untimed
    evaluate_points(model, center, bufs, dirs, torch.zeros(1, 2), ours_batches, device=device)
    ref.set_weights(0.0, 0.0)
    ref.loss()

    xs = np.linspace(-r, r, g)
    xs[g // 2] = 0.0
    times = {"ref": [], "ours": []}
    ours_grid = ref_grid = None
    for k in range(repeats):
        order = ("ref", "ours") if k % 2 == 0 else ("ours", "ref")
        for which in order:
            _sync(device)
            t0 = time.perf_counter()
            if which == "ours":
                res = run_ours(ours_batches)
            else:
                ref_grid = ref.grid(xs, xs)
            _sync(device)
            times[which].append(time.perf_counter() - t0)
            if which == "ours":
                ours_grid = res
    points = g * g
    t_ref = statistics.median(times["ref"]) / points
    t_ours = statistics.median(times["ours"]) / points
    full_loss = ours_grid.loss.numpy()
    assert np.allclose(ours_grid.x.numpy(), xs) and np.allclose(ours_grid.y.numpy(), xs)
    max_diff = float(np.abs(full_loss - ref_grid).max())
    max_rel = float((np.abs(full_loss - ref_grid) / np.abs(ref_grid)).max())

    # subset mode: a fixed random 1/10 of the data against the full surface
    n_total = split.x.shape[0]
    n_sub = max(2, round(n_total * args.subset_frac))
    sub = subset_batches(ours_batches, n_sub, seed=0, batch_size=args.batch)
    sub_times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        sub_res = run_ours(sub)
        _sync(device)
        sub_times.append(time.perf_counter() - t0)
    t_sub = statistics.median(sub_times) / points
    rho = float(spearmanr(full_loss.reshape(-1), sub_res.loss.numpy().reshape(-1))[0])
    return {"name": name, "n": n_total, "n_sub": n_sub, "points": points, "ref": t_ref,
            "ours": t_ours, "ratio": t_ref / t_ours, "max_diff": max_diff, "max_rel": max_rel,
            "sub": t_sub,
            "sub_ratio": t_sub / t_ours, "rho": rho,
            "se_sub": float(sub_res.loss_se.mean()), "se_full": float(ours_grid.loss_se.mean()),
            "loss_range": (float(full_loss.min()), float(full_loss.max())),
            "centre": float(full_loss[g // 2, g // 2])}


_FACTORY: dict[int, tuple] = {}


def create_like(model: nn.Module) -> nn.Module:
    """A separate model with the same architecture and the same weights and buffers."""
    name, kwargs = _FACTORY[id(model)]
    twin = create_model(name, **kwargs)
    twin.load_state_dict(model.state_dict())
    return twin


def make(name: str, **kwargs) -> nn.Module:
    m = create_model(name, **kwargs)
    _FACTORY[id(m)] = (name, kwargs)
    return m


def train_digits(model: nn.Module, data, device: torch.device, epochs: int = 3) -> None:
    """A few epochs of plain SGD, so the digits surface has a minimum to look at."""
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = DeviceLoader(data.train, 64, shuffle=True, mean=data.mean, std=data.std, seed=0,
                          device=device)
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", type=int, default=5, help="points per axis (odd, so 0 is on it)")
    ap.add_argument("--range", type=float, default=1.0, help="axes run over [-range, range]")
    ap.add_argument("--n", type=int, default=500, help="random CIFAR-shaped images for ResNet-20")
    ap.add_argument("--digits-split", default="train", choices=("train", "test"))
    ap.add_argument("--batch", type=int, default=512, help="our evaluation batch size")
    ap.add_argument("--ref-batch", type=int, default=128, help="reference DataLoader batch size")
    ap.add_argument("--workers", type=int, default=0, help="reference DataLoader workers")
    ap.add_argument("--repeats", type=int, default=3, help="timed surfaces per method (digits)")
    ap.add_argument("--resnet-repeats", type=int, default=1)
    ap.add_argument("--subset-frac", type=float, default=0.1)
    ap.add_argument("--skip-resnet", action="store_true")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.grid % 2 != 1:
        ap.error("--grid must be odd so that 0 is a grid point")
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; "
          f"grid {args.grid}x{args.grid} on [-{args.range}, {args.range}]^2, filter-normalized "
          f"random directions (seed 0, biases/BN zeroed), bn='keep'; ours batch {args.batch}, "
          f"reference batch {args.ref_batch} with {args.workers} workers; "
          f"load average at start {os.getloadavg()[0]:.2f}")

    results = []
    torch.manual_seed(0)
    data = load_dataset("digits")
    cnn = make("small_cnn", num_classes=10, in_channels=1, image_size=8)
    train_digits(cnn, data, device)
    split = getattr(data, args.digits_split)
    results.append(compare(f"small_cnn / digits {args.digits_split}", cnn, split, data.mean,
                           data.std, args, args.repeats, device))

    if not args.skip_resnet:
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (args.n, 3, 32, 32), dtype=torch.uint8, generator=gen)
        y = torch.randint(0, 10, (args.n,), generator=gen)
        mean = tuple((x.float() / 255).mean(dim=(0, 2, 3)).tolist())
        std = tuple((x.float() / 255).std(dim=(0, 2, 3)).tolist())
        net = make("resnet20")
        results.append(compare("resnet20 / random 3x32x32 uint8", net, Split(x, y), mean, std,
                               args, args.resnet_repeats, device))

    print()
    print("| config | examples | reference s/point | ours s/point | ratio ref/ours (target >= 1.5)"
          " | max abs loss diff | max rel diff |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['n']} | {r['ref']:.4f} | {r['ours']:.4f} | "
              f"**{r['ratio']:.2f}x** | {r['max_diff']:.2e} | {r['max_rel']:.2e} |")
    print()
    print("Subset mode (ours, fixed random subset via subset_batches, seed 0) vs ours on all data:")
    print("| config | subset / full examples | full s/point | subset s/point | time subset/full "
          "(ideal <= 0.10) | Spearman rho (target >= 0.99) | mean SE subset | mean SE full |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['n_sub']} / {r['n']} | {r['ours']:.4f} | {r['sub']:.4f} | "
              f"{r['sub_ratio']:.3f} | {r['rho']:.4f} | {r['se_sub']:.4f} | {r['se_full']:.4f} |")
    print()
    for r in results:
        lo, hi = r["loss_range"]
        print(f"{r['name']}: loss at centre {r['centre']:.4f}, over the grid {lo:.4f} .. {hi:.4f}")


if __name__ == "__main__":
    main()
