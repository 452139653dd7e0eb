"""1-D ResNets for MNIST-1D, with and without shortcuts: the CIFAR ResNets, one dimension down.

The structure of :mod:`losslab.models.resnet_cifar` (He, Zhang, Ren & Sun 2016, "Deep residual
learning for image recognition", arXiv:1512.03385, section 4.2) with every 3x3 convolution a
kernel-3 ``Conv1d``: a convolution with ``width`` filters, three stages of ``n`` basic blocks
(two convolutions each) with ``width``, ``2 width`` and ``4 width`` filters, the second and
third stage halving the length by a stride-2 convolution, global average pooling and a linear
classifier; depth = 6n + 2 (``resnet1d_8``: n = 1, ``resnet1d_20``: n = 3).

Shortcuts are option A as there: identity, and where a stage halves the length and doubles the
width, a stride-2 subsample padded with zero channels. They have no parameters, so
``skip=False`` gives the "no-short" network of Li, Xu, Taylor, Studer & Goldstein 2018,
"Visualizing the loss landscape of neural nets" (arXiv:1712.09913) with exactly the same
parameter names and shapes: skip and no-skip runs differ in the function only.

The default ``width`` 8 (stages of 8, 16, 32 filters, a quarter of the CIFAR widths' arithmetic)
keeps the networks small: 6.7k and 23k parameters, an epoch of 7200 MNIST-1D signals in about
0.5 s and 1.1 s on one CPU core (docs/data.md); ``width=16`` gives the CIFAR widths. On a length-40 signal the stages see lengths 40, 20 and
10. Weight init: He-normal convolutions, PyTorch-default linear layer
(``common.init_weights``), as the 2-D version.
"""

from __future__ import annotations

from torch import nn

from losslab.errors import InputError

from .common import halved
from .registry import register_model
from .resnet_cifar import BasicBlock, CifarResNet

__all__ = ["ResNet1d", "resnet1d"]


class BasicBlock1d(BasicBlock):
    """The CIFAR basic block over signals: ``Conv1d`` and ``BatchNorm1d``, the same shortcut."""

    dims = 1


class ResNet1d(CifarResNet):
    """The CIFAR ResNet of :mod:`losslab.models.resnet_cifar` built from 1-D blocks."""

    block = BasicBlock1d

    def __init__(self, depth: int, num_classes: int, in_channels: int, skip: bool = True,
                 width: int = 8):
        super().__init__(depth, num_classes, in_channels, skip, width)


def resnet1d(depth: int, num_classes: int = 10, in_channels: int = 1, image_size: int = 40,
             skip: bool = True, width: int = 8) -> ResNet1d:
    """A 1-D ResNet of any depth 6n + 2 (registered: 8 and 20); ``image_size`` is the length."""
    name = f"resnet1d_{depth}" + ("" if skip is True else " (skip=False)")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise InputError(f"1-D ResNet depth must be 6n + 2 with n >= 1, got {depth!r}")
    if not isinstance(skip, bool):
        raise InputError(f"{name}: skip must be true or false, got {skip!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 2 or width % 2:
        # Option A pads width/2 zero channels on each side when a stage doubles the width.
        raise InputError(f"{name}: width must be a positive even integer, got {width!r}")
    if halved(image_size, 1) < 2:  # the second stride-2 stage would see length 1
        raise InputError(f"{name} has 2 stride-2 stages; a signal of length "
                         f"image_size={image_size} is too small. It needs image_size >= 3")
    return ResNet1d(depth, num_classes, in_channels, skip, width)


@register_model("resnet1d_8", "1-D ResNet-8 (the CIFAR ResNet with Conv1d, option A), widths "
                "8-16-32, 6.7k params; skip=False: no shortcuts", inputs="signal")
def resnet1d_8(num_classes: int = 10, in_channels: int = 1, image_size: int = 40, *,
               skip: bool = True, width: int = 8) -> nn.Module:
    return resnet1d(8, num_classes, in_channels, image_size, skip, width)


@register_model("resnet1d_20", "1-D ResNet-20 (the CIFAR ResNet with Conv1d, option A), widths "
                "8-16-32, 23k params; skip=False: no shortcuts", inputs="signal")
def resnet1d_20(num_classes: int = 10, in_channels: int = 1, image_size: int = 40, *,
                skip: bool = True, width: int = 8) -> nn.Module:
    return resnet1d(20, num_classes, in_channels, image_size, skip, width)
