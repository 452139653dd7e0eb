"""MNIST-1D: the package's generator, seeded and cached, never its downloader."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

import losslab.data.mnist1d as m1d
from losslab.cli import main
from losslab.data import Augment, DeviceLoader, load_dataset, make_loaders
from losslab.runs.metrics import read_metrics

N = 200  # 160 train / 40 test: tiny, generated in ~40 ms


def _arrays(source):
    return [t.numpy() for t in (source.train.x, source.train.y, source.test.x, source.test.y)]


def _equal(a, b) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(_arrays(a), _arrays(b), strict=True))


@pytest.fixture
def no_download(monkeypatch):
    """Any attempt at the package's download path (or any HTTP GET) fails the test."""
    import mnist1d.data
    import requests

    def refuse(*args, **kwargs):
        raise AssertionError("the mnist1d download path ran")

    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(mnist1d.data, "get_dataset", refuse)
    monkeypatch.setattr(mnist1d.data.requests, "get", refuse)


def test_the_package_generator_with_its_defaults(tmp_path, no_download):
    """Known answer: the arrays are exactly make_dataset(get_dataset_args() with n, seed)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = N, 3
    reference = make_dataset(args)
    source = m1d.load_mnist1d(tmp_path, num_samples=N, seed=3)
    assert source.num_classes == 10
    np.testing.assert_array_equal(source.train.x.numpy()[:, 0],
                                  reference["x"].astype(np.float32))
    np.testing.assert_array_equal(source.test.x.numpy()[:, 0],
                                  reference["x_test"].astype(np.float32))
    np.testing.assert_array_equal(source.train.y.numpy(), reference["y"])
    np.testing.assert_array_equal(source.test.y.numpy(), reference["y_test"])


def test_shapes_split_and_class_balance(tmp_path):
    source = m1d.load_mnist1d(tmp_path, num_samples=300, seed=0)
    assert source.train.x.shape == (240, 1, 40) and source.test.x.shape == (60, 1, 40)
    assert source.train.x.dtype == torch.float32 and source.train.y.dtype == torch.int64
    labels = torch.cat([source.train.y, source.test.y])
    assert torch.bincount(labels, minlength=10).tolist() == [30] * 10  # exactly n/10 each
    # The package standardizes the whole set (train and test together).
    x = torch.cat([source.train.x, source.test.x]).double()
    assert abs(float(x.mean())) < 1e-6 and abs(float(x.std(unbiased=False)) - 1) < 1e-6


def test_deterministic_for_a_seed_and_different_across_seeds(tmp_path):
    a = m1d.load_mnist1d(tmp_path / "a", num_samples=N, seed=5)
    b = m1d.load_mnist1d(tmp_path / "b", num_samples=N, seed=5)  # generated afresh
    c = m1d.load_mnist1d(tmp_path / "a", num_samples=N, seed=6)
    assert _equal(a, b)
    assert not np.array_equal(a.train.x.numpy(), c.train.x.numpy())
    assert len(list((tmp_path / "a" / "mnist1d").glob("*.npz"))) == 2  # one file per option set


def test_the_callers_global_generators_are_untouched():
    np.random.seed(123)
    random.seed(123)
    expected = (np.random.rand(), random.random())
    np.random.seed(123)
    random.seed(123)
    m1d.load_mnist1d(None, num_samples=N, seed=0)  # make_dataset reseeds both internally
    assert (np.random.rand(), random.random()) == expected


def test_the_cache_is_reused_and_written_atomically(tmp_path, monkeypatch):
    import mnist1d.data

    calls = []
    real = mnist1d.data.make_dataset
    monkeypatch.setattr(mnist1d.data, "make_dataset", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = m1d.load_mnist1d(tmp_path, num_samples=N, seed=1)
    second = m1d.load_mnist1d(tmp_path, num_samples=N, seed=1)
    assert len(calls) == 1 and _equal(first, second)
    path = m1d.cache_path(tmp_path, N, 1)
    assert path.is_file() and path.parent == tmp_path / "mnist1d"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    with np.load(path, allow_pickle=False) as f:  # plain arrays, no pickle needed
        assert set(f.files) == {"x_train", "y_train", "x_test", "y_test", "sha256", "args"}
        record = json.loads(str(f["args"]))
    assert record["args"]["num_samples"] == N and record["args"]["seed"] == 1
    assert record["args"]["train_split"] == 0.8 and record["args"]["final_seq_length"] == 40
    assert "url" not in record["args"]


@pytest.mark.parametrize("damage", ["truncate", "tamper"])
def test_a_damaged_cache_is_regenerated(tmp_path, damage):
    good = m1d.load_mnist1d(tmp_path, num_samples=N, seed=2)
    path = m1d.cache_path(tmp_path, N, 2)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    else:  # a valid file whose arrays no longer match their checksum
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
        arrays["x_train"][0, 0] += 1.0
        np.savez(path, **arrays)
    again = m1d.load_mnist1d(tmp_path, num_samples=N, seed=2)
    assert _equal(good, again)
    assert _equal(good, m1d.load_mnist1d(tmp_path, num_samples=N, seed=2))  # rewritten: good


def test_the_cache_key_follows_the_package_version(tmp_path, monkeypatch):
    before = m1d.cache_path(tmp_path, N, 0)
    monkeypatch.setattr(m1d.metadata, "version", lambda name: "9.9.9")
    assert m1d.cache_path(tmp_path, N, 0) != before


def test_load_dataset_carves_validation_and_never_downloads(tmp_path, no_download):
    splits = load_dataset("mnist1d", tmp_path, download=True, val_size=0.1, num_samples=N)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (144, 16, 40)
    assert splits.in_channels == 1 and splits.image_size == 40 and splits.num_classes == 10
    assert len(splits.mean) == len(splits.std) == 1
    expected = splits.train.x.double()
    assert splits.mean[0] == pytest.approx(float(expected.mean()))
    # The default size, named in the registry's description and docs/data.md.
    assert m1d.DEFAULT_NUM_SAMPLES == 10000 and m1d.DEFAULT_SEED == 42


def test_the_loader_normalizes_signals_and_refuses_a_flip(tmp_path):
    splits = load_dataset("mnist1d", tmp_path, num_samples=N)
    train, evals = make_loaders(splits, batch_size=32, seed=0)
    x, y = next(iter(evals["test"]))
    assert x.shape == (32, 1, 40) and x.dtype == torch.float32 and y.shape == (32,)
    mean, std = splits.mean[0], splits.std[0]
    torch.testing.assert_close(x, (splits.test.x[:32] - mean) / std)
    assert sum(len(b[1]) for b in train) == len(splits.train)
    with pytest.raises(ValueError, match=r"data.augment.flip is for NCHW images; these are "
                                         r"1-D signals of shape \(144, 1, 40\)"):
        DeviceLoader(splits.train, 32, augment=Augment(crop_padding=4, flip=True))


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_crop_padding_shifts_a_signal(tmp_path, mode):
    """Each example is the window of length L at its drawn offset in the padded signal, and
    the epoch's offsets cover [0, 2p]."""
    splits = load_dataset("mnist1d", tmp_path, num_samples=N)
    p, length = 4, splits.train.x.shape[-1]
    loader = DeviceLoader(splits.train, 500, shuffle=False,
                          augment=Augment(crop_padding=p, padding_mode=mode), seed=3)
    _, params = loader.epoch_plan(0)
    assert params.top.eq(0).all() and set(params.left.tolist()) == set(range(2 * p + 1))
    (x, _), = list(loader)
    raw = splits.train.x.double()
    padded = (torch.nn.functional.pad(raw, (p, p)) if mode == "zeros"
              else torch.nn.functional.pad(raw, (p, p), mode="reflect"))
    expected = torch.stack([padded[i, :, int(o):int(o) + length] for i, o in
                            enumerate(params.left)])
    assert x.shape == raw.shape
    torch.testing.assert_close(x.double(), expected)  # mean 0, std 1: the raw values


