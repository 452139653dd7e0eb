"""The study analysis `landscape`: surfaces, lines, trajectories and spectra in the report."""

import json

import pytest
import yaml

from losslab.report.landscape_sections import caption
from losslab.studies import load_records, run_study

pytestmark = pytest.mark.e2e  # end to end: deselected by `make test-fast`


def test_landscape_analyses_in_a_study(tmp_path):
    study = {
        "name": "maps",
        "base": {"epochs": 3, "log": {"progress": False, "tensorboard": False},
                 "checkpoints": {"every": 1}},
        "variants": [{"name": "small_batch", "set": {"data.batch_size": 32}},
                     {"name": "large_batch", "set": {"data.batch_size": 512, "optimizer.lr": 0.2}}],
        "analyses": [
            {"name": "landscape", "id": "surfaces", "kind": "surface", "points": 3, "examples": 100},
            {"name": "landscape", "id": "line", "kind": "line",
             "variants": ["small_batch", "large_batch"], "examples": 100},
            {"name": "landscape", "id": "paths", "kind": "trajectory", "points": 3,
             "examples": 100, "variants": ["small_batch"]},
            {"name": "landscape", "id": "spectra", "kind": "hessian", "examples": 128,
             "variants": ["large_batch"]},
            {"name": "landscape", "id": "convexity", "kind": "ratio_map", "points": 3,
             "examples": 64, "span": 0.5, "variants": ["large_batch"]},
            # the other curvatures: a GGN spectrum, the per-layer table, an eigenvector plane
            {"name": "landscape", "id": "ggn_spectra", "kind": "hessian", "operator": "ggn",
             "examples": 64, "variants": ["large_batch"]},
            {"name": "landscape", "id": "layers", "kind": "curvature", "operator": "ggn",
             "examples": 64, "variants": ["large_batch"]},
            # the same surfaces, their points spread over two Ray workers
            {"name": "landscape", "id": "surfaces_ray", "kind": "surface", "points": 3,
             "examples": 100, "backend": "ray", "workers": 2},
            {"name": "landscape", "id": "eigenplane", "kind": "surface",
             "directions": "hessian_top2", "normalization": "none", "points": 3, "span": 0.01,
             "examples": 64, "variants": ["small_batch"]}],
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    outcome = run_study(path, tmp_path / "out", workers=2)
    assert outcome.counts == {"finished": 2}
    analyses = load_records(outcome.directory).analyses
    assert not any("error" in a for a in analyses.values())
    assert not [(k, r) for a in analyses.values() for k, r in a["results"].items() if "error" in r]
    surface = analyses["surfaces"]["results"]["small_batch"]
    assert len(surface["loss"]) == 3 and surface["x"][1] == 0.0  # the centre is on the grid
    for variant, r in analyses["surfaces_ray"]["results"].items():  # threads may differ
        alone = analyses["surfaces"]["results"][variant]["loss"]
        assert sum(r["loss"], []) == pytest.approx(sum(alone, []), rel=1e-9)
    line = analyses["line"]["results"]["small_batch → large_batch"]
    assert 0.0 in line["alphas"] and 1.0 in line["alphas"] and len(line["loss"]) == 41
    trajectory = analyses["paths"]["results"]["small_batch"]
    assert trajectory["path_epochs"] == [1, 2, 3] and trajectory["path"][-1] == [0.0, 0.0]
    spectra = analyses["spectra"]["results"]["large_batch"]
    assert len(spectra["eigenvalues"]) == 6 and spectra["total_products"] > 0
    ratio = analyses["convexity"]["results"]["large_batch"]
    assert len(ratio["ratio"]) == 3 and all(v is None or v >= 0 for row in ratio["ratio"] for v in row)
    ggn = analyses["ggn_spectra"]["results"]["large_batch"]
    assert ggn["operator"] == "ggn" and min(ggn["eigenvalues"]) >= -1e-4 * max(ggn["eigenvalues"])
    layers = analyses["layers"]["results"]["large_batch"]
    assert len(layers["groups"]) >= 2 and layers["operator"] == "ggn"
    assert analyses["layers"]["per_run"][0]["lambda_max"] == layers["whole"]["top_eigenvalues"][0]
    plane = analyses["eigenplane"]["results"]["small_batch"]
    assert plane["directions"] == "hessian_top2" and plane["directions_extra"]["converged"]
    html = (outcome.directory / "report.html").read_text()
    for words in ("Spectral density of the generalized Gauss-Newton", "curvature per layer",
                  "eigenvectors of the largest eigenvalues"):
        assert words in html, words
    for title in ("Landscape: surface", "3-D surface", "Landscape: trajectory",
                  "Spectral density of the Hessian", "loss along the line", "Landscape: ratio_map"):
        assert title in html
    # each section's caption says what its maps are, and where their numbers come from
    for words in ("filter-normalized Gaussian directions",
                  "on the train split (a fixed random subset of 100 examples). The centre",
                  "offsets θ_i − θ_final, centred on their mean",
                  "Hessian of the training loss at each final model, on the train split (a fixed "
                  "random subset of 128 examples)",
                  "random plane (Li et al. 2018, §6: small where the surface looks convex), on "
                  "the train split (a fixed random subset of 64 examples)"):
        assert words in html, words
    assert "Surfaces use filter-normalized" not in html
    json.dumps(analyses)  # JSON-able


def test_captions_follow_the_options():
    data = {"split": "val", "examples": 0}
    surface = caption("surface", data, {"v": {"normalization": "none", "bn": "recompute"}})
    assert "unnormalized Gaussian" in surface and "the val split (the whole split)" in surface
    assert "<code>recompute</code>" in surface
    trajectory = caption("trajectory", data, {"v": {"centered": False}})
    assert "not centred" in trajectory
    hessian = caption("hessian", data, {"v": {"split": "train", "examples": 512}})
    assert "the train split (a fixed random subset of 512 examples)" in hessian


def test_per_run_summaries_have_their_closed_forms():
    """The numbers findings read from each kind of map, on hand-made results."""
    import numpy as np

    from losslab.landscape.study_analysis import summary

    x = np.linspace(-1, 1, 5)
    bowl = (x[None, :] ** 2 + x[:, None] ** 2) + 0.3  # centre 0.3
    s = summary("surface", {"loss": bowl.tolist()})
    border = np.concatenate([bowl[0], bowl[-1], bowl[1:-1, 0], bowl[1:-1, -1]])
    assert s["center_loss"] == pytest.approx(0.3)
    assert s["mean_rise"] == pytest.approx(bowl.mean() - 0.3)
    assert s["edge_rise"] == pytest.approx(border.mean() - 0.3)
    alphas = np.linspace(-0.5, 1.5, 9)  # -0.5, -0.25, 0, ..., 1.5
    loss = np.array([2.0, 1.0, 0.1, 0.5, 0.9, 0.4, 0.2, 3.0, 5.0])
    s = summary("line", {"alphas": alphas.tolist(), "loss": loss.tolist()})
    assert s == pytest.approx({"rise_start": 1.5 - 0.1, "rise_end": 4.0 - 0.2,
                               "barrier": 0.9 - 0.2})
    assert summary("trajectory", {"explained_variance": [0.6, 0.25, 0.1]}) == \
        pytest.approx({"pca_variance_2": 0.85})
    s = summary("hessian", {"eigenvalues": [-0.5, -0.1, 2.0, 10.0], "trace": 12.0})
    assert s == pytest.approx({"lambda_max": 10.0, "lambda_min": -0.5, "abs_ratio": 0.05,
                               "trace": 12.0})
    ratio = np.full((3, 3), 0.4)
    ratio[1, 1] = 0.01
    assert summary("ratio_map", {"ratio": ratio.tolist()}) == \
        pytest.approx({"ratio_center": 0.01, "ratio_away": 0.4})
