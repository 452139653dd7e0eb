"""DenseNets for CIFAR: DenseNet-121 and DenseNet-BC.

Huang, Liu, van der Maaten & Weinberger 2017, "Densely connected convolutional networks"
(arXiv:1608.06993). Inside a dense block every layer receives the concatenation of all
earlier feature maps and adds ``growth_rate`` new ones. Layers are bottlenecks
(BN-ReLU-conv1x1 to 4 * growth_rate channels, BN-ReLU-conv3x3 to growth_rate); transitions
between blocks compress the channels by half (BN-ReLU-conv1x1) and halve the map (2x2
average pool). The network ends with BN-ReLU, global average pooling and a linear layer.

* ``densenet121``: the ImageNet DenseNet-121 (growth 32, blocks of 6, 12, 24, 16 layers)
  with the usual CIFAR stem, a single 3x3 conv to 2 * growth_rate channels instead of the
  7x7 stride-2 conv and max-pool. 6.96M parameters for 10 classes; three transitions, so a
  32x32 image ends at 4x4.
* ``densenet_bc``: the paper's CIFAR DenseNet-BC, three dense blocks of (depth - 4) / 6
  bottleneck layers, a 3x3 stem conv to 2 * growth_rate channels. Default depth 100,
  growth 12: the paper's "DenseNet-BC (L=100, k=12)", 0.8M parameters (0.77M exactly).

Weight init: He-normal convolutions (the paper's), PyTorch-default linear layer
(``common.init_weights``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losslab.errors import InputError

from .common import check_image_size, init_weights
from .registry import register_model

__all__ = ["DenseNet"]


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1 (4k), BN-ReLU-conv3x3 (k); output: the input with k channels appended."""

    def __init__(self, c_in: int, growth_rate: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, 4 * growth_rate, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], dim=1)


class Transition(nn.Sequential):
    """BN-ReLU-conv1x1 to ``c_out`` channels, then a 2x2 average pool."""

    def __init__(self, c_in: int, c_out: int):
        # ceil_mode: odd maps (7x7 from a 28x28 input) keep their border row and column.
        super().__init__(nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False),
                         nn.AvgPool2d(2, ceil_mode=True))


class DenseNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...], growth_rate: int, num_classes: int,
                 in_channels: int, reduction: float = 0.5):
        super().__init__()
        channels = 2 * growth_rate
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)]
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(DenseLayer(channels, growth_rate))
                channels += growth_rate
            if i < len(blocks) - 1:
                compressed = int(channels * reduction)
                layers.append(Transition(channels, compressed))
                channels = compressed
        layers += [nn.BatchNorm2d(channels), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


@register_model("densenet121", "DenseNet-121 (growth 32), CIFAR stem, 6.96M params")
def densenet121(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    check_image_size("densenet121", image_size, 3, "3 transitions")
    return DenseNet((6, 12, 24, 16), 32, num_classes, in_channels)


@register_model("densenet_bc", "CIFAR DenseNet-BC, default depth 100, growth 12, 0.8M params")
def densenet_bc(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
                depth: int = 100, growth_rate: int = 12) -> nn.Module:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise InputError(f"densenet_bc: depth must be 6n + 4 with n >= 1 (40, 100, 190, ...), "
                         f"got {depth!r}")
    if isinstance(growth_rate, bool) or not isinstance(growth_rate, int) or growth_rate < 1:
        raise InputError(f"densenet_bc: growth_rate must be a positive integer, got "
                         f"{growth_rate!r}")
    check_image_size("densenet_bc", image_size, 2, "2 transitions")
    layers = (depth - 4) // 6
    return DenseNet((layers, layers, layers), growth_rate, num_classes, in_channels)
