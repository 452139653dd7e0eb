"""LeNet, in the wider variant with 32/64 filters and a 1000-unit hidden layer.

LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document
recognition" (LeNet-5). This is the widened "LeNet-like structure" of M. Stringher,
"Unconventional Training of Deep Neural Networks" (Master's thesis, University of Padova,
2019, §3.4.1): LeNet's shape (two 5x5 convolutions, each followed by a 2x2 max-pool, then fully connected layers)
with conv 32 -> conv 64 -> fc 1000 -> classifier, ReLU throughout.

Differences from LeNet-5, on purpose: ``padding=2`` keeps each convolution size-preserving,
so 8x8 digits survive both pools (8 -> 4 -> 2); ReLU and max-pooling replace tanh and
trainable subsampling. The hidden layer is sized from ``image_size``, so the model is built
for one input size (64 * 8 * 8 = 4096 inputs at 32x32, 64 * 7 * 7 at 28x28).

Weight init: He-normal convolutions, PyTorch-default linear layers (``common.init_weights``).
"""

from __future__ import annotations

from torch import Tensor, nn

from .common import check_image_size, halved, init_weights
from .registry import register_model

__all__ = ["LeNet"]


class LeNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, image_size: int, hidden: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        )
        side = halved(image_size, 2)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * side * side, hidden), nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@register_model("lenet", "LeNet variant: conv 32, conv 64 (5x5, max-pool), fc 1000")
def lenet(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    check_image_size("lenet", image_size, 2, "2 max-pools")
    return LeNet(num_classes, in_channels, image_size)
