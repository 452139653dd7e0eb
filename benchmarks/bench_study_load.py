"""Load: a study of many tiny runs on the local and the Ray backend, with the driver's memory.

A study of ``--runs`` runs (digits, an MLP with one hidden layer of 16 units, 1 epoch of 3
batches of 512: the smallest run losslab trains) is run with ``--workers`` slots on each
backend. What is measured is what a study costs beyond its training: the driver's bookkeeping
per run (status, records, the aggregates, the report) and the workers' or tasks' start-up.
Each backend runs in a fresh process of its own, so that its peak memory is its own:

* driver peak RSS: ``getrusage(RUSAGE_SELF).ru_maxrss`` of that process, which plans the
  study, drives the backend and builds ``results.parquet``, ``summary.csv`` and the report;
* largest child peak RSS: ``getrusage(RUSAGE_CHILDREN).ru_maxrss``, the largest waited-for
  descendant (local: a worker process; Ray: its GCS server, raylet or a worker).

Each arm checks that every run finished and that ``results.parquet`` holds one row per run
and epoch; a check that fails stops the benchmark.

Usage::

    python benchmarks/bench_study_load.py                      # 60 runs, 2 workers, both
    python benchmarks/bench_study_load.py --runs 20 --backends local
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

EPOCHS = 1


def write_study(root: Path, runs: int) -> Path:
    tree = {"name": "bench_load", "seeds": list(range(runs)),
            "base": {"epochs": EPOCHS, "log": {"progress": False, "tensorboard": False},
                     "data": {"name": "digits", "batch_size": 512},
                     "model": {"name": "mlp", "options": {"hidden_sizes": [16]}}},
            "resources": {"cpus": 1, "gpus": 0}}
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def _mib(maxrss: int) -> float:
    """``ru_maxrss`` in MiB: KiB on Linux, bytes on macOS."""
    return maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def one_arm(backend: str, runs: int, workers: int, root: Path) -> dict:
    """Run the study on ``backend`` in this process; the measurements as a dict."""
    import pandas as pd

    from losslab.studies import run_study

    path = write_study(root, runs)
    out = root / f"study-{backend}"
    t0 = time.perf_counter()
    outcome = run_study(path, out, backend=backend, workers=workers, progress=False)
    wall = time.perf_counter() - t0
    results = pd.read_parquet(out / "results.parquet")
    per_run = results.groupby("run_id").size()
    complete = (outcome.counts == {"finished": runs} and len(per_run) == runs
                and bool((per_run == EPOCHS).all()))
    return {"backend": backend, "runs": runs, "workers": workers, "wall_s": wall,
            "counts": outcome.counts, "rows": len(results), "complete": complete,
            "driver_peak_mib": _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
            "child_peak_mib": _mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--backends", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    p.add_argument("--one", choices=["local", "ray"], help=argparse.SUPPRESS)  # a child arm
    p.add_argument("--root", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one_arm(args.one, args.runs, args.workers, Path(args.root))))
        return
    rows = []
    for backend in args.backends:
        if backend == "ray":
            try:
                import ray  # noqa: F401
            except ImportError:
                print("ray: skipped (ray is not installed; pip install ray)")
                continue
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run([sys.executable, __file__, "--one", backend, "--runs",
                                   str(args.runs), "--workers", str(args.workers), "--root", tmp],
                                  capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{backend}: the study failed\n{done.stderr[-4000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        if not row["complete"]:
            raise SystemExit(f"{backend}: incomplete: {row}")
        rows.append(row)
    print(f"{args.runs} runs (digits, mlp 16, {EPOCHS} epoch), --workers {args.workers}")
    print("| backend | runs finished | results rows | wall | per run | driver peak RSS | "
          "largest child peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['counts'].get('finished', 0)}/{r['runs']} | {r['rows']} | "
              f"{r['wall_s']:.1f} s | {r['wall_s'] / r['runs']:.2f} s | "
              f"{r['driver_peak_mib']:.0f} MiB | {r['child_peak_mib']:.0f} MiB |")


if __name__ == "__main__":
    main()
