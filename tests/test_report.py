"""The report layer: a StudyRecords -> report.html (+ PNG/PDF), checked without a browser.

The records are synthetic (built by ``make_records`` below, shared with the browser test)
so these tests do not depend on the study runner.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from losslab.report import (
    BarFigure,
    BarSeries,
    HeatmapFigure,
    LineFigure,
    Palette,
    ScatterFigure,
    ScatterSeries,
    Section,
    Series,
    build_report,
    register_section,
)
from losslab.report.epoch_curves import curve_figures, metric_columns, split_metric
from losslab.report.plotly_render import to_plotly
from losslab.report.sections import analysis_sections
from losslab.report.static_render import to_matplotlib
from losslab.report.tables import format_mean_std
from losslab.studies.records import StudyRecords

EVIL = "<script>alert(1)</script>"
VARIANTS = {"baseline": {}, "lr=$0.3": {"optim.lr": 0.3}, EVIL: {"schedule.name": "cosine"}}
KEYS = ["optim.lr", "schedule.name"]
SEEDS = (0, 1)
EPOCHS = 10
FAILED = ("lr=$0.3", 1, 4)  # variant, seed, last epoch it logged
ERROR_TEXT = "RuntimeError: loss is nan <at step 123> & the run diverged"
# Metrics the synthetic results carry; grad_norm is all-NaN (never logged) on purpose, and
# neutral_moves is 0 throughout (a constant: listed, not plotted).
CURVE_METRICS = ["train_loss", "val_loss", "test_loss", "train_acc", "val_acc", "test_acc",
                 "epoch_time", "lr", "neutral_moves", "sharpness"]
CONSTANT = {"neutral_moves": 0.0}
PLOTTED = [m for m in CURVE_METRICS if m not in CONSTANT]
KEY_METRICS = ["test_acc", "val_acc", "test_loss", "train_loss"]
ANALYSIS_FIGURES = 4  # the toy analysis's bar, scatter, heatmap and contour
LONG_TITLE = ("Toy scatter: does a title that runs well past one line of the figure wrap, or "
              "is it cut off at the edge?")


def _curves(rng: np.random.Generator, v: int, seed: int, epochs: np.ndarray) -> dict:
    """Plausible training curves: decaying losses, saturating accuracies, noise per seed."""
    t = epochs / EPOCHS
    noise = lambda scale: rng.normal(0, scale, len(epochs))  # noqa: E731
    return {
        "train_loss": 2.3 * np.exp(-3 * t * (1 + 0.3 * v)) + 0.02 + np.abs(noise(0.01)),
        "val_loss": 2.3 * np.exp(-2.5 * t) + 0.1 + 0.05 * v + np.abs(noise(0.02)),
        "test_loss": 2.3 * np.exp(-2.5 * t) + 0.12 + 0.05 * v + np.abs(noise(0.02)),
        "train_acc": 1 - 0.9 * np.exp(-4 * t) + noise(0.005) - 0.01,
        "val_acc": 0.9 - 0.8 * np.exp(-3 * t) - 0.02 * v + noise(0.01),
        "test_acc": 0.89 - 0.8 * np.exp(-3 * t) - 0.02 * v + noise(0.01),
        "lr": 0.1 * (0.5 + 0.5 * np.cos(np.pi * t)),
        "epoch_time": 1.5 + noise(0.05),
        "grad_norm": np.full(len(epochs), np.nan),
        "neutral_moves": np.zeros(len(epochs)),
        "sharpness": 10 + 5 * t + noise(0.5),
        "step": epochs * 100,
        "best_epoch": epochs,
    }


def _summary(runs: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """What the runner computes: final/best over finished seeds, mean and std per variant."""
    finished = results[results["run_id"].isin(runs.loc[runs["status"] == "finished", "run_id"])]
    rows = []
    for variant, group in runs.groupby("variant", sort=False):
        row = {"variant": variant, **{k: group[k].iloc[0] for k in KEYS},
               "n_runs": len(group), "n_finished": int((group["status"] == "finished").sum())}
        mine = finished[finished["variant"] == variant].sort_values("epoch").groupby("run_id")
        for m in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"):
            best = mine[m].max() if m.endswith("acc") else mine[m].min()
            for kind, values in (("final", mine[m].last()), ("best", best)):
                row[f"{kind}_{m}_mean"] = values.mean()
                row[f"{kind}_{m}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def make_records(directory: Path, *, seeds=SEEDS, analyses: dict | None = None) -> StudyRecords:
    """A realistic study: 3 variants x seeds x 10 epochs, one failed run, one pending run."""
    rng = np.random.default_rng(0)
    run_rows, result_rows = [], []
    for v, (variant, overrides) in enumerate(VARIANTS.items()):
        keys = {k: overrides.get(k) for k in KEYS}
        for seed in seeds:
            run_id = f"{v:02d}-s{seed}"
            failed = (variant, seed) == FAILED[:2]
            last = FAILED[2] if failed else EPOCHS
            run_rows.append({"run_id": run_id, "variant": variant, "seed": seed,
                             "status": "failed" if failed else "finished",
                             "error": ERROR_TEXT if failed else None,
                             "run_dir": str(directory / "runs" / run_id), **keys})
            epochs = np.arange(1, last + 1)
            curves = _curves(rng, v, seed, epochs)
            for i, epoch in enumerate(epochs):
                result_rows.append({"run_id": run_id, "variant": variant, "seed": seed, **keys,
                                    "epoch": int(epoch),
                                    **{m: float(c[i]) for m, c in curves.items()}})
    run_rows.append({"run_id": "00-s9", "variant": "baseline", "seed": 9, "status": "pending",
                     "error": None, "run_dir": str(directory / "runs" / "00-s9"),
                     "optim.lr": None, "schedule.name": None})
    runs, results = pd.DataFrame(run_rows), pd.DataFrame(result_rows)
    study = {"name": "toy-study", "base": "base.yaml", "variants": VARIANTS,
             "seeds": list(seeds), "analyses": [{"name": "toy_stats"}]}
    base = {"model": {"name": "mlp", "hidden": [64, 64]}, "optim": {"name": "sgd", "lr": 0.1},
            "schedule": {"name": "constant"}, "epochs": EPOCHS}
    if analyses is None:
        analyses = {
            "toy_stats": {"per_variant": {v: 0.5 + 0.1 * i for i, v in enumerate(VARIANTS)}},
            "mystery": {"values": [1, 2, 3], "note": "<b>not markup</b>"},
            "exploded": {"error": "ValueError: boom <x>", "traceback": "Traceback...\nValueError"},
            "toy_crash": {"anything": 1},
        }
    return StudyRecords(directory=directory, name="toy-study", study=study, base_config=base,
                        variants=VARIANTS, variant_keys=KEYS, runs=runs, results=results,
                        summary=_summary(runs, results), analyses=analyses)


@register_section("toy_stats", replace=True)
def _toy_section(records: StudyRecords, data: dict) -> list[Section]:
    names = list(data["per_variant"])
    values = np.array(list(data["per_variant"].values()))
    grid = np.linspace(-1, 1, 15)
    surface = np.add.outer(grid**2, 0.5 * grid**2)
    return [
        Section(title="Toy statistics", html="<p>Toy analysis, registered builder.</p>",
                tables=[pd.DataFrame({"variant": names, "score": values})],
                figures=[BarFigure("Toy score", "variant", "score", categories=["score"],
                                   bars=[BarSeries(n, [v], [0.01]) for n, v in zip(
                                       names, values, strict=True)]),
                         ScatterFigure(LONG_TITLE, "a", "b", points=[ScatterSeries(
                             n, [v], [v * 2], labels=[f"run of {n}"]) for n, v in zip(
                             names, values, strict=True)])]),
        Section(title="Toy surface", figures=[
            HeatmapFigure("Toy heatmap", grid, grid, surface, "dir 1", "dir 2"),
            HeatmapFigure("Toy contour", grid, grid, surface, "dir 1", "dir 2", contour=True,
                          zlabel="loss"),
        ]),
    ]


@register_section("toy_crash", replace=True)
def _crashing_section(records: StudyRecords, data: dict) -> Section:
    raise KeyError("builder bug")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[StudyRecords, str]:
    records = make_records(tmp_path_factory.mktemp("study"))
    path = build_report(records, static=True)
    assert path == records.directory / "report.html"
    return records, path.read_text(encoding="utf-8")


def figure_specs(html: str) -> dict[str, dict]:
    """The plotly figures embedded in a report, by their div id."""
    found = re.findall(r'<script type="application/json" class="losslab-figure" '
                       r'data-target="([^"]+)">(.*?)</script>', html, flags=re.S)
    return {target: json.loads(text) for target, text in found}


def decode(array) -> np.ndarray:
    """A plotly JSON array: a plain list or a base64 typed array ({"dtype", "bdata"})."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
    return np.array([np.nan if v is None else v for v in array], dtype=float)


