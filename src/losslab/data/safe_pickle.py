"""A restricted unpickler for data files that only exist as pickles (CIFAR's python batches).

Why restricted rather than "verify a checksum, then ``pickle.load``": a checksum only exists
for the official archive, while users also point losslab at already-extracted folders, other
mirrors, or files written by tests, none of which could be verified. Unpickling an untrusted
file can run arbitrary code, because pickle calls whatever global the stream names. So this
unpickler resolves only the handful of globals a pickled dict of numpy arrays, lists, ints and
bytes needs, and rejects everything else with a clear error. That makes loading safe for any
file, checksummed or not.
"""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
import warnings
from collections.abc import Callable
from typing import Any, BinaryIO

from losslab.data.errors import DatasetFormatError

__all__ = ["safe_load", "RestrictedUnpickler"]


def _numpy_core(submodule: str, name: str) -> Callable[..., Any]:
    """``numpy._core.<submodule>.<name>`` (numpy 2) or ``numpy.core...`` (numpy 1)."""
    for module in (f"numpy._core.{submodule}", f"numpy.core.{submodule}"):
        try:
            with warnings.catch_warnings():  # numpy 2 deprecates the numpy.core alias
                warnings.simplefilter("ignore", DeprecationWarning)
                return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {submodule}.{name}")


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Python 3 writes ``bytes`` at pickle protocol 2 as _codecs.encode(str, "latin1"). Only that
    # encoding is let through: other codecs (zlib, base64...) are never needed by data files.
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"codecs.encode with encoding {encoding!r} is not allowed")
    return codecs.encode(text, "latin1")


def _allowed() -> dict[tuple[str, str], Callable[..., Any]]:
    """(module, name) as written in a pickle -> the object it may resolve to."""
    import numpy as np

    reconstruct = _numpy_core("multiarray", "_reconstruct")
    scalar = _numpy_core("multiarray", "scalar")
    frombuffer = _numpy_core("numeric", "_frombuffer")
    table: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("builtins", "bytearray"): bytearray,  # protocol 5 out-of-band buffers
    }
    # Arrays and numpy scalars, under both spellings of numpy's core package.
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        table[(f"{core}.multiarray", "scalar")] = scalar
        table[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return table


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild dicts, lists, bytes, numbers and numpy arrays, nothing else."""

    def __init__(self, file: BinaryIO, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._allowed = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy arrays and plain "
                "containers are allowed in data pickles") from None


def safe_load(path: str, *, encoding: str = "bytes") -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; raises DatasetFormatError.

    ``encoding="bytes"`` keeps Python 2 strings (CIFAR was pickled by Python 2) as ``bytes``,
    which is what numpy needs for array buffers; dict keys are then bytes (``b"data"``).
    """
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return RestrictedUnpickler(io.BytesIO(raw), encoding=encoding).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as e:
        raise DatasetFormatError(f"{path}: not a readable data pickle ({e})") from e
