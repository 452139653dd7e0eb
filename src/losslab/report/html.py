"""``build_report``: a study's records -> one self-contained ``report.html``.

The page holds, in order (results first): the Results table, the run status, the findings,
the per-epoch curves, one or more sections per analysis (see :mod:`losslab.report.sections`),
then the full summary table, the variants and, collapsed, the study file and base config
(:mod:`losslab.report.standard`). With ``static=True`` every figure is also written as
``figures/<slug>.png`` and ``.pdf`` next to the report and linked under its plot.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup, escape

from losslab.report.anchors import UniqueSlugs
from losslab.report.epoch_curves import variant_order
from losslab.report.palette import Palette
from losslab.report.sections import Section, analysis_sections
from losslab.report.standard import appendix_sections, standard_sections
from losslab.report.tables import table_html
from losslab.report.template import CSS, DRIVER, ERROR_RECORDER, PAGE
from losslab.runs.atomic import atomic_write_text

if TYPE_CHECKING:
    from losslab.studies.records import StudyRecords

__all__ = ["build_report", "render_page", "REPORT_NAME", "FIGURES_DIR"]

logger = logging.getLogger(__name__)

REPORT_NAME = "report.html"
FIGURES_DIR = "figures"


def _environment() -> jinja2.Environment:
    # autoescape on: every name, message and value from a study is text, never markup;
    # only what is wrapped in Markup (our own escaped fragments) goes in raw.
    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True)


def _render_figure(fig: Any, slug: str, palette: Palette, directory: Path | None,
                   figures_dir: str = FIGURES_DIR, drawn: Any = None) -> dict:
    """The figure's HTML fragment and, when ``directory`` is set, its PNG/PDF links.

    A figure that fails to draw becomes an error box in place of the plot (and a log
    entry), so one bad analysis figure cannot cost the whole report.
    """
    from losslab.report import plotly_render  # plotly is imported only when rendering

    links: list[dict[str, str]] = []
    try:
        body = plotly_render.to_div(fig, palette, f"plot-{slug}")
        if directory is not None:
            from losslab.report import static_render

            for path in static_render.save_static(fig, palette, directory / figures_dir / slug,
                                                  drawn):
                links.append({"href": f"{figures_dir}/{path.name}",
                              "label": path.suffix.lstrip(".").upper()})
    except Exception as exc:
        logger.exception("figure %r could not be drawn", getattr(fig, "title", fig))
        body = Markup(f'<p class="error">Figure {escape(getattr(fig, "title", ""))} could '
                      f"not be drawn: {escape(type(exc).__name__)}: {escape(exc)}</p>")
    return {"body": body, "links": links}


def _render_sections(sections: list[Section], palette: Palette, directory: Path | None,
                     figures_dir: str = FIGURES_DIR, drawn: Any = None) -> list[dict]:
    anchors, figure_slugs = UniqueSlugs(), UniqueSlugs()
    out = []
    for section in sections:
        anchor = anchors.claim(section.anchor or section.title, fallback="section")
        colours = palette.scoped()  # no two series of one section share a colour
        figures = [
            _render_figure(fig, figure_slugs.claim(f"{anchor}-{getattr(fig, 'title', '')}"),
                           colours, directory, figures_dir, drawn)
            for fig in section.figures
        ]
        out.append({
            "title": section.title,
            "anchor": anchor,
            "html": Markup(section.html),  # documented as trusted, pre-escaped markup
            "tables": [table_html(df) for df in section.tables],
            "figures": figures,
        })
    return out


def build_report(records: StudyRecords, *, static: bool = True) -> Path:
    """Write ``records.directory / "report.html"`` (and, if ``static``, its figure files).

    Returns the path of the report. The file is written atomically: a reader never sees
    half a report, and a failed build leaves the previous one in place.
    """
    sections = standard_sections(records) + analysis_sections(records) \
        + appendix_sections(records)
    return render_page(Path(records.directory) / REPORT_NAME, records.name, sections,
                       Palette(variant_order(records)), static=static, what="study directory")


def render_page(path: Path, name: str, sections: list[Section], palette: Palette, *,
                static: bool = True, what: str = "directory", figures: str = FIGURES_DIR) -> Path:
    """Write ``sections`` as one self-contained page at ``path`` (atomically), with each
    figure also as ``figures/<slug>.png`` and ``.pdf`` beside it when ``static``; the page of a
    study and of any single result (a surface, a curve, an ensemble) alike; ``figures`` is
    the folder of the static files, relative to the page."""
    import plotly.offline  # the one copy of plotly.js the page carries

    from losslab import __version__

    directory = path.parent
    drawn = None
    if static:  # figures drawn before from the same numbers are not drawn again
        from losslab.report.static_render import DrawnFigures

        drawn = DrawnFigures(directory / figures)
    rendered = _render_sections(sections, palette, directory if static else None, figures, drawn)
    if drawn is not None:
        drawn.save()
    n_figures = sum(len(s["figures"]) for s in rendered)
    page = _environment().from_string(PAGE).render(
        name=name,
        what=what,
        directory=str(directory),
        version=__version__,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        sections=rendered,
        css=Markup(CSS),
        error_recorder=Markup(ERROR_RECORDER),
        driver=Markup(DRIVER),
        plotly_js=Markup(plotly.offline.get_plotlyjs()),
    )
    path = atomic_write_text(path, page)
    logger.info("wrote %s (%d sections, %d figures%s)", path, len(rendered), n_figures,
                ", with PNG/PDF" if static else "")
    return path
