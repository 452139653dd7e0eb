"""MNIST and Fashion-MNIST from their standard IDX files.

Both sets share one file layout (four IDX files, 28x28 grey images, 10 classes), so one reader
serves both. Accepted places, in order: ``root/mnist/`` (resp. ``root/fashion_mnist/``, where
``download=True`` puts them) and torchvision's ``root/MNIST/raw/`` (resp.
``root/FashionMNIST/raw/``); each file gzipped or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from losslab.data.download import MIRRORS, fetch_files
from losslab.data.errors import DatasetFormatError
from losslab.data.idx import read_idx
from losslab.data.locate import find_complete_dir, missing_error
from losslab.data.splits import SourceData, Split

__all__ = ["IDX_FILES", "load_mnist", "load_fashion_mnist", "load_idx_set"]

#: The four files of an IDX set, as published (gzipped).
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

_IMAGE_SIZE = 28
_NUM_CLASSES = 10


@dataclass(frozen=True)
class _Layout:
    label: str  # the human name in messages
    folder: str  # losslab's folder under root (also where downloads go)
    torchvision_folder: str  # torchvision's folder under root (files under raw/)


_LAYOUTS = {
    "mnist": _Layout("MNIST", "mnist", "MNIST"),
    "fashion_mnist": _Layout("Fashion-MNIST", "fashion_mnist", "FashionMNIST"),
}


def _expected() -> tuple[tuple[str, str], ...]:
    # The canonical gzipped name first, then the uncompressed spelling.
    return tuple((name, name.removesuffix(".gz")) for name in IDX_FILES)


def _read_pair(images_path: Path, labels_path: Path) -> Split:
    """One split from an images file and a labels file, with every shape checked."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (_IMAGE_SIZE,) * 2:
        raise DatasetFormatError(f"{images_path}: expected uint8 images of shape (N, 28, 28), "
                                 f"got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetFormatError(f"{labels_path}: expected a uint8 label vector, "
                                 f"got {labels.dtype} {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise DatasetFormatError(f"{labels_path} has {labels.shape[0]} labels but "
                                 f"{images_path} has {images.shape[0]} images")
    if labels.size and int(labels.max()) >= _NUM_CLASSES:
        raise DatasetFormatError(f"{labels_path}: label {int(labels.max())} out of range "
                                 f"0..{_NUM_CLASSES - 1}")
    x = torch.from_numpy(images).unsqueeze(1)  # N, 1, 28, 28
    return Split(x, torch.from_numpy(labels.astype(np.int64)))


def load_idx_set(dataset: str, root: Path, *, download: bool = False, mirror: str | None = None,
                 checksums: dict[str, str] | None = None) -> SourceData:
    """Read ``dataset`` ("mnist" or "fashion_mnist") from ``root``, downloading if asked."""
    layout = _LAYOUTS[dataset]
    dirs = [root / layout.folder, root / layout.torchvision_folder / "raw"]
    expected = _expected()
    found = find_complete_dir(dirs, expected)
    if found is None and download:
        have = {name for names in expected for name in names if (dirs[0] / name).is_file()}
        todo = [names[0] for names in expected if not have.intersection(names)]
        fetch_files(dataset, todo, dirs[0], mirror=mirror, checksums=checksums)
        found = find_complete_dir(dirs, expected)
    if found is None:
        raise missing_error(layout.label, dirs, expected, dataset=dataset,
                            source=MIRRORS.get(dataset, "the official site"))
    train = _read_pair(found[IDX_FILES[0]], found[IDX_FILES[1]])
    test = _read_pair(found[IDX_FILES[2]], found[IDX_FILES[3]])
    return SourceData(train, test, _NUM_CLASSES)


def load_mnist(root: Path, *, download: bool = False, mirror: str | None = None,
               checksums: dict[str, str] | None = None) -> SourceData:
    """MNIST handwritten digits: 60000 train / 10000 test, 1x28x28 uint8."""
    return load_idx_set("mnist", root, download=download, mirror=mirror, checksums=checksums)


def load_fashion_mnist(root: Path, *, download: bool = False, mirror: str | None = None,
                       checksums: dict[str, str] | None = None) -> SourceData:
    """Fashion-MNIST clothing images: 60000 train / 10000 test, 1x28x28 uint8."""
    return load_idx_set("fashion_mnist", root, download=download, mirror=mirror,
                        checksums=checksums)
