"""AlexNet adapted to 32x32 images.

Krizhevsky, Sutskever & Hinton 2012, "ImageNet classification with deep convolutional
neural networks". The CIFAR adaptation keeps AlexNet's five convolutions (64-192-384-256-256
filters), its three max-pools and its classifier (two 4096-unit ReLU layers, each preceded
by dropout 0.5), and shrinks the stem for small images: a 3x3 stride-2 convolution instead
of 11x11 stride 4, 2x2 pools instead of overlapping 3x3 ones, 3x3 kernels throughout. A
32x32 input leaves a 256 x 2 x 2 map for the classifier (about 23.3M parameters, nearly all
in the fully connected layers, as in the original).

Total downsampling is 16 (stride-2 stem + 3 pools), so it needs at least 9x9 inputs; 8x8
digits are refused. Pools use ``ceil_mode`` so 28x28 also ends at 2x2 (14 -> 7 -> 4 -> 2).
Other sizes size the first linear layer accordingly.

Weight init: He-normal convolutions, PyTorch-default linear layers (``common.init_weights``).
"""

from __future__ import annotations

from torch import Tensor, nn

from losslab.errors import InputError

from .common import check_image_size, halved, init_weights
from .registry import register_model

__all__ = ["AlexNet"]


class AlexNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
        )
        side = halved(image_size, 4)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout), nn.Linear(256 * side * side, 4096), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(),
            nn.Linear(4096, num_classes),
        )
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@register_model("alexnet", "AlexNet for 32x32 (5 convs 64-192-384-256-256, fc 4096-4096, "
                "dropout), 23.3M params")
def alexnet(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
            dropout: float = 0.5) -> nn.Module:
    if not 0.0 <= dropout < 1.0:
        raise InputError(f"alexnet: dropout must be in [0, 1), got {dropout!r}")
    check_image_size("alexnet", image_size, 4, "a stride-2 stem and 3 max-pools")
    return AlexNet(num_classes, in_channels, image_size, dropout)
