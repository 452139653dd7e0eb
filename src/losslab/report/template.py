"""The report page: a jinja2 template with its CSS and scripts inline.

Kept as Python strings rather than package data files so an installed wheel always has
them. Everything is inline and plotly.js is embedded once: the page opens offline, from
an e-mail attachment or an archive, years later.

Two scripts make the page checkable by a headless browser:

* ``ERROR_RECORDER`` is the first script in ``<head>``: every uncaught error and unhandled
  promise rejection (and any ``alert``/``confirm``/``prompt``, which a report never calls,
  so one means injected script) is pushed onto ``window.__losslabErrors``.
* ``DRIVER`` at the end of ``<body>`` draws every figure, waits until all ``newPlot``
  promises have settled, then writes ``<div id="losslab-status" data-errors="N"
  data-plots="M">`` where M counts the plot containers that hold a drawn ``.main-svg``.
  Errors recorded later still update ``data-errors``.
"""

from __future__ import annotations

__all__ = ["PAGE", "CSS", "ERROR_RECORDER", "DRIVER"]

ERROR_RECORDER = """
(function () {
  var errors = window.__losslabErrors = [];
  function record(message) {
    errors.push(String(message));
    var status = document.getElementById('losslab-status');
    if (status) { status.setAttribute('data-errors', String(errors.length)); }
  }
  window.__losslabRecord = record;
  window.onerror = function (message, source, line, column) {
    record(message + ' at ' + source + ':' + line + ':' + column);
  };
  window.addEventListener('unhandledrejection', function (event) {
    record('unhandled rejection: ' + (event.reason && event.reason.stack || event.reason));
  });
  ['alert', 'confirm', 'prompt'].forEach(function (name) {
    window[name] = function (message) { record('unexpected ' + name + ': ' + message); };
  });
})();
"""

DRIVER = """
(function () {
  var record = window.__losslabRecord;
  function writeStatus() {
    var plots = 0;
    document.querySelectorAll('.js-plotly-plot').forEach(function (el) {
      if (el.querySelector('.main-svg')) { plots += 1; }
    });
    var status = document.createElement('div');
    status.id = 'losslab-status';
    status.hidden = true;
    status.setAttribute('data-errors', String(window.__losslabErrors.length));
    status.setAttribute('data-plots', String(plots));
    status.textContent = window.__losslabErrors.join('\\n');
    document.body.appendChild(status);
  }
  function sortable(table) {
    table.querySelectorAll('th').forEach(function (th, column) {
      th.addEventListener('click', function () {
        var ascending = th.getAttribute('data-order') !== 'asc';
        table.querySelectorAll('th').forEach(function (o) { o.removeAttribute('data-order'); });
        th.setAttribute('data-order', ascending ? 'asc' : 'desc');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[column].textContent, y = b.cells[column].textContent;
          var nx = parseFloat(x), ny = parseFloat(y);
          var cmp = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
          return ascending ? cmp : -cmp;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  }
  var pending = [];
  try {
    document.querySelectorAll('table.sortable').forEach(sortable);
    document.querySelectorAll('script.losslab-figure').forEach(function (node) {
      var id = node.getAttribute('data-target');
      try {
        var spec = JSON.parse(node.textContent);
        var drawn = Plotly.newPlot(document.getElementById(id), spec.data, spec.layout,
                                   spec.config);
        pending.push(Promise.resolve(drawn).catch(function (e) {
          record('plot ' + id + ': ' + (e && e.stack || e));
        }));
      } catch (e) {
        record('plot ' + id + ': ' + (e && e.stack || e));
      }
    });
  } catch (e) {
    record('report driver: ' + (e && e.stack || e));
  }
  Promise.all(pending).then(function () {
    // One frame later the plots' SVG is in the document.
    window.requestAnimationFrame(function () { setTimeout(writeStatus, 0); });
  });
})();
"""

