"""Every recipe in experiments/ is a valid study: its runs and analyses pass validation."""

from pathlib import Path

import pytest

from losslab.studies import load_study, load_suite, plan_runs
from losslab.studies.analyses import check_analysis
from losslab.studies.suite import is_suite_file

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
FILES = sorted(p for p in EXPERIMENTS.rglob("*.yaml") if not p.name.endswith("_base.yaml"))
SUITES = [p for p in FILES if is_suite_file(p)]
RECIPES = [p for p in FILES if p not in SUITES]
# The theses' small recipes (suite_small) and the maps/curves/ensembles ones (suite_maps_small).
ON_MNIST1D = ("repulsion", "annealing")
MAPS = {"ensembles_budgets_small", "diverse_small", "connect_small", "trajectories_small",
        "skip_connections_small", "batch_size_small"}


def test_there_are_recipes():
    names = {p.stem for p in RECIPES}
    assert {"ensembles_budgets_small", "ensembles_budgets_cifar", "diverse_small",
            "diverse_cifar"} <= names
    thesis = ["one_checkpoint", "strength", "width", "multiple", "merged", "schedules",
              "wrong_lr", "cost", "ensembles", "switch_off"]
    assert {f"{t}_{size}" for t in thesis for size in ("small", "full")} <= names
    annealing = {"restarts_small", "restarts_cifar", "loss_estimate_small", "loss_estimate_cifar",
                 "ssa_small", "ssa_full", "sgdsa_small", "sgdsa_cifar"}
    assert annealing <= names


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_is_a_valid_study(path):
    spec, root = load_study(path)
    runs = plan_runs(spec, root)
    assert runs and len({r.run_id for r in runs}) == len(runs)
    for analysis in spec.analyses:
        check_analysis(analysis.name, analysis.options)
        variants = {r.variant for r in runs}
        o = analysis.options
        named = [o.get("baseline"), o.get("ind"), *o.get("variants", []),
                 *o.get("sse", {}).values(), *o.get("fge", {}).values()]
        if analysis.name == "published":
            named += list(o["published"])
        for name in filter(None, named):
            assert name in variants, f"{path.name}: analysis {analysis.key} names no variant {name!r}"
    if path.stem.endswith("_small"):  # every small recipe runs on MNIST-1D, where it resolves
        assert all(r.config["data"]["name"] == "mnist1d" for r in runs), path.name


def test_the_small_suite_holds_every_small_recipe_of_its_theses_each_with_findings():
    spec, files = load_suite(EXPERIMENTS / "suite_small.yaml")  # validates every study
    small = {p for p in RECIPES if p.parent.name in ON_MNIST1D and p.stem.endswith("_small")}
    assert set(files) == small
    for path in files:
        study, _ = load_study(path)
        if path.stem != "switch_off_small":  # the thesis's open question: no claim to test
            assert study.findings, f"{path.name} declares no finding"
        assert len(study.seeds) >= 3, f"{path.name}: too few seeds to resolve anything"


def test_the_maps_suite_holds_the_small_maps_recipes_each_with_findings():
    spec, files = load_suite(EXPERIMENTS / "suite_maps_small.yaml")
    assert {p.stem for p in files} == MAPS
    for path in files:
        study, _ = load_study(path)
        assert study.findings, f"{path.name} declares no finding"
        assert len(study.seeds) >= 3, f"{path.name}: too few seeds to resolve anything"
