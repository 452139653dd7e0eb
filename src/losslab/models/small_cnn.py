"""A small, fast convolutional network: the default model of the CPU quick-start.

Not from a paper: three 3x3 conv-BatchNorm-ReLU layers in the style of VGG (Simonyan &
Zisserman 2015, arXiv:1409.1556) with BatchNorm (Ioffe & Szegedy 2015, arXiv:1502.03167),
a 2x2 max-pool after each of the first two, global average pooling and one linear layer.
Widths are ``width, 2*width, 2*width`` (default 32-64-64, about 57k parameters). On the 8x8
sklearn digits it reaches > 95% test accuracy in a few CPU seconds; the global pool lets
the same weight shapes serve 8x8, 28x28 and 32x32 inputs.

Weight init: He-normal convolutions (``common.init_weights``).
"""

from __future__ import annotations

from torch import Tensor, nn

from losslab.errors import InputError

from .common import check_image_size, init_weights
from .registry import register_model

__all__ = ["SmallCNN"]


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    # No conv bias: BatchNorm's shift makes it redundant, and a parameter with exactly
    # zero gradient is a flat direction that would distort any landscape measurement.
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(in_channels, width),
            nn.MaxPool2d(2, ceil_mode=True),
            conv_bn_relu(width, 2 * width),
            nn.MaxPool2d(2, ceil_mode=True),
            conv_bn_relu(2 * width, 2 * width),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2 * width, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(x)


@register_model("small_cnn", "3-layer conv-BN-ReLU net with global pooling, ~57k params "
                "(CPU quick-start default)")
def small_cnn(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
              width: int = 32) -> nn.Module:
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise InputError(f"small_cnn: width must be a positive integer, got {width!r}")
    check_image_size("small_cnn", image_size, 2, "2 max-pools")
    return SmallCNN(num_classes, in_channels, width)
