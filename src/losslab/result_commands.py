"""The commands that compute one result and draw it: ``losslab landscape``, ``losslab curve``
and ``losslab ensemble``. Each yields the lines it reports, a compact table
(:mod:`losslab.console`) among them, as they come (:mod:`losslab.cli` prints them), and writes
its JSON with its page and figures beside it (:mod:`losslab.report.result_page`); the parser and
the study commands are :mod:`losslab.cli`'s."""

from __future__ import annotations

import argparse
import datetime as _dt
import shlex
from collections.abc import Iterator
from pathlib import Path

from losslab.errors import InputError

__all__ = ["cmd_ensemble", "cmd_curve", "cmd_landscape", "time_stamp"]


def time_stamp() -> str:
    """The local time as in default output names (``runs/20261203-101500-...``)."""
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _write_result(path: Path, result: dict) -> Iterator[str]:
    """The result as JSON, and beside it its page and figures; say where."""
    from losslab.report.result_page import write_result_page
    from losslab.runs.atomic import atomic_write_json

    atomic_write_json(path, result)
    page = write_result_page(path, result)
    yield f"written: {path}\npage: {page} (figures in {page.parent / 'figures' / page.stem})"


def cmd_ensemble(args: argparse.Namespace) -> Iterator[str]:
    from losslab.console import ensemble_summary
    from losslab.ensembles.analyze import analyze_ensemble
    from losslab.ensembles.members import collect_checkpoints

    checkpoints = collect_checkpoints(args.paths, role=args.role)
    result = analyze_ensemble(checkpoints, split=args.split, combine=args.combine,
                              swa=not args.no_swa)
    yield ensemble_summary(result)
    yield from _write_result(Path(args.out) / "ensemble.json", {"role": args.role, **result})


def _curve_fit(args: argparse.Namespace) -> Iterator[str]:
    """Fit, then evaluate the fitted curve at ``--points`` values of t: the error along it is
    what a fit is for (the run's own val/test metrics are at one t only)."""
    from losslab.curves import curve_runs
    from losslab.runs.metrics import read_metrics

    if len(args.paths) != 2:
        raise InputError("curve fit needs START and END (run directories or checkpoints)")
    out = Path(args.out) if args.out else Path("runs") / f"{time_stamp()}-curve"
    args.remedy = f"losslab resume {shlex.quote(str(out))}"
    run_dir = curve_runs.fit_curve(*args.paths, out, bends=args.bends, kind=args.kind,
                                   overrides=args.set)
    last = read_metrics(run_dir)[-1]
    yield (f"curve run: {run_dir}\nepochs {last['epoch']}, train objective (loss at a random t "
          f"+ weight decay) {last['train_loss']:.4f}")
    yield from _curve_evaluate(run_dir, args.points or 11, run_dir)


def _curve_evaluate(run: Path | str, points: int, out: Path) -> Iterator[str]:
    from losslab.console import curve_evaluate_summary
    from losslab.curves import curve_runs

    result = curve_runs.evaluate_curve_run(run, points=points)
    yield curve_evaluate_summary(result)
    yield from _write_result(out / "curve_evaluate.json", {"run": str(run), **result})


def cmd_curve(args: argparse.Namespace) -> Iterator[str]:
    from losslab.console import curve_plane_summary
    from losslab.curves import curve_runs

    if args.action != "plane" and (args.backend, args.workers, args.address) != ("local", None, None):
        raise InputError(f"curve {args.action} runs in one process; --backend ray spreads the "
                         "points of curve plane")
    if args.action == "fit":
        yield from _curve_fit(args)
        return
    if len(args.paths) != 1:
        raise InputError(f"curve {args.action} takes one curve run (or its checkpoint)")
    out = Path(args.out or ".")
    if args.action == "evaluate":
        yield from _curve_evaluate(args.paths[0], args.points or 61, out)
        return
    from losslab.landscape.spread import map_workers

    workers = map_workers(args.backend, args.workers, args.address, args.worker_threads)
    result = curve_runs.plane_of_curve_run(args.paths[0], grid=args.grid, split=args.split,
                                           workers=workers)
    yield curve_plane_summary(result, args.grid)
    yield from _write_result(out / "curve_plane.json", {"run": args.paths[0], **result})


def cmd_landscape(args: argparse.Namespace) -> Iterator[str]:
    from losslab.console import landscape_summary
    from losslab.landscape.grid_io import grid_paths
    from losslab.landscape.spread import map_workers
    from losslab.landscape.study_analysis import RESUMABLE, compute_landscape

    # A map's finished points are kept in --out until it is complete, so the same command
    # run again after a kill computes only the missing ones (the file is checked to hold
    # this very map: other weights, grid, data or BN policy are refused, never mixed in).
    partial = Path(args.out) / f"landscape_{args.kind}.partial" if args.kind in RESUMABLE \
        else None
    if partial is not None and grid_paths(partial)[0].exists():
        yield f"continuing from {grid_paths(partial)[0]}"
    result = compute_landscape(args.kind, args.runs, split=args.split, examples=args.examples,
                               points=args.points, span=args.span,
                               normalization=args.normalization, bn=args.bn,
                               centered=not args.uncentered, lanczos_steps=args.lanczos_steps,
                               operator=args.operator, per_layer=args.per_layer,
                               directions=args.directions, path=partial,
                               workers=map_workers(args.backend, args.workers, args.address,
                                                   args.worker_threads))
    yield landscape_summary(args.kind, result)
    yield from _write_result(Path(args.out) / f"landscape_{args.kind}.json",
                  {"kind": args.kind, "runs": args.runs, **result})
    for done in grid_paths(partial) if partial is not None else ():
        done.unlink(missing_ok=True)  # the result is written: nothing left to continue
