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
# Metrics the synthetic results carry; grad_norm is all-NaN (never logged) on purpose.
CURVE_METRICS = ["train_loss", "val_loss", "test_loss", "train_acc", "val_acc", "test_acc",
                 "epoch_time", "lr", "sharpness"]
ANALYSIS_FIGURES = 4  # the toy analysis's bar, scatter, heatmap and contour


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
                         ScatterFigure("Toy scatter", "a", "b", points=[ScatterSeries(
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
    for anchor in ("status", "study", "variants", "summary", "curves-loss", "curves-acc",
                   "toy-statistics", "mystery", "exploded", "toy-crash"):
        assert f'href="#{anchor}"' in toc and f'id="{anchor}"' in html


def test_static_figures_written(built):
    records, html = built
    specs = figure_specs(html)
    assert len(specs) == len(CURVE_METRICS) + ANALYSIS_FIGURES
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
    assert Palette()["val"] == Palette(["a", "b"])["val"]  # names outside the study: stable


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
