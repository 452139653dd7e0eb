"""CIFAR-10 and CIFAR-100 from the official "python version" pickled batches.

Accepted places, in order: ``root/cifar-10-batches-py/`` (torchvision's layout, and where
``download=True`` extracts to) and ``root/cifar10/cifar-10-batches-py/``; likewise
``cifar-100-python/`` for CIFAR-100. When the folder is missing but the official archive
(``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``) sits in ``root`` or ``root/cifar10``
(``root/cifar100``), it is extracted safely (see :mod:`losslab.data.archive`); a downloaded
archive is kept in ``root`` next to its extracted folder. The pickles are read with a
restricted unpickler (see :mod:`losslab.data.safe_pickle`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from losslab.data.archive import safe_extract
from losslab.data.download import MIRRORS, fetch_files
from losslab.data.errors import DatasetFormatError
from losslab.data.locate import find_complete_dir, missing_error
from losslab.data.safe_pickle import safe_load
from losslab.data.splits import SourceData, Split

__all__ = ["load_cifar10", "load_cifar100", "load_cifar", "read_cifar_batch"]

_PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class _Layout:
    label: str  # the human name in messages
    folder: str  # the folder inside the archive
    archive: str  # the official archive's file name
    alias: str  # an extra folder under root that may hold the set or the archive
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str  # which labels to use (CIFAR-100: the 100 fine classes)
    num_classes: int


_LAYOUTS = {
    "cifar10": _Layout("CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz", "cifar10",
                       tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                       "labels", 10),
    "cifar100": _Layout("CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz", "cifar100",
                        ("train",), ("test",), "fine_labels", 100),
}


def _text_keys(batch: Any, path: Path) -> dict[str, Any]:
    """The batch dict with ``str`` keys (Python 2 pickles give ``bytes`` keys)."""
    if not isinstance(batch, dict):
        raise DatasetFormatError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}


def read_cifar_batch(path: str | Path, label_key: str = "labels",
                     num_classes: int = 10) -> Split:
    """One CIFAR batch file as a Split (N, 3, 32, 32 uint8); validates keys, shapes, labels."""
    path = Path(path)
    batch = _text_keys(safe_load(str(path)), path)
    if "data" not in batch or label_key not in batch:
        raise DatasetFormatError(f"{path}: missing key 'data' or {label_key!r} "
                                 f"(has {sorted(batch)})")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise DatasetFormatError(f"{path}: expected uint8 data of shape (N, {_PIXELS}), "
                                 f"got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise DatasetFormatError(f"{path}: {labels.shape} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetFormatError(f"{path}: labels outside 0..{num_classes - 1}")
    # Rows are 1024 red, then 1024 green, then 1024 blue values, each row-major: CHW already.
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return Split(x, torch.from_numpy(labels))


def _concat(splits: list[Split]) -> Split:
    return Split(torch.cat([s.x for s in splits]), torch.cat([s.y for s in splits]))


def _find(layout: _Layout, root: Path, *, download: bool, mirror: str | None,
          checksums: dict[str, str] | None, dataset: str) -> dict[str, Path]:
    """Paths of the batch files: found, else extracted from a local archive, else downloaded."""
    dirs = [root / layout.folder, root / layout.alias / layout.folder]
    expected = tuple((name,) for name in layout.train_files + layout.test_files)
    found = find_complete_dir(dirs, expected)
    if found is not None:
        return found
    for archive in (root / layout.archive, root / layout.alias / layout.archive):
        if archive.is_file():
            safe_extract(archive, archive.parent)
            if (found := find_complete_dir(dirs, expected)) is not None:
                return found
    if download:
        (archive,) = fetch_files(dataset, [layout.archive], root, mirror=mirror,
                                 checksums=checksums)
        safe_extract(archive, root)
        if (found := find_complete_dir(dirs, expected)) is not None:
            return found
    raise missing_error(layout.label, dirs, expected, dataset=dataset,
                        source=MIRRORS.get(dataset, "the official site") + layout.archive,
                        note=f"The archive {layout.archive} in {root} is accepted too "
                             "(it is extracted on first use).", dest=root)


def load_cifar(dataset: str, root: Path, *, download: bool = False, mirror: str | None = None,
               checksums: dict[str, str] | None = None) -> SourceData:
    """Read ``dataset`` ("cifar10" or "cifar100") from ``root``, downloading if asked."""
    layout = _LAYOUTS[dataset]
    found = _find(layout, root, download=download, mirror=mirror, checksums=checksums,
                  dataset=dataset)

    def read(names: tuple[str, ...]) -> Split:
        return _concat([read_cifar_batch(found[n], layout.label_key, layout.num_classes)
                        for n in names])

    return SourceData(read(layout.train_files), read(layout.test_files), layout.num_classes)


def load_cifar10(root: Path, *, download: bool = False, mirror: str | None = None,
                 checksums: dict[str, str] | None = None) -> SourceData:
    """CIFAR-10: 50000 train / 10000 test colour images, 3x32x32 uint8, 10 classes."""
    return load_cifar("cifar10", root, download=download, mirror=mirror, checksums=checksums)


def load_cifar100(root: Path, *, download: bool = False, mirror: str | None = None,
                  checksums: dict[str, str] | None = None) -> SourceData:
    """CIFAR-100: 50000 train / 10000 test colour images, 3x32x32 uint8, 100 fine classes."""
    return load_cifar("cifar100", root, download=download, mirror=mirror, checksums=checksums)
