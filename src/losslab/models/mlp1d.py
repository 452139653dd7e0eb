"""Multi-layer perceptron on 1-D signals (MNIST-1D).

The zoo's :class:`~losslab.models.mlp.MLP` (flatten, ``Linear -> ReLU`` per hidden size, a
linear classifier) built for ``in_channels`` signals of length ``image_size``, i.e.
``in_channels * image_size`` input features, where the image ``mlp`` takes
``in_channels * image_size ** 2``. The default two hidden layers of 100 units are the width of
the MLP in Greydanus 2020, "Scaling down deep learning" (arXiv:2011.14439), whose MLP reaches
about 68% test accuracy on MNIST-1D against 94% for its CNN: the set rewards the
convolution's spatial prior. (The paper's code adds its second layer's output to its input, a
residual connection; this is the plain MLP.)

Weight init: PyTorch's default for linear layers (uniform in +-1/sqrt(fan_in)).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from losslab.errors import InputError

from .mlp import MLP, _hidden
from .registry import register_model

__all__ = ["mlp1d"]


@register_model("mlp1d", "fully connected ReLU network on 1-D signals (hidden 100-100; "
                "MNIST-1D's MLP), 15k params on 1x40", inputs="signal")
def mlp1d(num_classes: int = 10, in_channels: int = 1, image_size: int = 40, *,
          hidden_sizes: Sequence[int] = (100, 100)) -> nn.Module:
    """``image_size`` is the signal length; ``hidden_sizes=()`` gives logistic regression."""
    try:
        sizes = _hidden(hidden_sizes)
    except ValueError:
        raise InputError(f"mlp1d: hidden_sizes must be positive integers, "
                         f"got {hidden_sizes!r}") from None
    return MLP(in_channels * image_size, sizes, num_classes)
