"""Safe extraction of a ``.tar.gz`` data archive (CIFAR ships as one).

A tar file can name members like ``../../.bashrc``, absolute paths, symlinks pointing outside
the destination, or device files. Every member is checked before anything is written: only
regular files and directories with relative, non-escaping names are accepted, and the whole
archive is refused otherwise. (Python's ``filter="data"`` enforces the same where available; it
is applied too, as a second line.) Extraction goes to a temporary folder next to the
destination and files are moved into place one by one with ``os.replace``, so an interrupted
extraction never leaves a truncated file under its final name.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

from losslab.data.errors import DatasetFormatError

__all__ = ["safe_extract"]

log = logging.getLogger(__name__)


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    """Raise DatasetFormatError unless ``member`` is a plain file/dir inside the archive root."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or member.name.startswith(("/", "\\")):
        raise DatasetFormatError(f"{archive}: refusing unsafe member path {member.name!r}")
    if not (member.isfile() or member.isdir()):
        raise DatasetFormatError(f"{archive}: refusing member {member.name!r} that is not a "
                                 "regular file or directory (link or device)")


def _move_tree(src: Path, dest: Path) -> list[Path]:
    """Move every file under ``src`` to the same relative place under ``dest``."""
    moved = []
    for path in sorted(src.rglob("*")):
        if path.is_file():
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            moved.append(target)
    return moved


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[Path]:
    """Extract ``archive`` (any tar compression) into ``dest``; return the extracted files.

    Raises DatasetFormatError for an unreadable archive or one with unsafe members.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
    log.info("extracting %s -> %s", archive, dest)
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(archive, member)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=members, filter="data")
                else:  # Python without extraction filters: our own checks above suffice
                    tar.extractall(tmp, members=members)
        except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise DatasetFormatError(f"{archive}: unreadable archive ({e}); delete it and fetch "
                                     "it again") from e
        return _move_tree(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
