"""A registry of functions keyed by the type of their first argument.

Each rendering backend keeps one: ``RENDERERS.register(LineFigure)`` adds the function
that draws a line figure. Lookup walks the argument's MRO, so a subclass of a registered
figure type is drawn by its parent's renderer until it registers its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["TypeRegistry"]

F = TypeVar("F", bound=Callable[..., Any])


class TypeRegistry:
    """Maps a type to the function that handles instances of it."""

    def __init__(self, what: str) -> None:
        self.what = what  # named in the error for an unregistered type
        self._by_type: dict[type, Callable[..., Any]] = {}

    def register(self, kind: type) -> Callable[[F], F]:
        """Decorator: ``fn`` handles instances of ``kind`` (replacing any earlier one)."""

        def deco(fn: F) -> F:
            self._by_type[kind] = fn
            return fn

        return deco

    def lookup(self, obj: Any) -> Callable[..., Any]:
        """The function for ``obj``'s type or its nearest registered base class."""
        for kind in type(obj).__mro__:
            if kind in self._by_type:
                return self._by_type[kind]
        known = ", ".join(sorted(k.__name__ for k in self._by_type))
        raise TypeError(f"no {self.what} for {type(obj).__name__}; registered: {known}")

    def __contains__(self, kind: type) -> bool:
        return kind in self._by_type
