"""Report sections of the ensemble analyses: ``ensemble`` and ``ensemble_budgets``."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import escape

from losslab.report.figures import (
    BarFigure,
    BarSeries,
    LineFigure,
    ScatterFigure,
    ScatterSeries,
    Series,
    accuracy_bounds,
)
from losslab.report.sections import Section, register_section

__all__ = ["ensemble_section", "budgets_section"]


def _pm(mean: float | None, std: float | None, digits: int = 4) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def _accuracy_curves(groups: list[dict[str, Any]], by_variant: bool) -> LineFigure:
    """Ensemble accuracy against the number of members (mean ± std over seeds per variant)."""
    curves: dict[str, list[list[float]]] = defaultdict(list)
    for g in groups:
        if "result" in g:
            key = g.get("variant", g["name"]) if by_variant else g["name"]
            curves[key].append([c["acc"] for c in g["result"]["cumulative"]])
    series = []
    for name, runs in curves.items():
        k = min(map(len, runs))
        acc = np.array([r[:k] for r in runs])
        std = acc.std(axis=0, ddof=1) if len(runs) > 1 else None
        series.append(Series(name, np.arange(1, k + 1), acc.mean(axis=0), std))
    every = np.concatenate([s.y for s in series]) if series else np.array([])
    return LineFigure("Ensemble accuracy as members are added", "members", "accuracy", series,
                      y_bounds=accuracy_bounds(every))


def _member_label(group: str, member: str) -> str:
    """``snapshot@5`` for member ``snapshot-s0:snapshot@5`` of the run's own group: the run
    is already the series' name; a label twice as long as needed crowds the others out."""
    return member.removeprefix(f"{group}:")


def _distance_scatter(groups: list[dict[str, Any]]) -> ScatterFigure | None:
    points = []
    for g in groups:
        pairs = [p for p in g.get("result", {}).get("diversity", {}).get("pairs", []) if "l2" in p]
        if pairs:
            names = [_member_label(g["name"], m) for m in g["result"]["members"]]
            points.append(ScatterSeries(
                g["name"], np.array([p["l2"] for p in pairs]),
                np.array([p["disagreement"] for p in pairs]),
                labels=[f"{names[p['i']]} vs {names[p['j']]}" for p in pairs]))
    if not points:
        return None
    return ScatterFigure("Does distance in weight space mean different predictions?",
                         "L2 distance between members", "disagreement rate", points)


def _pair_table(groups: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for g in groups:
        result = g.get("result")
        for p in (result or {}).get("diversity", {}).get("pairs", []):
            rows.append({"ensemble": g["name"], "member i": result["members"][p["i"]],
                         "member j": result["members"][p["j"]], "L2 distance": p.get("l2"),
                         "cosine": p.get("cosine"), "disagreement": p["disagreement"],
                         "KL(i||j)": p["kl_ij"], "error correlation": p["error_correlation"]})
    return pd.DataFrame(rows)


def _agreement_table(groups: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for g in groups:
        if "result" in g:
            r = g["result"]
            a = r["diversity"]["agreement"]
            rows.append({"ensemble": g["name"], "members": r["n_members"], "examples": a["n"],
                         "all agree": a["all_agree"], "all agree, correct": a["all_agree_correct"],
                         "all agree, wrong": a["all_agree_wrong"],
                         "share all agree": round(a["all_agree_frac"], 4),
                         "ensemble acc": round(r["ensemble"]["acc"], 4),
                         "mean member acc": round(r["mean_member_acc"], 4),
                         "SWA acc": round(r["swa"]["acc"], 4) if "swa" in r else None})
    return pd.DataFrame(rows)


@register_section("ensemble")
def ensemble_section(records, data: dict[str, Any]) -> Section:
    groups = data["groups"]
    summary = pd.DataFrame([{
        "variant": r["variant"], "ensembles": r["n"], "members": r["members"],
        "ensemble acc": _pm(r["ensemble_acc_mean"], r["ensemble_acc_std"]),
        "ensemble NLL": _pm(r["ensemble_nll_mean"], r["ensemble_nll_std"]),
        "ensemble ECE": _pm(r["ensemble_ece_mean"], r["ensemble_ece_std"]),
        "mean member acc": _pm(r["mean_member_acc_mean"], r["mean_member_acc_std"]),
        "SWA acc": _pm(r["swa_acc_mean"], r["swa_acc_std"]),
        "share all agree": _pm(r["all_agree_mean"], r["all_agree_std"]),
    } for r in data["summary"]])
    combination = next((g["result"]["combination"] for g in groups if "result" in g), "")
    errors = [f"<li>{escape(g['name'])}: {escape(g['error'])}</li>" for g in groups if "error" in g]
    html = (f"<p>Members: <code>{escape(data['members'])}</code> checkpoints, grouped by "
            f"<code>{escape(data['group'])}</code>; evaluated on the {escape(data['split'])} split. "
            f"Ensemble prediction: {escape(combination)}. SWA is the members' weight average "
            "with BatchNorm statistics recomputed on the training data.</p>")
    if errors:
        html += "<p>Ensembles that could not be built:</p><ul>" + "".join(errors) + "</ul>"
    # per variant over seeds where groups have one (run, with_first): one line each, not one
    # per ensemble (48 for diverse nets at 8 seeds)
    figures = [_accuracy_curves(groups, by_variant=data["group"] in ("run", "with_first"))]
    scatter = _distance_scatter(groups)
    if scatter is not None:
        figures.append(scatter)
    return Section(title=f"Ensembles ({data['group']}, {data['members']})", html=html,
                   figures=figures,
                   tables=[t for t in (summary, _agreement_table(groups), _pair_table(groups))
                           if not t.empty])


@register_section("ensemble_budgets")
def budgets_section(records, data: dict[str, Any]) -> Section:
    rows = data["rows"]
    budgets = list(dict.fromkeys(r["budget"] for r in rows))
    table = []
    for method in dict.fromkeys(r["method"] for r in rows):
        line: dict[str, Any] = {"method": method}
        for b in budgets:
            r = next((x for x in rows if x["method"] == method and x["budget"] == b), None)
            line[f"{b} ours"] = _pm(r["error"], r["error_std"], 2) if r else "–"
            if data.get("published"):
                line[f"{b} published"] = (f"{r['published']:.2f}"
                                          if r and r["published"] is not None else "–")
        table.append(line)
    bars = [BarSeries(method, np.array([next((x["error"] for x in rows if x["method"] == method
                                               and x["budget"] == b), np.nan) for b in budgets]),
                      np.array([next((x["error_std"] or 0.0 for x in rows if x["method"] == method
                                      and x["budget"] == b), 0.0) for b in budgets]))
            for method in dict.fromkeys(r["method"] for r in rows)]
    html = ("<p>Test error (%) of independent (Ind), snapshot (SSE) and fast geometric (FGE) "
            "ensembles at equal training budgets (Garipov et al. 2018, Table 1); ours is mean ± "
            "std over seeds.")
    if data.get("published"):
        html += (f" The published columns are the paper's, measured in its setting: "
                 f"{escape(data.get('published_setting') or 'unstated')}.")
    html += "</p>"
    return Section(title="Ensembles at equal budgets", html=html,
                   figures=[BarFigure("Test error at equal budgets", "budget", "error (%)",
                                      budgets, bars)],
                   tables=[pd.DataFrame(table)])
