"""Studies: planning, local and Ray backends, resumability, failures, aggregation."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import yaml

from losslab.cli import main
from losslab.runs.config import ConfigError, validate_config
from losslab.runs.metrics import read_metrics
from losslab.runs.rundir import RunDir
from losslab.studies import load_records, load_study, plan_runs, run_study
from losslab.studies.backends.local import LocalBackend
from losslab.studies.spec import variant_overrides
from losslab.train.run import build_trainer

pytestmark = pytest.mark.e2e  # end to end: deselected by `make test-fast`

BASE = {"epochs": 2, "log": {"progress": False, "tensorboard": False}, "data": {"batch_size": 128}}


def _study(tmp_path, **fields):
    tree = {"name": "t", "base": BASE, **fields}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def test_variants_cross_the_grid_and_seeds(tmp_path):
    spec, root = load_study(_study(tmp_path, variants=[
        {"name": "a", "set": {"schedule.name": "constant"}},
        {"name": "b", "set": {"schedule.name": "cosine"}}],
        grid={"optimizer.lr": [0.01, 0.1], "data.batch_size": [32]}, seeds=[0, 3]))
    names = list(variant_overrides(spec))
    assert names == ["a+lr=0.01,batch_size=32", "a+lr=0.1,batch_size=32",
                     "b+lr=0.01,batch_size=32", "b+lr=0.1,batch_size=32"]
    runs = plan_runs(spec, root)
    assert len(runs) == 8 and runs[1].run_id == "a+lr=0.01,batch_size=32-s3"
    assert runs[1].config["seed"] == 3 and runs[1].config["optimizer"]["lr"] == 0.01
    assert runs[1].config["schedule"]["name"] == "constant" and runs[1].config["epochs"] == 2
    # only a grid, or nothing: the grid points, or one `base` variant
    spec, root = load_study(_study(tmp_path, grid={"optimizer.lr": [0.1, 0.2]}))
    assert list(variant_overrides(spec)) == ["lr=0.1", "lr=0.2"]
    spec, root = load_study(_study(tmp_path))
    assert [r.run_id for r in plan_runs(spec, root)] == ["base-s0"]


def test_unknown_study_key_names_it_and_the_allowed_ones(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_study(_study(tmp_path, seed=[0]))
    assert "unknown key 'seed'" in str(e.value) and "'seeds'" in str(e.value)
    assert "variants" in str(e.value)


def test_invalid_variant_is_reported_before_any_run(tmp_path):
    path = _study(tmp_path, variants=[{"name": "ok", "set": {}},
                                      {"name": "bad", "set": {"optimizer.momentun": 0.5}},
                                      {"name": "worse", "set": {"optimizer.lr": -1}}])
    with pytest.raises(ConfigError) as e:
        run_study(path, tmp_path / "out")
    msg = str(e.value)
    assert "variant 'bad'" in msg and "momentum" in msg and "variant 'worse'" in msg
    assert not (tmp_path / "out").exists()


def test_unknown_analysis_is_reported_before_any_run(tmp_path):
    path = _study(tmp_path, analyses=[{"name": "compair"}])
    with pytest.raises(ConfigError, match="did you mean 'compare'"):
        run_study(path, tmp_path / "out")
    path = _study(tmp_path, analyses=[{"name": "compare", "metrik": "x"}])
    with pytest.raises(ConfigError, match="no option 'metrik'"):
        run_study(path, tmp_path / "out")


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    path = _study(tmp, variants=[
        {"name": "constant", "set": {"schedule.name": "constant"}},
        {"name": "cosine", "set": {"schedule.name": "cosine", "optimizer.lr": 0.1}},
        # fails at start: the data set is not there (and must not stop the others)
        {"name": "broken", "set": {"data.name": "mnist", "data.root": str(tmp / "nowhere")}}],
        seeds=[0, 1], analyses=[{"name": "compare", "baseline": "constant"}])
    outcome = run_study(path, tmp / "out", workers=2)
    return path, outcome


def test_study_runs_records_failures_and_aggregates(finished_study):
    _, outcome = finished_study
    assert outcome.counts == {"finished": 4, "failed": 2}
    records = load_records(outcome.directory)
    failed = records.runs[records.runs["status"] == "failed"]
    assert set(failed["variant"]) == {"broken"}
    assert all("nowhere" in e for e in failed["error"])
    results = pd.read_parquet(outcome.directory / "results.parquet")
    assert len(results) == 4 * 2  # finished runs x epochs
    assert {"schedule.name", "optimizer.lr", "data.name", "epoch", "test_acc"} <= set(results.columns)
    # summary.csv: mean ± std over seeds, recomputed here from the run directories
    summary = pd.read_csv(outcome.directory / "summary.csv").set_index("variant")
    finals = [read_metrics(outcome.directory / "runs" / f"cosine-s{s}")[-1]["test_acc"] for s in (0, 1)]
    assert summary.loc["cosine", "final_test_acc_mean"] == pytest.approx(sum(finals) / 2)
    assert summary.loc["cosine", "final_test_acc_std"] == pytest.approx(
        pd.Series(finals).std(ddof=1))
    assert summary.loc["broken", "n_finished"] == 0
    compare = json.loads((outcome.directory / "analyses" / "compare.json").read_text())
    assert compare["baseline"] == "constant" and [r["variant"] for r in compare["rows"]] == [
        "constant", "cosine"]
    assert compare["rows"][1]["diff"] == pytest.approx(
        compare["rows"][1]["mean"] - compare["rows"][0]["mean"])


def test_second_run_only_rebuilds_what_is_missing(finished_study):
    path, outcome = finished_study
    run_dir = outcome.directory / "runs" / "cosine-s0"
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    (outcome.directory / "summary.csv").unlink()
    again = run_study(path, outcome.directory, workers=2)
    after = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    assert before == after  # the finished run was not touched
    assert (outcome.directory / "summary.csv").exists()
    assert again.counts["finished"] == 4  # the broken variant was retried and failed again


def test_interrupted_run_resumes_within_the_study(tmp_path):
    path = _study(tmp_path, variants=[{"name": "a", "set": {}}], seeds=[0])
    out = tmp_path / "out"
    run_study(path, out, workers=1)
    run_dir = out / "runs" / "a-s0"
    reference = read_metrics(run_dir)
    # make it look killed during epoch 2: the records and state of epoch 1 only, status running
    run = RunDir(run_dir)
    (run_dir / "metrics.jsonl").unlink()
    run.state_path.unlink()
    trainer = build_trainer(validate_config(run.read_config()), run)
    before = torch.get_num_threads()
    torch.set_num_threads(LocalBackend(workers=1).threads)  # as the study's worker: same sums
    try:
        trainer.run_epoch(1)
    finally:
        torch.set_num_threads(before)
    trainer.metrics_log.close()
    run.update_meta(status="running")
    outcome = run_study(path, out, workers=1)
    assert outcome.counts == {"finished": 1}
    resumed = read_metrics(run_dir)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "epoch_time"} for r in rs]  # noqa: E731
    assert strip(resumed) == strip(reference)


def _strip_times(records):
    return [{k: v for k, v in r.items() if k != "epoch_time"} for r in records]


def test_a_kept_worker_gives_each_run_what_a_fresh_process_gives(tmp_path):
    # One worker trains four runs one after another (state that leaked from one run into the
    # next would change the later ones); each is checked against a fresh process.
    path = _study(tmp_path, variants=[{"name": "constant", "set": {"schedule.name": "constant"}},
                                      {"name": "cosine", "set": {"schedule.name": "cosine"}}],
                  seeds=[0, 1])
    kept = run_study(path, tmp_path / "kept", workers=1)
    assert kept.counts == {"finished": 4}
    fresh = tmp_path / "fresh"
    run_study(path, fresh, workers=1)
    for run_dir in sorted((fresh / "runs").iterdir()):
        shutil.rmtree(run_dir)
        threads = str(LocalBackend(workers=1).threads)  # the kept worker's, not the ambient
        done = subprocess.run([sys.executable, "-m", "losslab.studies.worker", str(fresh),
                               run_dir.name, "--threads", threads], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
        assert _strip_times(read_metrics(run_dir)) == _strip_times(
            read_metrics(kept.directory / "runs" / run_dir.name))


def test_a_killed_worker_fails_its_run_only_and_the_run_trains_next_time(tmp_path):
    from losslab.studies.backends.local import _Worker

    path = _study(tmp_path, variants=[{"name": "a", "set": {}}], seeds=[0, 1])
    out = tmp_path / "out"
    run_study(path, out, workers=1)
    worker = _Worker(1, dict(os.environ))
    try:
        # a run that is not in the plan fails inside the worker, which lives on
        worker.start(out, "nope-s9", out / "logs" / "nope.log")
        while (result := worker.answer()) is None:
            time.sleep(0.05)
        assert result["status"] == "failed" and "nope-s9" in result["error"]
        assert worker.proc.poll() is None
        # killed during a run: that run fails, and the error names the signal
        shutil.rmtree(out / "runs" / "a-s1")
        worker.start(out, "a-s1", out / "logs" / "a-s1.log")
        worker.proc.send_signal(signal.SIGKILL)
        while (result := worker.answer()) is None:
            time.sleep(0.05)
        assert result["run_id"] == "a-s1" and result["status"] == "failed"
        assert "killed by signal 9" in result["error"]
    finally:
        worker.stop()
    assert run_study(path, out, workers=1).counts == {"finished": 2}


def test_a_different_study_in_the_same_directory_is_refused(tmp_path):
    out = tmp_path / "out"
    run_study(_study(tmp_path, variants=[{"name": "a", "set": {}}]), out)
    changed = _study(tmp_path, variants=[{"name": "a", "set": {"optimizer.lr": 0.2}},
                                         {"name": "b", "set": {}}])
    with pytest.raises(ConfigError, match="different study"):
        run_study(changed, out)
    outcome = run_study(changed, out, force=True)
    assert outcome.counts == {"finished": 2}
    archived = list((out / "archive").glob("*/a-s0"))
    assert len(archived) == 1 and (archived[0] / "metrics.jsonl").exists()  # nothing lost
    assert json.loads((out / "runs" / "a-s0" / "meta.json").read_text())["status"] == "finished"


def _as_written_before_the_curve_section(out):
    """Strip the `curve` config section from the plan and the run configs, as an older
    release (before that section existed) wrote them."""
    plan = json.loads((out / "plan.json").read_text())
    for r in plan["runs"]:
        r["config"].pop("curve")
    plan["fingerprint"] = "written-by-an-older-release"
    (out / "plan.json").write_text(json.dumps(plan))
    for config_path in (out / "runs").glob("*/config.yaml"):
        config = yaml.safe_load(config_path.read_text())
        config.pop("curve", None)  # the second time: still as written
        config_path.write_text(yaml.safe_dump(config))


def test_a_study_written_before_a_config_section_existed_is_the_same_study(tmp_path):
    out = tmp_path / "out"
    path = _study(tmp_path, variants=[{"name": "a", "set": {}}, {"name": "b", "set": {}}])
    run_study(path, out)
    _as_written_before_the_curve_section(out)
    metrics = out / "runs" / "a-s0" / "metrics.jsonl"
    before = metrics.stat().st_mtime_ns
    outcome = run_study(path, out)  # accepted without --force: nothing is retrained
    assert outcome.counts == {"finished": 2} and metrics.stat().st_mtime_ns == before
    # a real change archives only the run that changed, not the one stored in the older form
    _as_written_before_the_curve_section(out)
    changed = _study(tmp_path, variants=[{"name": "a", "set": {}},
                                         {"name": "b", "set": {"optimizer.lr": 0.2}}])
    with pytest.raises(ConfigError, match="different study"):
        run_study(changed, out)
    run_study(changed, out, force=True)
    assert [p.name for p in (out / "archive").glob("*/*")] == ["b-s0"]
    assert metrics.stat().st_mtime_ns == before


def test_ray_backend_on_a_local_instance(tmp_path):
    path = _study(tmp_path, variants=[{"name": "a", "set": {}},
                                      {"name": "b", "set": {"optimizer.lr": 0.1}}],
                  resources={"cpus": 1, "gpus": 0})
    outcome = run_study(path, tmp_path / "out", backend="ray")
    assert outcome.counts == {"finished": 2}
    assert len(read_metrics(tmp_path / "out" / "runs" / "b-s0")) == 2


def test_cli_run_and_report(tmp_path, capsys):
    path = _study(tmp_path, variants=[{"name": "a", "set": {}}])
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--set", "epochs=1"]) == 0
    assert "report:" in capsys.readouterr().out
    assert len(read_metrics(tmp_path / "out" / "runs" / "a-s0")) == 1
    (tmp_path / "out" / "report.html").unlink()
    assert main(["report", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.html").exists()


def test_seed_offset_makes_a_variant_independent_of_the_others(tmp_path):
    path = _study(tmp_path, variants=[{"name": "G", "set": {}},
                                      {"name": "A", "set": {}, "seed_offset": 100}],
                  seeds=[0, 1])
    spec, root = load_study(path)
    plan = {r.run_id: r for r in plan_runs(spec, root)}
    assert [plan[k].config["seed"] for k in ("G-s0", "G-s1", "A-s0", "A-s1")] == [0, 1, 100, 101]
    assert plan["A-s1"].seed == 1  # the study's seed: what findings and ensembles pair by
    bad = _study(tmp_path, variants=[{"name": "G", "set": {}, "seed_offset": -1}])
    with pytest.raises(ConfigError, match="seed_offset"):
        load_study(bad)
