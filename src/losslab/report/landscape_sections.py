"""The report section of the ``landscape`` analysis: lines, surfaces, trajectories, spectra."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from markupsafe import escape

from losslab.report.figures import (
    BarFigure,
    BarSeries,
    HeatmapFigure,
    LineFigure,
    ScatterSeries,
    Series,
    SurfaceFigure,
    accuracy_bounds,
    loss_levels,
)
from losslab.report.sections import Section, register_section

__all__ = ["landscape_section", "caption", "density_floor"]

AXES = "loss[i, j] is at (x[j], y[i])"
# The spectral density is drawn on a log axis, floored at this fraction of its maximum: SLQ's
# density is 0 or ~1e-30 between the bulk and the outliers, which a log axis cannot show.
DENSITY_FLOOR = 1e-8


def density_floor(density: np.ndarray) -> np.ndarray:
    """``density`` with every value below ``DENSITY_FLOOR × max`` raised to it, so a log axis
    shows the few outlier eigenvalues' small bumps beside the bulk, instead of hiding them
    under a linear axis's one tall peak."""
    density = np.asarray(density, dtype=float)
    finite = density[np.isfinite(density)]
    top = finite.max() if finite.size else 0.0
    if top <= 0:
        return density
    return np.where(np.isfinite(density), np.maximum(density, top * DENSITY_FLOOR), density)


def _display(data: dict[str, Any]) -> dict[str, Any]:
    """How loss maps are drawn: loss-landscape's levels (0.1 to 10 by 0.5) unless the analysis
    set others, colours and heights clipped at the top level, optionally on a log scale."""
    vmin, vmax, step = data.get("display", {}).get("levels", (0.1, 10.0, 0.5))
    return {"levels": loss_levels(vmin, vmax, step), "zmax": vmax,
            "log": bool(data.get("display", {}).get("log", False))}


def _surface_figures(name: str, r: dict[str, Any], shown: dict[str, Any]) -> list:
    x, y, z = np.array(r["x"]), np.array(r["y"]), np.array(r["loss"])
    # α and β are coefficients of directions with the weights' own norms (filter-normalized):
    # the same units on both axes, so the plane is drawn square.
    return [HeatmapFigure(f"{name}: loss contours", x, y, z, "α (direction 1)", "β (direction 2)",
                          contour=True, lines_only=True, zlabel="loss", equal_aspect=True,
                          **shown),
            HeatmapFigure(f"{name}: filled contours", x, y, z, "α", "β", contour=True,
                          zlabel="loss", equal_aspect=True, **shown),
            HeatmapFigure(f"{name}: heat map", x, y, z, "α", "β", zlabel="loss",
                          equal_aspect=True, zmax=shown["zmax"], log=shown["log"]),
            SurfaceFigure(f"{name}: 3-D surface", x, y, z, "α", "β", "loss",
                          zmax=shown["zmax"], log=shown["log"])]


def _trajectory_figure(name: str, r: dict[str, Any], shown: dict[str, Any]) -> HeatmapFigure:
    path = np.array(r["path"])
    paths = [ScatterSeries(f"{name} trajectory", path[:, 0], path[:, 1],
                           labels=[f"epoch {e}" for e in r["path_epochs"]])]
    if r.get("members"):
        members = np.array(r["members"])
        paths.append(ScatterSeries(f"{name} members", members[:, 0], members[:, 1],
                                   labels=r["member_labels"], connected=False))
    ev = r["explained_variance"]
    return HeatmapFigure(f"{name}: trajectory on its PCA plane", np.array(r["x"]),
                         np.array(r["y"]), np.array(r["loss"]),
                         f"PC1 ({100 * ev[0]:.1f}%)", f"PC2 ({100 * ev[1]:.1f}%)",
                         contour=True, zlabel="loss", paths=paths, equal_aspect=True, **shown)


