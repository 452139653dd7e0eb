"""Checkpoint repulsion cost: the thesis's per-tensor autograd loop against ``CheckpointRepulsion``.

A ResNet-32 CIFAR-shaped SGD step (batch 128, 3x32x32 random data, momentum 0.9) with K saved
checkpoints, side by side in one run:

  (a) none    no penalty (the task step alone);
  (b) thesis  the thesis's implementation (its Algorithms 4-5, written from the description): a
              Python loop over checkpoints and, inside, over the parameter tensors, all in autograd:
              ``penalty += s * exp(-sum_p ((p - p_c) ** 2).sum() / (2 sigma^2))``, then
              ``(task_loss + penalty).backward()``;
  (c) ours    ``CheckpointRepulsion.add_gradient_`` after the task backward (no graph);
  (d) ours-ad ``CheckpointRepulsion.forward`` added to the loss (differentiable, for reference).

Two timings per method and K:

  penalty  the penalty and its gradient alone, without the task forward/backward: for (b) and
           (d) the penalty's forward plus its own ``torch.autograd.grad`` with respect to the
           parameters (exactly the extra work that ``loss.backward()`` does for it, since the
           penalty's graph does not interact with the task's); for (c) one ``add_gradient_``.
           Averaged over ``--inner`` calls per sample.
  step     the whole step (zero_grad, forward, loss, backward, penalty, optimizer.step).

Samples of all methods and K alternate within each repeat so machine-load drift hits all alike;
the tables report medians over ``--repeats`` (step: ``--steps`` steps per sample).

    python benchmarks/bench_repulsion.py [--repeats 3] [--steps 1] [--inner 10]
        [--checkpoints 1 2 4 8] [--device cpu|cuda] [--threads N]

Targets: thesis / ours penalty time >= 4x at K = 4 and 8; ours per checkpoint <= 0.3% of the
step (2-core CPU).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from losslab.models import create_model
from losslab.train.repulsion import CheckpointRepulsion

STRENGTH, WIDTH = 10.0, 100.0


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def thesis_checkpoint(model):
    """Thesis Algorithm 4: a list of cloned, detached parameter tensors."""
    return [p.clone().detach() for p in model.parameters()]


def thesis_penalty(model, checkpoints, s=STRENGTH, width=WIDTH):
    """Thesis Algorithm 5 plus eq. 2.7: a loop over checkpoints and parameter tensors."""
    penalty = 0.0
    for checkpoint in checkpoints:
        distance = 0.0
        for checkpoint_param, param in zip(checkpoint, model.parameters(), strict=True):
            difference = torch.add(-param, checkpoint_param)
            distance = distance + torch.sum(torch.mul(difference, difference))
        penalty = penalty + s * torch.exp(-distance / (2 * width))
    return penalty


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1, help="training steps per step sample")
    ap.add_argument("--inner", type=int, default=10, help="penalty calls per penalty sample")
    ap.add_argument("--checkpoints", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(0)
    model = create_model("resnet32").to(device)
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=1e-2, momentum=0.9, weight_decay=1e-3)
    x = torch.randn(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    n_params = sum(p.numel() for p in params)

    # K_max checkpoints at nearby points (so the kernel is neither ~1 nor ~0).
    kmax = max(args.checkpoints)
    thesis_all, snaps = [], []
    with torch.no_grad():
        for i in range(kmax):
            g = torch.Generator(device="cpu").manual_seed(100 + i)
            snap = [
                (p + 0.01 * torch.randn(p.shape, generator=g).to(device)).detach() for p in params
            ]
            snaps.append(dict(zip([n for n, _ in model.named_parameters()], snap, strict=True)))
            thesis_all.append(snap)
    ours = {}
    for k in args.checkpoints:
        rep = CheckpointRepulsion(STRENGTH, WIDTH)
        for snap in snaps[:k]:
            rep.add_checkpoint(snap)
        ours[k] = rep

    def task_loss():
        return F.cross_entropy(model(x), y)

    # --- penalty-only work ---------------------------------------------------------------
    def pen_thesis(k):
        pen = thesis_penalty(model, thesis_all[:k])
        torch.autograd.grad(pen, params)

    def pen_ours(k):
        ours[k].add_gradient_(model)

    def pen_ours_ad(k):
        torch.autograd.grad(ours[k](model), params)

    # --- whole steps -----------------------------------------------------------------------
    def step_none(k):
        opt.zero_grad(set_to_none=True)
        task_loss().backward()
        opt.step()

    def step_thesis(k):
        opt.zero_grad(set_to_none=True)
        (task_loss() + thesis_penalty(model, thesis_all[:k])).backward()
        opt.step()

    def step_ours(k):
        opt.zero_grad(set_to_none=True)
        task_loss().backward()
        ours[k].add_gradient_(model)
        opt.step()

    def step_ours_ad(k):
        opt.zero_grad(set_to_none=True)
        (task_loss() + ours[k](model)).backward()
        opt.step()

    pen_fns = {"thesis": pen_thesis, "ours": pen_ours, "ours-ad": pen_ours_ad}
    step_fns = {"ours": step_ours, "thesis": step_thesis, "ours-ad": step_ours_ad}

    def timed(fn, k, n):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            fn(k)
        _sync(device)
        return (time.perf_counter() - t0) / n

    # warm-up (also creates .grad for add_gradient_ in the penalty timing)
    for k in args.checkpoints[:1]:
        step_none(k)
        for fn in list(pen_fns.values()) + list(step_fns.values()):
            fn(k)

    pen = {(m, k): [] for m in pen_fns for k in args.checkpoints}
    step = {(m, k): [] for m in step_fns for k in args.checkpoints}
    step_base = []
    t_start = time.perf_counter()
    for r in range(args.repeats):
        order = list(args.checkpoints) if r % 2 == 0 else list(reversed(args.checkpoints))
        for k in order:
            methods = list(pen_fns) if r % 2 == 0 else list(reversed(pen_fns))
            for m in methods:
                pen[m, k].append(timed(pen_fns[m], k, args.inner))
        step_base.append(timed(step_none, 0, args.steps))
        for k in order:
            methods = list(step_fns) if r % 2 == 0 else list(reversed(step_fns))
            for m in methods:
                step[m, k].append(timed(step_fns[m], k, args.steps))
            step_base.append(timed(step_none, 0, args.steps))
    elapsed = time.perf_counter() - t_start

    med = statistics.median
    base = med(step_base)
    print(
        f"ResNet-32, {n_params} parameters, batch {args.batch_size}, device {device}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; repeats {args.repeats}, "
        f"steps/sample {args.steps}, penalty calls/sample {args.inner}; {elapsed:.0f} s timed"
    )
    print(f"(a) step without penalty: {base * 1e3:.1f} ms (median of {len(step_base)})")
    print()
    print("penalty + its gradient alone (ms; thesis and ours-ad: forward + own autograd.grad)")
    print(
        f"{'K':>3} | {'(b) thesis':>10} | {'(c) ours':>9} | {'(d) ours-ad':>11} | "
        f"{'thesis/ours':>11} | {'ours % step':>11} | {'ours %/ckpt':>11}"
    )
    for k in args.checkpoints:
        t, o, d = (med(pen[m, k]) for m in ("thesis", "ours", "ours-ad"))
        print(
            f"{k:>3} | {t * 1e3:>10.2f} | {o * 1e3:>9.2f} | {d * 1e3:>11.2f} | "
            f"{t / o:>10.1f}x | {100 * o / base:>10.3f}% | {100 * o / base / k:>10.3f}%"
        )
    print()
    print("whole step (ms; in parentheses: minus the no-penalty step)")
    print(
        f"{'K':>3} | {'(a) none':>9} | {'(b) thesis':>17} | {'(c) ours':>17} | {'(d) ours-ad':>17}"
    )
    for k in args.checkpoints:
        cells = []
        for m in ("thesis", "ours", "ours-ad"):
            v = med(step[m, k])
            cells.append(f"{v * 1e3:>8.1f} ({(v - base) * 1e3:+6.1f})")
        print(f"{k:>3} | {base * 1e3:>9.1f} | " + " | ".join(f"{c:>17}" for c in cells))


if __name__ == "__main__":
    main()
