"""Downloads against a loopback HTTP server serving files the tests build in the real formats."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import pickle
import struct
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from losslab.data import ChecksumError, DatasetNotFoundError, download_url, load_dataset
from losslab.data import download as download_module

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder and records the requested paths; silent."""

    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server:
    def __init__(self, folder: Path) -> None:
        self.requests: list[str] = []
        handler = type("Handler", (_Handler,), {"requests": self.requests})
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[Path, Server]]:
    folder = tmp_path / "served"
    folder.mkdir()
    server = Server(folder)
    yield folder, server
    server.close()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def idx_gz(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                          *array.shape)
    return gzip.compress(header + array.tobytes())


def build_mnist(folder: Path) -> dict[str, str]:
    """The four gz files of a tiny MNIST in ``folder``; returns name -> md5."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, 12, dtype=np.uint8),
              rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, 5, dtype=np.uint8)]
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(MNIST_FILES, arrays, strict=True):
        (folder / name).write_bytes(idx_gz(array))
    return {name: md5(folder / name) for name in MNIST_FILES}


def build_cifar10_archive(folder: Path, work: Path) -> Path:
    """A cifar-10-python.tar.gz with six tiny pickled batches, like the official one."""
    rng = np.random.default_rng(0)
    batches = work / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"labels": rng.integers(0, 10, 3).tolist(),
                 b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8)}
        (batches / name).write_bytes(pickle.dumps(batch, protocol=2))
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    return archive


def test_mnist_download_with_checksums(tmp_path, served):
    folder, server = served
    sums = build_mnist(folder)
    root = tmp_path / "root"
    s = load_dataset("mnist", root, download=True, mirror=server.url, checksums=sums,
                     val_size=0)
    assert s.train.x.shape == (12, 1, 28, 28) and len(s.test) == 5
    for name in MNIST_FILES:
        assert (root / "mnist" / name).read_bytes() == (folder / name).read_bytes()
    assert sorted(server.requests) == sorted(f"/{name}" for name in MNIST_FILES)
    # Loading again finds the files and does not download.
    load_dataset("mnist", root, download=True, mirror=server.url, checksums=sums)
    assert len(server.requests) == 4


def test_only_missing_files_are_downloaded(tmp_path, served, monkeypatch):
    folder, server = served
    sums = build_mnist(folder / "fashion_mnist")
    # The table route: patch the checksums and point the environment mirror at the server.
    monkeypatch.setitem(download_module.CHECKSUMS, "fashion_mnist", sums)
    monkeypatch.setenv(download_module.MIRROR_ENV, server.url)
    root = tmp_path / "root"
    (root / "fashion_mnist").mkdir(parents=True)
    for name in MNIST_FILES[:2]:
        (root / "fashion_mnist" / name).write_bytes((folder / "fashion_mnist" / name).read_bytes())
    s = load_dataset("fashion_mnist", root, download=True, val_size=0)
    assert len(s.train) == 12
    assert sorted(server.requests) == sorted(f"/fashion_mnist/{n}" for n in MNIST_FILES[2:])


def test_cifar_archive_download(tmp_path, served, monkeypatch):
    folder, server = served
    archive = build_cifar10_archive(folder, tmp_path / "work")
    monkeypatch.setitem(download_module.MIRRORS, "cifar10", server.url)
    monkeypatch.setitem(download_module.CHECKSUMS, "cifar10",
                        {"cifar-10-python.tar.gz": md5(archive)})
    root = tmp_path / "root"
    s = load_dataset("cifar10", root, download=True, val_size=0)
    assert s.train.x.shape == (15, 3, 32, 32) and len(s.test) == 3
    assert server.requests == ["/cifar-10-python.tar.gz"]
    assert (root / "cifar-10-python.tar.gz").is_file()
    assert (root / "cifar-10-batches-py" / "test_batch").is_file()


def test_corrupt_download_rejected(tmp_path, served):
    folder, server = served
    sums = build_mnist(folder)
    wrong = {**sums, MNIST_FILES[0]: "0" * 32}
    root = tmp_path / "root"
    with pytest.raises(ChecksumError) as info:
        load_dataset("mnist", root, download=True, mirror=server.url, checksums=wrong)
    message = str(info.value)
    assert "0" * 32 in message and sums[MNIST_FILES[0]] in message
    assert f"{server.url}{MNIST_FILES[0]}" in message
    assert info.value.actual == sums[MNIST_FILES[0]]
    assert not (root / "mnist" / MNIST_FILES[0]).exists()
    assert not [p for p in (root / "mnist").iterdir() if p.name.endswith(".part")]


def test_download_url_leaves_nothing_on_mismatch(tmp_path, served):
    folder, server = served
    (folder / "blob.bin").write_bytes(b"payload")
    dest = tmp_path / "out" / "blob.bin"
    with pytest.raises(ChecksumError):
        download_url(server.url + "blob.bin", dest, "f" * 32)
    assert list((tmp_path / "out").iterdir()) == []
    good = hashlib.md5(b"payload").hexdigest()
    assert download_url(server.url + "blob.bin", dest, good.upper()).read_bytes() == b"payload"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["blob.bin"]


def test_http_error_names_url(tmp_path, served):
    _, server = served
    with pytest.raises(OSError, match="missing.bin"):
        download_url(server.url + "missing.bin", tmp_path / "missing.bin", "0" * 32)
    assert not list(tmp_path.glob("*missing*"))


def test_never_downloads_unless_asked(tmp_path, served, monkeypatch):
    folder, server = served
    build_mnist(folder / "mnist")
    monkeypatch.setenv(download_module.MIRROR_ENV, server.url)
    with pytest.raises(DatasetNotFoundError):
        load_dataset("mnist", tmp_path / "root")
    assert server.requests == []


def test_mirror_precedence(monkeypatch):
    monkeypatch.delenv(download_module.MIRROR_ENV, raising=False)
    assert download_module.base_url("mnist") == download_module.MIRRORS["mnist"]
    monkeypatch.setenv(download_module.MIRROR_ENV, "http://m.example/data")
    assert download_module.base_url("cifar10") == "http://m.example/data/cifar10/"
    assert download_module.base_url("cifar10", "http://x.example/c") == "http://x.example/c/"


def test_official_table_complete():
    for name in ("mnist", "fashion_mnist"):
        assert set(download_module.CHECKSUMS[name]) == set(MNIST_FILES)
    assert download_module.CHECKSUMS["cifar10"]["cifar-10-python.tar.gz"] == \
        "c58f30108f718f92721af3b95e74349a"
    assert download_module.CHECKSUMS["cifar100"]["cifar-100-python.tar.gz"] == \
        "eb9058c3a382ffc7106e4002c42a8d85"
    assert all(url.startswith("http") for url in download_module.MIRRORS.values())


def _train_mnist(root: Path, out: Path) -> int:
    from losslab.cli import main

    return main(["train", "--out", str(out), "--set", "data.name=mnist",
                 "--set", f"data.root={root}", "--set", "data.download=true",
                 "--set", "epochs=1", "--set", "log.progress=false"])


def _one_line(capsys, *names: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("losslab: error: "), err
    for name in names:
        assert name in err, (name, err)
    return err


def test_a_wrong_checksum_is_one_line_from_the_command(tmp_path, served, monkeypatch, capsys):
    folder, server = served
    build_mnist(folder / "mnist")  # not the official files: the official checksums differ
    monkeypatch.setenv(download_module.MIRROR_ENV, server.url)
    root, out = tmp_path / "root", tmp_path / "run"
    assert _train_mnist(root, out) == 2
    _one_line(capsys, "checksum mismatch", f"{server.url}mnist/{MNIST_FILES[0]}",
              download_module.CHECKSUMS["mnist"][MNIST_FILES[0]])
    assert not out.exists() and not list((root / "mnist").iterdir())


def test_http_404_is_a_download_error_naming_url_and_status(tmp_path, served, monkeypatch,
                                                            capsys):
    from losslab.data.errors import DownloadError

    _, server = served
    with pytest.raises(DownloadError) as info:
        download_url(server.url + "missing.bin", tmp_path / "missing.bin", "0" * 32)
    assert info.value.status == 404 and info.value.url == server.url + "missing.bin"
    assert "HTTP 404" in str(info.value)
    monkeypatch.setenv(download_module.MIRROR_ENV, server.url + "nowhere")
    assert _train_mnist(tmp_path / "root", tmp_path / "run") == 2
    _one_line(capsys, f"{server.url}nowhere/mnist/{MNIST_FILES[0]}", "HTTP 404")
    assert not (tmp_path / "run").exists()


def test_a_refused_connection_is_a_download_error_naming_url(tmp_path, monkeypatch, capsys):
    import pickle
    import socket

    from losslab.data.errors import DownloadError

    with socket.socket() as s:  # a port nothing listens on once it is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with pytest.raises(DownloadError, match="cannot connect") as info:
        download_url(url + "x.bin", tmp_path / "x.bin", "0" * 32)
    again = pickle.loads(pickle.dumps(info.value))  # crosses a worker's process boundary
    assert str(again) == str(info.value) and again.url == url + "x.bin"
    monkeypatch.setenv(download_module.MIRROR_ENV, url)
    assert _train_mnist(tmp_path / "root", tmp_path / "run") == 2
    _one_line(capsys, f"{url}mnist/{MNIST_FILES[0]}", "cannot connect", "refused")
