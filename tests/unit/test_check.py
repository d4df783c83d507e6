"""One check before anything runs: model, metrics and data, all problems at once, with suggestions."""
import glob

import pytest

from components.check import TASK_METRICS, check, metric_problem
from components.recipe import Recipe, RecipeError
from pipelines.compile import main as compile_main
from pipelines.submit import main as submit_main
from tests.conftest import ROOT

DEFAULT = ROOT / "pipelines" / "recipes" / "california-housing.yaml"


@pytest.mark.parametrize("path", sorted(glob.glob(str(ROOT / "pipelines" / "recipes" / "*.yaml"))))
def test_every_shipped_recipe_passes(path):
    check(Recipe.from_file(path))


def test_all_problems_are_reported_at_once_with_suggestions():
    recipe = Recipe.from_file(DEFAULT, ["evaluate.gate=['rmsee <= 1', 'accuracy >= 0.5']", "data.target=MedHouseVall"])
    with pytest.raises(RecipeError) as err:
        check(recipe)
    text = str(err.value)
    assert "regression reports no metric 'rmsee' (did you mean 'rmse'?)" in text
    assert "regression reports no metric 'accuracy'" in text
    assert "column 'MedHouseVall' is not in" in text and "(did you mean 'MedHouseVal'?)" in text


def test_model_that_does_not_fit_the_family_or_its_params():
    ts = Recipe.from_file(ROOT / "pipelines" / "recipes" / "co2-weekly.yaml", ["model.name=mlp", "model.params={}"])
    with pytest.raises(RecipeError, match="reads tabular data but this recipe is timeseries"):
        check(ts)
    with pytest.raises(RecipeError, match="hidden"):
        check(Recipe.from_file(DEFAULT, ["model.params.hidden=3"]))


def test_missing_data_and_csv_header(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        check(Recipe.from_file(DEFAULT, [f"data.uri={tmp_path / 'nope.parquet'}"]))
    csv = tmp_path / "t.csv"
    csv.write_text("a;b;price\n1;2;3\n")
    check(Recipe.from_file(DEFAULT, [f"data.uri={csv}", "data.target=price"]))  # the delimiter is sniffed
    with pytest.raises(RecipeError, match=r"columns are \['a', 'b', 'price'\]"):
        check(Recipe.from_file(DEFAULT, [f"data.uri={csv}", "data.target=cost"]))


def test_evaluate_reports_only_metrics_the_check_knows(regression_run, classification_run):
    import json

    for recipe, p in (regression_run, classification_run):
        metrics = json.loads((p["eval"] / "evaluation.json").read_text())["metrics"]
        assert TASK_METRICS[recipe.task] and all(metric_problem(recipe.task, m, "gate") is None for m in metrics), metrics


def test_submit_and_compile_refuse_before_running(tmp_path, capsys):
    bad = ["--set", "evaluate.gate=['rmsee <= 1']"]
    assert submit_main(bad) == 2 and "did you mean 'rmse'" in capsys.readouterr().err
    assert compile_main([*bad, "--output", str(tmp_path / "p.yaml")]) == 2
    assert "did you mean 'rmse'" in capsys.readouterr().err and not (tmp_path / "p.yaml").exists()


def test_validate_runs_the_same_check(capsys):
    from components.recipe import main as recipe_main

    assert recipe_main(["validate", str(DEFAULT), "--set", "evaluate.gate=['rmsee <= 1']"]) == 2
    assert "did you mean 'rmse'" in capsys.readouterr().err
