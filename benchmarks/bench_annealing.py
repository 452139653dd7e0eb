"""Cost of an SSA / SGD-SA step against the passes it is made of.

Two workloads, random data, models in train mode (as the trainer runs them):

  digits   small_cnn, batch 64, 1x8x8, 10 classes
  cifar    resnet20,  batch 128, 3x32x32, 10 classes

Four timings per workload, one step each:

  fwd3    three forward passes of the batch under ``torch.no_grad()`` (SSA's evaluations alone)
  ssa     ``SSA.step(closure)``: the three passes plus the draw of Δ, the candidates, the
          replayed draw and the exact selection
  sgd     ``zero_grad``, forward, cross-entropy, backward, ``torch.optim.SGD.step`` (no momentum)
  sgdsa   ``SGDSA.step(closure)``: forward + backward, the gradient step, one more forward
          (no_grad) and the Metropolis keep/undo

Each method has its own copy of the model. Samples of the four methods alternate within each
repeat so machine-load drift hits all alike; the table reports medians over ``--repeats`` of the
mean time per step over ``--steps`` steps, then the ratios ssa / fwd3 (target <= 1.2) and
sgdsa / sgd (target <= 1.6).

    python benchmarks/bench_annealing.py [--repeats 15] [--steps 5] [--warmup 2]
        [--workloads digits cifar] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from losslab.models import create_model
from losslab.train.annealing import SGDSA, SSA

WORKLOADS = {
    "digits": ("small_cnn", 64, 1, 8),
    "cifar": ("resnet20", 128, 3, 32),
}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _closure(model, opt, x, y):
    def closure():
        loss = F.cross_entropy(model(x), y)
        if torch.is_grad_enabled():
            opt.zero_grad(set_to_none=True)
            loss.backward()
        return loss
    return closure


def build(workload, device):
    name, batch, channels, size = WORKLOADS[workload]
    torch.manual_seed(0)
    base = create_model(name, num_classes=10, in_channels=channels, image_size=size).to(device)
    base.train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, channels, size, size, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)

    m_fwd, m_ssa, m_sgd, m_sgdsa = (copy.deepcopy(base) for _ in range(4))

    def fwd3():
        with torch.no_grad():
            for _ in range(3):
                F.cross_entropy(m_fwd(x), y)

    ssa = SSA(m_ssa.parameters(), seed=0)
    ssa_closure = _closure(m_ssa, ssa, x, y)

    sgd = torch.optim.SGD(m_sgd.parameters(), lr=0.01)

    def sgd_step():
        sgd.zero_grad(set_to_none=True)
        F.cross_entropy(m_sgd(x), y).backward()
        sgd.step()

    sgdsa = SGDSA(m_sgdsa.parameters(), lrs="H2", seed=0)
    sgdsa_closure = _closure(m_sgdsa, sgdsa, x, y)
    return {
        "fwd3": fwd3,
        "ssa": lambda: ssa.step(ssa_closure),
        "sgd": sgd_step,
        "sgdsa": lambda: sgdsa.step(sgdsa_closure),
    }


def time_once(fn, steps, device):
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / steps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
          f"{args.repeats} repeats x {args.steps} steps (medians, ms per step)")
    print(f"{'workload':<8} {'fwd3':>9} {'ssa':>9} {'sgd':>9} {'sgdsa':>9} "
          f"{'ssa/fwd3':>9} {'sgdsa/sgd':>10}")
    for workload in args.workloads:
        fns = build(workload, device)
        for fn in fns.values():
            for _ in range(args.warmup):
                fn()
        samples = {k: [] for k in fns}
        for _ in range(args.repeats):
            for k, fn in fns.items():
                samples[k].append(time_once(fn, args.steps, device))
        med = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
        print(f"{workload:<8} {med['fwd3']:9.2f} {med['ssa']:9.2f} {med['sgd']:9.2f} "
              f"{med['sgdsa']:9.2f} {med['ssa'] / med['fwd3']:9.3f} "
              f"{med['sgdsa'] / med['sgd']:10.3f}")
    print("targets: ssa/fwd3 <= 1.2, sgdsa/sgd <= 1.6")


if __name__ == "__main__":
    main()
