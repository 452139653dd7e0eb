"""Every recipe in experiments/ is a valid study: its runs and analyses pass validation."""

from pathlib import Path

import pytest

from losslab.studies import load_study, plan_runs
from losslab.studies.analyses import check_analysis

RECIPES = sorted(p for p in (Path(__file__).resolve().parents[1] / "experiments").rglob("*.yaml")
                 if not p.name.endswith("_base.yaml"))


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
    if path.stem.endswith("_small"):
        assert all(r.config["data"]["name"] == "digits" for r in runs)
