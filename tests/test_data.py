"""Data sets: digits, synthetic, validation carving, readers of the real file formats, errors.

Real MNIST/CIFAR files are never needed: each reader test writes a tiny set in the official
format itself (IDX with big-endian headers, CIFAR pickled dicts with bytes keys).
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from losslab.data import (
    DatasetFormatError,
    DatasetNotFoundError,
    DatasetSplits,
    Split,
    list_datasets,
    load_dataset,
    read_idx,
)
from losslab.data.archive import safe_extract
from losslab.data.safe_pickle import safe_load
from losslab.data.splits import carve_validation, channel_stats

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


# -- writers of the official formats (independent of the code under test) --------------------
def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic 0x0000 08 NDIM, big-endian sizes, the values."""
    assert array.dtype == np.uint8
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx_set(folder: Path, n_train: int = 20, n_test: int = 10, *, gz: bool = True,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """The four MNIST files of a tiny random set; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def cifar_batch(n: int, label_key: bytes, num_classes: int, rng: np.random.Generator) -> dict:
    return {b"batch_label": b"test batch", label_key: rng.integers(0, num_classes, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def write_cifar10(folder: Path, per_batch: int = 4, n_test: int = 6, protocol: int = 2) -> dict:
    rng = np.random.default_rng(1)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {name: cifar_batch(n_test if name == "test_batch" else per_batch, b"labels", 10,
                                 rng) for name in names}
    folder.mkdir(parents=True, exist_ok=True)
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return batches


def write_cifar100(folder: Path, n_train: int = 20, n_test: int = 8) -> dict:
    rng = np.random.default_rng(2)
    batches = {"train": cifar_batch(n_train, b"fine_labels", 100, rng),
               "test": cifar_batch(n_test, b"fine_labels", 100, rng)}
    for batch in batches.values():
        batch[b"coarse_labels"] = [label // 5 for label in batch[b"fine_labels"]]
    folder.mkdir(parents=True, exist_ok=True)
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return batches


def cifar_pixels(batches: list[dict]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32))


# -- digits and synthetic --------------------------------------------------------------------
def test_digits_shapes_and_scale():
    s = load_dataset("digits", val_size=0.1)
    assert isinstance(s, DatasetSplits)
    assert (s.num_classes, s.in_channels, s.image_size) == (10, 1, 8)
    assert s.train.x.dtype == torch.float32 and s.train.y.dtype == torch.int64
    assert s.train.x.shape[1:] == (1, 8, 8)
    assert len(s.train) + len(s.val) + len(s.test) == 1797
    assert len(s.test) == 359  # the fixed 20% test split
    assert len(s.val) == round(0.1 * (1797 - 359))
    assert 0.0 <= float(s.train.x.min()) and float(s.train.x.max()) <= 1.0
    assert len(s.mean) == 1 and len(s.std) == 1


def _rows(x: torch.Tensor) -> Counter[bytes]:
    """The multiset of examples (as raw bytes): equal multisets = same examples, same counts."""
    return Counter(row.numpy().tobytes() for row in x.reshape(x.shape[0], -1))


def test_digits_splits_disjoint_and_cover():
    from sklearn.datasets import load_digits

    s = load_dataset("digits", val_size=200, split_seed=3)
    all_images = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0)
    # Digits holds a few duplicate images, so compare multisets: together the three splits
    # are exactly the data set (cover), with no example used twice (disjoint).
    assert _rows(s.train.x) + _rows(s.val.x) + _rows(s.test.x) == _rows(all_images)
    assert len(s.val) == 200 and len(s.train) + len(s.val) + len(s.test) == 1797


def test_digits_test_split_fixed_val_split_seeded():
    a, b = load_dataset("digits", split_seed=0), load_dataset("digits", split_seed=0)
    c = load_dataset("digits", split_seed=1)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.val.x, c.val.x)
    assert torch.equal(a.test.x, c.test.x)  # the test split ignores split_seed


def test_val_size_zero_and_errors():
    s = load_dataset("digits", val_size=0)
    assert s.val is None and len(s.train) == 1797 - 359
    split = Split(torch.zeros(10, 1, 2, 2), torch.arange(10))
    with pytest.raises(ValueError):
        carve_validation(split, 1.5, 0)
    with pytest.raises(ValueError):
        carve_validation(split, 10, 0)
    with pytest.raises(TypeError):
        carve_validation(split, True, 0)


def test_carve_validation_is_partition():
    split = Split(torch.arange(50, dtype=torch.float32).reshape(50, 1, 1, 1), torch.arange(50))
    train, val = carve_validation(split, 0.2, seed=7)
    assert len(val) == 10 and len(train) == 40
    ids = torch.cat([train.y, val.y]).sort().values
    assert torch.equal(ids, torch.arange(50))
    assert torch.equal(train.x.reshape(-1).long(), train.y)  # x and y stay paired


def test_synthetic_deterministic_and_shaped():
    kw = {"n": 60, "num_classes": 3, "channels": 2, "image_size": 5, "seed": 4}
    a, b = load_dataset("synthetic", **kw), load_dataset("synthetic", **kw)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert a.train.x.shape[1:] == (2, 5, 5) and (a.in_channels, a.image_size) == (2, 5)
    assert a.num_classes == 3 and len(a.train) + len(a.val) == 60 and len(a.test) == 15
    c = load_dataset("synthetic", **{**kw, "seed": 5})
    assert not torch.equal(a.train.x, c.train.x)
    u = load_dataset("synthetic", dtype="uint8", channels=3, image_size=4)
    assert u.train.x.dtype == torch.uint8 and len(u.mean) == 3


def test_channel_stats_uint8_matches_direct():
    x = torch.randint(0, 256, (30, 3, 4, 4), dtype=torch.uint8)
    mean, std = channel_stats(x)
    f = x.double() / 255
    assert np.allclose(mean, f.mean(dim=(0, 2, 3)).numpy())
    assert np.allclose(std, f.std(dim=(0, 2, 3), unbiased=False).numpy())


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match="cifar10") as info:
        load_dataset("cifar1O")
    assert "did you mean" in str(info.value) and "digits" in str(info.value)
    with pytest.raises(TypeError, match="bogus"):
        load_dataset("digits", bogus=1)


def test_list_datasets():
    names = list_datasets()
    assert {"digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "synthetic"} <= set(names)
    assert all(isinstance(d, str) and d and "\n" not in d for d in names.values())


def test_split_and_splits_to():
    s = load_dataset("synthetic", n=16).to("cpu")
    assert s.train.x.device.type == "cpu" and len(s.train) == len(s.train.y)
    with pytest.raises(ValueError):
        Split(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))


# -- MNIST / Fashion-MNIST -------------------------------------------------------------------
@pytest.mark.parametrize("name,folder", [("mnist", "mnist"), ("fashion_mnist", "fashion_mnist"),
                                         ("mnist", "MNIST/raw"),
                                         ("fashion_mnist", "FashionMNIST/raw")])
def test_idx_reader(tmp_path, name, folder):
    arrays = write_idx_set(tmp_path / folder, gz=folder.islower())
    s = load_dataset(name, tmp_path, val_size=0)
    assert (s.num_classes, s.in_channels, s.image_size) == (10, 1, 28)
    assert s.train.x.dtype == torch.uint8 and s.train.x.shape == (20, 1, 28, 28)
    assert torch.equal(s.train.x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert torch.equal(s.test.y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    expected_mean = arrays["train-images-idx3-ubyte"].mean() / 255
    assert abs(s.mean[0] - expected_mean) < 1e-9


def test_idx_corrupt_files(tmp_path):
    images = np.zeros((3, 28, 28), np.uint8)
    good = idx_bytes(images)
    bad_magic = tmp_path / "bad_magic"
    bad_magic.write_bytes(b"\x00\x00\x07\x03" + good[4:])
    with pytest.raises(DatasetFormatError, match="magic"):
        read_idx(bad_magic)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(good[:-5])
    with pytest.raises(DatasetFormatError, match="truncated"):
        read_idx(truncated)
    truncated_gz = tmp_path / "truncated.gz"
    truncated_gz.write_bytes(gzip.compress(good)[:-20])
    with pytest.raises(DatasetFormatError, match="gzip"):
        read_idx(truncated_gz)
    short_header = tmp_path / "short"
    short_header.write_bytes(good[:9])
    with pytest.raises(DatasetFormatError, match="header"):
        read_idx(short_header)
    plain = tmp_path / "plain"
    plain.write_bytes(good)
    assert read_idx(plain).shape == (3, 28, 28)


def test_mnist_label_image_count_mismatch(tmp_path):
    write_idx_set(tmp_path / "mnist")
    labels = np.zeros(7, np.uint8)
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(DatasetFormatError, match="labels"):
        load_dataset("mnist", tmp_path)


def test_missing_set_error_names_paths_and_files(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / MNIST_FILES[0]).write_bytes(b"")
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", tmp_path)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path / "mnist") in message and str(tmp_path / "MNIST" / "raw") in message
    assert all(name in message for name in MNIST_FILES)
    assert "missing train-labels-idx1-ubyte.gz" in message  # only the missing ones there
    assert "download=True" in message and "https://" in message


def test_missing_cifar_error(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar100", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "cifar-100-python") in message
    assert "train" in message and "test" in message and "cifar-100-python.tar.gz" in message


# -- CIFAR -----------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_reader(tmp_path, protocol):
    batches = write_cifar10(tmp_path / "cifar-10-batches-py", protocol=protocol)
    s = load_dataset("cifar10", tmp_path, val_size=0)
    assert (s.num_classes, s.in_channels, s.image_size) == (10, 3, 32)
    assert s.train.x.shape == (20, 3, 32, 32) and s.train.x.dtype == torch.uint8
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    assert torch.equal(s.train.x, cifar_pixels(train))
    assert s.train.y.tolist() == sum((b[b"labels"] for b in train), [])
    assert torch.equal(s.test.x, cifar_pixels([batches["test_batch"]]))
    assert len(s.mean) == 3 and len(s.std) == 3


def test_cifar100_reader_fine_labels(tmp_path):
    batches = write_cifar100(tmp_path / "cifar-100-python")
    s = load_dataset("cifar100", tmp_path, val_size=4, split_seed=1)
    assert s.num_classes == 100 and len(s.train) == 16 and len(s.val) == 4
    full = load_dataset("cifar100", tmp_path, val_size=0)
    assert full.train.y.tolist() == batches["train"][b"fine_labels"]
    assert torch.equal(full.test.x, cifar_pixels([batches["test"]]))


def test_cifar_from_local_archive(tmp_path):
    src = tmp_path / "src"
    batches = write_cifar10(src / "cifar-10-batches-py")
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    s = load_dataset("cifar10", root, val_size=0)
    assert torch.equal(s.test.x, cifar_pixels([batches["test_batch"]]))
    assert (root / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert not list(root.glob(".extract-*"))  # the temporary folder is gone


def test_unsafe_archive_refused(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"owned"
        info = tarfile.TarInfo("../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DatasetFormatError, match="unsafe"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
    link_archive = tmp_path / "link.tar.gz"
    with tarfile.open(link_archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DatasetFormatError, match="link"):
        safe_extract(link_archive, tmp_path / "out")


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_restricted_unpickler_refuses_code(tmp_path, capsys):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Evil()}, protocol=2))
    with pytest.raises(DatasetFormatError, match="refusing"):
        safe_load(str(path))
    assert "never run" not in capsys.readouterr().out
    ok = tmp_path / "ok"
    ok.write_bytes(pickle.dumps({b"x": np.arange(3), b"y": [1, 2]}, protocol=2))
    loaded = safe_load(str(ok))
    assert loaded[b"y"] == [1, 2] and np.array_equal(loaded[b"x"], np.arange(3))


def test_cifar_bad_batch(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    bad = {b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]}
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(bad))
    with pytest.raises(DatasetFormatError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path)
