"""Package namespaces that import their members on first use (PEP 562).

A package such as :mod:`losslab.train` names its public members in ``__all__`` but must not
import them when it is itself imported: its submodules import each other's packages
(``losslab.runs.config`` needs ``losslab.train.schedules``, the trainer needs the run
directory), and an eager ``__init__`` would close those into import cycles. A lazy namespace
imports a member's module the first time the member is read, then caches it in the package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_namespace"]


def lazy_namespace(package: str, members: dict[str, str]
                   ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose member ``name`` lives in the module
    ``members[name]`` (a dotted path under ``package``, e.g. ``"trainer"``)."""
    namespace = importlib.import_module(package).__dict__

    def getattr_(name: str) -> Any:
        if name not in members:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{members[name]}"), name)
        namespace[name] = value  # later reads skip this function
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(members))

    return getattr_, dir_