@pytest.mark.parametrize("options, message", [
    ({"num_samples": 105}, r"num_samples must be a positive multiple of 10.*got 105"),
    ({"num_samples": 0}, r"num_samples must be a positive multiple of 10"),
    ({"num_samples": "100"}, r"num_samples must be .*got '100'"),
    ({"num_samples": True}, r"num_samples must be"),
    ({"seed": -1}, r"seed must be an int in \[0, 2\*\*32\), got -1"),
    ({"seed": 1.5}, r"seed must be an int"),
])
def test_bad_options_are_one_line_errors(tmp_path, options, message):
    with pytest.raises(ValueError, match=message) as info:
        load_dataset("mnist1d", tmp_path, **options)
    assert "\n" not in str(info.value) and str(info.value).startswith("mnist1d: ")
    assert not (tmp_path / "mnist1d").exists()


def test_an_unknown_option_names_the_valid_ones(tmp_path):
    with pytest.raises(TypeError, match=r"'mnist1d' does not take option\(s\) n; it takes: "
                                        r"num_samples, seed") as info:
        load_dataset("mnist1d", tmp_path, n=100)
    assert "\n" not in str(info.value)


def test_train_cnn1d_end_to_end(tmp_path, no_download, capsys):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--set", "data.name=mnist1d",
            "--set", "model.name=cnn1d", "--set", "epochs=2",
            "--set", f"data.root={tmp_path / 'data'}", "--set", "data.options.num_samples=1000",
            "--set", "log.progress=false"]
    assert main(args) == 0
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(np.isfinite(r["train_loss"]) for r in rows)
    assert rows[-1]["test_acc"] > 0.15  # above chance (0.1) after two epochs on 720 signals
    assert m1d.cache_path(tmp_path / "data", 1000, 42).is_file()
    capsys.readouterr()


def test_a_cached_read_does_not_import_the_package(tmp_path):
    """Importing mnist1d (scipy.interpolate, matplotlib.pyplot) costs ~1 s a run."""
    m1d.load_mnist1d(tmp_path, num_samples=N, seed=0)
    code = ("import sys; from pathlib import Path; import losslab.data.mnist1d as m; "
            f"s = m.load_mnist1d(Path({str(tmp_path)!r}), num_samples={N}, seed=0); "
            "print(len(s.train), 'mnist1d' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["160", "False"]
