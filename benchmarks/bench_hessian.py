"""Hessian-vector products needed for λmax: Lanczos against power iteration.

For each problem, both methods run from seeded random starts and record their estimate of
λmax after every product (Lanczos: the largest Ritz value; power iteration: the Rayleigh
quotient; power iteration runs to a residual of ``--power-tol`` so the tail is seen). The
count reported is the number of products after which the estimate stays within
``--rel`` (default 1e-4) relative error of the reference value:

  (a) quadratic  an explicit symmetric matrix (``--dim``, default 2000) with λ1 = 1,
                 λ2 = 1 - ``--gap`` (default 0.02) and the rest uniform in [-0.2, 0.9];
                 the reference is the exact λ1;
  (b) small_cnn  the Hessian of the mean cross-entropy of ``small_cnn`` (8x8 digits, 10
                 classes, ~57k parameters) over the digits training split (batches of 256,
                 float32), after each of ``--train-epochs`` epochs of Adam from a seeded init (0 and 2 by
                 default: a trained net's top eigenvalue is an isolated outlier, so power
                 iteration is already fast there and the ratio is larger); the
                 reference is a separate, converged Lanczos run (another seed, tol 1e-7).

    python benchmarks/bench_hessian.py [--rel 1e-4] [--gap 0.02] [--dim 2000]
        [--train-epochs 0 2] [--power-max 3000] [--power-tol 1e-5] [--threads N]

Target: Lanczos needs <= 1/3 of the products of power iteration.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from losslab.data import load_dataset
from losslab.landscape.hessian import HessianOperator, MatrixOperator, lanczos, power_iteration
from losslab.landscape.options import EvalOptions
from losslab.models import create_model


def products_to_reach(history: list[float], reference: float, rel: float) -> int | None:
    """The number of products after which every later estimate is within ``rel`` (or None)."""
    err = np.abs(np.asarray(history) - reference) > rel * abs(reference)
    if err[-1]:
        return None
    bad = np.flatnonzero(err)
    return int(bad[-1]) + 2 if bad.size else 1


def quadratic(dim: int, gap: float, seed: int = 0) -> tuple[MatrixOperator, float]:
    rest = torch.linspace(-0.2, 0.9, dim - 2, dtype=torch.float64)
    lam = torch.cat([torch.tensor([1.0, 1.0 - gap], dtype=torch.float64), rest])
    return MatrixOperator.from_eigenvalues(lam, seed=seed), 1.0


def cnn_operator(train_epochs: int, seed: int = 0) -> HessianOperator:
    torch.manual_seed(seed)
    splits = load_dataset("digits")
    x = (splits.train.x - splits.mean[0]) / splits.std[0]
    y = splits.train.y
    model = create_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(train_epochs):
        for idx in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return HessianOperator(model, batches=list(zip(x.split(256), y.split(256), strict=True)),
                           options=EvalOptions(loss_fn=F.cross_entropy), dtype=torch.float32)


def compare(name: str, op, reference: float | None, args) -> None:
    t0 = time.perf_counter()
    # Stopping at convergence loses nothing: the largest Ritz value only grows with the steps.
    lz = lanczos(op, k=1, max_iter=args.lanczos_max, tol=1e-7, seed=0)
    t_lz = time.perf_counter() - t0
    if reference is None:  # a converged run from another start
        ref_run = lanczos(op, k=1, max_iter=args.lanczos_max, tol=1e-7, seed=1)
        reference = ref_run.max
        ref_note = (f"reference λmax = {reference:.8g} (Lanczos seed 1, converged="
                    f"{ref_run.converged}, {ref_run.num_products} products)")
    else:
        ref_note = f"reference λmax = {reference:.8g} (exact)"
    t0 = time.perf_counter()
    pw = power_iteration(op, max_iter=args.power_max, tol=args.power_tol, seed=0)
    t_pw = time.perf_counter() - t0
    n_lz = products_to_reach(lz.history, reference, args.rel)
    n_pw = products_to_reach(pw.history, reference, args.rel)
    print(f"\n{name}: P = {op.size}; {ref_note}")
    print(f"  lanczos          products to {args.rel:g}: {n_lz}  (ran {lz.num_products}, "
          f"{t_lz / lz.num_products * 1e3:.1f} ms/product incl. reorthogonalization)")
    print(f"  power iteration  products to {args.rel:g}: {n_pw}  (ran {pw.num_products}, "
          f"converged={pw.converged}, final {pw.max:.8g}, "
          f"{t_pw / pw.num_products * 1e3:.1f} ms/product)")
    if n_lz is not None and n_pw is not None:
        print(f"  ratio lanczos / power = {n_lz / n_pw:.3f}  (target <= 0.333)")
    else:
        print("  ratio: n/a (a method did not reach the tolerance within its budget)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rel", type=float, default=1e-4)
    parser.add_argument("--gap", type=float, default=0.02)
    parser.add_argument("--dim", type=int, default=2000)
    parser.add_argument("--train-epochs", type=int, nargs="+", default=[0, 2],
                        help="one CNN problem per value (0: the random init)")
    parser.add_argument("--lanczos-max", type=int, default=150)
    parser.add_argument("--power-max", type=int, default=3000)
    parser.add_argument("--power-tol", type=float, default=1e-5,
                        help="residual tolerance ending power iteration (eigenvalue error ~ its "
                             "square over the gap, far below --rel)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    op, lam1 = quadratic(args.dim, args.gap)
    compare(f"(a) quadratic, gap {args.gap:g}", op, lam1, args)
    for epochs in args.train_epochs:
        compare(f"(b) small_cnn on digits ({epochs} epochs of Adam)", cnn_operator(epochs),
                None, args)


if __name__ == "__main__":
    main()
