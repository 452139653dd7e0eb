"""One map spread over Ray workers: the same grid, chunks kept through killed workers and drivers.

A local Ray instance with two workers (this machine's two cores) serves the in-process tests;
the killed-driver test runs its driver in a subprocess with its own private instance.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from losslab.errors import InputError
from losslab.landscape import line, surface
from losslab.landscape.directions import random_direction
from losslab.landscape.grid_io import grid_paths, load_grid
from losslab.landscape.spread import RayWorkers, chunk_store, map_workers, read_chunks
from losslab.models import create_model

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _problem(n=200, seed=0):
    torch.manual_seed(seed)
    model = create_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    dirs = [random_direction(model, seed=i) for i in (0, 1)]
    return model, dirs, [(x[: n // 2], y[: n // 2]), (x[n // 2:], y[n // 2:])]


def test_two_workers_give_the_single_process_surface_and_line_bitwise(ray_instance, tmp_path):
    model, dirs, batches = _problem()
    kw = dict(grid=(-1, 1, 5), batches=batches)
    alone = surface(model, model, dirs, **kw)
    spread = surface(model, model, dirs, **kw, workers=RayWorkers(2, chunk=3))
    assert torch.equal(spread.loss, alone.loss) and torch.equal(spread.acc, alone.acc)
    assert torch.equal(spread.loss_se, alone.loss_se)
    assert spread.metadata["evaluated_points"] == 25
    assert spread.metadata["num_examples"] == alone.metadata["num_examples"] == 200
    assert spread.metadata["workers"]["backend"] == "ray"
    assert spread.metadata["workers"]["workers"] == 2
    assert alone.metadata["workers"] == {"backend": "local"}
    # with a path: the workers' chunks are merged into the grid and then removed
    stored = surface(model, model, dirs, **kw, path=str(tmp_path / "s"),
                     workers=RayWorkers(2, chunk=4))
    assert torch.equal(stored.loss, alone.loss)
    assert not chunk_store(tmp_path / "s").exists()
    arrays, meta = load_grid(tmp_path / "s")
    assert meta["complete"] and bool(arrays["done"].all())
    # a line between two models, buffers interpolated
    other = create_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    lk = dict(end=other, batches=batches, grid=(-0.5, 1.5, 9))
    a, b = line(model, model, **lk), line(model, model, **lk, workers=RayWorkers(2))
    assert torch.equal(a.loss, b.loss) and torch.equal(a.acc, b.acc)


def test_a_ratio_map_spread_is_the_single_process_map(ray_instance, tmp_path):
    from losslab.landscape.ratio_map import eigenvalue_ratio_map

    model, dirs, batches = _problem(n=60)
    kw = dict(grid=(-1, 1, 3), batches=batches, max_iter=8)
    alone = eigenvalue_ratio_map(model, model, dirs, **kw)
    spread = eigenvalue_ratio_map(model, model, dirs, **kw, path=str(tmp_path / "r"),
                                  workers=RayWorkers(2))
    for name in ("lambda_max", "lambda_min", "ratio", "converged"):
        assert torch.equal(getattr(spread, name), getattr(alone, name)), name
    assert spread.num_products == alone.num_products
    assert spread.metadata["num_examples"] == 60 and not chunk_store(tmp_path / "r").exists()


def test_a_curve_plane_spread_is_the_single_process_plane(ray_instance):
    from losslab.curves import CurveModel, curve_plane

    model, _, batches = _problem(n=60)
    other = create_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    curve = CurveModel(model, model, other, bends=1)
    with torch.no_grad():
        curve.bends.add_(0.3 * torch.randn(curve.bends.shape, dtype=curve.bends.dtype))
    kw = dict(batches=batches[:1], test_batches=batches[1:], weight_decay=1e-3, grid=4)
    alone = curve_plane(curve, **kw)
    spread = curve_plane(curve, **kw, workers=RayWorkers(2))
    for name in ("loss", "acc", "test_loss", "test_error", "train_loss_l2"):
        assert torch.equal(getattr(spread, name), getattr(alone, name)), name


def test_a_killed_worker_loses_only_its_chunk_in_flight(ray_instance, tmp_path, monkeypatch):
    model, dirs, batches = _problem()
    kw = dict(grid=(-1, 1, 7), batches=batches)
    alone = surface(model, model, dirs, **kw)
    path = tmp_path / "s"
    store = chunk_store(path)
    killed = []

    def kill_a_worker(done, total):
        if killed:
            return
        (chunk, *_) = [json.loads(str(np.load(f)["meta_json"])) for f in store.glob("*.npz")]
        os.kill(chunk["pid"], signal.SIGKILL)
        killed.append(chunk["pid"])

    kept = {}  # every chunk file and its writer, kept from the map's final clean-up

    def keep(store_dir):
        kept.update({f.name: json.loads(str(np.load(f)["meta_json"]))["pid"]
                     for f in store_dir.glob("*.npz")})

    monkeypatch.setattr("losslab.landscape.evaluate.remove_store", keep)
    spread = surface(model, model, dirs, **kw, path=str(path), callback=kill_a_worker,
                     workers=RayWorkers(2, chunk=2))
    assert killed, "no worker was killed"
    assert torch.equal(spread.loss, alone.loss) and torch.equal(spread.acc, alone.acc)
    assert spread.metadata["evaluated_points"] == 49
    # all 25 chunks are on disk, the later ones written by workers that were not killed
    assert len(kept) == 25
    assert set(kept.values()) - set(killed)


DRIVER = textwrap.dedent("""
    import json, os, sys, time
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(1)
    from losslab.landscape import surface
    from losslab.landscape.spread import RayWorkers

    def slow_cross_entropy(logits, y):  # slow on the first run only, so it can be killed
        if os.environ.get("SLOW"):
            time.sleep(0.05)
        return F.cross_entropy(logits, y, reduction="none")

    from losslab.landscape.options import EvalOptions
    model, dirs, batches = torch.load(sys.argv[1], weights_only=False)
    r = surface(model, model, dirs, grid=(-1, 1, 9), batches=batches, path=sys.argv[2],
                options=EvalOptions(loss_fn=slow_cross_entropy),
                workers=RayWorkers(2, chunk=3) if sys.argv[3] == "ray" else None)
    print(json.dumps({"evaluated": r.metadata["evaluated_points"], "loss": r.loss.tolist()}))