@register_section("landscape")
def landscape_section(records, data: dict[str, Any]) -> Section:
    kind, results = data["kind"], data["results"]
    figures: list = []
    tables: list[pd.DataFrame] = []
    errors = {k: v["error"] for k, v in results.items() if "error" in v}
    good = {k: v for k, v in results.items() if "error" not in v}
    if kind == "line":
        for name, r in good.items():
            a = np.array(r["alphas"])
            figures.append(LineFigure(f"{name}: loss along the line", "α", "loss",
                                      [Series("loss", a, np.array(r["loss"]))]))
            acc = np.array(r["acc"], dtype=float)
            figures.append(LineFigure(f"{name}: accuracy along the line", "α", "accuracy",
                                      [Series("accuracy", a, acc)],
                                      y_bounds=accuracy_bounds(acc)))
    elif kind == "surface":
        for name, r in good.items():
            figures.extend(_surface_figures(name, r, _display(data)))
    elif kind == "trajectory":
        figures.extend(_trajectory_figure(name, r, _display(data)) for name, r in good.items())
    elif kind == "ratio_map":
        for name, r in good.items():
            figures.append(HeatmapFigure(
                f"{name}: |λmin/λmax| (small: locally convex-looking)", np.array(r["x"]),
                np.array(r["y"]), np.array(r["ratio"], dtype=float), "α", "β",
                zlabel="|λmin/λmax|"))
    elif kind == "curvature":
        for name, r in good.items():
            figures.append(_curvature_bars(name, r))
            tables.append(_curvature_table(name, r))
    else:  # hessian
        figures.append(LineFigure(
            f"Spectral density of the {_operator(good)} (SLQ)", "eigenvalue",
            f"density (log; floored at {DENSITY_FLOOR:g} × max)",
            [Series(n, np.array(r["grid"]), density_floor(r["density"]))
             for n, r in good.items()], log_y=True))
        tables.append(pd.DataFrame([{
            "variant": n, "top eigenvalues": ", ".join(f"{v:.4g}" for v in r["eigenvalues"][-3:]),
            "bottom eigenvalues": ", ".join(f"{v:.4g}" for v in r["eigenvalues"][:3]),
            "converged (top, bottom)": f"{r.get('converged_top', r['converged'])}, "
            f"{r.get('converged_bottom', r['converged'])}", "trace (Hutch++)": f"{r['trace']:.4g} ± "
            f"{r['trace_std_error']:.2g}", "Hessian-vector products": r["total_products"]}
            for n, r in good.items()]))
    html = f"<p>{caption(kind, data, good)}</p>"
    if errors:
        html += "<ul>" + "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in errors.items()) \
            + "</ul>"
    return Section(title=_title(kind, data, good), html=html, figures=figures, tables=tables)


def _curvature_bars(name: str, r: dict[str, Any]) -> BarFigure:
    """Each module's share of the whole's top eigenvalue and trace."""
    rows = r["groups"]
    shares = [BarSeries(label, np.array([np.nan if g[key] is None else g[key] for g in rows]))
              for label, key in (("share of λmax", "lambda_share"),
                                 ("share of the trace", "trace_share"))]
    return BarFigure(f"{name}: curvature per layer ({OPERATORS.get(r['operator'], '')})",
                     "layer", "share of the whole", [g["name"] for g in rows], shares)


