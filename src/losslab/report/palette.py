"""One colour per series name, shared by every figure and both rendering backends.

Variants get colours in the order the study lists them, so the first variant is always
blue. Any other name (``train``/``val``, an ensemble, a checkpoint) gets a colour from a
stable hash of the name: the same in the interactive and the static figures and across
reports, without the renderers having to agree on an order of first appearance.
"""

from __future__ import annotations

import hashlib
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
    """``palette[name]`` is the hex colour of series ``name``."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._fixed: dict[str, str] = {}
        for i, name in enumerate(dict.fromkeys(names)):
            self._fixed[name] = COLORS[i % len(COLORS)]

    def __getitem__(self, name: str) -> str:
        if name in self._fixed:
            return self._fixed[name]
        # md5 rather than hash(): str hashes are salted per process.
        digest = hashlib.md5(name.encode("utf-8")).digest()
        return COLORS[int.from_bytes(digest[:4], "big") % len(COLORS)]

    @staticmethod
    def rgba(color: str, alpha: float) -> str:
        """``#rrggbb`` as a CSS ``rgba()`` string (for translucent std bands)."""
        r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
        return f"rgba({r},{g},{b},{alpha})"
