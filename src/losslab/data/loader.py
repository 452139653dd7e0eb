"""A data loader whose whole data set lives on the device (after KellerJordan/cifar10-airbench).

For the data sets losslab trains on (up to CIFAR's 50000 images, 150 MB as uint8) the usual
``DataLoader`` pipeline (worker processes decode, augment and collate one example at a time,
then copy each batch to the device) costs more than the model's own step. Here the split is
copied to the device once; a batch is then one gather, augmented and normalized by a few
batched tensor ops, with no host-device synchronization per batch.

Determinism: the order and augmentation of epoch ``e`` are drawn from CPU generators seeded
by ``(seed, e)`` alone, so they are identical on every device and after any resume. Each
``iter(loader)`` uses the current epoch and then advances it; :meth:`DeviceLoader.set_epoch`
(like ``DistributedSampler.set_epoch``) and :meth:`DeviceLoader.load_state_dict` choose it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from losslab.data.augment import (
    Augment,
    AugmentParams,
    crop_flip,
    pad_images,
    pad_signals,
    sample_params,
)
from losslab.data.splits import DatasetSplits, Split
from losslab.errors import InputError

__all__ = ["DeviceLoader", "make_loaders", "epoch_generator"]

# Independent random streams per epoch, so the order never depends on augmentation settings.
_ORDER_STREAM, _AUGMENT_STREAM = 0, 1


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, epoch, stream)`` only.

    numpy's SeedSequence hashes the triple, so nearby seeds and epochs give unrelated streams
    (``seed * K + epoch`` would make (0, K) collide with (1, 0)).
    """
    entropy = [seed % 2**64, epoch % 2**64, stream]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device="cpu").manual_seed(int(state))


def _channel_vector(values: Sequence[float] | Tensor | None, default: float, channels: int,
                    name: str) -> Tensor:
    """Per-channel statistics as a float64 (C,) tensor, checked against the channel count."""
    if values is None:
        return torch.full((channels,), default, dtype=torch.float64)
    vector = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if vector.numel() == 1:
        vector = vector.expand(channels)
    if vector.numel() != channels:
        raise InputError(f"{name} has {vector.numel()} values for {channels} channels")
    return vector.clone()