def without_plotlyjs(html: str) -> str:
    import plotly.offline

    js = plotly.offline.get_plotlyjs()
    assert html.count(js) == 1, "plotly.js must be embedded exactly once"
    return html.replace(js, "")


def test_report_is_self_contained(built):
    _, html = built
    rest = without_plotlyjs(html)
    assert not re.search(r"<script[^>]*\bsrc\s*=", rest, flags=re.I)
    assert not re.search(r"<link[^>]*\bhref\s*=", rest, flags=re.I)
    assert "http://" not in rest and "https://" not in rest and "cdn" not in rest.lower()
    # The error recorder is the first script of the page, before plotly.js.
    head = rest[: rest.index("</head>")]
    assert head.index("<script>") < head.index("__losslabErrors") < head.index("<style>")


def test_names_status_and_escaping(built):
    records, html = built
    assert "toy-study" in html
    for name in ("baseline", "lr=$0.3"):
        assert name in html
    assert EVIL not in html and "alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "RuntimeError: loss is nan &lt;at step 123&gt; &amp; the run diverged" in html
    assert "00-s9" in html and "pending" in html  # status counts and the runs table
    assert "<pre class=\"yaml\">" in html and "hidden:" in html and "optim.lr" in html


def test_summary_numbers_formatted(built):
    records, html = built
    s = records.summary
    assert "<td>0.912 ± 0.004</td>" == f"<td>{format_mean_std(0.9123, 0.0041)}</td>"
    for _, row in s.iterrows():
        for col in ("final_val_acc", "best_test_loss", "final_train_loss"):
            mean, std = row[f"{col}_mean"], row[f"{col}_std"]
            text = f"{mean:.3f} ± {std:.3f}" if not np.isnan(std) else f"{mean:.3f}"
            assert f"<td>{text}</td>" in html, (col, text)
    assert "final val_acc" in html and "best test_loss" in html