CSS = """
:root { --fg: #1d2430; --muted: #5c6675; --line: #d9dee5; --bg-soft: #f5f7fa;
        --accent: #1f77b4; --bad: #b42318; --good: #067647; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { padding: 1.5rem 2rem 1rem; border-bottom: 1px solid var(--line); background: var(--bg-soft); }
header h1 { margin: 0 0 .25rem; font-size: 1.6rem; }
.meta { color: var(--muted); margin: 0; font-size: .9rem; }
.layout { display: flex; align-items: flex-start; }
nav.toc { position: sticky; top: 0; flex: 0 0 14rem; max-height: 100vh; overflow-y: auto;
          padding: 1rem 1rem 1rem 2rem; font-size: .9rem; }
nav.toc ol { padding-left: 1.2rem; margin: 0; }
nav.toc a { color: var(--accent); text-decoration: none; }
main { flex: 1 1 auto; min-width: 0; padding: 0 2rem 3rem 1rem; }
section { padding-top: 1rem; border-bottom: 1px solid var(--line); padding-bottom: 1rem; }
h2 { font-size: 1.3rem; margin: .5rem 0; }
h3 { font-size: 1.05rem; margin: 1rem 0 .4rem; }
pre { background: var(--bg-soft); border: 1px solid var(--line); border-radius: 4px;
      padding: .6rem .8rem; overflow-x: auto; font-size: .82rem; white-space: pre-wrap; }
code { font-size: .9em; background: var(--bg-soft); padding: 0 .2em; border-radius: 3px; }
details > summary { cursor: pointer; color: var(--accent); margin: .4rem 0; }
.note { color: var(--muted); font-size: .9rem; }
.ok { color: var(--good); }
.error, .failed b { color: var(--bad); }
.failed { border-left: 3px solid var(--bad); padding-left: .8rem; margin: .6rem 0; }
.failed pre { max-height: 14em; overflow-y: auto; }
.table-wrap { overflow-x: auto; margin: .6rem 0; }
table.data { border-collapse: collapse; font-size: .85rem; font-variant-numeric: tabular-nums; }
table.data th, table.data td { border-bottom: 1px solid var(--line); padding: .3rem .7rem;
                               text-align: left; white-space: nowrap; }
table.data th { background: var(--bg-soft); position: sticky; top: 0; }
table.data td.wrap { white-space: normal; overflow-wrap: anywhere; min-width: 12em;
                     max-width: 32em; font-size: .78rem; }
table.results th, table.results td { padding: .3rem .5rem; }
table.data td.best { font-weight: 700; }
table.results td:first-child { font-weight: 600; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[data-order="asc"]::after { content: " \\25B2"; font-size: .7em; }
table.sortable th[data-order="desc"]::after { content: " \\25BC"; font-size: .7em; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr));
           gap: 1rem; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 4px; padding: .3rem; }
.losslab-plot { width: 100%; min-height: 400px; }
figcaption { font-size: .8rem; color: var(--muted); text-align: right; }
figcaption a { margin-left: .6rem; color: var(--accent); }
@media (max-width: 900px) { .layout { display: block; } nav.toc { position: static; } }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<script>{{ error_recorder }}</script>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="losslab {{ version }}">
<title>{{ name }} — losslab report</title>
<style>{{ css }}</style>
<script>{{ plotly_js }}</script>
</head>
<body>
<header>
<h1>losslab report: {{ name }}</h1>
<p class="meta">Generated {{ generated }} by losslab {{ version }} · {{ what }}
<code>{{ directory }}</code></p>
</header>
<div class="layout">
<nav class="toc" aria-label="Contents"><h2>Contents</h2><ol>
{%- for s in sections %}
<li><a href="#{{ s.anchor }}">{{ s.title }}</a></li>
{%- endfor %}
</ol></nav>
<main>
{%- for s in sections %}
<section id="{{ s.anchor }}">
<h2>{{ s.title }}</h2>
{{ s.html }}
{%- for t in s.tables %}
{{ t }}
{%- endfor %}
{%- if s.figures %}
<div class="figures">
{%- for f in s.figures %}
<figure>
{{ f.body }}
{%- if f.links %}
<figcaption>{% for link in f.links %}<a href="{{ link.href }}">{{ link.label }}</a>{% endfor %}</figcaption>
{%- endif %}
</figure>
{%- endfor %}
</div>
{%- endif %}
</section>
{%- endfor %}
</main>
</div>
<script>{{ driver }}</script>
</body>
</html>
"""
