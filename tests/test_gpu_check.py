"""benchmarks/gpu_check.sh: its dry run on the CPU runs every GPU-side benchmark at tiny sizes
and prints one table with a result per row."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # about a minute: deselected by `make test-fast`

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
ROWS = ["surface_vs_reference", "repulsion_share", "ensemble_vmap_vs_loop", "trainer_overhead",
        "curve_epoch_ratio", "map_two_workers"]


def test_the_dry_run_prints_one_row_per_measurement(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_OUT": str(tmp_path)}
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("gpu_check: dry run")
    rows = {line.split()[0]: line for line in lines[2:]}
    assert list(rows) == ROWS
    for name, line in rows.items():
        assert line.split()[2] == "ok", line
        assert "no result line" not in line, line
        assert (tmp_path / f"{name}.txt").stat().st_size > 0
    assert "**" in rows["surface_vs_reference"] and "True" in rows["map_two_workers"]


def test_a_failing_benchmark_is_a_row_and_fails_the_check(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\ncase \"$*\" in *bench_curve*) echo boom >&2; exit 3;; esac\n"
                    "echo 'ratio loop / vmap : 1.0x'; echo 'Trainer / hand loop = 1.0'\n")
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "GPU_CHECK_OUT": str(tmp_path / "out")}
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 1
    row = next(line for line in done.stdout.splitlines() if line.startswith("curve_epoch_ratio"))
    assert "failed (3)" in row and "no result line" in row
    assert "ok" in next(line for line in done.stdout.splitlines()
                        if line.startswith("trainer_overhead"))
