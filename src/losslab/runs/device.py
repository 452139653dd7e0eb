"""The device a name means: ``resolve_device`` for a config's ``device`` and every analysis.

``"auto"`` (or None) is the first CUDA device when one is available, else the CPU; any other
name is a torch device name of one of the kinds losslab runs on: ``"cpu"``, ``"cuda"``,
``"cuda:N"``, ``"mps"``, ``"xpu"``, ``"xpu:N"``. :func:`check_device_name` checks the form alone
(the config does so when it is validated, before any work); :func:`resolve_device` also checks
that this machine has it. Either way a bad name is a one-line
:class:`~losslab.errors.ConfigError` that says what is allowed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from losslab.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["resolve_device", "check_device_name", "DEVICE_KINDS"]

#: The device kinds losslab can train and evaluate on (``auto`` picks one).
DEVICE_KINDS = ("cpu", "cuda", "mps", "xpu")

_FORM = re.compile(r"^(?P<kind>[a-z]+)(?::(?P<index>\d+))?$")

ALLOWED = "auto, cpu, cuda, cuda:N, mps, xpu, xpu:N"


def check_device_name(name: str, *, key: str = "device") -> str:
    """``name`` if it has the form of a device name (module docstring), else a ConfigError
    naming ``key``, the value and what is allowed. Whether the machine has it is not checked."""
    if not isinstance(name, str):
        raise ConfigError(f"bad value for {key!r}: {name!r}: expected a device name "
                          f"({ALLOWED})")
    text = name.strip()
    match = _FORM.match(text)
    if text == "auto":
        return text
    if match is None or match["kind"] not in DEVICE_KINDS:
        raise ConfigError(f"bad value for {key!r}: {name!r} is not a device name; allowed: "
                          f"{ALLOWED}")
    return text


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The torch device ``name`` means (module docstring); one this machine lacks is a
    ConfigError before any work starts."""
    import torch

    if isinstance(name, torch.device):
        device = name
    else:
        if name is None or name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        # torch would say "Expected one of cpu, cuda, ipu, xpu, ..." as a RuntimeError, a bug's
        # traceback; a name a person typed is their input
        device = torch.device(check_device_name(name))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(name)!r} was asked for, but CUDA is not available "
                              "here")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {str(name)!r} was asked for, but this machine has "
                              f"{count} CUDA device{'s' if count != 1 else ''} (cuda:0 to "
                              f"cuda:{count - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {str(name)!r} was asked for, but MPS is not available here")
    elif device.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise ConfigError(f"device {str(name)!r} was asked for, but no XPU is available here")
    return device
