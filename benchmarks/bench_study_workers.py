"""A study of many small runs: kept worker processes against a fresh process per run.

The same planned runs (MNIST-1D, the 1-D CNN, ``--epochs`` epochs each, ``--runs`` seeds) are
trained twice on ``--workers`` slots:

* fresh: each run in a new ``python -m losslab.studies.worker STUDY_DIR RUN_ID`` process, the
  local backend's former way; every run pays for importing torch and its compiler stack;
* kept: :class:`losslab.studies.backends.local.LocalBackend`, one worker process per slot that
  trains run after run.

Both write the same run directories (a test checks a kept worker's metrics against fresh
processes', ``tests/test_studies.py``); only the wall time differs.

Usage::

    python benchmarks/bench_study_workers.py                # 16 runs of 4 epochs, 2 slots
    python benchmarks/bench_study_workers.py --runs 8 --epochs 48
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from losslab.studies import run_study
from losslab.studies.study_dir import StudyDir


def write_study(root: Path, runs: int, epochs: int) -> Path:
    tree = {"name": "bench_workers", "seeds": list(range(runs)),
            "base": {"epochs": epochs, "log": {"progress": False, "tensorboard": False},
                     "data": {"name": "mnist1d", "batch_size": 128},
                     "model": {"name": "cnn1d"}}}
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def fresh_processes(study_dir: Path, run_ids: list[str], workers: int, threads: int) -> None:
    """Each run in its own new process, ``workers`` at a time."""
    queue, running = list(run_ids), []
    while queue or running:
        while queue and len(running) < workers:
            running.append(subprocess.Popen(
                [sys.executable, "-m", "losslab.studies.worker", str(study_dir), queue.pop(0),
                 "--threads", str(threads)], stdout=subprocess.DEVNULL))
        for proc in list(running):
            if proc.poll() is not None:
                if proc.returncode:
                    raise SystemExit(f"a fresh worker failed with status {proc.returncode}")
                running.remove(proc)
        time.sleep(0.05)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=16)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = write_study(root, args.runs, args.epochs)
        # Plan (and cache the data set) once with one run, then clear it: both arms start from
        # the same plan with no run trained.
        out = root / "study"
        run_study(path, out, workers=1)
        run_ids = [r.run_id for r in StudyDir(out).planned_runs()]
        threads = 1

        def clear() -> None:
            shutil.rmtree(out / "runs", ignore_errors=True)

        clear()
        t0 = time.perf_counter()
        fresh_processes(out, run_ids, args.workers, threads)
        fresh = time.perf_counter() - t0
        clear()
        t0 = time.perf_counter()
        outcome = run_study(path, out, workers=args.workers)
        kept = time.perf_counter() - t0  # includes the study's records and summary
        assert outcome.counts == {"finished": args.runs}, outcome.counts
    print(f"{args.runs} runs x {args.epochs} epochs (MNIST-1D, cnn1d), {args.workers} slots")
    print(f"fresh process per run: {fresh:7.1f} s ({fresh / args.runs:.2f} s a run)")
    print(f"kept worker per slot:  {kept:7.1f} s ({kept / args.runs:.2f} s a run)")
    print(f"speed-up: {fresh / kept:.2f}x")


if __name__ == "__main__":
    main()