def _curvature_table(name: str, r: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame([{
        "run": name, "layer": g["name"], "parameters": g["size"],
        "λmax": f"{g['top_eigenvalues'][0]:.4g}", "converged": g["converged"],
        "trace": f"{g['trace']:.4g} ± {g['trace_std_error']:.2g}",
        "share of λmax": "–" if g["lambda_share"] is None else f"{g['lambda_share']:.3f}",
        "share of the trace": "–" if g["trace_share"] is None else f"{g['trace_share']:.3f}"}
        for g in [*r["groups"], r["whole"]]])


OPERATORS = {"hessian": "Hessian", "ggn": "generalized Gauss-Newton",
             "fisher": "Fisher (Monte Carlo)", "empirical_fisher": "empirical Fisher"}


def _operator(results: dict[str, Any]) -> str:
    """The curvature the spectra are of (results before the option: the Hessian)."""
    names = {r.get("operator", "hessian") for r in results.values()}
    return " / ".join(OPERATORS.get(n, n) for n in sorted(names)) or "Hessian"


def _normalization(results: dict[str, Any]) -> str:
    norms = {r.get("normalization") for r in results.values()} - {None}
    norm = norms.pop() if len(norms) == 1 else "filter"
    return {"filter": "filter-normalized", "layer": "layer-normalized",
            "none": "unnormalized"}.get(norm, f"{norm}-normalized")


def _data(split: str, examples: int) -> str:
    subset = f"a fixed random subset of {examples} examples" if examples else "the whole split"
    return f"the {escape(split)} split ({escape(subset)})"


def _levels_text(data: dict[str, Any]) -> str:
    shown = _display(data)
    lv = shown["levels"]
    scale = " on a log colour scale" if shown["log"] else ""
    return (f" Contour levels {lv[0]:g} to {lv[-1]:g} by {lv[1] - lv[0]:g} (loss-landscape's "
            f"defaults unless set); colours and heights clipped at {shown['zmax']:g}{scale}.")


def caption(kind: str, data: dict[str, Any], results: dict[str, Any]) -> str:
    """What the section's maps are, for its kind: directions, data, BatchNorm policy, layout."""
    first = next(iter(results.values()), {})
    on = _data(data["split"], data["examples"])
    bn = f" BatchNorm statistics: <code>{escape(first['bn'])}</code>." if first.get("bn") else ""
    if kind == "surface" and first.get("directions", "random") != "random":
        extra = first.get("directions_extra", {})
        values = ", ".join(f"{v:.4g}" for v in extra.get("eigenvalues", []))
        which = "largest" if extra.get("which", "largest") == "largest" else "smallest"
        return (f"Loss on the plane θ* + α·d₁ + β·d₂ around each final model θ*, with d₁, d₂ the "
                f"eigenvectors of the {which} eigenvalues ({escape(values)}; Lanczos, converged: "
                f"{extra.get('converged')}) of the {escape(extra.get('operator', 'Hessian'))} at "
                f"θ*, {_normalization(results)}, on {on}. The centre is exactly the trained "
                f"model.{bn}{_levels_text(data)} Layout: {escape(AXES)}.")
    if kind == "surface":
        return (f"Loss on the plane θ* + α·d₁ + β·d₂ around each final model θ*, with "
                f"{_normalization(results)} Gaussian directions d₁, d₂ (Li et al. 2018, §4; "
                f"biases and BatchNorm parameters zeroed in the directions), on {on}. The centre "
                f"is exactly the trained model.{bn}{_levels_text(data)} Layout: {escape(AXES)}.")
    if kind == "line" and first.get("directions", "random") != "random":
        extra = first.get("directions_extra", {})
        return (f"Loss and accuracy along θ* + α·d₁, d₁ the eigenvector of the "
                f"{escape(extra.get('which', 'largest'))} eigenvalue "
                f"({', '.join(f'{v:.4g}' for v in extra.get('eigenvalues', [])[:1])}) of the "
                f"{escape(extra.get('operator', 'Hessian'))} at the final model θ*, "
                f"{_normalization(results)}, on {on}.{bn}")
    if kind == "line":
        return (f"Loss and accuracy along θ(α) = (1 − α)·θ_a + α·θ_b, extrapolated over "
                f"α ∈ [−0.5, 1.5] (Goodfellow et al. 2015; Li et al. 2018, §3); α = 0 and 1 "
                f"are exactly the two models, on {on}.{bn}")
    if kind == "trajectory":
        centred = "centred on their mean (scikit-learn's PCA, as Li et al.'s code)" \
            if first.get("centered", True) else "not centred (the SVD of the offsets)"
        return (f"Each run's saved epochs on the plane of the top two principal components "
                f"of their offsets θ_i − θ_final, {centred} (Li et al. 2018, §7); the axes are "
                f"unit-norm PCA directions (Euclidean distance in parameter space), labelled "
                f"with their share of the variance, θ_final at (0, 0). Loss contours on {on}."
                f"{_levels_text(data)} Layout: {escape(AXES)}.")
    if kind == "curvature":
        return (f"The {_operator(results)} of the {escape(first.get('split', 'train'))}-split loss "
                f"at each final model, on {_data(first.get('split', 'train'), first.get('examples', 0))}"
                ", one row per module: the top eigenvalue (Lanczos) and trace (Hutch++, or exact "
                "for small blocks) of its diagonal block, every other parameter held fixed, and "
                "their shares of the whole matrix's (Sankar et al. 2021). The blocks' traces add "
                "up to the whole trace; a block's top eigenvalue is at most the whole's "
                "(Cauchy interlacing).")
    if kind == "hessian":
        split = first.get("split", "train")
        which = "training" if split == "train" else f"{escape(split)}-split"
        return (f"{_operator(results)} of the {which} loss at each final model, on "
                f"{_data(first.get('split', 'train'), first.get('examples', 0))}: the three "
                f"largest and smallest eigenvalues (Lanczos), the trace (Hutch++) and the "
                f"spectral density (stochastic Lanczos quadrature; Ghorbani et al. 2019), on a "
                f"log axis so the few outlier eigenvalues show beside the bulk; the density is "
                f"floored at {DENSITY_FLOOR:g} of its maximum (it is 0 or vanishingly small "
                f"between them).")
    return (f"|λmin/λmax| of the Hessian of the training loss at each point of a "
            f"{_normalization(results)} random plane (Li et al. 2018, §6: small where the "
            f"surface looks convex), on {_data(first.get('split', 'train'), first.get('examples', 0))}, "
            f"at most {first.get('lanczos_steps', data.get('lanczos_steps', 30))} Hessian-vector "
            f"products per point and eigenvalue. Layout: {escape(AXES)}.")


def _title(kind: str, data: dict[str, Any], results: dict[str, Any]) -> str:
    """"Landscape: surface (train split, filter-normalized)": one study can hold several."""
    # every kind: which loss a map is of (each result records its own; older ones only the
    # analysis's option)
    first = next(iter(results.values()), {})
    details = [f"{first.get('split', data['split'])} split"]
    norms = {r.get("normalization") for r in results.values()} - {None}
    if kind in ("surface", "ratio_map") and len(norms) == 1:
        norm = norms.pop()
        details.append("unnormalized" if norm == "none" else f"{norm}-normalized")
    return f"Landscape: {kind}" + (f" ({', '.join(details)})" if details else "")
