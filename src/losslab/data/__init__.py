"""Data sets as device-resident tensors, and a loader that augments whole batches on device.

::

    from losslab.data import Augment, load_dataset, make_loaders
    splits = load_dataset("cifar10", "data", download=True, val_size=5000)
    train, evals = make_loaders(splits, batch_size=128, eval_batch_size=1024,
                                augment=Augment(crop_padding=4, flip=True), seed=0,
                                device="cuda")
    for epoch in range(10):
        train.set_epoch(epoch)
        for x, y in train:  # x: float32 NCHW normalized, on the device
            ...

Names: ``digits`` (bundled with scikit-learn), ``mnist``, ``fashion_mnist``, ``cifar10``,
``cifar100`` (standard files under ``root``; ``download=True`` fetches them), ``mnist1d``
(1-D signals, generated and cached under ``root``) and ``synthetic`` (Gaussian clusters, for
tests). See :func:`list_datasets`.
"""

from losslab.data.augment import Augment, augment_batch
from losslab.data.download import CHECKSUMS, MIRRORS, download_url
from losslab.data.errors import ChecksumError, DatasetFormatError, DatasetNotFoundError
from losslab.data.idx import read_idx
from losslab.data.loader import DeviceLoader, make_loaders
from losslab.data.registry import list_datasets, load_dataset, register_dataset
from losslab.data.splits import DatasetSplits, SourceData, Split

__all__ = [
    "Split",
    "DatasetSplits",
    "SourceData",
    "load_dataset",
    "list_datasets",
    "register_dataset",
    "DatasetNotFoundError",
    "DatasetFormatError",
    "ChecksumError",
    "read_idx",
    "download_url",
    "MIRRORS",
    "CHECKSUMS",
    "Augment",
    "augment_batch",
    "DeviceLoader",
    "make_loaders",
]
