"""The MNIST-1D convolutional network, with and without BatchNorm.

Greydanus 2020, "Scaling down deep learning" (arXiv:2011.14439): three 1-D convolutions of 25
channels, kernel sizes 5, 3, 3, all stride 2 and padding 1, each followed by ReLU, then the
flattened features into one linear classifier (the ``ConvBase`` of the paper's code). On a
length-40 signal the maps have lengths 19, 10 and 5, so the classifier sees 125 features and
the network has 5.2k parameters; the paper reports about 94% test accuracy on MNIST-1D (MLP:
68%).

``bn=True`` (or the name ``cnn1d_bn``) puts BatchNorm (Ioffe & Szegedy 2015, "Batch
normalization", arXiv:1502.03167) between each convolution and its ReLU, the convolutions then
without bias (BatchNorm's shift replaces it): the BN / no-BN pair of the architecture
experiments, on a CPU budget.

Length arithmetic: a stride-2 convolution of kernel ``k`` and padding 1 maps length ``n`` to
``(n + 2 - k) // 2 + 1``. Every convolution must see at least 2 positions, so signals shorter
than 7 are refused at construction. Weight init: PyTorch's defaults, as the paper's code.
"""

from __future__ import annotations

from torch import Tensor, nn

from losslab.errors import InputError

from .registry import register_model

__all__ = ["CNN1d", "cnn1d_lengths"]

#: (kernel size, stride, padding) of the three convolutions.
LAYERS = ((5, 2, 1), (3, 2, 1), (3, 2, 1))


def cnn1d_lengths(length: int) -> list[int]:
    """Lengths of the input and of each convolution's output."""
    lengths = [length]
    for kernel, stride, padding in LAYERS:
        lengths.append((lengths[-1] + 2 * padding - kernel) // stride + 1)
    return lengths


class CNN1d(nn.Module):
    """``(Conv1d [-> BatchNorm1d] -> ReLU) x 3 -> flatten -> Linear``."""

    def __init__(self, num_classes: int, in_channels: int, length: int, channels: int,
                 bn: bool):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for kernel, stride, padding in LAYERS:
            layers.append(nn.Conv1d(width, channels, kernel, stride=stride, padding=padding,
                                    bias=not bn))
            if bn:
                layers.append(nn.BatchNorm1d(channels))
            layers.append(nn.ReLU())
            width = channels
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels * cnn1d_lengths(length)[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).flatten(1))


def _build(name: str, num_classes: int, in_channels: int, image_size: int, channels: int,
           bn: bool) -> CNN1d:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise InputError(f"{name}: channels must be a positive integer, got {channels!r}")
    if not isinstance(bn, bool):
        raise InputError(f"{name}: bn must be true or false, got {bn!r}")
    lengths = cnn1d_lengths(image_size)
    if min(lengths[:-1]) < 2:
        raise InputError(f"{name} has 3 stride-2 convolutions; a signal of length "
                         f"image_size={image_size} is too small (lengths {lengths}). It needs "
                         "image_size >= 7")
    return CNN1d(num_classes, in_channels, image_size, channels, bn)


@register_model("cnn1d", "MNIST-1D CNN (Greydanus 2020): 3 stride-2 Conv1d of 25 channels, "
                "5.2k params on 1x40; bn=True adds BatchNorm", inputs="signal")
def cnn1d(num_classes: int = 10, in_channels: int = 1, image_size: int = 40, *,
          channels: int = 25, bn: bool = False) -> nn.Module:
    """``image_size`` is the signal length."""
    return _build("cnn1d", num_classes, in_channels, image_size, channels, bn)


@register_model("cnn1d_bn", "MNIST-1D CNN with BatchNorm after each convolution (= cnn1d "
                "with bn=True)", inputs="signal")
def cnn1d_bn(num_classes: int = 10, in_channels: int = 1, image_size: int = 40, *,
             channels: int = 25) -> nn.Module:
    return _build("cnn1d_bn", num_classes, in_channels, image_size, channels, True)
