"""Slugs for HTML anchors and figure file names, unique within one report."""

from __future__ import annotations

import re

__all__ = ["slugify", "UniqueSlugs"]


def slugify(text: str, fallback: str = "item") -> str:
    """Lower-case ASCII letters, digits and single hyphens: safe in a URL and a file name."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:80].rstrip("-") or fallback


class UniqueSlugs:
    """Hands out slugs, suffixing ``-2``, ``-3``... when one is already taken.

    Two sections or figures may share a title; their anchors and files must not collide.
    """

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def claim(self, text: str, fallback: str = "item") -> str:
        base = slugify(text, fallback)
        slug, n = base, 1
        while slug in self._taken:
            n += 1
            slug = f"{base}-{n}"
        self._taken.add(slug)
        return slug
