"""2-D loss surfaces: ``losslab.landscape.surface`` against four PyPI peers and loss-landscape.

Every tool evaluates ``f(x, y) = L(θ* + x·d1 + y·d2)`` on the same ``--grid`` x ``--grid``
points of [-1, 1]² (default 21 x 21), for the same model (randomly initialized under
``torch.manual_seed(0)``, eval mode, so BatchNorm uses its running statistics everywhere), the
same data and the same two directions: ``Directions.random(dict(model.named_parameters()),
n=2, seed=0)``, filter-normalized, biases and BatchNorm parameters zero. Everything runs on
the CPU with one torch thread, in ``--dtype`` (model, data and directions cast to it). ``L`` is
the mean cross-entropy over all examples unless a row says otherwise.

* **losslab**: ``surface(model, model, [d1, d2], grid=(-1, 1, n), batches=batches,
  progress=False)``, ``batches`` a list of ``(x, y)`` tensor pairs of ``--batch`` (256)
  examples, default options (``bn="keep"``, channels-last and fusion on a CPU).
* **nngeom 0.2.0**: ``lossland.plane_slice_2d(Model(net, loss_fn), batches, span=1.0,
  steps=n, directions=[d1, d2])`` with our directions flattened to float64 numpy vectors (in
  ``named_parameters()`` order, as its ``TorchAdapter`` flattens). It overwrites the module's
  weights in place at each point (``base + a·d1 + b·d2`` in float64 numpy, copied into the
  parameters) and calls the user's ``loss_fn(module, batch)`` once; here its "batch" is the
  whole list of batches and ``loss_fn`` sums ``cross_entropy(reduction="sum")`` over them and
  divides by the number of examples.
* **gradfield 0.5.0**: ``sampler.sample_grid(torch_adapter.model_loss_fn(net,
  F.cross_entropy, x_all, y_all), (-1, 1), (-1, 1), n)``. ``model_loss_fn`` draws its own two
  directions with ``torch.randn_like`` and has no argument for given ones, so the benchmark
  patches ``torch.randn_like`` while it builds the closure, to hand out (copies of) our d1 and
  d2 tensor by tensor in the order it asks; it then filter-normalizes them again, which leaves
  already filter-normalized directions unchanged up to its ``+1e-10`` in the denominators, and
  zero tensors zero. Its API takes one input tensor: each point is one forward of all the
  examples as a single batch (``cross_entropy`` mean), and ``sample_grid`` also computes the
  gradient field by finite differences (``np.gradient``) afterwards.
* **landscaper 1.3.1**: ``compute.compute_loss_landscape(net, batches, [d1, d2], scalar_fn,
  steps=n, distance=D, dim=2, device="cpu")``, ``scalar_fn`` the same mean cross-entropy over
  the batches. Two hooks: (1) only ``landscaper.compute`` (and its ``utils``) is imported, under
  a stub package, because the package's ``__init__`` imports the topology and plotting modules
  (gudhi, topopy, nglpy, drawsvg, ...) that the surface code does not use; (2) its
  ``normalize_direction``, which rescales every tensor of a given direction to norm
  ``sqrt(numel)`` (this destroys the filter normalization and changes the plane), is replaced
  by the identity. It then scales each direction to a step of ``‖θ‖·D / (n/2)`` and walks to
  each point by repeated in-place additions of that step from the centre; ``D = h·‖d1‖·(n/2)
  / ‖θ‖`` with ``h = 2 / (n − 1)`` makes the step exactly our grid spacing (``‖d1‖ = ‖d2‖``
  for filter-normalized directions with zeroed 1-D tensors). Its result is indexed
  ``[x, y]`` (transposed here), and it **adds Gaussian noise** (1% of the grid's standard
  deviation) to the grid's maximum "to avoid flat regions", so its loss difference is
  reported with and without that point.
* **loss-landscape-3d 0.1.3**: ``LossLandscapeCalculator(net, batches, nn.CrossEntropyLoss(),
  device="cpu").calculate(xs, ys, d1, d2, centre)``, ``centre`` a detached copy of
  ``net.state_dict()`` (its README passes ``model.state_dict()`` itself, whose tensors are the
  live weights: each point's ``load_state_dict`` then moves the centre, and the grid is wrong by
  orders of magnitude); the directions are name-keyed
  dicts as ours (missing buffers count as zero), each point is one ``load_state_dict`` of
  ``centre + x·d1 + y·d2`` and a pass over the batches (batch-size-weighted mean). Its result is
  indexed ``[x, y]`` (transposed here).
* **loss-landscape crunch** (Li et al. 2018's own code, ``plot_surface.crunch``), with
  ``--loss-landscape DIR``: not vendored here; get it with ``git clone
  https://github.com/tomgoldstein/loss-landscape DIR`` (a scratch directory). The benchmark puts
  DIR on ``sys.path`` and runs crunch's per-point loop in one process (no MPI, no h5 file):
  ``scheduler.get_job_indices`` for the points, then for each ``net_plotter.set_weights(net, w,
  [d1, d2], coord)`` and ``evaluation.eval_loss(net, nn.CrossEntropyLoss(), loader)`` over a
  ``torch.utils.data.DataLoader(TensorDataset(x, y), batch_size=--batch, shuffle=False)``
  (crunch's default batch is 128; its torchvision per-example transforms are not reproduced,
  the tensors are already normalized, which favours crunch). ``net_plotter`` imports ``h5py``
  and ``model_loader`` (which imports torchvision) at the top but ``set_weights`` uses neither:
  a missing one is replaced by an empty stub module. ``set_weights`` builds each step with the
  legacy ``torch.Tensor(d).type(type(w))``, i.e. in torch's default dtype, so crunch runs with
  the default dtype set to ``--dtype`` (what a float64 user of it has to do). Without
  ``--loss-landscape`` its row is skipped with a note.

Each tool gets its own deep copy of the model (the peers overwrite weights in place) outside
the timed region; a timed surface includes everything the tool's call does (setup included).
Before anything is timed, one forward of every model warms torch up. Repeats alternate the
order of the tools (forwards, then backwards). Reported per model: seconds per grid point
(median over ``--repeats`` surfaces), the ratio tool / losslab (> 1: losslab faster; targets
>= 1.0 against every peer, >= 2.0 against crunch, in float32 and in float64) and the largest
absolute difference of the tool's loss grid from losslab's (the same points, so it should be
at rounding level). A peer that is not installed gets a "not installed" row, so the script
runs in the project's environment too; install the peers in a scratch venv (``pip install
--no-deps nngeom==0.2.0 gradfield==0.5.0 landscaper==1.3.1 loss-landscape-3d==0.1.3``: the
surface code of all four imports only numpy, torch and, for landscaper, tqdm).

Models: ``tiny_cnn`` (defined here: conv 1→16 3x3, ReLU, max-pool, conv 16→32 3x3, ReLU,
global average pool, linear 32→10; no BatchNorm) and ``small_cnn`` (losslab's, with
BatchNorm) on the scikit-learn digits training split (8x8, normalized by the split's mean and
std), ``resnet20`` on ``--n`` (500) random CIFAR-shaped N(0, 1) images with random labels.

    python benchmarks/bench_peer_surfaces.py [--grid 21] [--repeats 1] [--dtype float32]
        [--batch 256] [--n 500] [--loss-landscape DIR] [--models tiny_cnn,small_cnn,resnet20]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import importlib
import importlib.metadata
import importlib.util
import io
import os
import statistics
import sys
import time
import types
from dataclasses import dataclass, field
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from losslab import create_model, load_dataset
from losslab.landscape import Directions, surface

PEERS = ("nngeom", "gradfield", "landscaper", "loss-landscape-3d")
CRUNCH = "loss-landscape crunch"
MODELS = ("tiny_cnn", "small_cnn", "resnet20")


class Unavailable(Exception):
    """A tool that cannot run here (not installed, no directory given): its row says why."""


class TinyCNN(nn.Module):
    """conv 1→16 3x3, ReLU, max-pool 2, conv 16→32 3x3, ReLU, global average pool, 32→10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


