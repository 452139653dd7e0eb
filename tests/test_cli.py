"""The `losslab` command: train, resume, listings, and clear errors without tracebacks."""

import subprocess
import sys

import pytest

from losslab.cli import main
from losslab.runs.metrics import read_metrics

pytestmark = pytest.mark.e2e  # end to end: deselected by `make test-fast`


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "losslab.cli", *args], capture_output=True, text=True)


def test_train_then_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--set", "epochs=2", "--set", "log.progress=false"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "test_acc" in printed
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]
    assert main(["resume", str(out)]) == 0
    # the run's page: its results table first, then a figure per metric (PNG and PDF)
    page = (out / "report.html").read_text()
    last = read_metrics(out)[-1]
    assert page.index("Results") < page.index("Curves") and f"{last['test_acc']:.6g}" in page
    assert list((out / "figures" / "report").glob("*test-acc*.png"))
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.html").exists()


def test_report_of_nothing_drawable_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "holds nothing losslab can draw" in err
    (tmp_path / "x.json").write_text('{"a": 1}')
    assert main(["report", str(tmp_path / "x.json")]) == 2
    assert "not a result losslab can draw" in capsys.readouterr().err


def test_train_from_a_yaml_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 1\nseed: 3\nlog:\n  progress: false\noptimizer:\n  name: adam\n"
                      "  lr: 0.003\nschedule:\n  name: constant\n")
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 0
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert "name: adam" in text and "seed: 3" in text and "eval_batch_size" in text  # resolved


def test_bad_key_exits_non_zero_without_traceback():
    result = _cli("train", "--set", "optimizer.lrr=0.1")
    assert result.returncode == 2
    assert "unknown key 'optimizer.lrr'" in result.stderr and "'lr'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_model_and_missing_dataset_are_clear(tmp_path):
    result = _cli("train", "--out", str(tmp_path / "a"), "--set", "model.name=resnet21")
    assert result.returncode == 2 and "resnet21" in result.stderr and "Traceback" not in result.stderr
    result = _cli("train", "--out", str(tmp_path / "b"), "--set", "data.name=mnist",
                  "--set", f"data.root={tmp_path / 'nodata'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(tmp_path / "nodata") in result.stderr and "train-images-idx3-ubyte" in result.stderr


def test_listings():
    models = _cli("models")
    assert models.returncode == 0 and "resnet20" in models.stdout and "small_cnn" in models.stdout
    datasets = _cli("datasets")
    assert datasets.returncode == 0 and "digits" in datasets.stdout and "cifar10" in datasets.stdout


def test_a_run_that_cannot_start_leaves_nothing_behind(tmp_path):
    out = tmp_path / "run"
    result = _cli("train", "--out", str(out), "--set", "data.options.n=5")
    assert result.returncode == 2 and "does not take option" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
    assert main(["train", "--out", str(out), "--set", "epochs=1"]) == 0


def test_a_failed_start_in_an_existing_directory_keeps_its_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = _cli("train", "--out", str(tmp_path), "--set", "model.name=nope")
    assert result.returncode == 2
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(monkeypatch, capsys):
    import pytest

    import losslab.cli as cli
    from losslab.errors import InputError

    def user_error(args):
        raise InputError("grid x: expected (lo, hi, n)\nwith an int n")

    def bug(args):
        return None + 1  # a programming error deep in the library

    monkeypatch.setattr(cli, "cmd_models", user_error)
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err == "losslab: error: grid x: expected (lo, hi, n) with an int n\n"
    monkeypatch.setattr(cli, "cmd_models", bug)
    with pytest.raises(TypeError):  # not a one-line "error": the traceback reaches the user
        main(["models"])
    monkeypatch.setattr(cli, "cmd_models", lambda args: {}["missing"])
    with pytest.raises(KeyError):
        main(["models"])


def test_a_missing_run_directory_is_a_one_line_error(tmp_path):
    r = _cli("resume", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("losslab: error: ") and r.stderr.count("\n") == 1