class DeviceLoader:
    """Batches ``(x, y)`` of a split held on ``device``: x float32 NCHW (or NCL for signals)
    normalized, y int64.

    ``x`` is ``((pixels / 255 for uint8, else as stored) - mean) / std`` per channel (mean 0
    and std 1 when not given). ``augment`` applies random crops/flips (meant for training
    only); ``shuffle`` draws a new order each epoch. ``len(loader)`` is the number of batches.
    """

    def __init__(self, split: Split, batch_size: int, *, shuffle: bool = True,
                 drop_last: bool = False, augment: Augment | None = None,
                 mean: Sequence[float] | Tensor | None = None,
                 std: Sequence[float] | Tensor | None = None, seed: int = 0,
                 device: torch.device | str | None = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        self.device = torch.device(device) if device is not None else split.x.device
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed, self.epoch = int(seed), 0
        x = split.x.to(self.device)
        self.y = split.y.to(self.device)
        self.num_examples, channels, *spatial = x.shape
        self.signals = len(spatial) == 1
        if self.signals and self.augment is not None and self.augment.flip:
            # Time reversal does not keep a signal's class (MNIST-1D's digits read one way).
            raise InputError("data.augment.flip is for NCHW images; these are 1-D signals of "
                             f"shape {tuple(x.shape)}: set data.augment.flip=false (crop_padding "
                             "shifts a signal)")
        self.height, self.width = spatial if len(spatial) == 2 else (1, spatial[0])
        # Padding once here, not per batch; the loader then needs only the padded copy.
        padding = self.augment.crop_padding if self.augment is not None else 0
        mode = self.augment.padding_mode if self.augment is not None else "zeros"
        if self.signals:  # a shifted window of a one-row image; plain (N, C, L) otherwise
            self._source = (pad_signals(x, padding, mode) if self.augment is not None
                            else x).contiguous()
        else:
            self._source = pad_images(x, padding, mode).contiguous()
        self._index = torch.arange(self.num_examples, device=self.device)
        self.mean = _channel_vector(mean, 0.0, channels, "mean")
        self.std = _channel_vector(std, 1.0, channels, "std")
        if bool((self.std <= 0).any()):
            raise InputError(f"std must be positive, got {self.std.tolist()}")
        # (x * scale - mean) / std folded into one scale and one shift per channel (in float64,
        # then rounded once to float32).
        scale = 1.0 / 255.0 if x.dtype == torch.uint8 else 1.0
        shape = (1, channels) + (1,) * len(spatial)  # broadcast over H, W or over L
        self._mul = (scale / self.std).float().reshape(shape).to(self.device)
        self._add = (-self.mean / self.std).float().reshape(shape).to(self.device)

    # -- epochs and state ------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order and augmentation for the next iteration."""
        if epoch < 0:
            raise InputError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        """The epoch the next iteration will use, and the seed (checked on load)."""
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at ``state["epoch"]``; a different seed would silently change the data."""
        if "seed" in state and int(state["seed"]) != self.seed:
            raise InputError(f"loader state was saved with seed {state['seed']}, this loader "
                             f"has seed {self.seed}")
        self.set_epoch(int(state["epoch"]))

    # -- iteration -------------------------------------------------------------------------
    def __len__(self) -> int:
        if self.drop_last:
            return self.num_examples // self.batch_size
        return math.ceil(self.num_examples / self.batch_size)

    def epoch_plan(self, epoch: int) -> tuple[Tensor | None, AugmentParams | None]:
        """Epoch ``epoch``'s example order (None: natural order) and augmentation draws, on
        the device. A pure function of ``(seed, epoch)`` and the settings."""
        order = params = None
        if self.shuffle:
            gen = epoch_generator(self.seed, epoch, _ORDER_STREAM)
            order = torch.randperm(self.num_examples, generator=gen).to(self.device)
        if self.augment is not None:
            gen = epoch_generator(self.seed, epoch, _AUGMENT_STREAM)
            params = sample_params(self.num_examples, self.augment, gen).to(self.device)
            if self.signals:  # one row: only the shift along the signal is drawn
                params = params._replace(top=torch.zeros_like(params.top))
        return order, params

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch
        self.epoch += 1  # the epoch counts as used once iteration starts, even if cut short
        return self._batches(epoch)

    def take(self, index: Tensor | Sequence[int]) -> tuple[Tensor, Tensor]:
        """The examples at positions ``index`` of the split, in that order, as one batch
        ``(x, y)`` on the device.

        ``x`` is normalized exactly as the loader's batches are and never augmented or shuffled,
        whatever the loader's settings (an augmenting loader gives each example's own, uncropped
        and unflipped, pixels); the epoch is not advanced. Used to draw a fixed evaluation subset
        (:func:`losslab.landscape.evaluate.subset_batches`).
        """
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1).to(self.device)
        if self.augment is None:  # the stored data as it is
            return self._batch(0, index.numel(), index, None)
        p = self.augment.crop_padding  # the stored copy is padded: take the centre window
        rows = slice(0, 1) if self.signals else slice(p, p + self.height)
        x = self._source.index_select(0, index)[:, :, rows, p:p + self.width]
        x = x.to(torch.float32, memory_format=torch.contiguous_format)
        if self.signals:
            x = x.view(x.shape[0], x.shape[1], self.width)
        return x.mul_(self._mul).add_(self._add), self.y.index_select(0, index)

    def _batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        order, params = self.epoch_plan(epoch)
        for b in range(len(self)):
            start = b * self.batch_size
            stop = min(start + self.batch_size, self.num_examples)
            yield self._batch(start, stop, order, params)

    def _batch(self, start: int, stop: int, order: Tensor | None,
               params: AugmentParams | None) -> tuple[Tensor, Tensor]:
        """Examples at positions start:stop of the epoch, gathered, augmented, normalized."""
        index = order[start:stop] if order is not None else None
        fresh = True  # whether ``x`` is a new tensor that may be modified in place
        if params is not None:
            if index is None:
                index = self._index[start:stop]
            x = crop_flip(self._source, index, params.slice(start, stop), self.height,
                          self.width)
            if self.signals:
                x = x.view(x.shape[0], x.shape[1], self.width)
        elif index is not None:
            x = self._source.index_select(0, index)
        else:
            x, fresh = self._source[start:stop], False  # a view of the data set itself
        y = self.y.index_select(0, index) if index is not None else self.y[start:stop]
        # In place (measured ~2.5x faster than a broadcasting addcmul on CPU), but never on a
        # view of the stored data: ``copy=True`` then makes a float32 copy first.
        x = x.to(torch.float32, copy=not fresh)
        return x.mul_(self._mul).add_(self._add), y


def make_loaders(splits: DatasetSplits, batch_size: int, eval_batch_size: int | None = None,
                 augment: Augment | None = None, seed: int = 0,
                 device: torch.device | str | None = None, *, drop_last: bool = False,
                 ) -> tuple[DeviceLoader, dict[str, DeviceLoader | None]]:
    """A shuffled, augmented training loader and plain evaluation loaders.

    All normalize with the training statistics ``splits.mean``/``splits.std``. The result is
    ``(train_loader, {"val": loader or None, "test": loader})``; evaluation loaders neither
    shuffle nor augment and use ``eval_batch_size`` (default ``batch_size``).
    """
    eval_batch_size = eval_batch_size or batch_size
    stats = {"mean": splits.mean, "std": splits.std, "device": device}
    train = DeviceLoader(splits.train, batch_size, shuffle=True, drop_last=drop_last,
                         augment=augment, seed=seed, **stats)

    def plain(split: Split) -> DeviceLoader:
        return DeviceLoader(split, eval_batch_size, shuffle=False, seed=seed, **stats)

    val = plain(splits.val) if splits.val is not None else None
    return train, {"val": val, "test": plain(splits.test)}