@dataclass
class Problem:
    """One model with its data, directions and grid."""

    name: str
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    batches: list
    dirs: list[dict]
    xs: np.ndarray
    names: list[str] = field(init=False)

    def __post_init__(self):
        self.names = [n for n, _ in self.model.named_parameters()]

    def dir_lists(self) -> list[list[torch.Tensor]]:
        return [[d[n] for n in self.names] for d in self.dirs]


# -- problems ------------------------------------------------------------------------------------
def _digits(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    s = load_dataset("digits")
    x = (s.train.x - s.mean[0]) / s.std[0]
    return x.to(dtype), s.train.y.long()


def _cifar_like(n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return x.to(dtype), y


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "tiny_cnn":
        return TinyCNN()
    if name == "small_cnn":
        return create_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    return create_model("resnet20", num_classes=10, in_channels=3, image_size=32)


def build_problem(name: str, args, digits) -> Problem:
    model = _model(name).to(args.torch_dtype).eval()
    x, y = digits if name != "resnet20" else _cifar_like(args.n, args.torch_dtype)
    batches = [(x[i:i + args.batch], y[i:i + args.batch]) for i in range(0, len(y), args.batch)]
    dirs = Directions.random(dict(model.named_parameters()), n=2, seed=0).directions
    xs = np.linspace(-1.0, 1.0, args.grid)
    return Problem(name, model, x, y, batches, dirs, xs)


def mean_ce(net: nn.Module, batches) -> torch.Tensor:
    """Mean cross-entropy over all examples of ``batches`` (the loss given to the peers whose
    API takes a user loss of the model and "the data")."""
    total = sum(F.cross_entropy(net(xb), yb, reduction="sum") for xb, yb in batches)
    return total / sum(len(yb) for _, yb in batches)


# -- the tools: each returns the loss grid in losslab's layout, loss[i, j] at (xs[j], xs[i]) ------
def run_losslab(p: Problem, net: nn.Module) -> np.ndarray:
    res = surface(net, net, p.dirs, grid=(-1.0, 1.0, len(p.xs)), batches=p.batches,
                  progress=False)
    return res.loss.numpy()


def _require(dist: str) -> str:
    """The installed version of ``dist``, else :class:`Unavailable`."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise Unavailable("not installed") from None


def run_nngeom(p: Problem, net: nn.Module) -> np.ndarray:
    from nngeom import Model
    from nngeom.lossland import plane_slice_2d

    flat = [np.concatenate([t.detach().double().numpy().ravel() for t in d])
            for d in p.dir_lists()]
    model = Model(net, loss_fn=mean_ce)
    res = plane_slice_2d(model, p.batches, span=1.0, steps=len(p.xs), directions=flat)
    return res.losses


def run_gradfield(p: Problem, net: nn.Module) -> np.ndarray:
    from gradfield.sampler import sample_grid
    from gradfield.torch_adapter import model_loss_fn

    d1, d2 = p.dir_lists()
    given = iter([t.clone() for pair in zip(d1, d2, strict=True) for t in pair])
    with mock.patch.object(torch, "randn_like", lambda *a, **k: next(given)):
        fn = model_loss_fn(net, F.cross_entropy, p.x, p.y)
    if next(given, None) is not None:
        raise RuntimeError("gradfield asked for fewer random tensors than the directions hold")
    return sample_grid(fn, (-1.0, 1.0), (-1.0, 1.0), len(p.xs))["Z"]


def _landscaper_compute():
    """``landscaper.compute`` without the package ``__init__`` (topology / plotting imports)."""
    if "landscaper.compute" not in sys.modules:
        spec = importlib.util.find_spec("landscaper")
        pkg = types.ModuleType("landscaper")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["landscaper"] = pkg
    return importlib.import_module("landscaper.compute")


def run_landscaper(p: Problem, net: nn.Module) -> np.ndarray:
    compute = _landscaper_compute()
    n = len(p.xs)
    with torch.no_grad():
        theta = float(torch.sqrt(sum((t ** 2).sum() for t in net.parameters())))
        d_norm = float(torch.sqrt(sum((t ** 2).sum() for t in p.dir_lists()[0])))
    distance = (2.0 / (n - 1)) * d_norm * (n / 2) / theta
    quiet = io.StringIO()
    with (mock.patch.object(compute, "normalize_direction", lambda d, _params: d),
          contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet)):
        loss, _ = compute.compute_loss_landscape(
            net, p.batches, p.dir_lists(), lambda m, b: float(mean_ce(m, b)), steps=n,
            distance=distance, dim=2, device="cpu")
    return loss.T


def run_loss_landscape_3d(p: Problem, net: nn.Module) -> np.ndarray:
    from loss_landscape_3d.calculator import LossLandscapeCalculator

    calc = LossLandscapeCalculator(net, p.batches, nn.CrossEntropyLoss(), device="cpu")
    # a copy: the README's center_state=model.state_dict() aliases the live weights, which
    # every load_state_dict overwrites, so the centre drifts point after point
    centre = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return calc.calculate(p.xs, p.xs, p.dirs[0], p.dirs[1], centre).T


def load_crunch(path: str | None):
    """loss-landscape's ``evaluation``, ``net_plotter`` and ``scheduler`` from ``path``."""
    if path is None:
        raise Unavailable("skipped: pass --loss-landscape DIR (git clone "
                          "https://github.com/tomgoldstein/loss-landscape DIR)")
    if not os.path.isfile(os.path.join(path, "net_plotter.py")):
        raise Unavailable(f"skipped: {path} has no net_plotter.py")
    if path not in sys.path:
        sys.path.insert(0, path)
    for name in ("h5py", "model_loader"):  # imported by net_plotter, unused by set_weights
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    return tuple(importlib.import_module(m) for m in ("evaluation", "net_plotter", "scheduler"))


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def run_crunch(p: Problem, net: nn.Module, modules, batch: int) -> np.ndarray:
    evaluation, net_plotter, scheduler = modules
    loader = DataLoader(TensorDataset(p.x, p.y), batch_size=batch, shuffle=False)
    w = net_plotter.get_weights(net)
    d = p.dir_lists()
    losses = -np.ones((len(p.xs), len(p.xs)))
    inds, coords, _ = scheduler.get_job_indices(losses, p.xs, p.xs, None)
    criterion = nn.CrossEntropyLoss()
    with default_dtype(p.x.dtype):
        for count, ind in enumerate(inds):
            net_plotter.set_weights(net, w, d, coords[count])
            loss, _acc = evaluation.eval_loss(net, criterion, loader, False)
            losses.ravel()[ind] = loss
    return losses


# -- measurement ---------------------------------------------------------------------------------
@dataclass
class Row:
    tool: str
    version: str = ""
    times: list[float] = field(default_factory=list)
    grid: np.ndarray | None = None
    note: str = ""


# modules each peer's runner imports: imported before anything is timed
IMPORTS = {"nngeom": ("nngeom", "nngeom.lossland"),
           "gradfield": ("gradfield.sampler", "gradfield.torch_adapter"),
           "landscaper": (), "loss-landscape-3d": ("loss_landscape_3d.calculator",)}
RUNNERS = {"nngeom": run_nngeom, "gradfield": run_gradfield, "landscaper": run_landscaper,
           "loss-landscape-3d": run_loss_landscape_3d}


def _load_peer(dist: str):
    version = _require(dist)
    try:
        for name in IMPORTS[dist]:
            importlib.import_module(name)
        if dist == "landscaper":
            _landscaper_compute()
    except ImportError as e:
        raise Unavailable(f"installed but its import failed: {e}") from None
    return version, RUNNERS[dist]


def tools(args) -> list[tuple[str, str, object]]:
    """``(name, version, runner(problem, net) -> grid)``, or an Unavailable in place of the
    runner for a tool that cannot run (its row says why)."""
    out = [("losslab", importlib.metadata.version("losslab"), run_losslab)]
    for dist in PEERS:
        try:
            out.append((dist, *_load_peer(dist)))
        except Unavailable as e:
            out.append((dist, "", e))
    try:
        modules = load_crunch(args.loss_landscape)
        out.append((CRUNCH, "git clone",
                    lambda p, net: run_crunch(p, net, modules, args.batch)))
    except Unavailable as e:
        out.append((CRUNCH, "", e))
    except Exception as e:  # an import that fails for another reason: say so, run the rest
        out.append((CRUNCH, "", Unavailable(f"import failed: {type(e).__name__}: {e}")))
    return out


def time_one(runner, p: Problem) -> tuple[float, np.ndarray]:
    net = copy.deepcopy(p.model)
    start = time.perf_counter()
    grid = runner(p, net)
    return time.perf_counter() - start, np.asarray(grid, dtype=np.float64)


def measure(p: Problem, tool_list, repeats: int) -> list[Row]:
    """Each tool: one untimed 3x3 surface (first-call costs: lazy imports, kernel caches),
    then ``repeats`` timed surfaces, the tools' order alternating between repeats."""
    rows = [Row(name, version) for name, version, _ in tool_list]
    warm = dataclasses.replace(p, xs=np.linspace(-1.0, 1.0, 3))
    for r in range(-1, repeats):
        order = list(range(len(tool_list)))
        for k in (order if r % 2 == 0 else order[::-1]):
            runner, row = tool_list[k][2], rows[k]
            if isinstance(runner, Unavailable):
                row.note = str(runner)
                continue
            if row.note.startswith("failed"):
                continue
            try:
                elapsed, grid = time_one(runner, warm if r < 0 else p)
            except Exception as e:
                row.note = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
                continue
            if r >= 0:
                row.times.append(elapsed / grid.size)
                row.grid = grid if row.grid is None else row.grid
    return rows


def diff_text(row: Row, ref: np.ndarray) -> str:
    if row.grid.shape != ref.shape:
        return f"shape {row.grid.shape} != {ref.shape}"
    diff = np.abs(row.grid - ref)
    text = f"{diff.max():.2e}"
    if row.tool == "landscaper":  # its jittered maximum: the largest point of the true grid
        keep = np.ones(ref.size, dtype=bool)
        keep[np.argmax(ref)] = False
        text += f" ({diff.ravel()[keep].max():.2e} without its jittered max point)"
    return text


def print_table(p: Problem, rows: list[Row]) -> dict[str, float]:
    n_params = sum(t.numel() for t in p.model.parameters())
    ours = rows[0]
    print(f"\n### {p.name}: {n_params} parameters, {len(p.y)} examples, "
          f"{p.x.dtype}, grid {len(p.xs)}x{len(p.xs)}")
    if ours.grid is None:
        print(f"losslab did not run: {ours.note}")
        return {}
    base = statistics.median(ours.times)
    print(f"losslab loss at centre {ours.grid[len(p.xs) // 2, len(p.xs) // 2]:.6f}, "
          f"over the grid {ours.grid.min():.4f} .. {ours.grid.max():.4f}")
    print("| tool | version | s/point | ratio tool/losslab | max abs loss diff vs losslab | note |")
    print("|---|---|---|---|---|---|")
    ratios = {}
    for row in rows:
        if not row.times:
            print(f"| {row.tool} | {row.version or '-'} | - | - | - | {row.note} |")
            continue
        t = statistics.median(row.times)
        ratio = t / base
        if row is not ours:
            ratios[row.tool] = ratio
        print(f"| {row.tool} | {row.version} | {t:.5f} | "
              f"{'1.00 (reference)' if row is ours else f'**{ratio:.2f}x**'} | "
              f"{'-' if row is ours else diff_text(row, ours.grid)} | {row.note} |")
    return ratios


def summary(results: dict[str, dict[str, float]], dtype: str) -> None:
    print(f"\nTargets ({dtype}; ratio tool/losslab):")
    for tool in (*PEERS, CRUNCH):
        target = 2.0 if tool == CRUNCH else 1.0
        got = {m: r[tool] for m, r in results.items() if tool in r}
        if not got:
            print(f"- losslab >= {target:.1f}x {tool}: not measured")
            continue
        verdict = "met" if all(v >= target for v in got.values()) else "missed"
        detail = ", ".join(f"{m} {v:.2f}x" for m, v in got.items())
        missing = [m for m in results if m not in got]
        tail = f" (not measured on {', '.join(missing)})" if missing else ""
        print(f"- losslab >= {target:.1f}x {tool}: {verdict} ({detail}){tail}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=21, help="points per axis on [-1, 1] (odd)")
    ap.add_argument("--repeats", type=int, default=1, help="timed surfaces per tool (median)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--batch", type=int, default=256, help="evaluation batch size")
    ap.add_argument("--n", type=int, default=500, help="random CIFAR-shaped images (resnet20)")
    ap.add_argument("--loss-landscape", default=None, metavar="DIR",
                    help="a clone of https://github.com/tomgoldstein/loss-landscape")
    ap.add_argument("--models", default=",".join(MODELS),
                    help=f"comma-separated, from {','.join(MODELS)}")
    args = ap.parse_args()
    if args.grid % 2 != 1 or args.grid < 3:
        ap.error("--grid must be odd and >= 3 so that 0 is a grid point")
    models = args.models.split(",")
    if unknown := set(models) - set(MODELS):
        ap.error(f"--models: unknown {sorted(unknown)}")
    args.torch_dtype = getattr(torch, args.dtype)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, {args.dtype}, "
          f"python {sys.version.split()[0]}; grid {args.grid}x{args.grid} on [-1, 1]^2, "
          f"batch {args.batch}, {args.repeats} repeat(s); load average at start "
          f"{os.getloadavg()[0]:.2f}")

    tool_list = tools(args)
    digits = _digits(args.torch_dtype)
    problems = [build_problem(m, args, digits) for m in models]
    with torch.no_grad():  # warm-up: one forward of each model
        for p in problems:
            p.model(p.batches[0][0])
    results = {p.name: print_table(p, measure(p, tool_list, args.repeats)) for p in problems}
    summary(results, args.dtype)


if __name__ == "__main__":
    main()
