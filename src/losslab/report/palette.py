"""One colour per series name, shared by every figure of a section and both rendering backends.

Variants get colours in the order the study lists them, so the first variant is always blue
and a variant keeps its colour across the whole report. Any other name (``train``/``val``, an
ensemble, a checkpoint, a run) gets the next free colour in order of first appearance: first
the colours no variant holds, then any not yet handed out. The report gives each section its
own :meth:`Palette.scoped` copy, so no two series of one section share a colour (up to the
20 colours there are), which a hash of the name could not promise: two of twenty names
collide by chance more often than not. The plotly and the matplotlib figure of a description
ask for the same names in the same order, so they get the same colours.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Palette", "COLORS"]

# Matplotlib's tab10 then the lighter tab20 partners: distinct, print well, and match what
# readers of matplotlib figures already expect.
COLORS: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)


class Palette:
    """``palette[name]`` is the hex colour of series ``name``; ``names`` (the variants) hold
    theirs for good, any other name is given one when first asked for."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._fixed: dict[str, str] = {}
        for i, name in enumerate(dict.fromkeys(names)):
            self._fixed[name] = COLORS[i % len(COLORS)]
        self._given: dict[str, str] = {}

    def scoped(self) -> Palette:
        """A copy with the variants' colours and none given out yet: one per section."""
        copy = Palette()
        copy._fixed = self._fixed
        return copy

    def __getitem__(self, name: str) -> str:
        if name in self._fixed:
            return self._fixed[name]
        if name not in self._given:
            self._given[name] = self._next_free()
        return self._given[name]

    def _next_free(self) -> str:
        """The first colour no variant holds and none handed out has, else the first not
        handed out, else (more names than colours) the colours again in turn."""
        taken = set(self._given.values())
        for avoid in (taken | set(self._fixed.values()), taken):
            free = [c for c in COLORS if c not in avoid]
            if free:
                return free[0]
        return COLORS[len(self._given) % len(COLORS)]

    def state(self) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
        """Every colour held and given so far: what the next names will get depends on it."""
        return tuple(self._fixed.items()), tuple(self._given.items())

    @staticmethod
    def rgba(color: str, alpha: float) -> str:
        """``#rrggbb`` as a CSS ``rgba()`` string (for translucent std bands)."""
        r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
        return f"rgba({r},{g},{b},{alpha})"
