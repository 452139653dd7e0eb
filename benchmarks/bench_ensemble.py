"""Ensemble prediction: one vectorized call (torch.vmap) against a Python loop over members.

Both evaluate the same members (different seeds of one architecture, in eval mode) on the same
batch and average their probabilities: :class:`losslab.ensembles.predict.Ensemble` with
``vectorize=True`` (stacked weights, ``vmap`` over ``functional_call``) and with
``vectorize=False`` (``member(x)`` for each member in turn). Repeats of the two alternate, so
drift in machine load hits both alike; one untimed warm-up call each; medians reported.

    python benchmarks/bench_ensemble.py [--model resnet20] [--members 8] [--batch 512]
        [--image-size 32] [--channels 3] [--device cpu|cuda] [--repeats 5]

Prints both times and the ratio loop / vmap (> 1: vmap is faster) for the configuration given,
then for a small one (small_cnn on 1x8x8, batch 512): on a CPU, batching the members' large
convolutions buys little, while small layers gain from fewer, larger kernel calls.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from losslab.ensembles.predict import Ensemble
from losslab.models import create_model
from losslab.runs.device import resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(model: str, members: int, channels: int, image_size: int, device: torch.device):
    nets = []
    for seed in range(members):
        torch.manual_seed(seed)
        nets.append(create_model(model, num_classes=10, in_channels=channels,
                                 image_size=image_size).to(device).eval())
    return Ensemble(nets, vectorize=True), Ensemble(nets, vectorize=False)


@torch.no_grad()
def compare(model: str, members: int, batch: int, channels: int, image_size: int,
            device: torch.device, repeats: int) -> dict:
    vmapped, looped = build(model, members, channels, image_size, device)
    torch.manual_seed(1234)
    x = torch.randn(batch, channels, image_size, image_size, device=device)
    diff = (vmapped(x) - looped(x)).abs().max().item()  # also the warm-up call of each
    times: dict[str, list[float]] = {"loop": [], "vmap": []}
    for r in range(repeats):
        order = (("loop", looped), ("vmap", vmapped))
        for name, ens in order if r % 2 == 0 else order[::-1]:
            _sync(device)
            start = time.perf_counter()
            ens(x)
            _sync(device)
            times[name].append(time.perf_counter() - start)
    loop, vmap = statistics.median(times["loop"]), statistics.median(times["vmap"])
    return {"loop": loop, "vmap": vmap, "ratio": loop / vmap, "max_abs_diff": diff}


def report(title: str, result: dict) -> None:
    print(title)
    print(f"  loop over members : {1000 * result['loop']:9.1f} ms")
    print(f"  vmap (one call)   : {1000 * result['vmap']:9.1f} ms")
    faster = "vmap faster" if result["ratio"] > 1 else "loop faster"
    print(f"  ratio loop / vmap : {result['ratio']:9.2f}x ({faster}; max |difference| of the "
          f"averaged probabilities {result['max_abs_diff']:.1e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--device", default="auto",
                        help="auto (default: cuda if available), cpu, cuda")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = resolve_device(args.device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"cpu, {torch.get_num_threads()} threads")
    print(f"torch {torch.__version__}, {where}, {args.members} members, {args.repeats} repeats "
          "(medians), probabilities averaged")
    configs = [(args.model, args.batch, args.channels, args.image_size),
               ("small_cnn", 512, 1, 8)]
    for model, batch, channels, size in configs:
        result = compare(model, args.members, batch, channels, size, device, args.repeats)
        report(f"{model}, batch {batch}, {channels}x{size}x{size}:", result)


if __name__ == "__main__":
    main()
