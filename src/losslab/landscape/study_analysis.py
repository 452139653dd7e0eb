"""The study analysis ``landscape``: maps of a study's trained models, for the report.

Options (beside ``name: landscape``):

* ``kind``: ``surface`` (a filter-normalized random plane around each variant's final model),
  ``line`` (the interpolation between the final models of the two ``variants``, extrapolated
  over α ∈ [−0.5, 1.5]), ``trajectory`` (each variant's run on the PCA plane of its saved
  epoch checkpoints, its snapshot/FGE members marked), ``hessian`` (top eigenvalues, trace
  and spectral density of each variant's final model), ``ratio_map`` (|λmin/λmax| of the
  Hessian over a filter-normalized random plane: Li et al.'s convexity check) or ``curvature``
  (the per-layer table: each module's block of the ``operator``'s matrix, its top eigenvalue
  and trace and their shares of the whole; ``per_layer: false`` gives the whole model alone);
* ``variants`` (default: all), ``seed`` (which seed's runs the report draws; default the
  first), ``seeds`` (also compute for these seeds, or ``all``, for findings: each seed's run
  gives a ``per_run`` row of the numbers below; default: only ``seed``);
* ``directions`` (``random``): a surface's plane, random or the top / bottom two eigenvectors
  of a curvature operator at the model (``hessian_top2``, ``ggn_top2``, ``hessian_bottom2``,
  ...), normalized as ``normalization`` says;
* ``split`` (``train``, as Li et al. and loss-landscape map the training loss; ``test`` or
  ``val`` as an option), ``examples`` (evaluate on a fixed random subset of this many examples;
  0: the whole split), ``points`` (grid points per axis, odd), ``span`` (the grid's half width),
  ``normalization`` (``filter``, ``layer``, ``none``), ``bn`` (``keep``, ``recompute``, or for
  lines ``interpolate``; default: ``interpolate`` for lines, so both endpoints are exactly the
  two models, statistics included, and ``keep`` otherwise); ``operator`` (``hessian``): the
  curvature a ``hessian`` spectrum is of: ``hessian``, ``ggn`` (the generalized Gauss-Newton),
  ``fisher`` (Monte Carlo, labels from the model's predictive) or ``empirical_fisher``
  (:mod:`losslab.landscape.hessian.curvature`); ``lanczos_steps`` (30): the most
  Hessian-vector products per grid point of a ``ratio_map`` (its result says whether every
  point converged); ``centered`` (true): a ``trajectory``'s PCA centres the offsets from the
  final model on their mean, as Li et al.'s code (scikit-learn's ``PCA``); false takes the SVD
  of the offsets themselves; ``contour_levels`` (``[0.1, 10, 0.5]``: loss-landscape's
  ``plot_2D_contour`` defaults, vmin, vmax, step) and ``log_colors`` (false) set how the
  report draws loss maps: contour levels vmin, vmin + step, … < vmax, colours and the 3-D view
  clipped at vmax (stated on the colour bar), optionally on a log scale.

``per_run`` rows (``{variant, seed, ...}``, read by findings as ``<id>.<key>``), per kind:
``surface``: ``center_loss``, ``mean_rise`` (the grid's mean loss minus the centre's) and
``edge_rise`` (the same over the grid's border); ``line`` (row of the first variant):
``rise_start`` and ``rise_end`` (mean loss over α ∈ [−0.5, 0) minus loss at 0, and over
α ∈ (1, 1.5] minus loss at 1: how fast each solution's basin rises, Li et al. Figs. 2-3),
``barrier`` (max over α ∈ [0, 1] of the loss minus the larger endpoint's); ``trajectory``:
``pca_variance_2`` (the share of the offsets' variance the plane's two directions explain);
``hessian``: ``lambda_max``, ``lambda_min``, ``abs_ratio`` = |λmin/λmax|, ``trace``;
``curvature``: the whole model's ``lambda_max`` and ``trace``;
``ratio_map``: ``ratio_center`` (|λmin/λmax| at the trained model) and ``ratio_away`` (its
mean over the grid's border, a span away).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from losslab.errors import InputError
from losslab.jsonable import as_list
from losslab.landscape.directions import Directions
from losslab.landscape.evaluate import line, subset_batches, surface
from losslab.landscape.options import EvalOptions
from losslab.landscape.spread import RayWorkers, map_workers
from losslab.runs.checkpoint_set import CheckpointSet, resolve_checkpoint
from losslab.runs.device import resolve_device
from losslab.runs.rebuild import check_fits_run, config_path_of, dataset_of, model_for, split_loader
from losslab.studies.analyses import register_analysis
from losslab.studies.records import StudyRecords

__all__ = ["landscape_analysis", "compute_landscape"]

log = logging.getLogger(__name__)

KINDS = ("surface", "line", "trajectory", "hessian", "ratio_map", "curvature")
SPREADABLE = ("surface", "line", "trajectory", "ratio_map")  # the kinds whose points Ray workers can share
RESUMABLE = ("surface", "ratio_map")  # the kinds that store finished points and continue from them


def _runs(records: StudyRecords, variants: list[str], seed: int | None) -> dict[str, str]:
    """The finished run of each variant with ``seed`` (see :func:`_first_seed` for None)."""
    runs = records.runs[(records.runs["status"] == "finished") & records.runs["variant"].isin(variants)]
    runs = runs[runs["seed"] == seed]
    return {r.variant: r.run_dir for r in runs.itertuples()}


def _run_of(path: str) -> str:
    """The run directory of a run directory or of a checkpoint file in one."""
    return path if Path(path).is_dir() else str(resolve_checkpoint(path).path.parent.parent)


def _setup(path: str, o: dict[str, Any]):
    """The checkpoint ``path`` names, its run's network (checked to fit it), the batches: a
    fixed random subset of ``o["examples"]`` examples of ``o["split"]`` (0: all of it). A
    subset larger than the split is the whole split, said in a warning and recorded in
    ``o["examples"]``, rather than an error after the training it follows."""
    split, examples = o["split"], o["examples"]
    final = resolve_checkpoint(path)
    device = resolve_device("auto")
    ckpt, model, config = model_for(final, device)
    loader = split_loader(dataset_of(config), split, 1024, device)
    if examples >= loader.num_examples:
        if examples > loader.num_examples:
            log.warning("landscape: examples=%d is more than the %s split's %d; using all of "
                        "them", examples, split, loader.num_examples)
        examples = o["examples"] = 0
    batches = subset_batches(loader, examples, o["seed_data"], batch_size=1024, device=device) \
        if examples else loader
    return ckpt, model, batches, device


DIRECTIONS = ("random", *(f"{op}_{end}2" for op in ("hessian", "ggn", "fisher",
                                                     "empirical_fisher")
                          for end in ("top", "bottom")))


def _plane(o: dict[str, Any], ckpt, model, batches, device) -> Directions:
    """The plane's two directions: random (filter-normalized by default, Li et al. §4), or the
    top / bottom two eigenvectors of a curvature operator at the point (``hessian_top2``),
    normalized as ``normalization`` says (``none``: unit vectors)."""
    kind = o["directions"]
    if kind == "random":
        return Directions.random(ckpt.params, n=2, normalization=o["normalization"], seed=0)
    operator, end = kind[:-1].rsplit("_", 1)  # "hessian_top2" -> ("hessian", "top")
    op = curvature_operator(operator)(model, ckpt.params, batches=batches, buffers=ckpt.buffers,
                                      options=EvalOptions(device=device))
    return Directions.eigenvectors(op, ckpt.params, 2, normalization=o["normalization"],
                                   which="largest" if end == "top" else "smallest",
                                   ignore="biasbn" if o["normalization"] != "none" else "none",
                                   max_iter=100, tol=1e-4)


def _surface(run_dir, o) -> dict[str, Any]:
    ckpt, model, batches, device = _setup(run_dir, o)
    dirs = _plane(o, ckpt, model, batches, device)
    n, s = o["points"], o["span"]
    r = surface(model, ckpt.params, dirs.directions, batches=batches, buffers=ckpt.buffers,
                grid=(-s, s, n), options=EvalOptions(bn=o["bn"] or "keep", device=device),
                path=o.get("path"), workers=o.get("workers"))
    return {"x": as_list(r.x), "y": as_list(r.y), "loss": as_list(r.loss), "acc": as_list(r.acc),
            "axis_convention": r.metadata.get("axis_convention"), "bn": r.metadata["bn"],
            "normalization": o["normalization"], "directions": o["directions"],
            "directions_extra": dirs.extra, **_data_of(o)}


def _data_of(o: dict[str, Any]) -> dict[str, Any]:
    """Which data a map was computed on, as its caption says."""
    return {"split": o["split"], "examples": o["examples"]}


def _line(run_a, run_b, o) -> dict[str, Any]:
    a, model, batches, device = _setup(run_a, o)
    b = resolve_checkpoint(run_b).load(device)
    check_fits_run(model, b, config_path_of(a.ref))  # the line runs through one network
    r = line(model, a.params, end=b.params, batches=batches, buffers=a.buffers,
             end_buffers=b.buffers, options=EvalOptions(bn=o["bn"], device=device),
             workers=o.get("workers"))
    return {"alphas": as_list(r.alphas), "loss": as_list(r.loss), "acc": as_list(r.acc),
            "bn": r.metadata["bn"], **_data_of(o)}


def _line_along(run_dir, o) -> dict[str, Any]:
    """The loss along θ* + α·d₁ for α in [−span, span], d₁ the first of ``directions``' plane
    (the top eigenvector for ``hessian_top2``): the 1-D cut of the sharpest direction."""
    ckpt, model, batches, device = _setup(run_dir, o)
    dirs = _plane(o, ckpt, model, batches, device)
    r = line(model, ckpt.params, dirs[0], batches=batches, buffers=ckpt.buffers,
             grid=(-o["span"], o["span"], 41), options=EvalOptions(bn=o["bn"], device=device),
             workers=o.get("workers"))
    return {"alphas": as_list(r.alphas), "loss": as_list(r.loss), "acc": as_list(r.acc),
            "bn": r.metadata["bn"], "directions": o["directions"],
            "directions_extra": dirs.extra, "normalization": o["normalization"], **_data_of(o)}


def _trajectory(run_dir, o) -> dict[str, Any]:
    from losslab.landscape.trajectory import trajectory_plane

    run_dir = _run_of(run_dir)  # the path of the run a given checkpoint belongs to
    ckpt, model, batches, device = _setup(run_dir, o)
    trajectory = CheckpointSet.from_run(run_dir, role="epoch")
    final = CheckpointSet.from_run(run_dir, role="final")
    if final[0].epoch not in trajectory.epochs:  # the last epoch may not be a saved "epoch"
        trajectory = trajectory + final
    if len(trajectory) < 3:
        raise InputError(f"{run_dir}: a trajectory needs saved epoch checkpoints "
                         "(checkpoints.every)")
    members = CheckpointSet.from_run(run_dir, role=["snapshot", "fge"])
    for ref in [*trajectory, *members]:  # any file of the run may have been replaced
        check_fits_run(model, ref, config_path_of(ref))
    plane = trajectory_plane(model, trajectory, batches=batches, grid=o["points"],
                             options=EvalOptions(bn=o["bn"] or "keep", device=device),
                             centered=o["centered"],
                             members=members if len(members) else None,
                             workers=o.get("workers"))
    return {"x": as_list(plane.surface.x), "y": as_list(plane.surface.y),
            "loss": as_list(plane.surface.loss), "path": as_list(plane.path_coords),
            "path_epochs": list(plane.path_epochs),
            "explained_variance": as_list(plane.pca.explained_variance_ratio),
            "centered": o["centered"],
            "members": None if plane.member_coords is None else as_list(plane.member_coords),
            "member_labels": plane.member_labels, **_data_of(o)}


def _hessian(run_dir, o) -> dict[str, Any]:
    from losslab.landscape.hessian import hutch_plus_plus, lanczos, spectral_density

    o = {**o, "examples": o["examples"] or 512}  # a subset: the Hessian costs per example
    ckpt, model, batches, device = _setup(run_dir, o)
    op = curvature_operator(o["operator"])(model, ckpt.params, batches=batches,
                                           buffers=ckpt.buffers, options=EvalOptions(device=device))
    # The top of a trained net's spectrum is a few isolated outliers (fast, tight tolerance);
    # the bottom is a cluster of small negative values, whose residuals a float32 product
    # cannot push much below 1e-6 * λmax: a looser relative tolerance, more steps.
    top = lanczos(op, k=3, which="largest", max_iter=60, tol=1e-4, seed=0)
    bottom = lanczos(op, k=3, which="smallest", max_iter=150, tol=1e-3, seed=0)
    trace = hutch_plus_plus(op, num_products=30, seed=0)
    density = spectral_density(op, num_vectors=3, lanczos_steps=30, seed=0)
    return {"eigenvalues": as_list(torch.cat([torch.as_tensor(bottom.eigenvalues),
                                            torch.as_tensor(top.eigenvalues)])),
            "converged": bool(top.converged and bottom.converged),
            "converged_top": bool(top.converged), "converged_bottom": bool(bottom.converged),
            "lanczos_products": top.num_products + bottom.num_products,
            "trace": float(trace.estimate),
            "trace_std_error": float(trace.std_error), "grid": as_list(density.grid),
            "density": as_list(density.density), "total_products": op.num_products,
            "operator": o["operator"],
            **_data_of(o)}


def _curvature(run_dir, o) -> dict[str, Any]:
    """The per-layer curvature table (each module's diagonal block against the whole), or
    with ``per_layer`` false the whole model's row alone."""
    from losslab.landscape.hessian.per_layer import per_layer_curvature

    o = {**o, "examples": o["examples"] or 512}
    ckpt, model, batches, device = _setup(run_dir, o)
    r = per_layer_curvature(model, ckpt.params, batches=batches, buffers=ckpt.buffers,
                            operator=o["operator"], groups="modules" if o["per_layer"] else [],
                            options=EvalOptions(device=device), top_k=1, trace_products=30,
                            max_iter=60, tol=1e-4, seed=0)
    return {**r, **_data_of(o)}


def curvature_operator(name: str):
    """The operator class an analysis's ``operator`` option names."""
    from losslab.landscape.hessian.curvature import operator_class

    try:
        return operator_class(name)
    except InputError as e:
        raise InputError(f"landscape: {e}") from None


def _ratio_map(run_dir, o) -> dict[str, Any]:
    from losslab.landscape.ratio_map import eigenvalue_ratio_map

    o = {**o, "examples": o["examples"] or 256}
    ckpt, model, batches, device = _setup(run_dir, o)
    dirs = Directions.random(ckpt.params, n=2, normalization=o["normalization"], seed=0)
    n, s = o["points"], o["span"]
    r = eigenvalue_ratio_map(model, ckpt.params, dirs.directions, batches=batches,
                             buffers=ckpt.buffers, grid=(-s, s, n),
                             options=EvalOptions(device=device), max_iter=o["lanczos_steps"],
                             path=None if o.get("path") is None else str(o["path"]),
                             workers=o.get("workers"))
    return {"x": as_list(r.x), "y": as_list(r.y), "ratio": as_list(r.ratio),
            "normalization": o["normalization"],
            "lambda_max": as_list(r.lambda_max), "lambda_min": as_list(r.lambda_min),
            "all_converged": bool(torch.as_tensor(r.converged).all()),
            "num_products": r.num_products, **_data_of(o),
            "lanczos_steps": o["lanczos_steps"]}


def _border(grid: np.ndarray) -> np.ndarray:
    return np.concatenate([grid[0], grid[-1], grid[1:-1, 0], grid[1:-1, -1]])


def summary(kind: str, r: dict[str, Any]) -> dict[str, float]:
    """The scalar numbers of one result that findings compare (see the module docstring)."""
    if kind == "surface":
        loss = np.asarray(r["loss"], dtype=float)
        c = loss[loss.shape[0] // 2, loss.shape[1] // 2]
        return {"center_loss": float(c), "mean_rise": float(loss.mean() - c),
                "edge_rise": float(_border(loss).mean() - c)}
    if kind == "line":
        a, loss = np.asarray(r["alphas"], dtype=float), np.asarray(r["loss"], dtype=float)
        at0, at1 = loss[np.argmin(abs(a))], loss[np.argmin(abs(a - 1))]
        inside = (a >= 0) & (a <= 1)
        return {"rise_start": float(loss[a < 0].mean() - at0),
                "rise_end": float(loss[a > 1].mean() - at1),
                "barrier": float(loss[inside].max() - max(at0, at1))}
    if kind == "trajectory":
        return {"pca_variance_2": float(sum(r["explained_variance"][:2]))}
    if kind == "curvature":
        whole = r["whole"]
        return {"lambda_max": float(whole["top_eigenvalues"][0]), "trace": float(whole["trace"])}
    if kind == "hessian":
        ev = np.asarray(r["eigenvalues"], dtype=float)
        return {"lambda_max": float(ev.max()), "lambda_min": float(ev.min()),
                "abs_ratio": float(abs(ev.min() / ev.max())), "trace": float(r["trace"])}
    ratio = np.asarray(r["ratio"], dtype=float)
    return {"ratio_center": float(ratio[ratio.shape[0] // 2, ratio.shape[1] // 2]),
            "ratio_away": float(_border(ratio).mean())}


_COMPUTE = {"surface": _surface, "trajectory": _trajectory, "hessian": _hessian,
            "ratio_map": _ratio_map, "curvature": _curvature}  # one model each; "line" takes two


def _options(kind: str, **options: Any) -> dict[str, Any]:
    """The options every computation reads (the data subset's seed fixed at 0)."""
    if kind not in KINDS:
        raise InputError(f"landscape: kind must be one of {KINDS}, got {kind!r}")
    curvature_operator(options.get("operator", "hessian"))  # a wrong name fails before work
    if options.get("directions", "random") not in DIRECTIONS:
        raise InputError(f"landscape: directions must be one of {DIRECTIONS}, got "
                         f"{options.get('directions')!r}")
    return {**options, "seed_data": 0}


def _spread(kind: str, workers: RayWorkers | None) -> RayWorkers | None:
    if workers is not None and kind not in SPREADABLE:
        raise InputError(f"landscape {kind} runs in one process; backend 'ray' spreads "
                         f"{', '.join(SPREADABLE)}")
    return workers


def compute_landscape(kind: str, run_dirs: list[str], *, split: str = "train", examples: int = 0,
                      points: int = 11, span: float = 1.0, normalization: str = "filter",
                      bn: str | None = None, lanczos_steps: int = 30,
                      centered: bool = True, operator: str = "hessian",
                      per_layer: bool = True, directions: str = "random",
                      path: str | Path | None = None,
                      workers: RayWorkers | None = None) -> dict[str, Any]:
    """One landscape computation on run directories or checkpoint files (two for ``line``;
    a run directory stands for its final model): what the CLI runs.

    ``path`` (kinds in :data:`RESUMABLE`): where finished grid points are stored as they are
    computed, so a computation stopped at any moment and started again with the same
    arguments evaluates only the missing points; a file there that describes another map
    (other weights, grid, data or BN policy) is an error, never mixed in.

    ``workers`` (kinds in :data:`SPREADABLE`): a :class:`~losslab.landscape.spread.RayWorkers`
    spreads the map's points over Ray workers (the same numbers; None: this process).
    """
    if path is not None and kind not in RESUMABLE:
        raise InputError(f"landscape {kind} cannot store partial results; only {RESUMABLE} can")
    options = _options(kind, split=split, examples=examples, points=points, span=span,
                       normalization=normalization, bn=bn, lanczos_steps=lanczos_steps,
                       centered=centered, operator=operator, per_layer=per_layer,
                       directions=directions)
    options["path"] = path
    options["workers"] = _spread(kind, workers)
    if kind == "line" and directions != "random":
        if len(run_dirs) != 1:
            raise InputError(f"landscape line along {directions} takes one run")
        return _line_along(run_dirs[0], options)
    if kind == "line":
        if len(run_dirs) != 2:
            raise InputError("landscape line needs exactly two runs (start and end), or one "
                             "run and --directions (e.g. hessian_top2)")
        return _line(run_dirs[0], run_dirs[1], options)
    if len(run_dirs) != 1:
        raise InputError(f"landscape {kind} takes one run")
    return _COMPUTE[kind](run_dirs[0], options)


@register_analysis("landscape")
def landscape_analysis(records: StudyRecords, *, kind: str = "surface",
                       variants: list[str] | None = None, seed: int | None = None,
                       seeds: list[int] | str | None = None, split: str = "train",
                       examples: int = 0, points: int = 11, span: float = 1.0, normalization: str = "filter",
                       bn: str | None = None, lanczos_steps: int = 30,
                       centered: bool = True, operator: str = "hessian",
                       per_layer: bool = True, directions: str = "random",
                       contour_levels: tuple[float, float, float] = (0.1, 10.0, 0.5),
                       log_colors: bool = False, backend: str = "local",
                       workers: int | None = None, address: str | None = None,
                       worker_threads: int = 1) -> dict[str, Any]:
    """Loss surfaces, interpolations, PCA trajectories or Hessian spectra of the final models.

    ``backend: ray`` (with ``workers``, ``address``, ``worker_threads``) spreads each map's
    points over Ray workers (:mod:`~losslab.landscape.spread`; kinds in :data:`SPREADABLE`):
    the same numbers, so these options do not count as the analysis's inputs."""
    chosen = list(variants) if variants else list(records.variants)
    options = _options(kind, split=split, examples=examples, points=points, span=span,
                       normalization=normalization, bn=bn, lanczos_steps=lanczos_steps,
                       centered=centered, operator=operator, per_layer=per_layer,
                       directions=directions)
    options["workers"] = _spread(kind, map_workers(backend, workers, address, worker_threads))
    vmin, vmax, step = (float(v) for v in contour_levels)
    if not 0 < step < vmax - vmin:  # fails here, not when the report is drawn
        raise InputError(f"landscape: contour_levels [vmin, vmax, step] need 0 < step < "
                         f"vmax - vmin, got {list(contour_levels)}")
    out: dict[str, Any] = {"kind": kind, "split": split, "examples": examples, "results": {},
                           "display": {"levels": [vmin, vmax, step], "log": bool(log_colors)}}
    if kind == "line" and len(chosen) != 2:
        raise InputError("landscape: kind 'line' needs exactly two variants")
    first = _first_seed(records, seed, chosen)
    extra = _seed_list(records, seeds, first)
    per_run: list[dict[str, Any]] = []
    for s in [first, *extra]:
        results = _compute_all(kind, chosen, _runs(records, chosen, s), options)
        if s == first:
            out["results"] = results
        for name, r in results.items():
            if "error" not in r:
                variant = chosen[0] if kind == "line" else name
                per_run.append({"variant": variant, "seed": s, **summary(kind, r)})
    out["seed"], out["seeds"], out["per_run"] = first, [first, *extra], per_run
    out["examples"] = options["examples"]  # 0 if the subset asked for was the whole split
    return out


def _first_seed(records: StudyRecords, seed: int | None, variants: list[str]) -> int | None:
    """``seed``, or the smallest seed of the variants' finished runs."""
    if seed is not None:
        return int(seed)
    runs = records.runs
    finished = runs[(runs["status"] == "finished") & runs["variant"].isin(variants)]
    return int(finished["seed"].min()) if len(finished) else None


def _seed_list(records: StudyRecords, seeds: list[int] | str | None, first: int | None) -> list[int]:
    """The seeds beyond ``first`` to compute for ``per_run`` rows."""
    if seeds is None:
        return []
    if seeds == "all":
        seeds = sorted(int(x) for x in records.runs["seed"].unique())
    elif isinstance(seeds, str) or not all(isinstance(x, int) for x in seeds):
        raise InputError(f"landscape: seeds must be a list of seeds or 'all', got {seeds!r}")
    return [int(x) for x in seeds if int(x) != first]


def _compute_all(kind: str, chosen: list[str], runs: dict[str, str],
                 options: dict[str, Any]) -> dict[str, Any]:
    """One seed's results: the line between the two variants, or each variant's map."""
    if kind == "line":
        if not all(v in runs for v in chosen):
            return {}
        return {f"{chosen[0]} → {chosen[1]}": _line(runs[chosen[0]], runs[chosen[1]], options)}
    results = {}
    for variant in chosen:
        if variant in runs:
            try:
                results[variant] = _COMPUTE[kind](runs[variant], options)
            except Exception as e:  # one variant's failure does not hide the others
                results[variant] = {"error": f"{type(e).__name__}: {e}"}
    return results
