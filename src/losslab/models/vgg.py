"""VGG for 32x32 images, and the VGG-9 of the loss-landscape paper.

Simonyan & Zisserman 2015, "Very deep convolutional networks for large-scale image
recognition" (arXiv:1409.1556): stacks of 3x3 convolutions separated by 2x2 max-pools.
VGG-11/16/19 use the paper's configurations A, D and E. On 32x32 inputs the five pools leave
a 512 x 1 x 1 map, so, as in the usual CIFAR adaptation, the three 4096-unit layers are
replaced by a single linear classifier: VGG-16 then has 14.71M conv + 5k classifier
parameters (14.72M for 10 classes, without BatchNorm).

VGG-9 follows Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the loss landscape of
neural nets" (arXiv:1712.09913) and their reference code: 7 convolutions
[64, 64, M, 128, 128, M, 256, 256, 256, M], a 256-unit hidden layer on the flattened 256 x 4
x 4 map (with BatchNorm1d when ``batch_norm``), then the classifier: 9 weight layers. Li et
al. train it with BatchNorm, i.e. ``vgg9_bn``.

``*_bn`` names (or ``batch_norm=True``) add BatchNorm (Ioffe & Szegedy 2015) after every
convolution and drop the then-redundant conv bias. Pools use ``ceil_mode`` so that 28x28
inputs survive all five (28 -> 14 -> 7 -> 4 -> 2 -> 1). The flattened size follows
``image_size``, so a model is built for one input size.

``vgg16_dmc`` is VGG-16 as the mode-connectivity and FGE paper trained it (Garipov et al.
2018, their code timgaripov/dnn-mode-connectivity, ``models/vgg.py``): no BatchNorm, conv
biases, and a classifier ``Dropout, Linear(512, 512), ReLU, Dropout, Linear(512, 512), ReLU,
Linear(512, classes)`` (dropout 0.5) instead of the single linear layer: 15.25M parameters
for 10 classes. ``vgg16_bn_dmc`` is their VGG16BN (same head, BatchNorm after each conv).

Weight init: He-normal convolutions (fan-out, zero bias: the reference code's
``normal_(0, sqrt(2 / (k*k*out_channels)))``), PyTorch-default linear layers
(``common.init_weights``).
"""

from __future__ import annotations

from torch import Tensor, nn

from losslab.errors import InputError

from .common import check_image_size, halved, init_weights
from .registry import register_model

__all__ = ["VGG", "CONFIGS"]

M = "M"  # a 2x2 max-pool; numbers are 3x3 conv widths
CONFIGS: dict[str, list[int | str]] = {
    "vgg9": [64, 64, M, 128, 128, M, 256, 256, 256, M],
    "vgg11": [64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
    "vgg16": [64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M],
    "vgg19": [64, 64, M, 128, 128, M, 256, 256, 256, 256, M,
              512, 512, 512, 512, M, 512, 512, 512, 512, M],
}
HIDDEN = {"vgg9": 256}  # width of the extra fully connected layer, where there is one


def make_features(config: list[int | str], in_channels: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for v in config:
        if v == M:
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            continue
        # Before BatchNorm a conv bias has exactly zero gradient: a flat direction that
        # would show up in every Hessian and landscape measurement, so leave it out.
        layers.append(nn.Conv2d(in_channels, int(v), 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(v)))
        layers.append(nn.ReLU())
        in_channels = int(v)
    return nn.Sequential(*layers)


def make_classifier(flat: int, hidden: int | None, num_classes: int,
                    batch_norm: bool, dropout_head: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    if dropout_head:  # Garipov et al.'s head: two 512-unit layers behind dropout
        for _ in range(2):
            layers += [nn.Dropout(0.5), nn.Linear(flat, 512), nn.ReLU()]
            flat = 512
    if hidden is not None:
        layers.append(nn.Linear(flat, hidden, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(nn.ReLU())
        flat = hidden
    layers.append(nn.Linear(flat, num_classes))
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, name: str, num_classes: int, in_channels: int, image_size: int,
                 batch_norm: bool = False, dropout_head: bool = False):
        super().__init__()
        config = CONFIGS[name]
        pools = config.count(M)
        check_image_size(name + ("_bn" if batch_norm else ""), image_size, pools,
                         f"{pools} max-pools")
        side = halved(image_size, pools)
        channels = [v for v in config if v != M][-1]
        self.features = make_features(config, in_channels, batch_norm)
        self.classifier = make_classifier(int(channels) * side * side, HIDDEN.get(name),
                                          num_classes, batch_norm, dropout_head)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _vgg(name: str, num_classes: int, in_channels: int, image_size: int,
         batch_norm: bool, dropout_head: bool = False) -> nn.Module:
    if not isinstance(batch_norm, bool):
        raise InputError(f"{name}: batch_norm must be true or false, got {batch_norm!r}")
    return VGG(name, num_classes, in_channels, image_size, batch_norm, dropout_head)


@register_model("vgg9", "VGG-9 of Li et al. 2018 (7 convs + fc 256 + classifier), 2.79M params")
def vgg9(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
         batch_norm: bool = False) -> nn.Module:
    return _vgg("vgg9", num_classes, in_channels, image_size, batch_norm)


@register_model("vgg9_bn", "VGG-9 of Li et al. 2018 with BatchNorm (as they trained it)")
def vgg9_bn(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    return _vgg("vgg9", num_classes, in_channels, image_size, True)


@register_model("vgg11", "VGG-11 (config A) for 32x32, single linear classifier, 9.2M params")
def vgg11(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
          batch_norm: bool = False) -> nn.Module:
    return _vgg("vgg11", num_classes, in_channels, image_size, batch_norm)


@register_model("vgg11_bn", "VGG-11 (config A) for 32x32 with BatchNorm")
def vgg11_bn(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    return _vgg("vgg11", num_classes, in_channels, image_size, True)


@register_model("vgg16", "VGG-16 (config D) for 32x32, single linear classifier, 14.7M params")
def vgg16(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
          batch_norm: bool = False) -> nn.Module:
    return _vgg("vgg16", num_classes, in_channels, image_size, batch_norm)


@register_model("vgg16_bn", "VGG-16 (config D) for 32x32 with BatchNorm")
def vgg16_bn(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    return _vgg("vgg16", num_classes, in_channels, image_size, True)


@register_model("vgg19", "VGG-19 (config E) for 32x32, single linear classifier, 20.0M params")
def vgg19(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, *,
          batch_norm: bool = False) -> nn.Module:
    return _vgg("vgg19", num_classes, in_channels, image_size, batch_norm)


@register_model("vgg19_bn", "VGG-19 (config E) for 32x32 with BatchNorm")
def vgg19_bn(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    return _vgg("vgg19", num_classes, in_channels, image_size, True)


@register_model("vgg16_dmc", "VGG-16 of Garipov et al.'s code: no BatchNorm, 512-512 dropout "
                "classifier, 15.25M params")
def vgg16_dmc(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    return _vgg("vgg16", num_classes, in_channels, image_size, False, dropout_head=True)


@register_model("vgg16_bn_dmc", "VGG16BN of Garipov et al.'s code: BatchNorm, 512-512 dropout "
                "classifier")
def vgg16_bn_dmc(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    return _vgg("vgg16", num_classes, in_channels, image_size, True, dropout_head=True)
