"""Pre-activation ResNets for CIFAR: PreResNet-110 and PreResNet-164.

He, Zhang, Ren & Sun 2016b, "Identity mappings in deep residual networks"
(arXiv:1603.05027). Each residual unit applies BatchNorm and ReLU *before* its convolutions,
so the shortcut path is a pure identity from block to block; the network ends with one
BN-ReLU before the global pool. The CIFAR layout is that of the original ResNet: a 3x3 stem
with 16 filters and three stages at 32x32, 16x16, 8x8.

* PreResNet-110: 18 basic units (two 3x3 convs) per stage, widths 16/32/64; 1.7M params.
* PreResNet-164: 18 bottleneck units (1x1, 3x3, 1x1 convs, 4x expansion) per stage, widths
  64/128/256 at the outputs; 1.7M params.

Where a unit changes shape (the first unit of each stage in the bottleneck net, and the
stride-2 ones), the shortcut is a 1x1 projection convolution (option B). It is applied to
the pre-activated input, the one the residual branch also sees, so that a raw
(un-normalised) sum from the previous unit never enters a convolution. The projections add
~2.5k parameters to PreResNet-110 and are counted in the figures above.

Weight init: He-normal convolutions, PyTorch-default linear layer (``common.init_weights``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .common import check_image_size, init_weights
from .registry import register_model

__all__ = ["PreActResNet", "PreActBasicBlock", "PreActBottleneck"]


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus the shortcut."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.shortcut = _projection(c_in, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 (4x wider), plus the shortcut."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        # The stride sits on the 3x3 conv, so the 1x1 convs never skip pixels.
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.shortcut = _projection(c_in, planes * 4, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + shortcut


def _projection(c_in: int, c_out: int, stride: int) -> nn.Conv2d | None:
    """A 1x1 conv where the unit changes shape; ``None`` (identity) where it does not."""
    if stride == 1 and c_in == c_out:
        return None
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class PreActResNet(nn.Module):
    def __init__(self, block: type[PreActBasicBlock] | type[PreActBottleneck], units: int,
                 num_classes: int, in_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        width = 16
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            layers = []
            for i in range(units):
                layers.append(block(width, planes, stride if i == 0 else 1))
                width = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        # The last unit's output is un-normalised; the paper adds one BN-ReLU before pooling.
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.relu(self.bn(x)).mean(dim=(2, 3))
        return self.fc(x)


@register_model("preresnet110", "pre-activation ResNet-110 (He et al. 2016b), basic units, "
                "1.7M params")
def preresnet110(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    check_image_size("preresnet110", image_size, 2, "2 stride-2 stages")
    return PreActResNet(PreActBasicBlock, (110 - 2) // 6, num_classes, in_channels)


@register_model("preresnet164", "pre-activation ResNet-164 (He et al. 2016b), bottleneck "
                "units, 1.7M params")
def preresnet164(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    check_image_size("preresnet164", image_size, 2, "2 stride-2 stages")
    return PreActResNet(PreActBottleneck, (164 - 2) // 9, num_classes, in_channels)
