"""Synthetic image-shaped data: Gaussian class clusters, for tests and quick experiments.

Each class has a random "prototype" image; an example is its class prototype plus Gaussian
noise. ``noise`` sets the difficulty (prototypes have unit variance per pixel, so noise 1 gives
overlapping but learnable classes). Everything is a pure function of the arguments: the same
``seed`` gives the same tensors on every machine (numpy's PCG64, not a device RNG).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from losslab.data.splits import SourceData, Split
from losslab.errors import InputError

__all__ = ["load_synthetic"]


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"synthetic: {name} must be a positive int, got {value!r}")


def _to_uint8(x: np.ndarray, spread: float) -> np.ndarray:
    """Map roughly-standardized values to 0..255 the way real photos sit in that range."""
    return np.clip(np.round((0.5 + 0.15 * x / spread) * 255.0), 0, 255).astype(np.uint8)


def load_synthetic(root: Path | None = None, *, download: bool = False, n: int = 512,
                   n_test: int | None = None, num_classes: int = 4, channels: int = 1,
                   image_size: int = 8, noise: float = 1.0, seed: int = 0,
                   dtype: str = "float32") -> SourceData:
    """Gaussian class clusters shaped as ``channels x image_size x image_size`` images.

    ``n`` training and ``n_test`` (default ``n // 4``) test examples with balanced classes;
    ``dtype`` "float32" (values as generated) or "uint8" (quantized like a real image set, to
    exercise the uint8 pipeline). ``root`` and ``download`` are unused.
    """
    del root, download
    n_test = max(1, n // 4) if n_test is None else n_test
    _check_positive(n=n, n_test=n_test, num_classes=num_classes, channels=channels,
                    image_size=image_size)
    if dtype not in ("float32", "uint8"):
        raise InputError(f"synthetic: dtype must be 'float32' or 'uint8', got {dtype!r}")
    if noise < 0:
        raise InputError(f"synthetic: noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    shape = (channels, image_size, image_size)
    prototypes = rng.standard_normal((num_classes, *shape))
    total = n + n_test
    labels = rng.permutation(np.arange(total) % num_classes)  # balanced, shuffled
    x = prototypes[labels] + noise * rng.standard_normal((total, *shape))
    if dtype == "uint8":
        pixels = torch.from_numpy(_to_uint8(x, spread=float(np.sqrt(1.0 + noise**2))))
    else:
        pixels = torch.from_numpy(x.astype(np.float32))
    y = torch.from_numpy(labels.astype(np.int64))
    return SourceData(Split(pixels[:n], y[:n]), Split(pixels[n:], y[n:]), num_classes)
