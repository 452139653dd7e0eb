"""The device a name means: ``resolve_device`` for a config's ``device`` and every analysis.

``"auto"`` (or None) is the first CUDA device when one is available, else the CPU; any other
name is a torch device name (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``...). Asking for CUDA
where there is none is a :class:`~losslab.runs.config.ConfigError` before any work starts.
"""

from __future__ import annotations

import torch

from losslab.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The torch device ``name`` means (module docstring)."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for, but CUDA is not available here")
    return device
