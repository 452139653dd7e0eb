"""The model registry: one place that knows every architecture by name.

Each architecture file decorates small builder functions with :func:`register_model`::

    @register_model("resnet20", "CIFAR ResNet-20 (He et al. 2016), 0.27M params")
    def resnet20(num_classes=10, in_channels=3, image_size=32, *, skip=True):
        ...

A builder takes the three common arguments (``num_classes``, ``in_channels``,
``image_size``) plus keyword-only *options* of its own. The options and their defaults are
read from the builder's signature, so :func:`create_model` can reject a misspelt option
with a message that names it and lists the valid ones, before any layer is built. Run
configurations reach this through ``model.options``, where a typo would otherwise be a bare
``TypeError`` deep in a constructor.

A model takes ``inputs="image"`` (N, C, H, W with H = W = ``image_size``, the default) or
``inputs="signal"`` (N, C, L with L = ``image_size``: the 1-D models for MNIST-1D);
:func:`model_inputs` says which.
"""

from __future__ import annotations

import difflib
import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from losslab.errors import InputError

__all__ = ["ModelOptionError", "ModelSpec", "register_model", "create_model", "list_models",
           "model_options", "model_inputs", "check_inputs", "INPUT_KINDS"]

Builder = Callable[..., nn.Module]

# The arguments every builder takes; everything else in its signature is a model option.
_COMMON = ("num_classes", "in_channels", "image_size")
#: What a model's input is: NCHW images or NCL signals (``image_size`` is then the length).
INPUT_KINDS = ("image", "signal")


class ModelOptionError(InputError, TypeError):
    """An option a model does not have.

    A user error (:class:`~losslab.errors.InputError`, a ``ValueError``) and a ``TypeError``
    like any unexpected keyword argument.
    """


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture: its builder, a one-line description and its options."""

    name: str
    description: str
    builder: Builder
    options: dict[str, Any]  # option name -> default
    inputs: str = "image"  # one of INPUT_KINDS


_REGISTRY: dict[str, ModelSpec] = {}


def _options_of(name: str, builder: Builder) -> dict[str, Any]:
    """The keyword-only options of a builder, checking it follows the builder convention."""
    params = inspect.signature(builder).parameters
    missing = [a for a in _COMMON if a not in params]
    if missing:
        raise TypeError(f"builder for model {name!r} must accept {missing}")
    options = {}
    for p in params.values():
        if p.name in _COMMON:
            continue
        # **kwargs would swallow typos, which is what the registry exists to catch.
        if p.kind is not inspect.Parameter.KEYWORD_ONLY or p.default is inspect.Parameter.empty:
            raise TypeError(f"builder for model {name!r}: option {p.name!r} must be "
                            "keyword-only with a default")
        options[p.name] = p.default
    return options


def register_model(name: str, description: str, *,
                   inputs: str = "image") -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name`` (unique) with a one-line description;
    ``inputs`` is "image" (NCHW) or "signal" (NCL)."""
    if inputs not in INPUT_KINDS:
        raise InputError(f"model {name!r}: inputs must be one of {INPUT_KINDS}, got {inputs!r}")

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise InputError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelSpec(name, description, builder, _options_of(name, builder),
                                    inputs)
        return builder

    return decorate


def _suggest(word: str, candidates: list[str]) -> str:
    # Lower-casing first lets 'ResNet20' find 'resnet20' despite the many differing letters.
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(lowered[c]) for c in close)}?)" if close else ""


def _spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        names = sorted(_REGISTRY)
        raise InputError(f"unknown model {name!r}{_suggest(str(name), names)}; "
                         f"valid models: {', '.join(names)}")
    return _REGISTRY[name]


def _format_options(options: dict[str, Any]) -> str:
    if not options:
        return "none"
    return ", ".join(f"{k}={v!r}" for k, v in options.items())


def _positive_int(name: str, arg: str, value: Any) -> int:
    # numpy integers (e.g. a class count from sklearn) are fine; bool is an int subclass,
    # but num_classes=True is a bug, not a 1-class model.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"model {name!r}: {arg} must be a positive integer, got {value!r}")
    return int(value)


def create_model(name: str, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` for square ``in_channels`` x ``image_size`` inputs
    (for a "signal" model, ``in_channels`` signals of length ``image_size``).

    ``kwargs`` are the model's own options (see :func:`model_options`). Raises ``ValueError``
    for an unknown name or an input size the architecture cannot handle, and
    :class:`ModelOptionError` (a ``TypeError`` and a ``ValueError``) for an unknown option.
    """
    spec = _spec(name)
    for key in kwargs:
        if key not in spec.options:
            raise ModelOptionError(
                f"model {name!r} has no option {key!r}{_suggest(key, list(spec.options))}; "
                f"allowed options: {_format_options(spec.options)}")
    return spec.builder(num_classes=_positive_int(name, "num_classes", num_classes),
                        in_channels=_positive_int(name, "in_channels", in_channels),
                        image_size=_positive_int(name, "image_size", image_size), **kwargs)


def list_models() -> dict[str, str]:
    """Every registered model name (sorted) mapped to its one-line description."""
    return {name: _REGISTRY[name].description for name in sorted(_REGISTRY)}


def model_options(name: str) -> dict[str, Any]:
    """The options model ``name`` accepts, with their defaults."""
    return dict(_spec(name).options)


def model_inputs(name: str) -> str:
    """"image" if model ``name`` takes (N, C, H, W) images, "signal" for (N, C, L) signals."""
    return _spec(name).inputs


_KIND_WORDS = {"image": "(N, C, H, W) images", "signal": "(N, C, L) 1-D signals"}


def check_inputs(name: str, ndim: int, dataset: str = "the data") -> None:
    """Refuse model ``name`` on data whose examples have ``ndim`` dims (4: images, 3:
    signals) when it takes the other kind, naming the models that would fit; without this the
    mismatch surfaces as a shape error inside the first convolution."""
    kind = "signal" if ndim == 3 else "image"
    takes = _spec(name).inputs
    if takes != kind:
        fitting = ", ".join(n for n in sorted(_REGISTRY) if _REGISTRY[n].inputs == kind)
        raise InputError(f"model {name!r} takes {_KIND_WORDS[takes]}, but {dataset} holds "
                         f"{_KIND_WORDS[kind]}; models for those: {fitting}")
