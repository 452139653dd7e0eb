"""Multi-layer perceptron on flattened images.

The fully connected ReLU network of Rumelhart, Hinton & Williams 1986, "Learning
representations by back-propagating errors", here as the simplest baseline of the zoo: it
has no spatial prior, so its loss landscape is the reference point for the convolutional
ones. The input layer is sized from ``in_channels * image_size ** 2``, so the model is built
for one input size.

Weight init: PyTorch's default for linear layers (uniform in +-1/sqrt(fan_in)).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from losslab.errors import InputError

from .registry import register_model

__all__ = ["MLP"]


class MLP(nn.Module):
    """Flatten, then ``Linear -> ReLU`` for each hidden size, then the classifier."""

    def __init__(self, in_features: int, hidden_sizes: Sequence[int], num_classes: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _hidden(hidden_sizes: Sequence[int] | int) -> tuple[int, ...]:
    # YAML configs give lists, and a single width is a natural shorthand for one layer.
    sizes = (hidden_sizes,) if isinstance(hidden_sizes, int) else tuple(hidden_sizes)
    if not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in sizes):
        raise InputError(f"mlp: hidden_sizes must be positive integers, got {hidden_sizes!r}")
    return sizes


@register_model("mlp", "fully connected ReLU network on flattened pixels (hidden 256-256)")
def mlp(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
        hidden_sizes: Sequence[int] = (256, 256)) -> nn.Module:
    """``hidden_sizes=()`` gives multinomial logistic regression."""
    return MLP(in_channels * image_size**2, _hidden(hidden_sizes), num_classes)
