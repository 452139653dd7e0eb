"""Wide residual networks (WRN-d-k) for CIFAR.

Zagoruyko & Komodakis 2016, "Wide residual networks" (arXiv:1605.07146). A pre-activation
ResNet (He et al. 2016b) made shallow and wide: a 3x3 stem with 16 filters, three stages of
``n = (depth - 4) / 6`` units with ``16k``, ``32k`` and ``64k`` filters (``k`` the widening
factor), each unit BN-ReLU-conv3x3-[dropout]-BN-ReLU-conv3x3, then BN-ReLU, global average
pooling and a linear classifier. Dropout between the two convolutions is the paper's
regulariser (0.3 in its best CIFAR runs; off by default here).

Where a unit changes width or resolution, its shortcut is a 1x1 convolution on the
pre-activated input (as in the authors' code); elsewhere it is the identity. Parameter
counts for 10 classes: WRN-28-10 36.5M, WRN-16-4 2.75M, as reported in the paper.

Weight init: He-normal convolutions, PyTorch-default linear layer (``common.init_weights``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from losslab.errors import InputError

from .common import check_image_size, init_weights
from .registry import register_model

__all__ = ["WideResNet"]


class WideBasic(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout)  # identity in eval mode, and when dropout == 0
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.dropout(self.conv1(out))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen_factor: int, num_classes: int, in_channels: int,
                 dropout: float = 0.0):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        c_in = 16
        stages = []
        for width, stride in zip(widths, (1, 2, 2), strict=True):
            units = [WideBasic(c_in if i == 0 else width, width, stride if i == 0 else 1, dropout)
                     for i in range(n)]
            stages.append(nn.Sequential(*units))
            c_in = width
        self.layer1, self.layer2, self.layer3 = stages
        self.bn = nn.BatchNorm2d(c_in)
        self.fc = nn.Linear(c_in, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.relu(self.bn(x)).mean(dim=(2, 3))
        return self.fc(x)


def _wrn(name: str, num_classes: int, in_channels: int, image_size: int, depth: int,
         widen_factor: int, dropout: float) -> nn.Module:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise InputError(f"{name}: depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), "
                         f"got {depth!r}")
    if isinstance(widen_factor, bool) or not isinstance(widen_factor, int) or widen_factor < 1:
        raise InputError(f"{name}: widen_factor must be a positive integer, got {widen_factor!r}")
    if not 0.0 <= dropout < 1.0:
        raise InputError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
    check_image_size(name, image_size, 2, "2 stride-2 stages")
    return WideResNet(depth, widen_factor, num_classes, in_channels, dropout)


@register_model("wide_resnet", "Wide ResNet WRN-depth-widen_factor (Zagoruyko & Komodakis "
                "2016), default WRN-28-10")
def wide_resnet(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
                depth: int = 28, widen_factor: int = 10, dropout: float = 0.0) -> nn.Module:
    return _wrn("wide_resnet", num_classes, in_channels, image_size, depth, widen_factor, dropout)


@register_model("wrn28_10", "Wide ResNet WRN-28-10, 36.5M params")
def wrn28_10(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
             dropout: float = 0.0) -> nn.Module:
    return _wrn("wrn28_10", num_classes, in_channels, image_size, 28, 10, dropout)


@register_model("wrn16_4", "Wide ResNet WRN-16-4, 2.75M params")
def wrn16_4(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
            dropout: float = 0.0) -> nn.Module:
    return _wrn("wrn16_4", num_classes, in_channels, image_size, 16, 4, dropout)
