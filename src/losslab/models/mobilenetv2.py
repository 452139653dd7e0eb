"""MobileNetV2 adapted to 32x32 images.

Sandler, Howard, Zhu, Zhmoginov & Chen 2018, "MobileNetV2: Inverted residuals and linear
bottlenecks" (arXiv:1801.04381). Each block expands its input ``t`` times with a 1x1 conv,
filters it with a depthwise 3x3 conv, and projects it back with a 1x1 conv that has no
nonlinearity (the "linear bottleneck"); blocks that keep their shape add their input. The
body is Table 2 of the paper: a 32-filter stem, seven bottleneck sequences (t, c, n, s),
a 1x1 conv to 1280 channels, global pooling and a linear classifier; ReLU6 throughout.

CIFAR adaptation: the stem and the second sequence use stride 1 instead of 2, so the
network downsamples by 8 rather than 32 and a 32x32 image reaches the last stage at 4x4.
Strides do not change parameters, so the count is the paper's body with a 10-way classifier:
2.24M. There are no projection shortcuts (some CIFAR ports add them, giving ~2.30M).
``dropout`` before the classifier is off by default.

Weight init: He-normal convolutions, PyTorch-default linear layer (``common.init_weights``).
"""

from __future__ import annotations

from torch import Tensor, nn

from losslab.errors import InputError

from .common import check_image_size, init_weights
from .registry import register_model

__all__ = ["MobileNetV2"]

# (expansion t, output channels c, repeats n, stride s of the first repeat), Table 2 of the
# paper with the CIFAR strides: the first two strided sequences there are stride 1 here.
SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),  # stride 2 in the paper
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
            relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups,
                  bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int):
        super().__init__()
        hidden = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:  # with t = 1 the expansion conv would be a square 1x1: skipped
            layers.append(conv_bn(c_in, hidden, 1))
        layers += [
            conv_bn(hidden, hidden, 3, stride=stride, groups=hidden),  # depthwise
            conv_bn(hidden, c_out, 1, relu=False),  # linear bottleneck
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [conv_bn(in_channels, 32, 3, stride=1)]  # stride 2 in paper
        c_in = 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                c_in = c
        layers.append(conv_bn(c_in, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(1280, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x).mean(dim=(2, 3))
        return self.classifier(self.dropout(x))


@register_model("mobilenetv2", "MobileNetV2 for 32x32 (stride-1 stem and 2nd stage), "
                "2.24M params")
def mobilenetv2(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
                dropout: float = 0.0) -> nn.Module:
    if not 0.0 <= dropout < 1.0:
        raise InputError(f"mobilenetv2: dropout must be in [0, 1), got {dropout!r}")
    check_image_size("mobilenetv2", image_size, 3, "3 stride-2 stages")
    return MobileNetV2(num_classes, in_channels, dropout)