def test_sections_per_analysis(built):
    _, html = built
    assert "Toy statistics" in html and "Toy analysis, registered builder." in html
    assert 'id="toy-surface"' in html
    # Unregistered: its JSON in a collapsible block, escaped.
    mystery = html[html.index('id="mystery"'):]
    assert "<details" in mystery[:2000] and "&lt;b&gt;not markup&lt;/b&gt;" in mystery[:2000]
    # The runner's record of a failed analysis, and a builder that raised.
    assert "ValueError: boom &lt;x&gt;" in html
    assert "KeyError" in html and "builder bug" in html
    toc = html[html.index('<nav class="toc"'):html.index("</nav>")]
    for anchor in ("results", "status", "study", "variants", "summary", "curves-loss",
                   "curves-acc", "toy-statistics", "mystery", "exploded", "toy-crash"):
        assert f'href="#{anchor}"' in toc and f'id="{anchor}"' in html


def test_static_figures_written(built):
    records, html = built
    specs = figure_specs(html)
    assert len(specs) == len(PLOTTED) + ANALYSIS_FIGURES
    import matplotlib.image

    figures = records.directory / "figures"
    for target in specs:
        slug = target.removeprefix("plot-")
        png, pdf = figures / f"{slug}.png", figures / f"{slug}.pdf"
        assert f'href="figures/{slug}.png"' in html and f'href="figures/{slug}.pdf"' in html
        assert pdf.read_bytes().startswith(b"%PDF")
        pixels = matplotlib.image.imread(png)
        assert pixels.ndim == 3 and pixels.shape[0] > 300
        rgb = (pixels[::4, ::4, :3] * 255).astype(np.uint32)  # every 4th pixel is plenty
        assert len(np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2])) > 10


