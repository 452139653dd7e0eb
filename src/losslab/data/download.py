"""Fetching the standard data-set files from their official addresses, verified by checksum.

Nothing here runs unless ``download=True`` was asked for. A file is streamed into a temporary
file next to its final path, its MD5 checked against the published one, and only then renamed
into place with ``os.replace`` (atomic on one file system): an interrupted or corrupt transfer
never leaves a file at the final path that a later run would trust.

Where the files come from, by precedence:

1. the ``mirror=`` argument of ``load_dataset`` (a base URL holding the set's files);
2. ``$LOSSLAB_DATA_MIRROR``, a base URL holding one folder per data set
   (``$LOSSLAB_DATA_MIRROR/mnist/train-images-idx3-ubyte.gz``...);
3. :data:`MIRRORS`, the official addresses (a mutable table, e.g. for tests).

Checksums come from :data:`CHECKSUMS` (also mutable) unless a ``checksums=`` mapping from file
name to MD5 is passed, e.g. for a private mirror serving re-packed files.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.metadata
import logging
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

from losslab.data.errors import ChecksumError, DownloadError
from losslab.errors import NotFoundError
from losslab.runs.atomic import temporary_beside

__all__ = ["MIRRORS", "CHECKSUMS", "MIRROR_ENV", "base_url", "download_url", "fetch_files"]

log = logging.getLogger(__name__)

#: Environment variable naming a base URL with one folder per data set.
MIRROR_ENV = "LOSSLAB_DATA_MIRROR"

#: Official base URLs, per losslab data-set name.
MIRRORS: dict[str, str] = {
    # The original yann.lecun.com host often refuses downloads; this S3 copy is the one
    # PyTorch's own tooling uses, with identical files.
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
    "cifar100": "https://www.cs.toronto.edu/~kriz/",
}

#: Published MD5 checksums of every downloadable file, per data-set name.
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
    "cifar100": {"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"},
}

_CHUNK = 1 << 20


def base_url(dataset: str, mirror: str | None = None) -> str:
    """The base URL to fetch ``dataset``'s files from (see the module docstring), with '/'."""
    if mirror:
        url = mirror
    elif os.environ.get(MIRROR_ENV):
        url = os.environ[MIRROR_ENV].rstrip("/") + "/" + dataset
    else:
        url = MIRRORS[dataset]
    return url if url.endswith("/") else url + "/"


def _user_agent() -> str:
    # Looked up lazily: importing the ``losslab`` package from here would be circular.
    try:
        return f"losslab/{importlib.metadata.version('losslab')}"
    except importlib.metadata.PackageNotFoundError:
        return "losslab"


def _md5_of_stream(response: BinaryIO, out: BinaryIO) -> str:
    """Copy ``response`` into ``out`` in chunks, returning the MD5 of what was copied."""
    digest = hashlib.md5(usedforsecurity=False)  # integrity check, not security
    while chunk := response.read(_CHUNK):
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest()


def _reason(error: BaseException, timeout: float) -> str:
    """What went wrong with a transfer, in words (an HTTP status, a refused connection...)."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} ({error.reason})"
    if isinstance(error, urllib.error.URLError):
        if not isinstance(error.reason, BaseException):  # e.g. "unknown url type"
            return str(error.reason)
        error = error.reason  # the socket's own error says what happened
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(error, http.client.IncompleteRead):
        return (f"the connection closed after {len(error.partial)} bytes, "
                f"{error.expected} short")
    if isinstance(error, http.client.HTTPException):
        return f"a broken HTTP answer ({type(error).__name__}: {error})"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host ({error.strerror or error})"
    if isinstance(error, ConnectionRefusedError):
        return f"cannot connect ({error.strerror or error})"
    if isinstance(error, OSError):
        return f"the connection failed ({error.strerror or error})"
    return str(error)


def download_url(url: str, dest: str | os.PathLike[str], md5: str, *,
                 timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` if its MD5 is ``md5``; return ``dest``.

    The data goes to a temporary file in ``dest``'s directory and is renamed into place only
    after the checksum matched. On a mismatch the temporary file is deleted and
    :class:`ChecksumError` names the URL and both checksums; on a network error (an HTTP status
    such as 404, a refused connection, no answer, a transfer cut short) :class:`DownloadError`
    names the URL and the reason. Either way nothing is left at ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = temporary_beside(dest, suffix=".part")
    tmp = Path(tmp_name)
    log.info("downloading %s -> %s", url, dest)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": _user_agent()})
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    actual = _md5_of_stream(response, out)
            except (urllib.error.URLError, TimeoutError, ConnectionError,
                    http.client.HTTPException) as e:
                raise DownloadError(url, _reason(e, timeout),
                                    getattr(e, "code", None)) from e
            out.flush()
            os.fsync(out.fileno())  # the bytes are on disk before the name points at them
        if actual != md5.lower():
            raise ChecksumError(url, md5.lower(), actual)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)  # already renamed on success; removed on any failure
    return dest


def fetch_files(dataset: str, filenames: Iterable[str], dest_dir: str | os.PathLike[str], *,
                mirror: str | None = None,
                checksums: Mapping[str, str] | None = None) -> list[Path]:
    """Download the named files of ``dataset`` into ``dest_dir``; return their paths.

    Each file's MD5 comes from ``checksums`` when given there, else from :data:`CHECKSUMS`.
    """
    base = base_url(dataset, mirror)
    known = {**CHECKSUMS.get(dataset, {}), **(checksums or {})}
    paths = []
    for name in filenames:
        if name not in known:
            raise NotFoundError(f"no checksum known for {dataset} file {name!r}; pass checksums=")
        url = urllib.parse.urljoin(base, urllib.parse.quote(name))
        paths.append(download_url(url, Path(dest_dir) / name, known[name]))
    return paths
