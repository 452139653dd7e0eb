"""JSON-ready values: tensors and arrays as plain nested lists, for results saved as JSON.

Analyses and commands return dicts that are written with ``json`` (``analyses/<id>.json``, a
command's output file) and read back by the report; :func:`as_list` is how a tensor or an array
enters them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["as_list"]


def as_list(t: Any) -> Any:
    """A tensor or array as nested Python lists (JSON-ready)."""
    return np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t).tolist()