def test_curves_mean_and_std_match_pandas(built):
    records, html = built
    specs = figure_specs(html)
    r = records.results
    for metric in ("val_acc", "train_loss"):
        quantity, _ = split_metric(metric)
        spec = specs[f"plot-curves-{quantity}-{metric.replace('_', '-')}"]
        traces = {t["name"]: t for t in spec["data"]}
        stats = r.groupby(["variant", "epoch"])[metric].agg(["mean", "std"])
        for variant in VARIANTS:
            expected = stats.loc[variant]
            line = traces[variant]
            np.testing.assert_array_equal(decode(line["x"]), expected.index.to_numpy(float))
            np.testing.assert_allclose(decode(line["y"]), expected["mean"], rtol=1e-12)
            upper = decode(traces[f"{variant} +std"]["y"])
            lower = decode(traces[f"{variant} -std"]["y"])
            if spec["layout"]["yaxis"].get("type") != "log":
                np.testing.assert_allclose(lower, expected["mean"] - expected["std"])
            np.testing.assert_allclose(upper, expected["mean"] + expected["std"])
    # The failed run stopped after epoch 4: later epochs of its variant have one seed.
    later = stats.loc[FAILED[0]].loc[FAILED[2] + 1:]
    assert later["std"].isna().all()


def test_metric_selection_and_order(built):
    records, _ = built
    assert metric_columns(records.results, records.variant_keys) == CURVE_METRICS
    groups = curve_figures(records)
    assert list(groups) == ["loss", "acc", "other"]
    assert [f.title for f in groups["loss"]] == ["train_loss", "val_loss", "test_loss"]
    assert groups["loss"][0].log_y and not groups["acc"][0].log_y
    # Metrics logged as "nan" strings (JSON has no NaN) are still metrics.
    results = records.results.assign(penalty=["nan"] + ["0.5"] * (len(records.results) - 1),
                                      note="text")
    assert "penalty" in metric_columns(results) and "note" not in metric_columns(results)


def test_single_seed_has_no_band(tmp_path):
    records = make_records(tmp_path, seeds=(0,), analyses={})
    fig = curve_figures(records)["acc"][1]
    assert all(s.std is None for s in fig.series)
    traces = to_plotly(fig).data
    assert [t.name for t in traces] == list(VARIANTS) and not any(t.fill for t in traces)
    path = build_report(records, static=False)
    assert path.exists() and not (tmp_path / "figures").exists()


def test_colours_consistent_across_figures_and_backends(built):
    records, _ = built
    palette = Palette(VARIANTS)
    groups = curve_figures(records)
    for fig in (groups["loss"][0], groups["acc"][2]):
        lines = {t.name: t.line.color for t in to_plotly(fig, palette).data if t.name in VARIANTS}
        assert lines == {v: palette[v] for v in VARIANTS}
        mfig = to_matplotlib(fig, palette)
        drawn = {line.get_label(): line.get_color() for line in mfig.axes[0].get_lines()}
        assert drawn == {v.replace("$", r"\$"): palette[v] for v in VARIANTS}



