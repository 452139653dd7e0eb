"""The compact tables the ``losslab`` commands print when a result is written.

What a researcher reads first, in a few lines: for a surface the grid and the loss at its
centre, lowest and highest; for a line the loss at both models and the barrier between them;
for a spectrum the extreme eigenvalues and the trace; for a curve the barrier and the test error
along the curve and the straight line; for an ensemble the accuracy as members are added and the
pairwise diversity. Everything else is in the JSON and the page beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["landscape_summary", "curve_evaluate_summary", "curve_plane_summary",
           "ensemble_summary", "table"]


def table(rows: list[dict[str, Any]]) -> str:
    """Rows as an aligned text table, two spaces indented."""
    text = pd.DataFrame(rows).to_string(index=False)
    return "\n".join("  " + line for line in text.splitlines())


def _on(r: dict[str, Any]) -> str:
    examples = r.get("examples") or 0
    return f"{r.get('split', 'train')} split" + (f", {examples} examples" if examples else "")


def _grid_summary(kind: str, r: dict[str, Any], values: str, label: str) -> str:
    z = np.asarray(r[values], dtype=float)
    i, j = z.shape[0] // 2, z.shape[1] // 2
    x, y = np.asarray(r["x"]), np.asarray(r["y"])
    head = (f"{kind}: {z.shape[1]}x{z.shape[0]} grid, α in [{x[0]:g}, {x[-1]:g}], "
            f"β in [{y[0]:g}, {y[-1]:g}], on the {_on(r)}")
    rows = [{"": label, "centre": f"{z[i, j]:.4f}", "min": f"{np.nanmin(z):.4f}",
             "max": f"{np.nanmax(z):.4f}"}]
    if "acc" in r and values == "loss":
        a = np.asarray(r["acc"], dtype=float)
        rows.append({"": "accuracy", "centre": f"{a[i, j]:.4f}", "min": f"{a.min():.4f}",
                     "max": f"{a.max():.4f}"})
    return head + "\n" + table(rows)


def _direction_line_summary(r: dict[str, Any]) -> str:
    a, loss = np.asarray(r["alphas"], dtype=float), np.asarray(r["loss"], dtype=float)
    c = int(np.argmin(abs(a)))
    extra = r.get("directions_extra", {})
    values = ", ".join(f"{v:.4g}" for v in extra.get("eigenvalues", [])[:1])
    return (f"line along {r['directions']} (eigenvalue {values}), {len(a)} points over α in "
            f"[{a[0]:g}, {a[-1]:g}], on the {_on(r)}\n" + table([{
                "": "loss", "α = 0": f"{loss[c]:.4f}", "min": f"{loss.min():.4f}",
                "max": f"{loss.max():.4f}"}]))


def _line_summary(r: dict[str, Any]) -> str:
    if r.get("directions", "random") != "random":
        return _direction_line_summary(r)
    a, loss, acc = (np.asarray(r[k], dtype=float) for k in ("alphas", "loss", "acc"))
    at = {t: int(np.argmin(abs(a - t))) for t in (0.0, 1.0)}
    inside = (a >= 0) & (a <= 1)
    barrier = loss[inside].max() - max(loss[at[0.0]], loss[at[1.0]])
    rows = [{"": name, "α = 0": f"{v[at[0.0]]:.4f}", "α = 1": f"{v[at[1.0]]:.4f}",
             "max on [0, 1]": f"{v[inside].max():.4f}", "min on [0, 1]": f"{v[inside].min():.4f}"}
            for name, v in (("loss", loss), ("accuracy", acc))]
    return (f"line: {len(a)} points over α in [{a[0]:g}, {a[-1]:g}], on the {_on(r)}; barrier "
            f"(max loss on [0, 1] − the larger end) {barrier:.4f}\n" + table(rows))


def _hessian_summary(r: dict[str, Any]) -> str:
    ev = np.asarray(r["eigenvalues"], dtype=float)
    rows = [{"": "largest", "eigenvalues": ", ".join(f"{v:.4g}" for v in ev[::-1][:3]),
             "converged": r.get("converged_top", r["converged"])},
            {"": "smallest", "eigenvalues": ", ".join(f"{v:.4g}" for v in ev[:3]),
             "converged": r.get("converged_bottom", r["converged"])}]
    return (f"{r.get('operator', 'hessian')} on the {_on(r)}: trace {r['trace']:.4g} ± {r['trace_std_error']:.2g} "
            f"(Hutch++), |λmin/λmax| {abs(ev.min() / ev.max()):.3g}, "
            f"{r['total_products']} operator-vector products\n" + table(rows))


def _trajectory_summary(r: dict[str, Any]) -> str:
    ev = r["explained_variance"]
    return (_grid_summary("trajectory plane", r, "loss", "loss") +
            f"\n  {len(r['path'])} epochs on the plane; PC1 {100 * ev[0]:.1f}%, "
            f"PC2 {100 * ev[1]:.1f}% of the variance")


def _share(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _curvature_summary(r: dict[str, Any]) -> str:
    rows = [{"": g["name"], "parameters": g["size"], "λmax": f"{g['top_eigenvalues'][0]:.4g}",
             "λ share": _share(g["lambda_share"]), "trace": f"{g['trace']:.4g}",
             "trace share": _share(g["trace_share"]), "converged": g["converged"]}
            for g in [*r["groups"], r["whole"]]]
    return (f"{r['operator']} curvature on the {_on(r)}: {r['total_products']} products, "
            f"{'all' if r['all_converged'] else 'NOT all'} converged\n" + table(rows))


def landscape_summary(kind: str, r: dict[str, Any]) -> str:
    """The printed summary of a ``losslab landscape KIND`` result."""
    if kind == "curvature":
        return _curvature_summary(r)
    if kind == "surface":
        return _grid_summary("surface", r, "loss", "loss")
    if kind == "line":
        return _line_summary(r)
    if kind == "hessian":
        return _hessian_summary(r)
    if kind == "trajectory":
        return _trajectory_summary(r)
    converged = "all points converged" if r.get("all_converged") else \
        "NOT every point converged (more --lanczos-steps)"
    return _grid_summary("ratio_map", r, "ratio", "|λmin/λmax|") + f"\n  {converged}"


def _error(acc: list[float]) -> np.ndarray:
    return 100 * (1 - np.asarray(acc, dtype=float))


def curve_evaluate_summary(r: dict[str, Any]) -> str:
    """Barrier and test error along the fitted curve and the straight line."""
    ends = _error([r["curve"]["test_acc"][0], r["curve"]["test_acc"][-1]])
    rows = [{"path": "endpoints", "test error (%)": f"{ends[0]:.2f}, {ends[1]:.2f}",
             "max test error (%)": f"{ends.max():.2f}", "barrier (train loss)": "",
             "length": ""}]
    for name in ("curve", "line"):
        err = _error(r[name]["test_acc"])
        rows.append({"path": name, "test error (%)": f"{err.min():.2f}-{err.max():.2f}",
                     "max test error (%)": f"{err.max():.2f}",
                     "barrier (train loss)": f"{r['barrier'][name]:.4f}",
                     "length": f"{r['length'][name]:.4g}"})
    return f"curve: {len(r['ts'])} values of t in [0, 1]\n" + table(rows)


def curve_plane_summary(r: dict[str, Any], grid: int) -> str:
    loss = np.asarray(r["loss"], dtype=float)
    err = np.asarray(r["test_error"], dtype=float)
    return (f"plane: {grid}x{grid} grid through the endpoints and the bend\n" + table([
        {"": f"{r.get('split', 'train')} loss", "min": f"{loss.min():.4f}",
         "max": f"{loss.max():.4f}"},
        {"": "test error (%)", "min": f"{err.min():.2f}", "max": f"{err.max():.2f}"}]))


def ensemble_summary(r: dict[str, Any]) -> str:
    """Accuracy as members are added, and the pairwise diversity of the members."""
    head = (f"{r['n_members']} members on {r['split']} ({r['n_examples']} examples); "
            f"prediction: {r['combination']}")
    grow = [{"member": m["name"], "member acc": f"{m['acc']:.4f}", "first k": c["members"],
             "together acc": f"{c['acc']:.4f}", "nll": f"{c['nll']:.4f}",
             "ece": f"{c['ece']:.4f}"}
            for m, c in zip(r["member_metrics"], r["cumulative"], strict=True)]
    names = r["members"]
    pairs = [{"i": names[p["i"]], "j": names[p["j"]], "disagreement": f"{p['disagreement']:.4f}",
              "KL(i||j)": f"{p['kl_ij']:.4f}", "error corr": f"{p['error_correlation']:.3f}",
              **({"L2": f"{p['l2']:.4g}"} if "l2" in p else {})}
             for p in r["diversity"]["pairs"]]
    agreement = r["diversity"]["agreement"]
    lines = [head, table(grow), "pairwise diversity:", table(pairs) if pairs else "  (one member)",
             f"all members agree on {agreement['all_agree']} of {agreement['n']} examples"]
    if "swa" in r:
        lines.append(f"weight average (SWA, BatchNorm recomputed): acc {r['swa']['acc']:.4f}")
    return "\n".join(lines)
