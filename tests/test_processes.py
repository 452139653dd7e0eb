"""Study processes: workers die with their driver, SIGTERM is Ctrl-C, backend options are
checked, every backend writes the runs' logs, and a study of many runs completes.

The kill tests use real subprocesses and real signals. Worker processes are found through
/proc (their command line names ``losslab.studies.worker`` and their parent is the driver).
"""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from losslab.errors import InputError
from losslab.runs.config import config_to_dict, validate_config
from losslab.signals import Terminated, sigterm_as_interrupt
from losslab.studies import load_study, plan_runs, run_study
from losslab.studies.backends import make_backend
from losslab.studies.spec import base_tree, study_fingerprint
from losslab.studies.study_dir import StudyDir

# The tests that start processes or train are end to end (marker e2e: deselected by
# `make test-fast`); the option checks and the signal handler are unit tests.
e2e = pytest.mark.e2e
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

EPOCHS = 20  # a run's epoch is 0.1-0.2 s here: the signal always comes mid-run
BASE = {"log": {"progress": False, "tensorboard": False},
        "data": {"name": "digits", "batch_size": 64}, "model": {"name": "small_cnn"}}


def _study(tmp_path, *, seeds, epochs, **base):
    tree = {"name": "p", "base": {**BASE, "epochs": epochs, **base}, "seeds": list(seeds)}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "losslab.cli", *args]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a live process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _workers_of(driver: int) -> set[int]:
    """The study worker processes whose parent is ``driver``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        stat = _stat(int(entry.name))
        if b"losslab.studies.worker" in cmdline and stat and stat[1] == driver:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")  # a zombie trains nothing


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _metrics_started(out: Path) -> bool:
    return any(p.stat().st_size for p in (out / "runs").glob("*/metrics.jsonl"))


def _epochs(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def _assert_complete(out: Path, runs: int, epochs: int) -> None:
    """Every run trained each epoch exactly once, and results.parquet holds every row."""
    run_dirs = sorted((out / "runs").iterdir())
    assert len(run_dirs) == runs
    for run_dir in run_dirs:
        assert _epochs(run_dir) == list(range(1, epochs + 1)), run_dir.name
        assert json.loads((run_dir / "meta.json").read_text())["status"] == "finished"
    results = pd.read_parquet(out / "results.parquet")
    assert len(results) == runs * epochs
    assert sorted(results.groupby("run_id").size().tolist()) == [epochs] * runs


def _lines(out: Path) -> dict[str, int]:
    return {p.parent.name: len(p.read_text().splitlines())
            for p in (out / "runs").glob("*/metrics.jsonl")}


def _start_driver(path: Path, out: Path) -> subprocess.Popen:
    """``losslab run PATH --out OUT --workers 2`` in a subprocess."""
    return subprocess.Popen(_cli("run", str(path), "--out", str(out), "--workers", "2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@e2e
@needs_proc
def test_killed_and_terminated_drivers_leave_no_worker_and_the_study_completes(tmp_path):
    # One study, three drivers (one scenario, to pay for starting torch fewer times):
    # 1. kill -9 of the driver mid-run: its workers die with it, within seconds;
    # 2. a rerun resumes the runs; SIGTERM to it: the backend stops its workers with SIGTERM,
    #    the run being trained is recorded "interrupted", nothing is left half-written, the
    #    driver exits without a traceback;
    # 3. a last rerun completes every run, each epoch exactly once.
    path, out = _study(tmp_path, seeds=[0, 1], epochs=EPOCHS), tmp_path / "out"
    driver = _start_driver(path, out)
    try:
        _wait_for(lambda: _metrics_started(out), 120, "a run's first epoch")
        workers = _workers_of(driver.pid)
        assert len(workers) == 2
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        _wait_for(lambda: not any(_alive(w) for w in workers), 5,
                  f"the workers {sorted(workers)} to die with their driver")
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert "running" in [json.loads(p.read_text())["status"]
                         for p in (out / "runs").glob("*/meta.json")]  # killed mid-run
    assert all(n < EPOCHS for n in _lines(out).values())

    killed = _lines(out)
    driver = _start_driver(path, out)
    try:
        grown = _wait_for(lambda: [r for r, n in _lines(out).items() if n > killed.get(r, 0)],
                          120, "the rerun to train an epoch")
        workers = _workers_of(driver.pid)
    except BaseException:
        _kill(driver)
        raise
    _, stderr = _signal_and_wait(driver, signal.SIGTERM, 30)
    assert driver.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == (f"losslab: terminated; continue with `losslab run "
                                               f"{path} --out {out} --workers 2`"), stderr
    assert "Traceback" not in stderr, stderr
    assert workers and not any(_alive(w) for w in workers)
    stopped = [r for r in grown if len(_epochs(out / "runs" / r)) < EPOCHS]  # not finished
    assert stopped
    for run_id in stopped:
        meta = json.loads((out / "runs" / run_id / "meta.json").read_text())
        assert meta["status"] == "interrupted" and "Terminated" in meta["error"], meta
    assert not list(out.rglob("*.tmp"))

    assert run_study(path, out, workers=2).counts == {"finished": 2}
    _assert_complete(out, runs=2, epochs=EPOCHS)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _signal_and_wait(proc: subprocess.Popen, sig: int, timeout: float) -> tuple[str, str]:
    """Send ``sig`` and collect the output; a process that outlives ``timeout`` is killed."""
    try:
        proc.send_signal(sig)
        return proc.communicate(timeout=timeout)
    finally:
        _kill(proc)


def _prepared_study(tmp_path, **kw) -> tuple[Path, Path, list[str]]:
    """A study directory with its plan written and no run started."""
    path, out = _study(tmp_path, **kw), tmp_path / "out"
    spec, root = load_study(path)
    runs = plan_runs(spec, root)
    base = config_to_dict(validate_config(base_tree(spec, root)))
    base.pop("seed", None)
    StudyDir(out).prepare(spec, runs, study_fingerprint(runs), base)
    return path, out, [r.run_id for r in runs]


@e2e
def test_terminated_worker_records_its_run_interrupted_and_it_resumes(tmp_path):
    path, out, (run_id,) = _prepared_study(tmp_path, seeds=[0], epochs=EPOCHS)
    run_dir = out / "runs" / run_id
    worker = subprocess.Popen([sys.executable, "-m", "losslab.studies.worker", str(out), run_id,
                               "--threads", "1"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (run_dir / "metrics.jsonl").exists()
                  and (run_dir / "metrics.jsonl").stat().st_size, 120, "the first epoch")
    except BaseException:
        _kill(worker)
        raise
    stdout, stderr = _signal_and_wait(worker, signal.SIGTERM, 20)
    assert worker.returncode == 143, stderr
    assert "Traceback" not in stderr + stdout, stderr
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "interrupted" and "Terminated" in meta["error"]
    assert not list(out.rglob("*.tmp"))
    done = len(_epochs(run_dir))
    assert 1 <= done < EPOCHS
    # two slots, one busy: the worker gets one thread, as in the study's other runs (two
    # threads on a busy 2-core machine made some epochs 50 times slower)
    assert run_study(path, out, workers=2).counts == {"finished": 1}
    assert _epochs(run_dir) == list(range(1, EPOCHS + 1))


@e2e
@needs_proc
def test_parent_death_fallbacks_kill_the_worker():
    # The watchdog (where there is no prctl): a child whose parent exits dies within a second.
    child = ("import os, time; from losslab.studies.worker import watch_parent; watch_parent(); "
             "print(os.getpid(), flush=True); time.sleep(120)")
    parent = ("import subprocess, sys; c = subprocess.Popen([sys.executable, '-c', sys.argv[1]], "
              "stdout=subprocess.PIPE, text=True); print(c.stdout.readline().strip())")
    # The race: a worker whose driver died before the worker could ask to die with it.
    orphan = subprocess.Popen([sys.executable, "-c", "import time; from losslab.studies.worker "
                               "import die_with_parent; die_with_parent(1); time.sleep(120)"])
    done = subprocess.run([sys.executable, "-c", parent, child], capture_output=True, text=True,
                          timeout=120, check=True)
    watched = int(done.stdout.strip())
    _wait_for(lambda: not _alive(watched), 5, "the watched child to die with its parent")
    assert orphan.wait(timeout=120) == -signal.SIGKILL


@e2e
def test_stop_kills_a_worker_that_ignores_sigterm():
    from losslab.studies.backends.local import _stop_all, _Worker

    worker = object.__new__(_Worker)  # a stuck worker: a process that ignores SIGTERM
    worker.proc = subprocess.Popen(
        [sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGTERM, "
         "signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert worker.proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    _stop_all([worker], timeout=1.0)
    assert worker.proc.returncode == -signal.SIGKILL and time.monotonic() - t0 < 10


def test_sigterm_raises_terminated_and_the_handler_is_put_back():
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt() as handler:
        assert handler.installed
        with pytest.raises(Terminated) as e:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode; never reached
    assert isinstance(e.value, KeyboardInterrupt) and e.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before
    assert pickle.loads(pickle.dumps(e.value)).signum == signal.SIGTERM


@pytest.mark.parametrize("backend", ["local", "ray"])
@pytest.mark.parametrize("options, message", [
    ({"workers": 0}, "workers must be a positive integer, got 0"),
    ({"workers": -1}, "workers must be a positive integer, got -1"),
    ({"cpus_per_run": -1.0}, "cpus_per_run must be a number > 0, got -1.0"),
    ({"gpus_per_run": -0.5}, "gpus_per_run must be a number >= 0, got -0.5"),
])
def test_backend_options_are_refused_before_anything_starts(backend, options, message):
    ray_was_started = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    with pytest.raises(InputError) as e:
        make_backend(backend, **options)
    assert str(e.value) == message
    if not ray_was_started:  # the error came before Ray was imported, let alone started
        assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_backend_workers_none_still_means_as_many_as_fit():
    assert make_backend("local").workers >= 1
    assert make_backend("local", workers=3).workers == 3
    assert make_backend("ray").workers is None  # Ray places what fits


@e2e
def test_ray_backend_writes_each_runs_log(tmp_path):
    pytest.importorskip("ray")
    path = _study(tmp_path, seeds=[0], epochs=1)
    tree = yaml.safe_load(path.read_text())
    tree["resources"] = {"cpus": 1, "gpus": 0}
    tree["variants"] = [{"name": "ok", "set": {}},  # and one that fails at start: its error
                        {"name": "broken", "set": {"data.name": "mnist",  # goes to its log too
                                                   "data.root": str(tmp_path / "nowhere")}}]
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    outcome = run_study(path, tmp_path / "out", backend="ray")
    assert outcome.counts == {"finished": 1, "failed": 1}
    logs = tmp_path / "out" / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["broken-s0.log", "ok-s0.log"]
    assert "nowhere" in (logs / "broken-s0.log").read_text()


@e2e
def test_a_study_of_many_small_runs_completes(tmp_path):
    # The load benchmark's study, smaller (benchmarks/bench_study_load.py: 60 runs).
    path = _study(tmp_path, seeds=range(8), epochs=1,
                  model={"name": "mlp", "options": {"hidden_sizes": [16]}},
                  data={"name": "digits", "batch_size": 512})
    outcome = run_study(path, tmp_path / "out", workers=2)
    assert outcome.counts == {"finished": 8}
    _assert_complete(tmp_path / "out", runs=8, epochs=1)
    assert len(list((tmp_path / "out" / "logs").glob("*.log"))) == 8
