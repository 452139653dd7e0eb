"""Atomic file writes: a run killed at any moment never leaves a half-written file.

Every file is written to a temporary name in the same directory, flushed to disk, and
moved into place with ``os.replace``, which POSIX guarantees to be atomic. Appends to
the metrics log are the one exception: a torn last line is detected and dropped on
resume (see :mod:`losslab.runs.metrics`).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "temporary_beside"]


def temporary_beside(path: str | Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A new, empty file ``.NAME.<random>SUFFIX`` in ``path``'s directory: ``(fd, its path)``.

    Created with mode ``0o666`` less the process's umask, as any other tool creates files:
    ``tempfile.mkstemp`` makes them ``0600``, and a file renamed into place keeps that, so a
    colleague on a shared disk could not open the report or a checkpoint.
    """
    path = Path(path)
    for _ in range(100):
        name = path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}"
        try:
            return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666), str(name)
        except FileExistsError:  # another writer drew the same name: draw again
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_beside(path)
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)  # a writer that replaces the file (safetensors) leaves it 0600
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
