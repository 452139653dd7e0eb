"""ResNet-18 and ResNet-34 in their CIFAR form.

He, Zhang, Ren & Sun 2016, "Deep residual learning for image recognition"
(arXiv:1512.03385): the ImageNet ResNets of Table 1, built from basic blocks (two 3x3
convs) in four stages of 64, 128, 256 and 512 filters, with [2, 2, 2, 2] (ResNet-18) or
[3, 4, 6, 3] (ResNet-34) blocks. The usual CIFAR adaptation replaces the 7x7 stride-2
stem and its max-pool with a single 3x3 stride-1 convolution, so a 32x32 image reaches the
last stage at 4x4 rather than 1x1. Parameter counts for 10 classes: 11.17M and 21.28M.

Shortcuts are identities, except where a block halves the map and widens it: there a 1x1
stride-2 convolution with BatchNorm (the paper's option B). Three stages downsample, so
inputs of 5x5 and up work. For the parameter-free option-A networks of the paper's CIFAR
section see ``resnet_cifar.py``.

Weight init: He-normal convolutions, PyTorch-default linear layer (``common.init_weights``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .common import check_image_size, init_weights
from .registry import register_model

__all__ = ["ResNet"]


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()  # identity
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks: tuple[int, int, int, int], num_classes: int, in_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        c_in = 64
        stages = []
        for width, stride, n in zip((64, 128, 256, 512), (1, 2, 2, 2), blocks, strict=True):
            units = [BasicBlock(c_in if i == 0 else width, width, stride if i == 0 else 1)
                     for i in range(n)]
            stages.append(nn.Sequential(*units))
            c_in = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(512, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))


@register_model("resnet18", "ResNet-18, CIFAR form (3x3 stem, no max-pool), 11.17M params")
def resnet18(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    check_image_size("resnet18", image_size, 3, "3 stride-2 stages")
    return ResNet((2, 2, 2, 2), num_classes, in_channels)


@register_model("resnet34", "ResNet-34, CIFAR form (3x3 stem, no max-pool), 21.28M params")
def resnet34(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    check_image_size("resnet34", image_size, 3, "3 stride-2 stages")
    return ResNet((3, 4, 6, 3), num_classes, in_channels)
