"""Capabilities that register study analyses and report sections, found by entry point.

A capability registers its study analysis with ``@register_analysis`` and its report section
with ``@register_section`` when its module is imported. Which modules those are is declared
once, as entry points of the installed package (``pyproject.toml``)::

    [project.entry-points."losslab.analyses"]
    landscape = "losslab.landscape.study_analysis"

    [project.entry-points."losslab.report_sections"]
    landscape = "losslab.report.landscape_sections"

so neither registry hard-codes a list of modules, and another package adds its own analysis
and section by declaring entry points in the same two groups. The modules are imported the
first time a registry is read (not when losslab is imported: they import the registries).
"""

from __future__ import annotations

import functools
import importlib.metadata

__all__ = ["ANALYSES", "REPORT_SECTIONS", "load_plugins"]

ANALYSES = "losslab.analyses"
REPORT_SECTIONS = "losslab.report_sections"


@functools.cache
def load_plugins(group: str) -> tuple[str, ...]:
    """Import every module declared under the entry-point ``group`` (once); their names."""
    points = importlib.metadata.entry_points(group=group)
    for point in points:
        point.load()  # registration happens at import
    return tuple(sorted(p.name for p in points))