def test_palette_gives_other_names_free_colours_in_order():
    """Names outside the study take the colours no variant holds, in order of appearance,
    each its own; a section's scoped copy starts afresh but keeps the variants' colours."""
    palette = Palette(["a", "b"])
    names = ["snapshot-s0", "snapshot-s1", "fge-s0", "fge-s1"]  # md5-hashed, s0 and s1 collide
    colours = [palette[n] for n in names]
    assert len(set(colours)) == len(names)
    assert not set(colours) & {palette["a"], palette["b"]}
    assert [palette[n] for n in names] == colours  # asked again: the same
    scoped = palette.scoped()
    assert scoped["a"] == palette["a"] and scoped["fge-s1"] == colours[0]
    many = Palette()
    assert len({many[f"run {i}"] for i in range(20)}) == 20


def test_figure_validation_and_registry():
    with pytest.raises(ValueError, match="lengths differ"):
        Series("a", [1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="expected"):
        HeatmapFigure("h", [0, 1], [0, 1, 2], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="already registered"):
        register_section("toy_stats")(lambda records, data: Section("x"))
    with pytest.raises(TypeError, match="no plotly renderer for str"):
        to_plotly("not a figure")
    assert format_mean_std(1e-4, 2e-5) == "1.000e-04 ± 2.000e-05"
    assert format_mean_std(0.5, float("nan")) == "0.500"
    line = LineFigure("t", "x", "y", [Series("a", [0, 1], [1, None])])
    assert np.isnan(line.series[0].y[1])


def test_builders_see_records_and_data(tmp_path):
    seen = {}

    @register_section("probe", replace=True)
    def probe(records, data):
        seen["args"] = (records.name, data)
        return Section(title="Probe")

    records = make_records(tmp_path, analyses={"probe": {"k": 1}})
    assert [s.title for s in analysis_sections(records)] == ["Probe"]
    assert seen["args"] == ("toy-study", {"k": 1})


def test_study_without_results_still_reports(tmp_path):
    """Before any run has logged an epoch (or with a bare runs table) the report builds."""
    records = StudyRecords(directory=tmp_path, name="empty", study={}, base_config={},
                           variants={"v": {}}, variant_keys=[], runs=pd.DataFrame(),
                           results=pd.DataFrame(columns=["run_id", "variant", "seed", "epoch"]),
                           summary=pd.DataFrame(), analyses={})
    html = build_report(records).read_text(encoding="utf-8")
    assert figure_specs(html) == {} and "No run reported an error" in html


def page_sections(html: str) -> dict[str, str]:
    """The page's sections, by anchor, in page order."""
    main = html[html.index("<main>"):]
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', main, flags=re.S))


def table_rows(fragment: str) -> list[list[str]]:
    """The header and the rows of the first table in ``fragment``, as cell markup."""
    table = fragment[fragment.index("<table"):fragment.index("</table>")]
    return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S)
            for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)]


def test_page_opens_with_results_and_ends_with_the_study_files(built):
    _, html = built
    order = list(page_sections(html))
    assert order[:2] == ["results", "status"]
    assert order[-3:] == ["summary", "variants", "study"]
    assert order.index("curves-loss") < order.index("toy-statistics") < order.index("summary")
    main = html[html.index("<main>"):]
    assert main.index("<table") > main.index('<section id="results">')
    assert main.index("<table") < main.index('<section id="status">')  # the first table
    # Nothing of the study file before the results; at the end, collapsed.
    study = page_sections(html)["study"]
    assert main.index('<pre class="yaml">') > main.index('<section id="summary">')
    assert study.count("<details>") == 2 and "<details open" not in study
    # The failed run's error is near the top: before any curve.
    error = "RuntimeError: loss is nan &lt;at step 123&gt;"
    assert main.index(error) < main.index('<section id="curves-loss">')
    assert "1 failed" in page_sections(html)["results"]


def _t_half(values: np.ndarray) -> float:
    from scipy import stats

    return stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))


