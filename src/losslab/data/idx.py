"""A reader for the IDX format of MNIST and Fashion-MNIST, gzipped or not.

The format (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number ``0x00 0x00 TYPE NDIM``,
then ``NDIM`` big-endian uint32 sizes, then the values, big-endian, row-major. Everything is
checked (magic, type, sizes against the byte count) so a truncated download or a wrong file
fails here with its name, not later as a mysterious reshape error.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from losslab.data.errors import DatasetFormatError

__all__ = ["read_idx", "IDX_TYPES"]

#: IDX type code -> numpy dtype (all big-endian, as the format specifies).
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's content, decompressed when it is gzip (detected by content, not by name)."""
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:  # truncated or damaged gzip stream
        raise DatasetFormatError(f"{path}: damaged gzip file ({e}); delete it and fetch it "
                                 "again") from e


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an IDX file into an array of its declared type and shape."""
    if len(data) < 4:
        raise DatasetFormatError(f"{name}: too short for an IDX file ({len(data)} bytes)")
    zero0, zero1, type_code, ndim = data[:4]
    if zero0 != 0 or zero1 != 0 or type_code not in IDX_TYPES or ndim == 0:
        raise DatasetFormatError(f"{name}: bad IDX magic number 0x{data[:4].hex()} (expected "
                                 "0x0000TTNN with a known type TT, e.g. 0x00000803 for images "
                                 "and 0x00000801 for labels); not an IDX file, or corrupt")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetFormatError(f"{name}: truncated IDX header ({len(data)} bytes, "
                                 f"{header} needed for {ndim} dimensions)")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise DatasetFormatError(f"{name}: IDX file {what}: header declares shape {shape} "
                                 f"({expected} bytes of data), found {actual}")
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    # Native byte order and an owned, writable buffer: torch.from_numpy needs both.
    return values.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) into a numpy array; raises DatasetFormatError."""
    return parse_idx(_read_bytes(path), name=os.fspath(path))
