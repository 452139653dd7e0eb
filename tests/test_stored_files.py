"""Stored files that cannot be read, bad config values and unsafe study names: one line each.

Every case asserts the exit status (2), a single ``losslab: error:`` line naming the file, key,
value or URL, no traceback, and that nothing else in the run directory changed.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from losslab.cli import main
from losslab.errors import (
    CheckpointCorruptError,
    ConfigError,
    CorruptFileError,
    InputError,
    MissingFileError,
)
from losslab.runs.config import load_config
from losslab.runs.metrics import read_metrics
from losslab.runs.rundir import RunDir

QUIET = ["log.progress=false", "log.tensorboard=false"]
LOCK = ".lock"  # the advisory lock's holder record: a writer's, not part of the run's data


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """A finished tiny run (digits, two epochs), trained once per session."""
    from losslab.train.run import train_run

    out = tmp_path_factory.mktemp("trained") / "run"
    return train_run(load_config(overrides=[*QUIET, "epochs=2", "data.batch_size=128"]), out)


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """This test's own copy of the trained run."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def snapshot(directory: Path, *, ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``directory`` (but ``ignore``)."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*"))
            if p.is_file() and str(p.relative_to(directory)) not in (LOCK, *ignore)}


def one_error_line(capsys, *names: str) -> str:
    """The single error line on stderr, checked to name each of ``names``."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("losslab: error: "), err
    for name in names:
        assert name in err, (name, err)
    return err


def _truncated(text: bytes) -> bytes:
    """``text`` cut in the middle of a line (as a crash or a full disk leaves it)."""
    cut = len(text) // 2
    while text[cut - 1:cut] == b"\n":
        cut += 1
    return text[:cut]


CORRUPTIONS = {
    "truncated": _truncated,
    "broken": lambda text: text.replace(b"model:", b"model: [unclosed", 1),
    "binary": lambda text: b"\x80\x90\xff\x00" + text[:40],
}


def _command(which: str, run: Path, out: Path) -> list[str]:
    return {"resume": ["resume", str(run)],
            "surface": ["landscape", "surface", str(run), "--out", str(out), "--points", "3",
                        "--examples", "16"],
            "ensemble": ["ensemble", str(run), "--out", str(out)]}[which]


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
@pytest.mark.parametrize("command", ["resume", "surface", "ensemble"])
def test_an_unreadable_config_yaml_is_one_line_naming_it(run, tmp_path, capsys, command,
                                                         corruption):
    config = RunDir(run).config_path
    config.write_bytes(CORRUPTIONS[corruption](config.read_bytes()))
    before = snapshot(run)
    assert main(_command(command, run, tmp_path / "out")) == 2
    one_error_line(capsys, str(config))
    assert snapshot(run) == before
    assert not (tmp_path / "out" / "landscape_surface.json").exists()


def test_an_empty_config_yaml_is_not_read_as_the_defaults(run, capsys):
    config = RunDir(run).config_path
    config.write_bytes(b"")
    assert main(["resume", str(run)]) == 2
    one_error_line(capsys, str(config), "empty")


def test_a_truncated_meta_json_is_one_line_naming_it(run, capsys):
    meta = RunDir(run).meta_path
    meta.write_bytes(_truncated(meta.read_bytes()))
    with pytest.raises(CorruptFileError, match="meta.json"):
        RunDir(run).read_meta()
    before = snapshot(run)
    assert main(["resume", str(run)]) == 2
    one_error_line(capsys, str(meta), "JSON")
    assert snapshot(run) == before


def test_a_missing_meta_json_reads_as_no_record(tmp_path):
    assert RunDir(tmp_path).read_meta() == {}


def test_a_garbled_first_metrics_line_is_one_line_naming_file_and_line(run, capsys):
    metrics = RunDir(run).metrics_path
    lines = metrics.read_bytes().splitlines(keepends=True)
    metrics.write_bytes(lines[0].replace(b",", b"", 1) + b"".join(lines[1:]))
    before = snapshot(run)
    assert main(["resume", str(run)]) == 2
    one_error_line(capsys, str(metrics), "line 1")
    assert snapshot(run) == before


def test_metrics_a_torn_last_line_is_dropped_an_earlier_garbled_one_is_an_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [{"epoch": e, "loss": 1.0 / e} for e in range(1, 13)]
    whole = "".join(json.dumps(r) + "\n" for r in records)
    path.write_text(whole + '{"epoch": 13, "lo')  # a kill in the middle of an append
    assert [r["epoch"] for r in read_metrics(path)] == list(range(1, 13))
    path.write_text('{"epoch": 1 "loss": 1.0}\n' + whole.split("\n", 1)[1])
    with pytest.raises(CorruptFileError, match=r"metrics.jsonl line 1 "):
        read_metrics(path)
    path.write_bytes(b"\xff\xfe garbage\n" + whole.encode())
    with pytest.raises(CorruptFileError, match=r"line 1 is not UTF-8"):
        read_metrics(path)
    path.write_text(whole + "[1, 2]\n")  # a whole line, not torn: damage
    with pytest.raises(CorruptFileError, match="line 13 holds a JSON list"):
        read_metrics(path)
    path.write_text(json.dumps({"epoch": 1, "loss": "nan"}) + "\n")
    assert math.isnan(read_metrics(path)[0]["loss"])


def test_a_broken_checkpoint_sidecar_names_it(run, tmp_path, capsys):
    from losslab.runs.checkpoints import read_meta

    weights = next((run / "checkpoints").glob("final*.safetensors"))
    side = weights.with_suffix(".json")
    side.write_bytes(side.read_bytes()[:30])
    with pytest.raises(CheckpointCorruptError, match=str(side)):
        read_meta(weights)
    side.write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    with pytest.raises(CheckpointCorruptError, match=str(side)):
        read_meta(weights)
    before = snapshot(run)
    assert main(["ensemble", str(run), "--out", str(tmp_path / "out")]) == 2
    one_error_line(capsys, str(side))
    assert snapshot(run) == before
    side.unlink()
    with pytest.raises(MissingFileError, match=side.name):
        read_meta(weights)


def test_a_broken_directions_sidecar_names_it(tmp_path):
    import torch

    from losslab.landscape.directions import Directions

    dirs = Directions([{"w": torch.ones(3)}], kind="random", normalization="none", ignore="bn",
                      seed=0, names=["w"], shapes=[[3]])
    weights = dirs.save(tmp_path / "dirs")
    side = weights.with_suffix(".json")
    assert Directions.load(weights).names == ["w"]
    side.write_text(side.read_text()[:-20])
    with pytest.raises(CorruptFileError, match=str(side)):
        Directions.load(weights)


def test_a_broken_study_plan_is_one_line_naming_it(tmp_path, capsys):
    from losslab.studies.study_dir import StudyDir

    study = tmp_path / "study"
    study.mkdir()
    plan = study / "plan.json"
    plan.write_text('{"name": "t", "fingerprint": "abc", "runs": [')
    with pytest.raises(CorruptFileError, match="plan.json"):
        StudyDir(study).read_plan()
    before = snapshot(study, ignore=())
    assert main(["report", str(study)]) == 2
    one_error_line(capsys, str(plan))
    assert snapshot(study) == before
    plan.write_text('["not", "a", "plan"]')
    with pytest.raises(CorruptFileError, match="is not a study plan"):
        StudyDir(study).read_plan()
    plan.unlink()
    assert StudyDir(study).read_plan() is None


def test_a_broken_findings_record_of_a_suite_names_it(tmp_path, monkeypatch):
    import losslab.studies.runner as runner
    from losslab.studies.suite import run_suite

    (tmp_path / "one.yaml").write_text(yaml.safe_dump({"name": "one", "base": {"epochs": 1}}))
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "s", "studies": ["one.yaml"]}))
    out = tmp_path / "out"

    class Outcome:
        counts = {"finished": 1}

    def fake_run_study(file, directory, **kw):  # the study's records, without training
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "findings.json").write_bytes(b'{"study": "one", "findings": [{')
        return Outcome()

    monkeypatch.setattr(runner, "run_study", fake_run_study)
    with pytest.raises(CorruptFileError, match=str(out / "one" / "findings.json")):
        run_suite(suite, out)


def test_annealing_moves_torn_last_line_dropped_garbled_first_line_named(tmp_path):
    from losslab.train.annealing_log import MOVES_FILE, read_moves

    path = tmp_path / MOVES_FILE
    whole = "".join(json.dumps({"epoch": e, "accepted": [0.5]}) + "\n" for e in (1, 2, 3))
    path.write_text(whole + '{"epoch": 4, "acc')
    assert [r["epoch"] for r in read_moves(tmp_path)] == [1, 2, 3]
    path.write_text("{garbled\n" + whole)
    with pytest.raises(CorruptFileError, match=f"{MOVES_FILE} line 1 "):
        read_moves(tmp_path)


def test_a_broken_curve_source_marker_names_it(run, tmp_path):
    from losslab.curves.study_analysis import SOURCE_FILE, _fitted

    curve = Path(shutil.copytree(run, tmp_path / "curve"))  # stands for a fitted curve run
    marker = curve / SOURCE_FILE
    marker.write_bytes(b'{"endpoints_sha256": [')
    before = snapshot(curve)
    with pytest.raises(CorruptFileError, match=str(marker)):
        _fitted(curve, str(run), str(run), 1, "bezier", {})
    assert snapshot(curve) == before


# --- config values ----------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "value"), [
    ("optimizer.lr", "inf"), ("optimizer.lr", "nan"), ("optimizer.lr", "0"),
    ("optimizer.lr", "-0.1"), ("optimizer.momentum", "inf"), ("optimizer.weight_decay", "nan"),
    ("optimizer.eps", "-inf"), ("repulsion.width", "inf"), ("model.init_scale", "nan"),
    ("epochs", "0"), ("epochs", "-3"), ("device", "tpu9"), ("optimizer.betas", "[0.9, 1.5]")])
def test_a_bad_config_value_is_refused_before_any_work(tmp_path, capsys, monkeypatch, key,
                                                       value):
    import losslab.data

    def no_data(*args, **kwargs):
        raise AssertionError("the data loaded before the config was validated")

    monkeypatch.setattr(losslab.data, "load_dataset", no_data)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--set", f"{key}={value}", *sum(
        (["--set", q] for q in QUIET), [])]) == 2
    err = one_error_line(capsys, f"'{key}", value.split(",")[-1].strip(" []"))
    if key == "device":
        assert "auto" in err and "cuda:N" in err and "mps" in err
    assert not out.exists()


def test_resolve_device_refuses_an_unknown_name_as_a_user_error():
    import torch

    from losslab.runs.device import resolve_device

    with pytest.raises(InputError, match="'tpu9' is not a device name; allowed: auto, cpu"):
        resolve_device("tpu9")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:1")
    else:
        with pytest.raises(ConfigError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_schedule_parameters_must_be_finite():
    with pytest.raises(ConfigError, match=r"'schedule.step_size': 'inf': expected a finite"):
        load_config(overrides=["schedule.name=step", "schedule.step_size=inf"])


def test_a_broken_yaml_config_file_names_it(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 2\noptimizer: {lr: 0.1\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)
    path.write_bytes(b"\x90\x00\x01binary")
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    one_error_line(capsys, str(path), "UTF-8")
    assert not (tmp_path / "run").exists()


# --- study names --------------------------------------------------------------------------------


def _study(tmp_path: Path, **fields) -> Path:
    tree = {"name": "names", "base": {"epochs": 1, "log": {"progress": False}}, **fields}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.mark.parametrize(("fields", "named"), [
    ({"variants": [{"name": "ok"}, {"name": "/some/where/x"}]}, "/some/where/x"),
    ({"variants": [{"name": "../../../x"}]}, "../../../x"),
    ({"variants": [{"name": ".."}]}, "'..'"),
    ({"variants": [{"name": "a b"}]}, "a b"),
    ({"analyses": [{"name": "compare", "id": "../escape"}]}, "../escape"),
    ({"analyses": [{"name": "/abs/compare"}]}, "/abs/compare"),
    ({"name": "../up"}, "../up"),
])
def test_an_unsafe_study_name_is_one_line_before_anything_starts(tmp_path, capsys, fields,
                                                                 named):
    path = _study(tmp_path, **fields)
    out = tmp_path / "out"
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(["run", str(path), "--out", str(out)]) == 2
    one_error_line(capsys, named, "letters, digits")
    assert sorted(p for p in tmp_path.rglob("*")) == before  # no directory, no run, no log
    assert not Path("/some/where/x").exists()


def test_grid_names_still_make_safe_run_ids(tmp_path):
    from losslab.studies.spec import load_study, plan_runs

    spec, root = load_study(_study(tmp_path, variants=[{"name": "v.1_a-b"}],
                                   grid={"optimizer.lr": [0.1, "0.2/.."]}))
    with pytest.raises(ConfigError):  # the value is no float: refused, whatever its name
        plan_runs(spec, root)
    spec, root = load_study(_study(tmp_path, variants=[{"name": "v.1_a-b"}],
                                   grid={"optimizer.lr": [0.1, 0.2]}))
    assert [r.run_id for r in plan_runs(spec, root)] == ["v.1_a-b+lr=0.1-s0",
                                                         "v.1_a-b+lr=0.2-s0"]


# --- a curve fitted with relative paths ---------------------------------------------------------


def test_a_curve_fitted_from_relative_paths_resumes_from_another_directory(trained, tmp_path,
                                                                           monkeypatch, capsys):
    from losslab.curves.curve_runs import fit_curve
    from losslab.curves.training import load_curve

    work = tmp_path / "work"
    shutil.copytree(trained, work / "a")
    shutil.copytree(trained, work / "b")
    monkeypatch.chdir(work)
    fit_curve("a", "b", "curve", overrides=[*QUIET, "epochs=1"])
    config = RunDir(work / "curve").read_config()
    assert config["curve"]["start"] == str((work / "a").resolve())
    assert config["curve"]["end"] == str((work / "b").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # one more epoch asked for: the resume rebuilds the curve from its endpoints and trains
    cfg = RunDir(work / "curve").config_path
    cfg.write_text(cfg.read_text().replace("epochs: 1\n", "epochs: 2\n", 1))
    assert main(["resume", str(work / "curve")]) == 0
    assert [r["epoch"] for r in read_metrics(work / "curve")] == [1, 2]
    curve, loaded = load_curve(work / "curve")
    assert loaded.curve.start == str((work / "a").resolve())


def test_the_stored_file_errors_keep_their_builtin_types():
    assert issubclass(CorruptFileError, ValueError) and issubclass(MissingFileError,
                                                                   FileNotFoundError)
    assert sys.modules["losslab.errors"].LosslabError in CorruptFileError.__mro__