def final_values(records: StudyRecords) -> pd.DataFrame:
    """The last epoch of every finished run, computed here without the report's code."""
    runs, r = records.runs, records.results
    finished = r[r["run_id"].isin(runs.loc[runs["status"] == "finished", "run_id"])]
    return finished.sort_values("epoch").groupby("run_id").tail(1)


def results_cell(records: StudyRecords, variant: str, metric: str) -> str:
    """The Results table's text for ``metric`` of ``variant``, before any best mark:
    mean ± half-width of the 95% t-interval over its finished seeds."""
    final = final_values(records)
    values = final.loc[final["variant"] == variant, metric].to_numpy()
    if len(values) < 2:
        return f"{values.mean():.3f}"
    return f"{values.mean():.3f} ± {_t_half(values):.3f}"


def test_results_table_holds_final_means_with_intervals_and_marks_the_best(built):
    records, html = built
    header, *rows = table_rows(page_sections(html)["results"])
    assert header == ["variant", "seeds", *KEY_METRICS, "config"]
    final = final_values(records)
    cells = {re.sub("<[^>]+>", "", row[0]): row for row in rows}
    assert set(cells) == {str(escape_html(v)) for v in VARIANTS}
    for m in KEY_METRICS:
        means = final.groupby("variant")[m].mean()
        best = means.idxmax() if m.endswith("acc") else means.idxmin()
        for variant in VARIANTS:
            expected = results_cell(records, variant, m)
            cell = cells[str(escape_html(variant))][header.index(m)]
            assert cell.startswith(expected), (m, variant, cell, expected)
            assert ("★" in cell) == (variant == best), (m, variant, cell)
    rx = r'<td class="best">[^<]*★</td>'
    assert len(re.findall(rx, page_sections(html)["results"])) == len(KEY_METRICS)
    seeds = {v: cells[str(escape_html(v))][1] for v in VARIANTS}
    assert seeds == {"baseline": "2 of 3", "lr=$0.3": "1 of 2", EVIL: "2"}
    config = {v: cells[str(escape_html(v))][-1] for v in VARIANTS}
    assert config["baseline"] == "(base config)" and config["lr=$0.3"] == "optim.lr=0.3"
    assert config[EVIL] == "schedule.name=cosine"


def escape_html(text: str) -> str:
    from markupsafe import escape

    return escape(text)


def test_constant_metrics_are_listed_not_plotted(built):
    records, html = built
    groups = curve_figures(records)
    plotted = [f.title for figures in groups.values() for f in figures]
    assert plotted == PLOTTED and "neutral_moves" not in plotted
    assert not any("neutral-moves" in target for target in figure_specs(html))
    assert "so not plotted: neutral_moves = 0." in page_sections(html)["curves-loss"]


def test_accuracy_curves_stay_within_0_and_1(built):
    records, _ = built
    for fig in curve_figures(records)["acc"]:
        assert fig.y_bounds == (0.0, 1.0)
        top = max(float(np.nanmax(s.y + np.nan_to_num(s.std))) for s in fig.series)
        low, high = to_plotly(fig).layout.yaxis.range
        assert 0 <= low < high <= 1
        assert high == 1 or high > top  # the band reaches past 1 on train_acc: clipped there
        ylim = to_matplotlib(fig).axes[0].get_ylim()
        assert 0 <= ylim[0] < ylim[1] <= 1


def test_sgdsa_lr_is_the_step_size_taken(tmp_path):
    """SGD-SA logs its nominal lr (1) and the mean η it drew (mean_lr); the lr plotted is
    their product, the step actually taken; the other variants' lr is left alone."""
    records = make_records(tmp_path, analyses={})
    r = records.results
    sa = r["variant"] == "baseline"
    eta = np.where(sa, 0.1 + 0.01 * r["epoch"], np.nan)
    records.results = r.assign(lr=np.where(sa, 1.0, r["lr"]), mean_lr=eta)
    fig = next(f for f in curve_figures(records)["other"] if f.title == "lr")
    lines = {s.name: s for s in fig.series}
    expected = records.results[sa].groupby("epoch")["mean_lr"].mean()
    np.testing.assert_allclose(lines["baseline"].y, expected.to_numpy())
    other = r[r["variant"] == EVIL].groupby("epoch")["lr"].mean()
    np.testing.assert_allclose(lines[EVIL].y, other.to_numpy())
    assert "mean η" in fig.ylabel


