"""DeviceLoader: coverage, determinism and resume, batched augmentation, normalization."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from losslab.data import Augment, DeviceLoader, Split, augment_batch, load_dataset, make_loaders
from losslab.data.augment import AugmentParams, crop_flip, pad_images


def id_split(n: int = 50, size: int = 4, channels: int = 1) -> Split:
    """Float images with distinct pixel values; the label of each example is its index."""
    x = torch.arange(n * channels * size * size, dtype=torch.float32)
    return Split(x.reshape(n, channels, size, size), torch.arange(n))


def uint8_split(n: int = 40, size: int = 6, channels: int = 3, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    return Split(x, torch.arange(n))


def epoch_batches(loader: DeviceLoader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch)
    return list(loader)


def same_batches(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(xa, xb) and torch.equal(ya, yb)
                                    for (xa, ya), (xb, yb) in zip(a, b, strict=True))


def test_every_example_once_per_epoch():
    loader = DeviceLoader(id_split(50), batch_size=7, seed=1)
    assert len(loader) == 8
    for epoch in range(3):
        batches = epoch_batches(loader, epoch)
        assert len(batches) == 8 and [len(y) for _, y in batches][-1] == 50 % 7
        ys = torch.cat([y for _, y in batches])
        assert torch.equal(ys.sort().values, torch.arange(50))
        xs = torch.cat([x for x, _ in batches])
        assert xs.dtype == torch.float32 and xs.shape == (50, 1, 4, 4)
        assert torch.equal(xs, id_split(50).x[ys])  # x and y stay paired


def test_drop_last():
    loader = DeviceLoader(id_split(50), batch_size=7, drop_last=True)
    batches = list(loader)
    assert len(loader) == len(batches) == 7 and all(len(y) == 7 for _, y in batches)
    assert len(set(torch.cat([y for _, y in batches]).tolist())) == 49


def test_same_seed_and_epoch_same_batches():
    a, b = DeviceLoader(id_split(), 8, seed=3), DeviceLoader(id_split(), 8, seed=3)
    assert same_batches(epoch_batches(a, 5), epoch_batches(b, 5))
    assert not same_batches(epoch_batches(a, 5), epoch_batches(a, 6))
    other = DeviceLoader(id_split(), 8, seed=4)
    assert not same_batches(epoch_batches(a, 5), epoch_batches(other, 5))


def test_iteration_advances_epoch():
    a, b = DeviceLoader(id_split(), 8, seed=2), DeviceLoader(id_split(), 8, seed=2)
    first, second = list(a), list(a)
    assert a.epoch == 2
    assert same_batches(first, epoch_batches(b, 0)) and same_batches(second, epoch_batches(b, 1))


def test_resume_from_state_dict():
    augment = Augment(crop_padding=1, flip=True)
    uninterrupted = DeviceLoader(uint8_split(), 6, augment=augment, seed=9)
    reference = [list(uninterrupted) for _ in range(3)]
    interrupted = DeviceLoader(uint8_split(), 6, augment=augment, seed=9)
    list(interrupted), list(interrupted)
    state = interrupted.state_dict()
    assert state["epoch"] == 2
    resumed = DeviceLoader(uint8_split(), 6, augment=augment, seed=9)
    resumed.load_state_dict(state)
    assert same_batches(list(resumed), reference[2])
    with pytest.raises(ValueError, match="seed"):
        DeviceLoader(uint8_split(), 6, seed=10).load_state_dict(state)


def test_shuffle_false_keeps_order_and_data_untouched():
    split = id_split(20)
    original = split.x.clone()
    loader = DeviceLoader(split, 6, shuffle=False)
    batches = list(loader)
    assert torch.equal(torch.cat([y for _, y in batches]), torch.arange(20))
    assert torch.equal(torch.cat([x for x, _ in batches]), original)
    for x, _ in batches:
        x.add_(1000)  # the caller owns its batches: the stored data must not change
    assert torch.equal(split.x, original) and torch.equal(list(loader)[0][0], original[:6])


def test_flip_is_exact_mirror():
    split = id_split(64, size=5, channels=2)
    loader = DeviceLoader(split, 16, augment=Augment(flip=True), seed=0)
    flipped = 0
    for x, y in loader:
        plain, mirror = split.x[y], split.x[y].flip(-1)
        is_plain = (x == plain).flatten(1).all(1)
        is_mirror = (x == mirror).flatten(1).all(1)
        assert bool((is_plain | is_mirror).all())
        flipped += int(is_mirror.sum())
    assert 10 < flipped < 54  # about half of 64


def test_crop_padding_zero_is_identity():
    split = uint8_split()
    params = AugmentParams(torch.zeros(40, dtype=torch.long), torch.zeros(40, dtype=torch.long),
                           torch.zeros(40, dtype=torch.bool))
    index = torch.randperm(40)
    assert torch.equal(crop_flip(pad_images(split.x, 0), index, params, 6, 6), split.x[index])
    plain = DeviceLoader(split, 8, seed=1)
    noop = DeviceLoader(split, 8, seed=1, augment=Augment(crop_padding=0, flip=False))
    assert same_batches(list(plain), list(noop))


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
@pytest.mark.parametrize("flip", [False, True])
def test_crop_within_padded_bounds(mode, flip):
    pad, size = 2, 6
    split = uint8_split(n=40, size=size)
    loader = DeviceLoader(split, 10, augment=Augment(crop_padding=pad, flip=flip,
                                                     padding_mode=mode), seed=5)
    torch_mode = "constant" if mode == "zeros" else "reflect"
    padded = F.pad(split.x.float(), (pad,) * 4, mode=torch_mode)
    offsets = set()
    for x, y in loader:
        pixels = torch.round(x * 255)  # mean 0, std 1: x is pixels / 255
        for image, label in zip(pixels, y, strict=True):
            matches = [(dy, dx, f) for dy, dx in itertools.product(range(2 * pad + 1), repeat=2)
                       for f in ({False, True} if flip else {False})
                       if torch.equal(image, _window(padded[label], dy, dx, size, f))]
            assert matches, "every crop must be a window of the padded image"
            offsets.add(matches[0][:2])
    assert len(offsets) > 5  # the offsets really vary


def _window(image: torch.Tensor, dy: int, dx: int, size: int, flip: bool) -> torch.Tensor:
    window = image[:, dy:dy + size, dx:dx + size]
    return window.flip(-1) if flip else window


def test_augmentation_depends_on_epoch_not_on_position():
    split = uint8_split()
    loader = DeviceLoader(split, 8, shuffle=False, augment=Augment(crop_padding=2, flip=True))
    e0, e1 = epoch_batches(loader, 0), epoch_batches(loader, 1)
    assert not same_batches(e0, e1)
    assert same_batches(e0, epoch_batches(loader, 0))


def test_normalization_zero_mean_unit_std():
    splits = load_dataset("synthetic", n=400, channels=3, image_size=6, dtype="uint8",
                          val_size=0)
    train, evals = make_loaders(splits, batch_size=64, eval_batch_size=100)
    xs = torch.cat([x for x, _ in train]).double()
    assert torch.allclose(xs.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(xs.std(dim=(0, 2, 3), unbiased=False),
                          torch.ones(3, dtype=torch.float64), atol=1e-5)
    assert evals["val"] is None
    digits = load_dataset("digits", val_size=0)
    d = torch.cat([x for x, _ in DeviceLoader(digits.train, 256, mean=digits.mean,
                                               std=digits.std)]).double()
    assert abs(float(d.mean())) < 1e-5 and abs(float(d.std(unbiased=False)) - 1) < 1e-5


def test_make_loaders_eval_plain_and_ordered():
    splits = load_dataset("synthetic", n=100, channels=2, dtype="uint8", val_size=20)
    augment = Augment(crop_padding=2, flip=True)
    train, evals = make_loaders(splits, batch_size=16, eval_batch_size=7, augment=augment,
                                seed=3, device="cpu")
    assert train.augment == augment and len(train) == 5
    mean = torch.tensor(splits.mean).reshape(1, -1, 1, 1)
    std = torch.tensor(splits.std).reshape(1, -1, 1, 1)
    for name in ("val", "test"):
        loader, split = evals[name], getattr(splits, name)
        assert loader.augment is None and not loader.shuffle and len(loader) == -(-len(split) // 7)
        xs = torch.cat([x for x, _ in loader])
        assert torch.equal(torch.cat([y for _, y in loader]), split.y)
        assert torch.allclose(xs, (split.x.float() / 255 - mean) / std, atol=1e-5)


def test_no_host_sync_per_batch():
    # On the "meta" device tensors have no values: .item(), bool(tensor) or data-dependent
    # shapes (nonzero, masked_select) raise. A full epoch there proves the loop never syncs.
    split = uint8_split()
    loader = DeviceLoader(split, 8, augment=Augment(crop_padding=2, flip=True), device="meta",
                          mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    batches = list(loader)
    assert len(batches) == 5 and batches[0][0].device.type == "meta"
    assert batches[0][0].shape == (8, 3, 6, 6) and batches[0][0].dtype == torch.float32


def test_augment_batch_standalone():
    x = uint8_split().x
    out = augment_batch(x, Augment(crop_padding=3, flip=True), torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(augment_batch(x, Augment(), torch.Generator()), x)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        DeviceLoader(id_split(), 0)
    with pytest.raises(ValueError, match="channels"):
        DeviceLoader(id_split(), 4, mean=(0.1, 0.2))
    with pytest.raises(ValueError):
        Augment(crop_padding=-1)
    with pytest.raises(ValueError):
        Augment(padding_mode="wrap")


@pytest.mark.parametrize("augment", [None, Augment(crop_padding=2, flip=True),
                                     Augment(crop_padding=3, padding_mode="reflect")])
def test_take_is_normalized_never_augmented_and_in_index_order(augment):
    split, stats = uint8_split(), {"mean": (0.4, 0.5, 0.6), "std": (0.2, 0.25, 0.3)}
    plain = list(DeviceLoader(split, 40, shuffle=False, **stats))[0]  # the whole split, in order
    loader = DeviceLoader(split, 8, augment=augment, seed=3, **stats)  # shuffling, maybe augmenting
    index = torch.tensor([7, 0, 39, 7, 12])
    x, y = loader.take(index)
    assert torch.equal(x, plain[0][index]) and torch.equal(y, index)  # bitwise the plain pixels
    assert x.dtype == torch.float32 and x.is_contiguous()
    assert loader.epoch == 0  # not an epoch
    xs, ys = loader.take([3, 1])  # a list works as well
    assert torch.equal(xs, plain[0][[3, 1]]) and ys.tolist() == [3, 1]


def test_take_signals():
    x = torch.randn(20, 2, 16)
    split = Split(x, torch.arange(20))
    plain = DeviceLoader(split, 20, shuffle=False, mean=(0.1, -0.2), std=(2.0, 0.5))
    shifted = DeviceLoader(split, 4, augment=Augment(crop_padding=3, flip=False),
                           mean=(0.1, -0.2), std=(2.0, 0.5))
    index = torch.tensor([5, 2, 19])
    assert torch.equal(shifted.take(index)[0], plain.take(index)[0])
    assert plain.take(index)[0].shape == (3, 2, 16)
    assert torch.equal(plain.take(index)[0], list(plain)[0][0][index])
