"""Report sections of ``published`` (ours beside a paper's numbers), ``loss_estimate_rmse``
(the thesis's Table 2.1) and ``annealing_moves`` (its Figs 3.3/3.4 and 4.1/4.2: worsening moves
per epoch, accepted and rejected, with the ε drops marked, and the acceptance probability of
every worsening move against the training step).

Source: M. Stringher, "Unconventional Training of Deep Neural Networks", Master's thesis,
University of Padova, 2019 ("the thesis").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from markupsafe import escape

from losslab.report.annealing_figures import StackedBarFigure, register_renderers
from losslab.report.figures import BarSeries, LineFigure, ScatterFigure, ScatterSeries, Series
from losslab.report.sections import Section, register_section

__all__ = ["published_section", "loss_estimate_section", "annealing_moves_section"]


@register_section("published")
def published_section(records, data: dict[str, Any]) -> Section:
    rows = [{"variant": r["variant"],
             "ours": "–" if r["ours"] is None else
             f"{r['ours']:.4g}" + ("" if r["ours_std"] is None else f" ± {r['ours_std']:.2g}"),
             "published": r["published"]} for r in data["rows"]]
    source = f" Published: {escape(data['source'])}." if data.get("source") else ""
    scaled = "" if data["scale"] == 1 else f" × {data['scale']:g}"
    html = (f"<p>{escape(data['at']).capitalize()} <code>{escape(data['metric'])}</code>{scaled}"
            f" (mean ± std over seeds) beside the published numbers.{source}</p>")
    return Section(title=f"Beside the published numbers: {data['metric']}", html=html,
                   tables=[pd.DataFrame(rows)])


@register_section("loss_estimate_rmse")
def loss_estimate_section(records, data: dict[str, Any]) -> Section:
    rows = data["rows"]
    k = np.array([r["batches"] for r in rows], dtype=float)
    series = [Series("ours", k, np.array([r["rmse"] for r in rows]))]
    thesis = [r["thesis_rmse"] for r in rows if r["thesis_rmse"] is not None]
    if len(thesis) == len(rows) and data["thesis_loss_scale"]:
        series.append(Series("thesis (VGG16, CIFAR-10)", k, np.array(thesis)))
    figure = LineFigure("Training-loss estimate from k minibatches: RMSE", "minibatches",
                        "RMSE", series, log_y=True)
    divisor = data.get("thesis_batch_size", 512)
    scale = (f"mean loss / {divisor} (the thesis's)" if data["thesis_loss_scale"]
             else "mean loss")
    html = (f"<p>RMSE of the training loss estimated on k random minibatches against the full "
            f"training loss, over {data['checkpoints']} checkpoints × {data['repeats']} draws; "
            f"loss scale: {escape(scale)}. The thesis's Table 2.1 beside "
            f"({escape(data.get('thesis_setting', 'VGG16, CIFAR-10'))}).</p>")
    tables = [pd.DataFrame(rows)]
    if data.get("per_run"):
        tables.append(pd.DataFrame(data["per_run"]))
    return Section(title="Training-loss estimate (Table 2.1)", html=html, figures=[figure],
                   tables=tables)


def _moves_figures(variant: str, v: dict[str, Any]) -> list:
    epochs = np.asarray(v["epochs"], dtype=float)
    bars = StackedBarFigure(
        f"{variant}: worsening moves per epoch (seed {v['seed']})", "epoch", "worsening moves",
        epochs, [BarSeries("accepted", np.asarray(v["accepted"], dtype=float)),
                 BarSeries("rejected", np.asarray(v["rejected"], dtype=float))],
        # ε drops at the end of an epoch: the line sits between it and the next.
        markers=[e + 0.5 for e in v.get("eps_drop_epochs", [])], marker_label="ε ÷ 10")
    moves = v["moves"]
    step = np.asarray(moves["step"], dtype=float)
    prob = np.asarray(moves["prob"], dtype=float)
    kept = np.asarray(moves["accepted"], dtype=bool)
    thinned = "" if len(step) == moves.get("total", len(step)) else \
        f", {len(step)} of {moves['total']} shown"
    scatter = ScatterFigure(
        f"{variant}: acceptance probability of each worsening move (seed {v['seed']}"
        f"{thinned})", "training step", "exp(−Δ/T)",
        [ScatterSeries("accepted", step[kept], prob[kept], connected=False),
         ScatterSeries("rejected", step[~kept], prob[~kept], connected=False)])
    return [bars, scatter]


@register_section("annealing_moves")
def annealing_moves_section(records, data: dict[str, Any]) -> Section:
    register_renderers()
    figures = []
    for variant, v in data["variants"].items():
        figures.extend(_moves_figures(variant, v))
    per_run = pd.DataFrame(data["per_run"])
    k = data.get("k", 2)
    summary = (per_run.groupby("variant", sort=False)
               .agg(runs=("seed", "size"), worsening_moves=("worse_total", "mean"),
                    epochs_with_both=("both_share", "mean"), eps_drops=("eps_drops", "mean"),
                    prob_first=("prob_first", "mean"), prob_last=("prob_last", "mean"))
               .reset_index()
               .rename(columns={"prob_first": f"mean p, first {k} epochs",
                                "prob_last": f"mean p, last {k} epochs",
                                "epochs_with_both": "share of epochs with both"}))
    html = ("<p>Worsening moves of each epoch, accepted (kept by the Metropolis rule, "
            "probability exp(−Δ/T)) and rejected (undone exactly), stacked; dashed lines where ε "
            "was divided by 10 (SSA; the thesis's Figs 3.4 and 4.2). Then the acceptance "
            "probability of every worsening move against the training step (Figs 3.3 and 4.1). "
            "One seed per variant; the table averages every seed: worsening moves per run, the "
            "share of epochs with both an accepted and a rejected one, ε drops, and the mean "
            "acceptance probability early and late.</p>")
    return Section(title="Annealing: worsening moves and acceptance", html=html,
                   figures=figures, tables=[summary])