def _ensemble_data(names: list[str]) -> dict:
    """An ``ensemble`` analysis's output, as the analysis writes it, for runs ``names``."""
    rng = np.random.default_rng(1)
    groups = []
    for name in names:
        members = [f"{name}:snapshot@{e}" for e in (5, 10, 15, 20)]
        pairs = [{"i": i, "j": j, "l2": 1 + 0.05 * rng.random(), "cosine": 0.99,
                  "disagreement": 0.005 + 0.001 * rng.random(), "kl_ij": 0.02, "kl_ji": 0.02,
                  "error_correlation": 0.8} for i in range(4) for j in range(i + 1, 4)]
        agreement = {"n": 359, "all_agree": 357, "all_agree_correct": 356, "all_agree_wrong": 1,
                     "all_agree_frac": 0.994}
        groups.append({"name": name, "variant": name.split("-")[0], "seed": 0, "result": {
            "members": members, "n_members": 4, "combination": "average of probabilities",
            "cumulative": [{"acc": 0.99 + 0.001 * k, "members": k + 1} for k in range(4)],
            "diversity": {"pairs": pairs, "agreement": agreement},
            "ensemble": {"acc": 0.994}, "mean_member_acc": 0.993, "swa": {"acc": 0.994}}})
    summary = [{"variant": v, "n": 2, "members": 4, **{f"{k}_{s}": 0.5 for k in (
        "ensemble_acc", "ensemble_nll", "ensemble_ece", "mean_member_acc", "swa_acc",
        "all_agree") for s in ("mean", "std")}} for v in dict.fromkeys(
        g["variant"] for g in groups)]
    return {"analysis": "ensemble", "members": "auto", "group": "run", "split": "test",
            "groups": groups, "summary": summary}


def test_no_two_series_of_a_section_share_a_colour(tmp_path):
    """The ensemble scatter's runs snapshot-s0 and snapshot-s1 once shared a colour (an md5
    hash of the name); now every series of a section has its own, in both backends."""
    names = ["snapshot-s0", "snapshot-s1", "fge-s0", "fge-s1"]
    records = make_records(tmp_path, analyses={"ensembles": _ensemble_data(names)})
    html = build_report(records, static=True).read_text(encoding="utf-8")
    section = page_sections(html)["ensembles-run-auto"]
    targets = re.findall(r'data-target="([^"]+)"', section)
    assert len(targets) == 2  # the accuracy curves and the distance scatter
    scatter = figure_specs(html)[targets[1]]
    colours = {t["name"]: t["marker"]["color"] for t in scatter["data"]}
    assert list(colours) == names and len(set(colours.values())) == len(names)
    curves = {t["name"]: t["line"]["color"] for t in figure_specs(html)[targets[0]]["data"]
              if "line" in t and not t["name"].endswith("std")}
    assert not set(curves.values()) & set(colours.values())
    import matplotlib.colors as mcolors
    import matplotlib.image

    png = matplotlib.image.imread(records.directory / "figures" / f"{targets[1][5:]}.png")
    drawn = {tuple(np.round(px[:3] * 255).astype(int)) for px in png.reshape(-1, png.shape[-1])}
    alpha = 0.85  # the static scatter's markers, over white
    for colour in colours.values():  # each run's own colour is in the static figure too
        rgb = [round(255 * (alpha * c + 1 - alpha)) for c in mcolors.to_rgb(colour)]
        assert any(max(abs(a - b) for a, b in zip(rgb, px, strict=True)) <= 3 for px in drawn)
