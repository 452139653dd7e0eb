"""Tables for the report: number formatting and DataFrame -> escaped HTML.

Cells hold display strings (``0.912 ± 0.004``); the table sorter in the page sorts by the
leading number of a cell, so formatted means still sort numerically.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
from markupsafe import Markup, escape

__all__ = ["format_number", "format_mean_std", "format_value", "table_html", "Marked"]

MISSING = "—"


def _decimals(value: float) -> int | None:
    """Fixed decimals for a value's magnitude; None means use scientific notation.

    Three decimals (``0.912``) suit accuracies and losses, the common case; tiny values
    (learning rates, distances near a checkpoint) would print as ``0.000``, so they switch
    to scientific notation instead.
    """
    magnitude = abs(value)
    if magnitude == 0 or 1e-3 <= magnitude < 1e6:
        return 3
    return None


def format_number(value: Any, decimals: int | None = 3) -> str:
    """One number for a table cell; NaN/None become an em dash."""
    if value is None:
        return MISSING
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return MISSING
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.{decimals}f}" if decimals is not None else f"{x:.3e}"


def format_mean_std(mean: Any, std: Any) -> str:
    """``mean ± std`` with the precision the mean's magnitude calls for.

    The std is printed with the mean's decimals so the two line up; a missing std (one
    run) prints the mean alone.
    """
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return MISSING
    decimals = _decimals(float(mean))
    text = format_number(mean, decimals)
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return text
    return f"{text} ± {format_number(std, decimals)}"


def format_value(value: Any) -> str:
    """A config value as written in a study file (JSON-like: strings unquoted)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


class Marked(str):
    """A cell's text that also gives its ``<td>`` a CSS class (``best``: bold, the best value
    of its column). The mark lives in the text as well (e.g. a ★), so it survives a copy.
    Keep them in an ``object`` column: pandas' string dtype stores plain ``str``."""

    css: str

    def __new__(cls, text: str, css: str) -> Marked:
        cell = super().__new__(cls, text)
        cell.css = css
        return cell


def _cell(value: Any) -> str:
    """A table cell's text: numbers formatted like the summary, missing values as a dash."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return MISSING if math.isnan(value) else format_number(value, _decimals(value))
    if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
        return MISSING
    return format_value(value)


def _td(value: Any, wrap: bool) -> str:
    classes = ([value.css] if isinstance(value, Marked) else []) + (["wrap"] if wrap else [])
    attr = f' class="{escape(" ".join(classes))}"' if classes else ""
    return f"<td{attr}>{escape(_cell(value))}</td>"


def table_html(df: pd.DataFrame, *, sortable: bool = True, wrap: tuple[str, ...] = (),
               css: str = "") -> Markup:
    """``df`` as an HTML table with every header and cell escaped.

    pandas' ``to_html`` also escapes, but building the table here keeps the markup under our
    control (classes, a sortable header) and formats floats the same way as everywhere else.
    Cells stay on one line, except in the ``wrap`` columns (long text such as a variant's
    config); :class:`Marked` cells carry their class; ``css`` adds classes to the table.
    """
    cls = " ".join(["data"] + (["sortable"] if sortable else []) + ([css] if css else []))
    head = "".join(f"<th>{escape(str(c))}</th>" for c in df.columns)
    wrapped = [c in wrap for c in df.columns]
    rows = []
    for row in df.itertuples(index=False, name=None):
        cells = "".join(_td(v, w) for v, w in zip(row, wrapped, strict=True))
        rows.append(f"<tr>{cells}</tr>")
    body = "\n".join(rows)
    return Markup(
        f'<div class="table-wrap"><table class="{escape(cls)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{body}\n</tbody></table></div>"
    )
