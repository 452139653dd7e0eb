"""The CIFAR ResNets of He et al., with and without shortcuts.

He, Zhang, Ren & Sun 2016, "Deep residual learning for image recognition"
(arXiv:1512.03385), section 4.2: a 3x3 conv with 16 filters, then three stages of ``n``
basic blocks (two 3x3 convs each) with 16, 32 and 64 filters on 32x32, 16x16 and 8x8 maps,
global average pooling and a linear classifier; depth = 6n + 2 (20, 32, 44, 56, 110).

Shortcuts are the paper's option A: identity, and where a stage halves the map and doubles
the width, a stride-2 subsample padded with zero channels. Option A has no parameters, which
gives exactly the published sizes (0.27M, 0.46M, 0.66M, 0.85M, 1.7M) and means
``skip=False`` changes the function but not the parameter vector: the "no-short" networks of
Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the loss landscape of neural nets"
(arXiv:1712.09913), whose chaotic landscapes are a point of comparison, share every
parameter name and shape with the residual ones.

The stages downsample twice, by stride-2 convolutions, so inputs from 3x3 up work; 8x8 digits
end on a 2x2 map. Weight init: He-normal convolutions (the paper's init), PyTorch-default
linear layer (``common.init_weights``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from losslab.errors import InputError

from .common import check_image_size, init_weights
from .registry import register_model

__all__ = ["CifarResNet", "resnet_cifar"]


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the option-A shortcut, then ReLU.

    ``dims`` (2 here) is the number of spatial dimensions; a subclass with ``dims = 1`` is the
    same block over signals (:mod:`losslab.models.resnet1d`).
    """

    dims = 2

    @classmethod
    def conv3(cls, c_in: int, c_out: int, stride: int = 1) -> nn.Module:
        conv = (nn.Conv1d, nn.Conv2d)[cls.dims - 1]
        return conv(c_in, c_out, 3, stride=stride, padding=1, bias=False)

    @classmethod
    def norm(cls, channels: int) -> nn.Module:
        return (nn.BatchNorm1d, nn.BatchNorm2d)[cls.dims - 1](channels)

    def __init__(self, c_in: int, c_out: int, stride: int, skip: bool):
        super().__init__()
        self.conv1 = self.conv3(c_in, c_out, stride)
        self.bn1 = self.norm(c_out)
        self.conv2 = self.conv3(c_out, c_out)
        self.bn2 = self.norm(c_out)
        self.skip = skip
        self.stride = stride
        self.extra_channels = c_out - c_in

    def shortcut(self, x: Tensor) -> Tensor:
        # Option A: subsample like the strided conv (a side n becomes ceil(n / 2) in both)
        # and fill the new channels with zeros, half before and half after.
        if self.stride != 1:
            x = x[(slice(None), slice(None)) + (slice(None, None, self.stride),) * self.dims]
        if self.extra_channels:
            before = self.extra_channels // 2
            x = F.pad(x, (0, 0) * self.dims + (before, self.extra_channels - before))
        return x

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # A fixed architectural flag, not data: torch.func transforms see one graph.
        if self.skip:
            out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    """Stem, three stages of ``width``, ``2 width``, ``4 width`` filters, pool, linear; the
    block class decides the number of spatial dimensions."""

    block: type[BasicBlock] = BasicBlock

    def __init__(self, depth: int, num_classes: int, in_channels: int, skip: bool = True,
                 width: int = 16):
        super().__init__()
        n, w = (depth - 2) // 6, width
        self.conv1 = self.block.conv3(in_channels, w)
        self.bn1 = self.block.norm(w)
        self.layer1 = self._stage(w, w, n, 1, skip)
        self.layer2 = self._stage(w, 2 * w, n, 2, skip)
        self.layer3 = self._stage(2 * w, 4 * w, n, 2, skip)
        self.fc = nn.Linear(4 * w, num_classes)
        init_weights(self)

    def _stage(self, c_in: int, c_out: int, blocks: int, stride: int, skip: bool) -> nn.Sequential:
        layers = [self.block(c_in, c_out, stride, skip)]
        layers += [self.block(c_out, c_out, 1, skip) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        # Global average pool over the block's spatial dimensions (a class constant, not
        # x.ndim, so the model traces with torch.fx for BatchNorm folding).
        x = x.mean(dim=tuple(range(2, 2 + self.block.dims)))
        return self.fc(x)


def resnet_cifar(depth: int, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 skip: bool = True) -> CifarResNet:
    """A CIFAR ResNet of any depth 6n + 2 (the registered names are 20, 32, 44, 56, 110)."""
    name = f"resnet{depth}" + ("" if skip is True else " (skip=False)")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise InputError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1, got {depth!r}")
    if not isinstance(skip, bool):
        raise InputError(f"{name}: skip must be true or false, got {skip!r}")
    check_image_size(name, image_size, 2, "2 stride-2 stages")
    return CifarResNet(depth, num_classes, in_channels, skip)


@register_model("resnet20", "CIFAR ResNet-20 (He et al. 2016, option A), 0.27M params; "
                "skip=False: no shortcuts")
def resnet20(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
             skip: bool = True) -> nn.Module:
    return resnet_cifar(20, num_classes, in_channels, image_size, skip)


@register_model("resnet32", "CIFAR ResNet-32 (He et al. 2016, option A), 0.46M params; "
                "skip=False: no shortcuts")
def resnet32(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
             skip: bool = True) -> nn.Module:
    return resnet_cifar(32, num_classes, in_channels, image_size, skip)


@register_model("resnet44", "CIFAR ResNet-44 (He et al. 2016, option A), 0.66M params; "
                "skip=False: no shortcuts")
def resnet44(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
             skip: bool = True) -> nn.Module:
    return resnet_cifar(44, num_classes, in_channels, image_size, skip)


@register_model("resnet56", "CIFAR ResNet-56 (He et al. 2016, option A), 0.85M params; "
                "skip=False: no shortcuts")
def resnet56(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
             skip: bool = True) -> nn.Module:
    return resnet_cifar(56, num_classes, in_channels, image_size, skip)


@register_model("resnet110", "CIFAR ResNet-110 (He et al. 2016, option A), 1.7M params; "
                "skip=False: no shortcuts")
def resnet110(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
              skip: bool = True) -> nn.Module:
    return resnet_cifar(110, num_classes, in_channels, image_size, skip)
