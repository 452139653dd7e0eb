"""One surface spread over Ray workers against the same surface in one process.

The same filter-normalized surface (``Directions.random``, seed 0, ``--grid`` x ``--grid`` on
[-1, 1]², BatchNorm statistics kept) of one model on one data set, four ways, side by side:

* ``ray 1x1``: ``surface(..., workers=RayWorkers(1, threads=1))``, one Ray worker of one thread;
* ``ray Nx1``: ``RayWorkers(N, threads=1)``, ``--workers`` (2) workers of one thread each;
* ``process 1 thread`` and ``process N threads``: no Ray, torch with 1 and N threads.

Ray is started before the clock (as a cluster is), so each Ray time includes building the
workers' evaluation copies, the chunk hand-out and the merge, but not Ray's own start-up.
Printed: seconds per map, the speed-up of N workers over one (target >= 1.6 for 2, i.e. 0.8 N)
and over one process with N threads, and whether every grid equals the one-thread process's
bitwise (it must: same code, same data, one thread per evaluation).

Models: ``small_cnn`` on the digits' training set (1,294 images, 8x8) and ``resnet20`` on
``--n`` (500) random CIFAR-shaped images (32x32x3), randomly initialized.

On a GPU (``--device cuda``) the workers share it (``--gpus`` per worker, default 1/N) and the
"threads" columns are one process on the GPU (1 and N CPU threads).

    python benchmarks/bench_map_workers.py [--grid 9] [--workers 2] [--n 500]
        [--model small_cnn --model resnet20] [--device cpu|cuda] [--gpus 0.5]
"""

from __future__ import annotations

import argparse
import time

import ray
import torch

from losslab import create_model, load_dataset
from losslab.landscape import surface
from losslab.landscape.directions import Directions
from losslab.landscape.spread import RayWorkers


def problem(name: str, n: int, device: str, seed: int = 0):
    torch.manual_seed(seed)
    if name == "small_cnn":
        s = load_dataset("digits")
        x, y = (s.train.x - s.mean[0]) / s.std[0], s.train.y
        model = create_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    else:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 3, 32, 32, generator=gen)
        y = torch.randint(0, 10, (n,), generator=gen)
        model = create_model(name, num_classes=10, in_channels=3, image_size=32)
    model.eval().to(device)
    x, y = x.to(device), y.to(device)
    batches = [(x[i:i + 256], y[i:i + 256]) for i in range(0, len(y), 256)]
    dirs = Directions.random(dict(model.named_parameters()), n=2, seed=0)
    return model, list(dirs.directions), batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=9)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gpus", type=float, default=None, help="GPUs per worker on cuda")
    args = parser.parse_args()
    n = args.workers
    gpus = None if args.device == "cpu" else (args.gpus or 1.0 / n)
    ray.init(address="local", num_cpus=n, include_dashboard=False, log_to_driver=False)
    print(f"torch {torch.__version__}, ray {ray.__version__}, {args.grid}x{args.grid} grid, "
          f"{n} workers")
    print(f"{'model':10s} {'ray 1x1':>9s} {f'ray {n}x1':>9s} {'proc 1t':>9s} {f'proc {n}t':>9s}"
          f"  speed-up {n}x1/1x1 (target {0.8 * n:.1f})  {n}x1 / proc {n}t  bitwise")
    for name in args.model or ["small_cnn", "resnet20"]:
        model, dirs, batches = problem(name, args.n, args.device)
        kw = dict(grid=(-1, 1, args.grid), batches=batches, progress=False)
        times, grids = {}, {}
        for label, threads, workers in (("proc 1t", 1, None),
                                        ("ray 1x1", 1, RayWorkers(1, gpus=gpus and 1.0)),
                                        (f"ray {n}x1", 1, RayWorkers(n, gpus=gpus)),
                                        (f"proc {n}t", n, None)):
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            grids[label] = surface(model, model, dirs, **kw, workers=workers).loss
            times[label] = time.perf_counter() - t0
        same = all(torch.equal(grids[k], grids["proc 1t"]) for k in ("ray 1x1", f"ray {n}x1"))
        print(f"{name:10s} {times['ray 1x1']:8.2f}s {times[f'ray {n}x1']:8.2f}s "
              f"{times['proc 1t']:8.2f}s {times[f'proc {n}t']:8.2f}s  "
              f"{times['ray 1x1'] / times[f'ray {n}x1']:27.2f}  "
              f"{times[f'proc {n}t'] / times[f'ray {n}x1']:14.2f}  {same}")
    ray.shutdown()


if __name__ == "__main__":
    main()
