"""scikit-learn's 8x8 handwritten digits: a tiny real data set that needs no download.

1797 greyscale images, 1x8x8, pixel values 0..16 scaled to [0, 1] and stored as float32,
10 classes. scikit-learn publishes no train/test split, so a fixed one is carved here: 20% of
the examples (seeded with :data:`TEST_SEED`, independent of ``split_seed``) are the test set,
always the same ones, so test numbers are comparable across runs and validation seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from losslab.data.splits import SourceData, Split

__all__ = ["load_digits", "TEST_FRACTION", "TEST_SEED"]

#: Share of the 1797 examples held out as the fixed test split.
TEST_FRACTION = 0.2
#: Seed of the fixed test split (deliberately not the caller's split_seed).
TEST_SEED = 20240101


def load_digits(root: Path | None = None, *, download: bool = False) -> SourceData:
    """The digits set as (train, test); ``root`` and ``download`` are unused (it ships with
    scikit-learn) and accepted only for a uniform signature."""
    from sklearn.datasets import load_digits as sk_load_digits  # lazy: sklearn imports slowly

    del root, download
    bunch = sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0  # 0..16 -> [0, 1]
    labels = np.asarray(bunch.target, dtype=np.int64)
    n = labels.shape[0]
    perm = np.random.default_rng(TEST_SEED).permutation(n)
    n_test = round(TEST_FRACTION * n)
    # Sorted indices keep scikit-learn's order within each part.
    test_idx = torch.from_numpy(np.sort(perm[:n_test]))
    train_idx = torch.from_numpy(np.sort(perm[n_test:]))
    x = torch.from_numpy(images).unsqueeze(1)  # N, 1, 8, 8
    y = torch.from_numpy(labels)
    return SourceData(Split(x[train_idx], y[train_idx]), Split(x[test_idx], y[test_idx]), 10)
