"""Finding a data set's files on disk, and saying precisely what is missing when they are not.

A set may live in several layouts (losslab's own ``root/mnist/``, torchvision's
``root/MNIST/raw/``...), and each file may come in several spellings (gzipped or not). A set is
found when one directory holds every expected file in some accepted spelling; files are never
mixed across directories, so a half-copied layout cannot shadow a complete one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from losslab.data.errors import DatasetNotFoundError

__all__ = ["DATA_ROOT_ENV", "resolve_root", "find_complete_dir", "missing_error"]

#: Environment variable naming the default data root (used when ``root`` is None).
DATA_ROOT_ENV = "LOSSLAB_DATA_ROOT"

# Each expected file is a tuple of accepted names, the first being the canonical one.
Expected = Sequence[Sequence[str]]


def resolve_root(root: str | os.PathLike[str] | None) -> Path:
    """``root`` as a Path; None means ``$LOSSLAB_DATA_ROOT`` or else ``./data``."""
    if root is None:
        root = os.environ.get(DATA_ROOT_ENV) or "data"
    return Path(root).expanduser()


def _find_in(directory: Path, expected: Expected) -> dict[str, Path]:
    """Canonical name -> existing path, for the expected files present in ``directory``."""
    found: dict[str, Path] = {}
    for names in expected:
        for name in names:
            path = directory / name
            if path.is_file():
                found[names[0]] = path
                break
    return found


def find_complete_dir(dirs: Sequence[Path], expected: Expected) -> dict[str, Path] | None:
    """Paths of every expected file from the first directory holding all of them, else None."""
    for directory in dirs:
        found = _find_in(directory, expected)
        if len(found) == len(expected):
            return found
    return None


def missing_error(label: str, dirs: Sequence[Path], expected: Expected, *,
                  dataset: str, source: str, note: str = "",
                  dest: Path | None = None) -> DatasetNotFoundError:
    """A :class:`DatasetNotFoundError` naming the searched paths, the expected and missing files.

    ``dataset`` is the ``load_dataset`` name (for the ``download=True`` hint) and ``source``
    the official address; ``note`` is an extra sentence (e.g. an accepted archive), ``dest``
    where to put what ``source`` serves (default: the first searched directory).
    """
    lines = [f"{label} was not found. Searched: " + ", ".join(str(d) for d in dirs) + "."]
    spellings = []
    for names in expected:
        spellings.append(names[0] + (f" (or {', '.join(names[1:])})" if len(names) > 1 else ""))
    lines.append("Expected files (all in one of those directories): " + ", ".join(spellings) + ".")
    for directory in dirs:
        found = _find_in(directory, expected)
        if not directory.is_dir():
            lines.append(f"  {directory}: directory does not exist")
        else:
            missing = [names[0] for names in expected if names[0] not in found]
            lines.append(f"  {directory}: missing " + ", ".join(missing))
    if note:
        lines.append(note)
    lines.append(f"Get them with load_dataset({dataset!r}, root=..., download=True) "
                 f"(`download: true` in a config), or fetch them yourself from {source} "
                 f"into {dest if dest is not None else dirs[0]}.")
    return DatasetNotFoundError("\n".join(lines))
