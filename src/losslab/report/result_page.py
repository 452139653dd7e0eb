"""Pages for single results: a run, a map, a curve's evaluation or plane, an ensemble.

``losslab landscape``, ``curve evaluate|plane`` and ``ensemble`` write their JSON result and,
beside it, ``<stem>.html`` (interactive, self-contained) with every figure also as
``figures/<stem>/<slug>.png`` and ``.pdf``; ``losslab report PATH`` draws any stored result or
run directory the same way. Nothing is computed: a page is drawn from the stored numbers by the
same section builders as a study's report (the result is put in the shape of the study
analysis that computes the same thing), so a surface looks the same in both.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from markupsafe import escape

from losslab.errors import InputError, MissingFileError
from losslab.report.palette import Palette
from losslab.report.sections import Section, section_builder
from losslab.runs.readers import read_json

__all__ = ["result_kind", "result_sections", "write_result_page", "write_run_page",
           "report_any", "RESULT_PATTERNS"]

log = logging.getLogger(__name__)

LANDSCAPE_KINDS = ("surface", "line", "trajectory", "hessian", "ratio_map", "curvature")
# The result files the commands write, which a directory's page gathers.
RESULT_PATTERNS = ("landscape_*.json", "curve_evaluate.json", "curve_plane.json", "ensemble.json")


def result_kind(data: dict[str, Any]) -> str:
    """``landscape``, ``curve_evaluate``, ``curve_plane`` or ``ensemble``, from the keys a
    command's result has; an error naming what was found otherwise."""
    if data.get("kind") in LANDSCAPE_KINDS and "runs" in data:
        return "landscape"
    if "ts" in data and "barrier" in data:
        return "curve_evaluate"
    if "curve_xy" in data:
        return "curve_plane"
    if "member_metrics" in data and "cumulative" in data:
        return "ensemble"
    raise InputError(f"not a result losslab can draw (a landscape, curve or ensemble result); "
                     f"its keys: {', '.join(sorted(data)[:12])}")


def _name(path: str) -> str:
    """A run directory or checkpoint as a short label: the run's name (and the checkpoint's)."""
    p = Path(path)
    if p.suffix == ".safetensors":
        return f"{p.parent.parent.name}/{p.stem}"
    return p.name or str(p)


def _landscape(data: dict[str, Any]) -> dict[str, Any]:
    runs = [_name(r) for r in data["runs"]]
    label = " → ".join(runs) if data["kind"] == "line" else runs[0]
    result = {k: v for k, v in data.items() if k not in ("kind", "runs")}
    return {"analysis": "landscape", "kind": data["kind"],
            "split": data.get("split", result.get("split", "train")),
            "examples": data.get("examples", result.get("examples", 0)),
            "results": {label: result}}


def _curve(data: dict[str, Any]) -> dict[str, Any]:
    return {"analysis": "curve", "evaluation": data, "pair": _name(data.get("run", "curve")),
            "kind": data.get("curve_kind", "bezier"), "bends": data.get("bends", 1),
            "run": data.get("run", "")}


def _ensemble(data: dict[str, Any]) -> dict[str, Any]:
    return {"analysis": "ensemble", "members": data.get("role") or "given", "group": "all",
            "split": data["split"], "groups": [{"name": "ensemble", "result": data}],
            "summary": []}


def _plane_section(data: dict[str, Any]) -> Section:
    from losslab.report.curve_sections import plane_figures

    pair = _name(data.get("run", "curve"))
    return Section(title=f"Curve plane: {pair}", figures=plane_figures(pair, data),
                   html=f"<p>The planes through the endpoints and the middle bend of the curve "
                        f"run <code>{pair}</code>, with the curve and the straight segment "
                        f"(Garipov et al. 2018); the loss grid is on the "
                        f"{data.get('split', 'train')} split.</p>")


_AS_ANALYSIS = {"landscape": _landscape, "curve_evaluate": _curve, "ensemble": _ensemble}


def result_sections(data: dict[str, Any]) -> list[Section]:
    """The sections that draw one result (see :func:`result_kind`)."""
    kind = result_kind(data)
    if kind == "curve_plane":
        return [_plane_section(data)]
    shaped = _AS_ANALYSIS[kind](data)
    builder = section_builder(shaped["analysis"])
    out = builder(None, shaped)
    return out if isinstance(out, list) else [out]


def _page(path: Path, name: str, sections: list[Section], *, static: bool) -> Path:
    from losslab.report.html import render_page

    return render_page(path, name, sections, Palette(), static=static, what="result",
                       figures=f"figures/{path.stem}")


def run_sections(records: Any) -> list[Section]:
    """A run's page: its last and best value of every metric, then its per-epoch curves."""
    import pandas as pd

    from losslab.report.epoch_curves import metric_columns
    from losslab.report.standard import curve_sections

    results = records.results.sort_values("epoch")
    rows = []
    for metric in metric_columns(results):
        values = pd.to_numeric(results[metric], errors="coerce").dropna()
        if values.empty or metric == "epoch":
            continue
        best = values.idxmax() if metric.endswith("acc") else values.idxmin()
        rows.append({"metric": metric, "last": f"{values.iloc[-1]:.6g}",
                     "best": f"{values[best]:.6g}", "best epoch": int(results.loc[best, "epoch"])})
    status = records.runs["status"].iloc[0]
    html = (f"<p>Run <code>{escape(records.name)}</code> ({escape(status)}), {len(results)} "
            "epochs; best is the largest accuracy and the smallest of anything else.</p>")
    return [Section(title="Results", anchor="results", html=html, tables=[pd.DataFrame(rows)]),
            *curve_sections(records)]


def write_result_page(json_path: str | Path, data: dict[str, Any] | None = None, *,
                      static: bool = True) -> Path:
    """``<stem>.html`` beside the result ``json_path`` (read from it unless ``data`` is given),
    figures under ``figures/<stem>/``; returns the page's path."""
    json_path = Path(json_path)
    if data is None:
        data = read_json(json_path, what="a losslab result")
    return _page(json_path.with_suffix(".html"), json_path.stem, result_sections(data),
                 static=static)


def write_run_page(run_dir: str | Path, *, static: bool = True) -> Path:
    """``report.html`` in a run directory: its final and best metrics and every per-epoch
    metric, from its ``metrics.jsonl``."""
    from losslab.studies.records import run_records

    records = run_records(run_dir)
    return _page(Path(run_dir) / "report.html", records.name, run_sections(records),
                 static=static)


def report_any(path: str | Path, *, static: bool = True) -> list[Path]:
    """Draw what ``path`` holds without computing anything: a result file, a run directory,
    or a directory of result files (each its own page). Studies are
    :func:`losslab.studies.finish_study`'s."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path} does not exist")
    if path.is_file():
        return [write_result_page(path, static=static)]
    if (path / "metrics.jsonl").exists():
        return [write_run_page(path, static=static)]
    files = sorted({f for pattern in RESULT_PATTERNS for f in path.glob(pattern)})
    if not files:
        raise MissingFileError(f"{path} holds nothing losslab can draw: no study (plan.json), "
                               f"no run (metrics.jsonl), no result ({', '.join(RESULT_PATTERNS)})")
    return [write_result_page(f, static=static) for f in files]
