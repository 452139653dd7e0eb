"""Loss-surface evaluation: ``losslab.landscape.surface`` against the reference tool's method.

Both evaluate ``f(x, y) = L(θ* + x·d1 + y·d2)`` on the same model, data, filter-normalized
random directions (``Directions.random``, biases/BN zeroed) and grid, with the centre's
BatchNorm statistics (``bn="keep"``, the model in eval mode):

* ours: :func:`losslab.landscape.surface` on batches already on the device (a non-shuffled,
  non-augmented :class:`~losslab.data.DeviceLoader`; normalization is one batched multiply-add),
  every point run through ``functional_call`` on a private copy, with the defaults of
  :mod:`losslab.landscape.inference` (channels-last on a CPU, BatchNorm folded, convolutions
  fused with their ReLU, glibc's allocator told to keep freed memory); the same surface with
  the default layout and no fusion is timed too ("unfused");
* reference (the method of the original loss-landscape tool, re-implemented here from its
  description): one grid point at a time, the model's weights overwritten in place
  (``p.data.copy_(θ* + x·d1 + y·d2)``), then a pass over a ``torch.utils.data.DataLoader``
  whose ``Dataset`` does per example what torchvision's CIFAR10/MNIST + ``ToTensor`` +
  ``Normalize`` do (a PIL image from the stored HWC array, to a CHW float tensor, / 255,
  minus the mean, over the std), summing ``cross_entropy`` and counting correct predictions
  over the batches (batch 128 as the tool's default; ``--workers 2`` is its default
  ``--threads``). It runs in a spawned process of its own (``--reference-process same``
  runs it in ours, where it shares our allocator setting: a conservative comparison);
* compiled (``--compile``): the forward ours runs for a point, ``functional_call`` of the
  eval-mode network on the point's parameters and buffers in the same layout, compiled with
  ``torch.compile`` (``default``; ``static``: ``dynamic=False``; ``fused``: compiled over the
  fx-rewritten graph) in place of the fx rewrites, inside the same engine (point building,
  resident batches, float64 sums). It exists to decide whether the rewrites, which rely on
  the private ``torch.ops.mkldnn._convolution_pointwise``, still earn their place: their
  compilation is reported apart from the time per point (cold: a fresh inductor cache
  directory, ``--inductor-cache``; warm: the same variant compiled again), with the largest
  loss difference to the unfused forward.

Two configurations by default: the small digits CNN (trained 3 epochs with plain SGD here, so
the surface is not flat) and a randomly initialized ResNet-20 on CIFAR-shaped random uint8
images (``--cifar-model`` runs others on them too, e.g. ``lenet``, a CNN without BatchNorm).
For each: seconds per grid point for both methods and the ratio reference / ours (target >= 1.5
on a 2-core CPU), and the largest absolute difference between the two loss grids (they evaluate
the same points, so it must be at float rounding level). Then subset mode: our surface on a
fixed random 1/20 of the data (``subset_batches``) against the full-data surface: Spearman rank
correlation of the two grids (target >= 0.99), the time ratio subset / full (target <= 0.1)
and the mean standard error the subset run reports.

    python benchmarks/bench_landscape.py [--grid 5] [--range 1.0] [--n 500] [--repeats 3]
        [--resnet-repeats 3] [--batch 256] [--ref-batch 128] [--workers 0]
        [--subset-frac 0.05] [--skip-resnet] [--device cpu|cuda]
        [--reference-process separate|same] [--memory-format auto] [--no-fuse]
        [--compile default,static|none] [--compile-backend inductor] [--inductor-cache fresh]
        [--cifar-model resnet20 [--cifar-model lenet ...]]

Repeats of the methods alternate, forwards then backwards (machine-load drift hits all alike),
each after one untimed warm-up point; medians (and, for the compiled table, minima) are
reported.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.stats import spearmanr
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, Dataset

from losslab import create_model, load_dataset
from losslab.data import DeviceLoader
from losslab.data.splits import Split
from losslab.landscape import Directions, points, surface
from losslab.landscape.evaluate import evaluate_points, subset_batches
from losslab.landscape.inference import FastForward
from losslab.landscape.options import EvalOptions
from losslab.params import buffers_of, parameters_of


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- the reference tool's method ---------------------------------------------------------------
class PerSampleDataset(Dataset):
    """What torchvision's CIFAR10 / MNIST data sets do per example, as the reference tool uses
    them: images stored HWC as numpy arrays (uint8, or float32 already on [0, 1] for digits);
    ``__getitem__`` makes a PIL image of one example, then applies ``ToTensor`` (PIL -> numpy
    copy -> CHW tensor, uint8 / 255) and ``Normalize`` (minus the mean, over the std)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean, std):
        x = x.permute(0, 2, 3, 1).cpu().numpy()  # N, H, W, C
        self.x = x[..., 0] if x.shape[-1] == 1 else x  # PIL: one channel is a 2-D image
        self.y = y.cpu().tolist()
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int):
        pic = Image.fromarray(self.x[i])
        arr = np.array(pic, copy=True)  # ToTensor
        img = torch.from_numpy(arr).view(pic.size[1], pic.size[0], -1).permute(2, 0, 1)
        img = img.contiguous()
        img = img.float().div(255) if img.dtype == torch.uint8 else img.float()
        img = img.sub(self.mean).div(self.std)  # Normalize
        return img, self.y[i]


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
        """Mean loss (and accuracy, which the reference tool computes alongside)."""
        total, count, correct = 0.0, 0, 0
        for xb, yb in self.loader:
            xb, yb = xb.to(self.device), yb.to(self.device)
            out = self.model(xb)
            total += F.cross_entropy(out, yb).item() * yb.shape[0]
            correct += int(out.argmax(1).eq(yb).sum())
            count += yb.shape[0]
        self.accuracy = correct / count
        return total / count

    def grid(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        out = np.empty((len(ys), len(xs)))
        for i, yv in enumerate(ys):  # same layout as ours: loss[i, j] at (x[j], y[i])
            for j, xv in enumerate(xs):
                self.set_weights(float(xv), float(yv))
                out[i, j] = self.loss()
        self.set_weights(0.0, 0.0)
        return out


def build_reference(spec: dict) -> ReferenceSurface:
    """The reference method on its own copy of the model and a per-sample DataLoader."""
    name, kwargs = spec["factory"]
    model = create_model(name, **kwargs)
    model.load_state_dict(spec["state"])
    loader = DataLoader(PerSampleDataset(spec["x"], spec["y"], spec["mean"], spec["std"]),
                        batch_size=spec["batch"], shuffle=False, num_workers=spec["workers"],
                        persistent_workers=spec["workers"] > 0)
    return ReferenceSurface(model, spec["dirs"], loader, torch.device(spec["device"]))


def _reference_worker(conn, spec: dict) -> None:
    ref = build_reference(spec)
    while (msg := conn.recv()) is not None:
        conn.send(ref.grid(*msg))


class RemoteReference:
    """:class:`ReferenceSurface` in a spawned process (``grid`` blocks until it is done, so
    the two methods never run at the same time)."""

    def __init__(self, spec: dict):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_reference_worker, args=(child, spec))
        self.proc.start()

    def grid(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        self.conn.send((xs, ys))
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join()


# -- torch.compile of the same functional forward ---------------------------------------------
# name: (torch.compile keyword arguments, compiled over the fx-rewritten graph of ``fusion``)
COMPILE_VARIANTS = {
    "default": ({}, False),
    "static": ({"dynamic": False}, False),
    "fused": ({}, True),
}


def _fresh_forward(net: nn.Module, tag: str):
    """``functional_call(net, state, (x,))`` as a function with a code object of its own.

    Dynamo keeps its compiled graphs on the Python code object it traced, so variants compiled
    from one shared function would find (and count against the recompile limit of) each
    other's graphs; a fresh code object keeps each compiled forward's cache apart, and makes a
    second compilation of a variant a measure of the compile time with inductor's caches warm.
    """
    src = "def forward(state, x):\n    return functional_call(net, state, (x,))\n"
    namespace = {"functional_call": functional_call, "net": net}
    exec(compile(src, f"<bench_landscape compiled forward: {tag}>", "exec"), namespace)
    return namespace["forward"]


class CompiledForward(FastForward):
    """What :class:`FastForward` runs for a point, compiled by ``torch.compile`` instead of
    rewritten: the same layout (weights and batches channels-last on a CPU under ``auto``),
    the same ``functional_call`` of the eval-mode network on the point's parameters and
    buffers, so the weights are graph inputs and nothing is constant-folded. The ``fused``
    variant compiles the fx-rewritten graph instead, to see whether the two add up."""

    def __init__(self, net: nn.Module, params: dict, device: torch.device, *,
                 memory_format: str, variant: str, backend: str):
        kwargs, over_fused = COMPILE_VARIANTS[variant]
        super().__init__(net, params, device, memory_format=memory_format, fuse=over_fused)
        self.variant, self.backend = variant, backend
        self._compiled = torch.compile(_fresh_forward(self.net, variant), backend=backend,
                                       **kwargs)

    def __call__(self, state: dict, x: torch.Tensor) -> torch.Tensor:
        return self._compiled(state, self.layout(x))

    def describe(self) -> dict:
        return {**super().describe(), "torch_compile": self.variant, "backend": self.backend}


@contextlib.contextmanager
def engine_forward(forward: CompiledForward):
    """The landscape engine (``PointEvaluator``, under ``surface``) running ``forward`` instead
    of the FastForward it would build, so the compiled row pays for the same point building,
    resident batches and float64 sums as ours. One compiled forward serves every repeat of a
    configuration: its compilation is paid (and timed) once, as one long surface pays it."""
    with mock.patch.object(points, "FastForward", lambda *args, **kwargs: forward):
        yield


def _repay(compile_s: float, fused_point: float, compiled_point: float) -> str:
    """Points a map needs before the compiled forward's faster points have paid for its
    compilation against the fused one (from the minima, the least load-sensitive times): each
    ``surface``, ``line`` or ``evaluate_points`` call builds a new engine, so it compiles anew."""
    saved = fused_point - compiled_point
    return f"{compile_s / saved:.0f}" if saved > 0 else "never"


def _graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


# -- one configuration -------------------------------------------------------------------------
def compare(name: str, model: nn.Module, split: Split, mean, std, args, repeats: int,
            device: torch.device) -> dict:
    model = model.to(device).eval()
    center = {k: v.clone() for k, v in parameters_of(model).items()}
    bufs = {k: v.clone() for k, v in buffers_of(model).items()}
    dirs = Directions.random(center, n=2, normalization="filter", ignore="biasbn", seed=0)
    g, r = args.grid, args.range
    grid = (-r, r, g)

    ours_batches = DeviceLoader(split, args.batch, shuffle=False, mean=mean, std=std,
                                device=device)
    spec = {"factory": _FACTORY[id(model)], "state": model.state_dict(),
            "dirs": dirs.directions, "x": split.x, "y": split.y, "mean": mean, "std": std,
            "batch": args.ref_batch, "workers": args.workers, "device": str(device)}
    # The reference runs in a process of its own by default: ours tunes this process's
    # allocator (losslab.cpu_allocator), which the reference tool does not do.
    ref = (RemoteReference(spec) if args.reference_process == "separate"
           else build_reference(spec))

    def run_ours(batches, fast=True):
        return surface(model, center, dirs, batches=batches, buffers=bufs, grid=grid,
                       options=EvalOptions(bn="keep", device=device,
                                           memory_format=args.memory_format if fast
                                           else "contiguous",
                                           fuse=fast and not args.no_fuse))

    # warm-up: one point each, untimed
    evaluate_points(model, center, dirs, batches=ours_batches, coords=torch.zeros(1, 2),
                    buffers=bufs, options=EvalOptions(device=device))
    ref.grid(np.zeros(1), np.zeros(1))

    # torch.compile rows: each variant compiled twice, first with inductor's caches as they are
    # (cold when main() gave it a fresh cache directory), then again on a fresh code object
    # (dynamo traces again, inductor's compiled graphs come from its cache); the second serves
    # the timed surfaces. A compilation is timed as the first point evaluated through it (every
    # batch shape compiles there) less the variant's median time per point.
    compiled, first_point, graphs = {}, {}, {}
    for v in args.compile_variants:
        for attempt in ("cold", "warm"):
            fwd = CompiledForward(copy.deepcopy(model).eval(), center, device,
                                  memory_format=args.memory_format, variant=v,
                                  backend=args.compile_backend)
            g0, t0 = _graphs(), time.perf_counter()
            try:
                with engine_forward(fwd):
                    evaluate_points(model, center, dirs, batches=ours_batches,
                                    coords=torch.zeros(1, 2), buffers=bufs,
                                    options=EvalOptions(device=device,
                                                        memory_format=args.memory_format))
            except Exception as err:  # no C++ compiler, an unsupported op: report, go on
                print(f"{name}: torch.compile {v} ({args.compile_backend}) failed: "
                      f"{type(err).__name__}: {err}")
                break
            first_point[v, attempt] = time.perf_counter() - t0
            graphs[v] = _graphs() - g0
            compiled[v] = fwd
    compiled_graphs = _graphs()

    xs = np.linspace(-r, r, g)
    xs[g // 2] = 0.0
    methods = ["ref", "ours", "plain", *(f"compiled:{v}" for v in compiled)]
    times = {m: [] for m in methods}
    grids = {}
    for k in range(repeats):
        for which in methods if k % 2 == 0 else methods[::-1]:
            _sync(device)
            t0 = time.perf_counter()
            if which == "ours":
                grids[which] = run_ours(ours_batches)
            elif which == "plain":
                grids[which] = run_ours(ours_batches, fast=False)
            elif which == "ref":
                ref_grid = ref.grid(xs, xs)
            else:
                with engine_forward(compiled[which.split(":")[1]]):
                    grids[which] = surface(
                        model, center, dirs, batches=ours_batches, buffers=bufs, grid=grid,
                        options=EvalOptions(bn="keep", device=device,
                                            memory_format=args.memory_format, fuse=False))
            _sync(device)
            times[which].append(time.perf_counter() - t0)
    points = g * g
    per_point = {m: statistics.median(t) / points for m, t in times.items()}
    min_point = {m: min(t) / points for m, t in times.items()}
    t_ref, t_ours, t_plain = per_point["ref"], per_point["ours"], per_point["plain"]
    ours_grid, plain_grid = grids["ours"], grids["plain"]
    plain_diff = float((ours_grid.loss - plain_grid.loss).abs().max())
    compile_rows = {}
    for v in compiled:
        m = f"compiled:{v}"
        compile_rows[v] = {
            "point": per_point[m], "min": min_point[m], "graphs": graphs[v],
            "compile_cold": first_point.get((v, "cold"), float("nan")) - per_point[m],
            "compile_warm": first_point.get((v, "warm"), float("nan")) - per_point[m],
            "diff_plain": float((grids[m].loss - plain_grid.loss).abs().max()),
            "inference": grids[m].metadata["inference"]}
    recompiled = _graphs() - compiled_graphs  # graphs compiled inside the timed surfaces
    full_loss = ours_grid.loss.numpy()
    assert np.allclose(ours_grid.x.numpy(), xs) and np.allclose(ours_grid.y.numpy(), xs)
    max_diff = float(np.abs(full_loss - ref_grid).max())
    max_rel = float((np.abs(full_loss - ref_grid) / np.abs(ref_grid)).max())
    if isinstance(ref, RemoteReference):
        ref.close()

    # subset mode: a fixed random fraction of the data against the full surface
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
            "ours": t_ours, "ratio": t_ref / t_ours, "plain": t_plain,
            "plain_ratio": t_ref / t_plain, "plain_diff": plain_diff,
            "inference": ours_grid.metadata["inference"], "max_diff": max_diff, "max_rel": max_rel,
            "min": min_point, "compiled": compile_rows, "recompiled": recompiled,
            "sub": t_sub,
            "sub_ratio": t_sub / t_ours, "rho": rho,
            "se_sub": float(sub_res.loss_se.mean()), "se_full": float(ours_grid.loss_se.mean()),
            "loss_range": (float(full_loss.min()), float(full_loss.max())),
            "centre": float(full_loss[g // 2, g // 2])}


_FACTORY: dict[int, tuple] = {}


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
    ap.add_argument("--batch", type=int, default=256, help="our evaluation batch size")
    ap.add_argument("--ref-batch", type=int, default=128, help="reference DataLoader batch size")
    ap.add_argument("--workers", type=int, default=0, help="reference DataLoader workers")
    ap.add_argument("--repeats", type=int, default=3, help="timed surfaces per method (digits)")
    ap.add_argument("--resnet-repeats", type=int, default=3)
    ap.add_argument("--subset-frac", type=float, default=0.05)
    ap.add_argument("--skip-resnet", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--memory-format", default="auto",
                    choices=("auto", "channels_last", "contiguous"), help="ours")
    ap.add_argument("--reference-process", default="separate", choices=("separate", "same"),
                    help="same: the reference shares our process and its allocator setting")
    ap.add_argument("--no-fuse", action="store_true", help="ours without BN folding / fusion")
    ap.add_argument("--compile", default="default,static",
                    help="torch.compile rows, comma-separated from "
                    f"{','.join(COMPILE_VARIANTS)} (static: dynamic=False; fused: compiled over "
                    "the fx-rewritten graph), or none")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend (aot_eager where inductor cannot compile)")
    ap.add_argument("--inductor-cache", default="fresh", choices=("fresh", "shared"),
                    help="fresh: a new inductor cache directory for this run, so the first "
                    "compilation of each variant is a cold one (unless TORCHINDUCTOR_CACHE_DIR "
                    "is set)")
    ap.add_argument("--cifar-model", action="append", default=None,
                    help="model(s) run on the random CIFAR-shaped images (default resnet20; "
                    "e.g. lenet for a CNN without BatchNorm); repeatable")
    args = ap.parse_args()
    if args.grid % 2 != 1:
        ap.error("--grid must be odd so that 0 is a grid point")
    args.compile_variants = [] if args.compile == "none" else args.compile.split(",")
    unknown = set(args.compile_variants) - set(COMPILE_VARIANTS)
    if unknown:
        ap.error(f"--compile: unknown variant(s) {sorted(unknown)}")
    if args.inductor_cache == "fresh" and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_landscape_inductor_")
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
        for model_name in args.cifar_model or ["resnet20"]:
            torch.manual_seed(0)
            net = make(model_name)
            results.append(compare(f"{model_name} / random 3x32x32 uint8", net, Split(x, y),
                                   mean, std, args, args.resnet_repeats, device))

    print()
    print("| config | examples | reference s/point | ours s/point | ratio ref/ours (target >= 1.5)"
          " | ours, default layout, unfused: s/point (ratio) | max abs loss diff ref/ours |"
          " max rel diff | max abs diff fused/unfused |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['n']} | {r['ref']:.4f} | {r['ours']:.4f} | "
              f"**{r['ratio']:.2f}x** | {r['plain']:.4f} ({r['plain_ratio']:.2f}x) | "
              f"{r['max_diff']:.2e} | {r['max_rel']:.2e} | {r['plain_diff']:.2e} |")
    for r in results:
        print(f"{r['name']}: ours ran with {r['inference']}")
    if args.compile_variants:
        print()
        print(f"torch.compile ({args.compile_backend}) of the same functional forward, same "
              "layout, beside ours (fused) and unfused; medians (min) of alternating repeats; "
              "compile = first point through a fresh compiled forward less its median point "
              "(graphs: compiled on the warm attempt); points to repay: warm compile / "
              "(fused - compiled), from the minima:")
        print("| config | variant | ours fused s/point | unfused s/point | compiled s/point | "
              "compile s, cold / warm cache (graphs) | ref/compiled | compiled/fused | "
              "unfused/compiled | points to repay a warm compile | "
              "max abs loss diff compiled/unfused |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in results:
            for v, c in r["compiled"].items():
                print(f"| {r['name']} | {v} | {r['ours']:.4f} ({r['min']['ours']:.4f}) | "
                      f"{r['plain']:.4f} ({r['min']['plain']:.4f}) | {c['point']:.4f} "
                      f"({c['min']:.4f}) | {c['compile_cold']:.1f} / {c['compile_warm']:.1f} "
                      f"({c['graphs']}) | {r['ref'] / c['point']:.2f}x | "
                      f"**{c['point'] / r['ours']:.2f}** | {r['plain'] / c['point']:.2f} | "
                      f"{_repay(c['compile_warm'], r['min']['ours'], c['min'])} | "
                      f"{c['diff_plain']:.2e} |")
        for r in results:
            if r["recompiled"]:
                print(f"{r['name']}: WARNING {r['recompiled']} graph(s) compiled during the "
                      "timed surfaces: the compiled rows include compilation")
    print()
    print("Subset mode (ours, fixed random subset via subset_batches, seed 0) vs ours on all data:")
    print("| config | subset / full examples | full s/point | subset s/point | time subset/full "
          "(target <= 0.10) | Spearman rho (target >= 0.99) | mean SE subset | mean SE full |")
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
