"""Helpers shared by the architecture files: weight init and input-size arithmetic.

Weight init follows He et al. 2015, "Delving Deep into Rectifiers" (arXiv:1502.01852), which
the ResNet and DenseNet papers name for their convolutions and the reference code of the
pre-activation and wide ResNets uses. Of its two variants we take the one that preserves
the variance of the backward pass (``fan_out``), as that Torch reference code does; the
paper shows either keeps a deep ReLU net trainable. The other families (VGG, AlexNet,
LeNet, MobileNetV2) get the same init, so that every model in the zoo starts alike.

Size arithmetic: every downsampling step in the zoo (2x2 max/avg pools with
``ceil_mode=True``, 3x3 stride-2 convolutions with padding 1, and the ``x[..., ::2, ::2]``
option-A shortcut) maps a side of length ``n`` to ``ceil(n / 2)``. Using ceil everywhere is
what lets 28x28 inputs run through networks designed for 32x32 (28 -> 14 -> 7 -> 4 -> 2 -> 1
rather than ... -> 3 -> 1 -> 0), and keeps every branch of a block the same size.
"""

from __future__ import annotations

from torch import nn

from losslab.errors import InputError

__all__ = ["init_weights", "halved", "check_image_size"]


def init_weights(model: nn.Module) -> nn.Module:
    """He-normal convolutions, BatchNorm as identity, PyTorch-default linear layers.

    Linear layers keep PyTorch's default (uniform in +-1/sqrt(fan_in) for weights and
    biases), as the CIFAR reference implementations of these models do.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def halved(size: int, times: int) -> int:
    """Side length after ``times`` ceil-halvings (see the module docstring)."""
    for _ in range(times):
        size = -(-size // 2)
    return size


def _ordinal(k: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(k, f"{k}th")


def check_image_size(name: str, image_size: int, steps: int, what: str) -> None:
    """Refuse an input that would be 1x1 before the last of ``steps`` downsamplings.

    A 2x2 pool or stride-2 conv applied to a 1x1 map only pads it, so such a network has
    layers that cannot do what they were designed for; the combination is a mistake (e.g.
    VGG-16 on 8x8 digits) and is refused here, at construction, with the reason. Each
    halving sees a map of at least 2x2 exactly when ``image_size > 2 ** (steps - 1)``.

    ``what`` names the downsampling layers for the message, e.g. ``"5 max-pools"``.
    """
    if steps == 0 or image_size > 2 ** (steps - 1):
        return
    first_bad = next(k for k in range(1, steps + 1) if halved(image_size, k - 1) < 2)
    raise InputError(
        f"{name} downsamples by {2 ** steps} ({what}); image_size={image_size} is too small: "
        f"the {_ordinal(first_bad)} downsampling would see a 1x1 map. "
        f"It needs image_size >= {2 ** (steps - 1) + 1}")