""")


def test_a_killed_driver_reruns_only_the_missing_chunks(tmp_path):
    problem = tmp_path / "problem.pt"
    torch.save(_problem(), problem)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    path = tmp_path / "s"
    store = chunk_store(path)
    env = {**os.environ, "SLOW": "1"}
    first = subprocess.Popen([sys.executable, str(script), str(problem), str(path), "ray"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(store.glob("chunk-*.npz"))) < 4 and first.poll() is None:
        assert time.monotonic() < deadline, "no chunks written"
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL, first.stderr.read().decode()[-2000:]
    time.sleep(1.5)  # the private instance's workers die within half a second of the raylet
    fingerprint = None
    if grid_paths(path)[0].exists():
        arrays, meta = load_grid(path)
        fingerprint = meta["fingerprint"]
        saved = set(np.flatnonzero(arrays["done"].numpy().reshape(-1)))
    else:
        saved = set()
    chunk_files = sorted(store.glob("chunk-*.npz"))
    if fingerprint is None:
        fingerprint = json.loads(str(np.load(chunk_files[0])["meta_json"]))["fingerprint"]
    stored = saved | {int(i) for c in read_chunks(store, fingerprint) for i in c["index"]}
    assert 4 * 3 <= len(stored) < 81

    out = {}
    for mode in ("ray", "local"):  # the rerun, then the same map from scratch in one process
        target = path if mode == "ray" else tmp_path / "fresh"
        done = subprocess.run([sys.executable, str(script), str(problem), str(target), mode],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ray"]["evaluated"] == 81 - len(stored)  # only the missing points
    assert out["ray"]["loss"] == out["local"]["loss"]    # bitwise, as floats
    assert not store.exists()


def test_options_are_checked_before_ray_starts():
    with pytest.raises(InputError, match="workers must be a positive integer"):
        RayWorkers(0)
    with pytest.raises(InputError, match="chunk must be a positive integer"):
        RayWorkers(2, chunk=0)
    with pytest.raises(InputError, match="workers and address are options of backend .ray."):
        map_workers("local", workers=2)
    assert map_workers("local") is None
    assert map_workers("ray", 3, "auto") == RayWorkers(3, address="auto")
    assert RayWorkers(2).chunk_size(441) == 32 and RayWorkers(2).chunk_size(20) == 3
    assert RayWorkers(2, chunk=5).chunk_size(100, multiple=4) == 4


def test_stored_chunks_of_another_map_are_refused(ray_instance, tmp_path):
    model, dirs, batches = _problem()
    path = tmp_path / "s"
    store = chunk_store(path)
    store.mkdir()
    (store / "chunk-00000000-2.npz").write_bytes(b"not a chunk")  # unreadable: skipped
    r = surface(model, model, dirs, grid=(-1, 1, 3), batches=batches, path=str(path),
                workers=RayWorkers(2))
    assert r.metadata["evaluated_points"] == 9
    store.mkdir()
    np.savez(store / "chunk-00000000-1.npz", index=np.array([0]), values=np.zeros((3, 1)),
             meta_json=np.array(json.dumps({"fingerprint": "other",
                                            "examples": {}, "pid": 1})))
    grid_paths(path)[0].unlink()
    with pytest.raises(InputError, match="holds chunks of a different map"):
        surface(model, model, dirs, grid=(-1, 1, 3), batches=batches, path=str(path),
                workers=RayWorkers(2))


def test_the_landscape_command_spreads_a_surface(ray_instance, tmp_path, monkeypatch, capsys):
    from losslab.cli import main
    from losslab.runs.config import load_config
    from losslab.train.run import train_run

    monkeypatch.setenv("LOSSLAB_THREADS", "1")  # as many threads as each worker: same bits
    run = train_run(load_config(overrides=["epochs=1", "log.progress=false",
                                           "log.tensorboard=false"]), tmp_path / "r")
    args = ["landscape", "surface", str(run), "--points", "3", "--examples", "100"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--backend", "ray", "--workers", "2", "--out", str(tmp_path / "two")]) == 0
    one, two = (json.loads((tmp_path / d / "landscape_surface.json").read_text())
                for d in ("one", "two"))
    assert two["loss"] == one["loss"] and two["acc"] == one["acc"]
    assert not list((tmp_path / "two").glob("*.chunks"))
    capsys.readouterr()
    assert main([*args, "--workers", "2", "--out", str(tmp_path / "x")]) == 2
    assert "workers and address are options of backend 'ray'" in capsys.readouterr().err
    assert main(["landscape", "hessian", str(run), "--backend", "ray"]) == 2
    assert "landscape hessian runs in one process" in capsys.readouterr().err
    assert main(["curve", "evaluate", str(run), "--backend", "ray"]) == 2
    assert "curve evaluate runs in one process" in capsys.readouterr().err
