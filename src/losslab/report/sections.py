"""Report sections and the registry that turns an analysis's JSON into one.

Every analysis writes a JSON-able dict into ``records.analyses[name]``. To give it a
proper place in the report, register a builder under the same name::

    @register_section("sharpness")
    def sharpness_section(records, data):
        return Section(title="Sharpness", figures=[...], tables=[...])

:func:`analysis_sections` calls the builder for every analysis in a study. An analysis
without a builder still appears: its JSON pretty-printed in a collapsible block. A builder
that raises does not sink the report either; its section shows the error and the JSON,
and the traceback goes to the log. An analysis that itself failed (the runner records
``{"error": ..., "traceback": ...}``) gets a section showing that error, without its
builder being called.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
from markupsafe import escape

from losslab.errors import InputError
from losslab.plugins import REPORT_SECTIONS, load_plugins

if TYPE_CHECKING:
    from losslab.studies.records import StudyRecords

__all__ = [
    "Section",
    "SectionBuilder",
    "register_section",
    "section_builder",
    "analysis_sections",
    "generic_section",
    "json_block",
]

logger = logging.getLogger(__name__)


@dataclass
class Section:
    """One titled block of the report, with an entry in its table of contents.

    ``html`` is inserted as is, above the tables and figures: a builder that puts data
    into it (names, messages) must escape them, e.g. with ``markupsafe.escape``.
    ``figures`` are neutral descriptions (:mod:`losslab.report.figures`), drawn by both
    backends; ``tables`` are DataFrames, rendered escaped. ``anchor`` defaults to a slug
    of the title (made unique within the report).
    """

    title: str
    html: str = ""
    figures: list = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)
    anchor: str = ""


SectionBuilder = Callable[["StudyRecords", Any], Section | list[Section]]

_BUILDERS: dict[str, SectionBuilder] = {}


def register_section(analysis_name: str, *, replace: bool = False) -> Callable[[SectionBuilder],
                                                                               SectionBuilder]:
    """Decorator: ``fn(records, data)`` builds the report section(s) of ``analysis_name``.

    Registering a second, different builder for a name is an error (two capabilities
    claiming one analysis) unless ``replace=True``.
    """

    def deco(fn: SectionBuilder) -> SectionBuilder:
        existing = _BUILDERS.get(analysis_name)
        if existing is not None and existing is not fn and not replace:
            raise InputError(f"a report section for analysis {analysis_name!r} is already "
                             f"registered ({existing.__module__}.{existing.__qualname__}); "
                             "pass replace=True to override it")
        _BUILDERS[analysis_name] = fn
        return fn

    return deco


def section_builder(analysis_name: str) -> SectionBuilder | None:
    """The builder registered for ``analysis_name`` (the ``losslab.report_sections`` entry
    points are imported first, :mod:`losslab.plugins`), or None."""
    load_plugins(REPORT_SECTIONS)
    return _BUILDERS.get(analysis_name)


def json_block(data: Any, summary: str = "JSON", open_: bool = False) -> str:
    """``data`` pretty-printed in a collapsible ``<details>`` block (escaped)."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str, allow_nan=True)
    attr = " open" if open_ else ""
    return (f"<details class=\"json\"{attr}><summary>{escape(summary)}</summary>"
            f"<pre>{escape(text)}</pre></details>")


def generic_section(name: str, data: Any) -> Section:
    """The section of an analysis that has no registered builder: its raw JSON."""
    note = (f"<p class=\"note\">No report section is registered for analysis "
            f"<code>{escape(name)}</code>; its output is shown as written.</p>")
    return Section(title=name, html=note + json_block(data, summary=f"{name}: JSON"))


def _failed_section(name: str, data: Any, error: str) -> Section:
    html = (f"<p class=\"error\">The report section for analysis <code>{escape(name)}</code> "
            "failed to build; its output is shown as written.</p>"
            f"<details class=\"json\"><summary>error</summary><pre>{escape(error)}</pre>"
            f"</details>{json_block(data, summary=f'{name}: JSON')}")
    return Section(title=name, html=html)


def _is_failure(data: Any) -> bool:
    """The study runner records a failed analysis as ``{"error": ..., "traceback": ...}``."""
    return isinstance(data, dict) and "error" in data and set(data) <= {"error", "traceback"}


def _failed_analysis_section(name: str, data: dict) -> Section:
    html = (f"<p class=\"error\">Analysis <code>{escape(name)}</code> failed: "
            f"{escape(data['error'])}</p>")
    if data.get("traceback"):
        html += (f"<details class=\"json\"><summary>traceback</summary>"
                 f"<pre>{escape(data['traceback'])}</pre></details>")
    return Section(title=name, html=html)


def _as_sections(name: str, result: Any) -> list[Section]:
    items = result if isinstance(result, (list, tuple)) else [result]
    bad = [type(item).__name__ for item in items if not isinstance(item, Section)]
    if bad:
        raise TypeError(f"builder for {name!r} returned {', '.join(bad)}, expected Section")
    return list(items)


def analysis_sections(records: StudyRecords) -> list[Section]:
    """The sections of every analysis in ``records.analyses``, in their order."""
    sections: list[Section] = []
    for name, data in (records.analyses or {}).items():
        # The file is named by the analysis's id; the analysis itself is recorded inside.
        kind = data.get("analysis", name) if isinstance(data, dict) else name
        builder = section_builder(kind)
        if _is_failure(data):
            sections.append(_failed_analysis_section(name, data))
            continue
        if builder is None:
            sections.append(generic_section(name, data))
            continue
        try:
            built = _as_sections(name, builder(records, data))
            if isinstance(data, dict) and data.get("stale") and built:
                built[0].html = (f'<p class="error">Out of date: {escape(data["stale"])}.</p>'
                                 + built[0].html)
            sections.extend(built)
        except Exception:
            logger.exception("report section for analysis %r failed", name)
            sections.append(_failed_section(name, data, traceback.format_exc()))
    return sections
