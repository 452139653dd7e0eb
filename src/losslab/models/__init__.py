"""The losslab model zoo: classic image classifiers sized for small (CIFAR-like) inputs.

Build one by name::

    from losslab.models import create_model, list_models
    model = create_model("resnet20", num_classes=10, in_channels=3, image_size=32)
    model = create_model("resnet56", skip=False)       # options are per model
    list_models()                                       # {"alexnet": "...", ...}

Every model takes square ``in_channels x image_size x image_size`` inputs, returns
``(batch, num_classes)`` logits, runs on 1x28x28 and 3x32x32, and is refused at construction
when ``image_size`` is too small for its downsampling (the small ones, ``mlp``, ``lenet``,
``small_cnn`` and the CIFAR ResNets, also run on 8x8 digits). Forward passes have no
data-dependent Python control flow, so ``torch.func.functional_call`` and ``vmap`` work on
them. (In train mode BatchNorm updates its running statistics in place, so under ``vmap``
the buffers must be batched along with the parameters, as ``torch.func.stack_module_state``
does, or the model put in eval mode.)

The 1-D models for signals (MNIST-1D), ``mlp1d``, ``cnn1d``, ``cnn1d_bn``, ``resnet1d_8`` and
``resnet1d_20``, take ``(batch, in_channels, image_size)`` inputs instead, ``image_size``
being the signal length; :func:`model_inputs` says "image" or "signal".

Each architecture family lives in its own file and registers its names on import, below.
"""

from . import (  # noqa: F401  (imported to register their models)
    alexnet,
    cnn1d,
    densenet,
    lenet,
    mlp,
    mlp1d,
    mobilenetv2,
    preresnet,
    resnet,
    resnet1d,
    resnet_cifar,
    small_cnn,
    vgg,
    wide_resnet,
)
from .registry import (
    ModelOptionError,
    check_inputs,
    create_model,
    list_models,
    model_inputs,
    model_options,
    register_model,
)

__all__ = ["create_model", "list_models", "register_model", "model_options", "model_inputs",
           "check_inputs", "ModelOptionError"]
