"""The report in a real browser: headless Chromium opens report.html from disk.

The page records every uncaught error, unhandled rejection and dialog call into
``window.__losslabErrors`` (its first script) and, once every plot has been drawn, writes
``<div id="losslab-status" data-errors="N" data-plots="M">`` whose text lists the errors.
These tests read that element from ``--dump-dom`` and look at a screenshot.

Chromium is required, not optional: without it the tests fail and say how to install it.
Deselect them with ``-m "not browser"``.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from test_report import (  # the shared synthetic study (tests/ is on sys.path)
    EVIL,
    VARIANTS,
    make_records,
    results_cell,
)

from losslab.report import build_report

pytestmark = [pytest.mark.browser, pytest.mark.e2e]  # e2e: deselected by `make test-fast`

TIMEOUT_S = 60
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=15000"]


def chromium() -> str:
    for candidate in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    pytest.fail("Chromium is needed for the browser tests of the report: install it with "
                "`apt-get install -y chromium` (or deselect these tests with -m 'not browser')",
                pytrace=False)


def run_chromium(page: Path, tmp_path: Path, *args: str) -> str:
    """Run headless Chromium on ``page`` with ``args``; return its stdout."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish within {TIMEOUT_S} s: {' '.join(cmd)}")
    assert done.returncode == 0, f"chromium exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


class _StatusParser(HTMLParser):
    """Finds ``#losslab-status`` in a dumped DOM: its attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.attrs: dict[str, str] | None = None
        self.text = ""
        self._inside = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id") == "losslab-status":
            self.attrs, self._inside = attrs, True

    def handle_endtag(self, tag):
        self._inside = False

    def handle_data(self, data):
        if self._inside:
            self.text += data


def page_status(page: Path, tmp_path: Path) -> tuple[int, int, str]:
    """(errors, drawn plots, error messages) as the page reported them."""
    parser = _StatusParser()
    parser.feed(run_chromium(page, tmp_path, "--dump-dom"))
    assert parser.attrs is not None, "the page never wrote #losslab-status (driver did not finish)"
    return int(parser.attrs["data-errors"]), int(parser.attrs["data-plots"]), parser.text


def n_figures(page: Path) -> int:
    return page.read_text(encoding="utf-8").count('class="losslab-figure"')


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    chromium()  # fail first, with the install hint, before building anything
    # PNG/PDF files are not what this test looks at; skipping them keeps it quick.
    return build_report(make_records(tmp_path_factory.mktemp("study")), static=False)


def test_page_draws_every_plot_without_errors(report, tmp_path):
    errors, plots, messages = page_status(report, tmp_path)
    assert errors == 0, f"the report raised in the browser:\n{messages}"
    expected = n_figures(report)
    assert expected > 0 and plots == expected


def test_screenshot_is_not_blank(report, tmp_path):
    import matplotlib.image

    shot = tmp_path / "shot.png"
    run_chromium(report, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels.std() > 0.05
    rgb = (pixels[::2, ::2] * 255).astype(np.uint32)
    assert len(np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2])) > 50


def test_error_recorder_catches_errors(report, tmp_path):
    """A control: plant a thrown error, an injected alert and a corrupt figure; all counted."""
    html = report.read_text(encoding="utf-8")
    marker = 'class="losslab-figure" data-target="'
    start = html.index(marker)
    json_start = html.index(">", start) + 1
    broken = html[:json_start] + "{not json" + html[json_start + 1:]
    planted = ("<body>\n<script>throw new Error('planted failure');</script>"
               "<script>alert('injected');</script>")
    page = report.with_name("broken.html")
    page.write_text(broken.replace("<body>", planted, 1), encoding="utf-8")
    errors, plots, messages = page_status(page, tmp_path)
    assert errors == 3, messages
    assert "planted failure" in messages and "unexpected alert: injected" in messages
    assert "plot plot-" in messages
    assert plots == n_figures(report) - 1


class _FirstTable(HTMLParser):
    """The first ``<table>`` of a dumped DOM: the section it is in, its header and rows."""

    def __init__(self) -> None:
        super().__init__()
        self.section: str | None = None
        self.rows: list[list[str]] = []
        self._open_section: str | None = None
        self._state = "before"  # before -> inside -> done
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self._open_section = dict(attrs).get("id")
        elif tag == "table" and self._state == "before":
            self._state, self.section = "inside", self._open_section
        elif self._state == "inside" and tag == "tr":
            self.rows.append([])
        elif self._state == "inside" and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if self._state == "inside" and tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif self._state == "inside" and tag == "table":
            self._state = "done"

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_results_table_comes_first_with_the_study_metric(report, tmp_path):
    """As the browser builds the page: its first table is the Results section's, one row per
    variant, with test_acc as mean ± half-width of the 95% t-interval over seeds."""
    parser = _FirstTable()
    parser.feed(run_chromium(report, tmp_path, "--dump-dom"))
    assert parser.section == "results"
    header, *rows = parser.rows
    assert header[:3] == ["variant", "seeds", "test_acc"]
    records = make_records(tmp_path / "again")  # the same synthetic study: it is seeded
    by_variant = {row[0]: row for row in rows}
    assert set(by_variant) == set(VARIANTS)
    for variant in ("baseline", EVIL):
        cell = by_variant[variant][header.index("test_acc")]
        assert cell.startswith(results_cell(records, variant, "test_acc")), (variant, cell)
        assert " ± " in cell


# After every plot is drawn: for each plot, does its title's box meet its tool bar's box, and
# does the title reach past the plot's own box (cut off)? Written to #overlap-check.
OVERLAP_CHECK = """<script>
(function check() {
  if (!document.getElementById('losslab-status')) { return setTimeout(check, 50); }
  var hits = [], plots = document.querySelectorAll('.js-plotly-plot');
  function meet(a, b) {
    return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  }
  plots.forEach(function (plot) {
    var box = plot.getBoundingClientRect();
    var title = plot.querySelector('.gtitle'), bar = plot.querySelector('.modebar');
    if (!title) { hits.push(plot.id + ': no title'); return; }
    var t = title.getBoundingClientRect();
    if (bar && meet(t, bar.getBoundingClientRect())) { hits.push(plot.id + ': tool bar'); }
    if (t.left < box.left || t.right > box.right || t.top < box.top) {
      hits.push(plot.id + ': cut off');
    }
  });
  var out = document.createElement('div');
  out.id = 'overlap-check';
  out.setAttribute('data-plots', String(plots.length));
  out.textContent = hits.join('\\n');
  document.body.appendChild(out);
})();
</script>"""


class _OverlapParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.plots: int | None = None
        self.text = ""
        self._inside = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id") == "overlap-check":
            self.plots, self._inside = int(attrs["data-plots"]), True

    def handle_endtag(self, tag):
        self._inside = False

    def handle_data(self, data):
        if self._inside:
            self.text += data


def test_titles_clear_the_tool_bar_and_fit(report, tmp_path):
    """In the drawn page, no plot's title meets its tool bar (the mode bar, top right) or
    runs out of its plot; the toy scatter's title is long (LONG_TITLE), so it must wrap."""
    html = report.read_text(encoding="utf-8")
    page = report.with_name("overlap.html")
    page.write_text(html.replace("</body>", OVERLAP_CHECK + "</body>", 1), encoding="utf-8")
    parser = _OverlapParser()
    parser.feed(run_chromium(page, tmp_path, "--dump-dom", "--window-size=1280,2000"))
    assert parser.plots == n_figures(report)
    assert parser.text.strip() == "", parser.text
