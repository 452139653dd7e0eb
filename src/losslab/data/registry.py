"""The data-set registry: names, one-line descriptions, and :func:`load_dataset`.

Every data set is a *reader*, ``reader(root, *, download, **options) -> SourceData`` giving
the official train/test splits; :func:`load_dataset` adds what is common to all of them
(validation carving, normalization statistics, metadata). New sets are added with
:func:`register_dataset`.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from losslab.data.cifar import load_cifar10, load_cifar100
from losslab.data.digits import load_digits
from losslab.data.locate import resolve_root
from losslab.data.mnist import load_fashion_mnist, load_mnist
from losslab.data.mnist1d import load_mnist1d
from losslab.data.splits import DatasetSplits, SourceData, build_splits
from losslab.data.synthetic import load_synthetic
from losslab.errors import InputError, OptionTypeError

__all__ = ["load_dataset", "list_datasets", "register_dataset"]

log = logging.getLogger(__name__)

Reader = Callable[..., SourceData]


@dataclass(frozen=True)
class _Entry:
    reader: Reader
    description: str


_REGISTRY: dict[str, _Entry] = {}


def register_dataset(name: str, reader: Reader, description: str, *,
                     overwrite: bool = False) -> None:
    """Make ``reader`` available to :func:`load_dataset` as ``name``."""
    if name in _REGISTRY and not overwrite:
        raise InputError(f"dataset {name!r} is already registered")
    _REGISTRY[name] = _Entry(reader, description)


register_dataset("digits", load_digits,
                 "scikit-learn 8x8 digits, 1x8x8, 10 classes, 1438/359 train/test (bundled)")
register_dataset("mnist", load_mnist,
                 "MNIST handwritten digits, 1x28x28, 10 classes, 60000/10000 train/test")
register_dataset("fashion_mnist", load_fashion_mnist,
                 "Fashion-MNIST clothing, 1x28x28, 10 classes, 60000/10000 train/test")
register_dataset("cifar10", load_cifar10,
                 "CIFAR-10 photos, 3x32x32, 10 classes, 50000/10000 train/test")
register_dataset("cifar100", load_cifar100,
                 "CIFAR-100 photos, 3x32x32, 100 fine classes, 50000/10000 train/test")
register_dataset("mnist1d", load_mnist1d,
                 "MNIST-1D signals (Greydanus 2020), 1x40, 10 classes, generated and cached "
                 "(options: num_samples=10000 -> 8000/2000 train/test, seed=42)")
register_dataset("synthetic", load_synthetic,
                 "Gaussian class clusters shaped as images (options: n, num_classes, channels, "
                 "image_size, noise, seed, dtype), for tests")


def list_datasets() -> dict[str, str]:
    """Data-set name -> one-line description, in registration order."""
    return {name: entry.description for name, entry in _REGISTRY.items()}


def _lookup(name: str) -> tuple[str, _Entry]:
    """The registry entry for ``name`` (case and '-'/'_' insensitive), else a helpful error."""
    key = name.strip().lower().replace("-", "_")
    if key in _REGISTRY:
        return key, _REGISTRY[key]
    valid = ", ".join(_REGISTRY)
    close = difflib.get_close_matches(key, list(_REGISTRY), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise InputError(f"unknown dataset {name!r}{hint} Valid names: {valid}")


def _check_options(name: str, reader: Reader, options: dict[str, Any]) -> None:
    """Reject options the reader does not take, naming the ones it does."""
    params = inspect.signature(reader).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [p for p in params if p not in ("root", "download")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise OptionTypeError(f"dataset {name!r} does not take option(s) {', '.join(unknown)}; "
                        f"it takes: {', '.join(allowed) or 'none'}")


def load_dataset(name: str, root: str | os.PathLike[str] | None = None, *,
                 download: bool = False, val_size: float | int = 0.1, split_seed: int = 0,
                 **kwargs: Any) -> DatasetSplits:
    """Load data set ``name`` as train / val / test splits with normalization statistics.

    ``root`` is the data folder (default ``$LOSSLAB_DATA_ROOT`` or ``./data``; unused by
    digits and synthetic). ``download=True`` fetches missing files from the official address
    (see :mod:`losslab.data.download`); nothing is ever downloaded otherwise, and a missing
    set raises :class:`DatasetNotFoundError` saying what to get from where.

    Validation is carved from the official training split at random, seeded by
    ``split_seed``: ``val_size`` is a fraction in [0, 1) or an absolute count, 0 gives
    ``val=None``. The test split is always the official one (for digits, a fixed 20%).
    Extra keyword arguments go to the reader (e.g. ``n=``, ``num_classes=`` for synthetic;
    ``mirror=``, ``checksums=`` for downloadable sets).
    """
    key, entry = _lookup(name)
    _check_options(key, entry.reader, kwargs)
    source = entry.reader(resolve_root(root), download=download, **kwargs)
    splits = build_splits(key, source.train, source.test, source.num_classes,
                          val_size=val_size, split_seed=split_seed)
    log.info("loaded %s: %d train, %d val, %d test examples", key, len(splits.train),
             len(splits.val) if splits.val is not None else 0, len(splits.test))
    return splits
