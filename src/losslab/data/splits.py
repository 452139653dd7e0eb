"""Data splits as plain tensors: :class:`Split`, :class:`DatasetSplits`, validation carving.

A split is a pair of tensors, not a ``torch.utils.data.Dataset``: the loader keeps the whole
thing on the device and slices batches out of it (see :mod:`losslab.data.loader`). Image sets
keep their pixels as ``uint8`` (a quarter of the memory of float32, and the exact values of the
files); small sets (digits, synthetic) are ``float32`` already. One-dimensional signals
(MNIST-1D) are ``(N, C, L)``: their ``image_size`` is the length ``L``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from losslab.errors import InputError, OptionTypeError

__all__ = ["Split", "DatasetSplits", "SourceData", "carve_validation", "channel_stats",
           "build_splits"]


@dataclass
class Split:
    """Examples ``x`` (N, C, H, W images or N, C, L signals; uint8 or float32) and integer
    labels ``y`` (N,; int64)."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.x.ndim not in (3, 4):
            raise InputError(f"Split.x must be NCHW images (4 dims) or NCL signals (3 dims), "
                             f"got shape {tuple(self.x.shape)}")
        if self.y.ndim != 1 or self.y.shape[0] != self.x.shape[0]:
            raise InputError(f"Split.y must have shape ({self.x.shape[0]},), "
                             f"got {tuple(self.y.shape)}")
        if self.y.dtype != torch.int64:
            self.y = self.y.long()

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device | str | None) -> Split:
        """This split on ``device`` (a no-op copy-free result when already there)."""
        return Split(self.x.to(device), self.y.to(device))

    def subset(self, index: Tensor | np.ndarray) -> Split:
        """The examples at ``index`` (a copy, in the order of ``index``)."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.x.device)
        return Split(self.x[index], self.y[index])


@dataclass
class DatasetSplits:
    """A data set ready for training: train / optional val / test splits plus metadata.

    ``mean`` and ``std`` are per-channel statistics of the *training* split's pixels on the
    [0, 1] scale (uint8 pixels divided by 255; float sets as stored), so normalizing with them
    never looks at validation or test data.
    """

    name: str
    train: Split
    val: Split | None
    test: Split
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to(self, device: torch.device | str | None) -> DatasetSplits:
        """All splits moved to ``device``; metadata is shared."""
        val = self.val.to(device) if self.val is not None else None
        return replace(self, train=self.train.to(device), val=val, test=self.test.to(device))


def _val_count(val_size: float | int, n: int) -> int:
    """How many of ``n`` training examples go to validation; validates ``val_size``."""
    if isinstance(val_size, bool) or not isinstance(val_size, numbers.Real):
        raise OptionTypeError(f"val_size must be a fraction or a count, got {val_size!r}")
    if not isinstance(val_size, numbers.Integral):
        if not 0.0 <= val_size < 1.0:
            raise InputError(f"val_size as a fraction must be in [0, 1), got {val_size}; "
                             "pass an int for an absolute count")
        # A positive fraction always yields at least one example: "some validation" was asked.
        count = max(1, round(val_size * n)) if val_size > 0 else 0
    else:
        if val_size < 0:
            raise InputError(f"val_size must be >= 0, got {val_size}")
        count = int(val_size)
    if count >= n:
        raise InputError(f"val_size={val_size} leaves no training examples out of {n}")
    return count


def carve_validation(train: Split, val_size: float | int, seed: int) -> tuple[Split, Split | None]:
    """Split ``train`` into (train, val) at random, reproducibly from ``seed``.

    ``val_size`` is a fraction in [0, 1) or an absolute count; 0 gives ``val=None``. Both parts
    keep the original order of the examples, so only the *membership* depends on the seed.
    """
    n = len(train)
    count = _val_count(val_size, n)
    if count == 0:
        return train, None
    # numpy's PCG64 with a fixed seed gives the same permutation on every platform/device.
    perm = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:count]), np.sort(perm[count:])
    return train.subset(train_idx), train.subset(val_idx)


def channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of NCHW pixels on the [0, 1] scale (population std).

    uint8 images are summarized through a 256-bin histogram per channel: exact, and it never
    materializes a float copy of a 50000-image set. A channel with zero spread gets std 1 so
    that normalizing by it is a plain shift instead of a division by zero.
    """
    if x.shape[0] == 0:
        raise InputError("cannot compute statistics of an empty split")
    means, stds = [], []
    for c in range(x.shape[1]):
        channel = x[:, c]
        if x.dtype == torch.uint8:
            counts = torch.bincount(channel.reshape(-1), minlength=256).double()
            values = torch.arange(256, dtype=torch.float64, device=counts.device) / 255.0
            total = counts.sum()
            mean = (counts * values).sum() / total
            var = (counts * (values - mean) ** 2).sum() / total
        else:
            flat = channel.reshape(-1).double()
            mean, var = flat.mean(), flat.var(unbiased=False)
        std = math.sqrt(float(var))
        means.append(float(mean))
        stds.append(std if std > 0 else 1.0)
    return tuple(means), tuple(stds)


def build_splits(name: str, train: Split, test: Split, num_classes: int, *,
                 val_size: float | int, split_seed: int) -> DatasetSplits:
    """Carve validation from ``train``, compute the normalization statistics, attach metadata."""
    train, val = carve_validation(train, val_size, split_seed)
    mean, std = channel_stats(train.x)
    if train.x.ndim == 3:  # signals: models take their length as ``image_size``
        _, channels, length = train.x.shape
        return DatasetSplits(name=name, train=train, val=val, test=test,
                             num_classes=num_classes, in_channels=channels, image_size=length,
                             mean=mean, std=std)
    _, channels, height, width = train.x.shape
    if height != width:
        # Every set we ship is square; models take one ``image_size``.
        raise InputError(f"{name}: images must be square, got {height}x{width}")
    return DatasetSplits(name=name, train=train, val=val, test=test, num_classes=num_classes,
                         in_channels=channels, image_size=height, mean=mean, std=std)


class SourceData(NamedTuple):
    """What a data-set reader returns: the official train and test splits, and the class count."""

    train: Split
    test: Split
    num_classes: int
