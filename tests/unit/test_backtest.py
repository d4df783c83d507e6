"""Rolling split: every fold trained and scored; the last fold is the pipeline's own split."""
import json

import numpy as np
import pytest

from components.recipe import Recipe
from components.steps.backtest import backtest
from tests.conftest import ROOT, run_steps


@pytest.mark.slow  # trains every fold (about 18 s on 2 cores)
def test_every_fold_is_scored_and_the_last_is_the_pipelines_split(tmp_path):
    recipe = Recipe.from_file(ROOT / "pipelines" / "recipes" / "co2-weekly.yaml",
                              ["split.method=rolling", "split.folds=3", "train.epochs=2"])
    p = run_steps(recipe, tmp_path)
    result = backtest(recipe, p["clean.parquet"], p["schema.json"], tmp_path / "backtest")
    folds = result["folds"]
    assert [f["fold"] for f in folds] == [1, 2, 3]
    assert folds[0]["train_rows"] < folds[1]["train_rows"] < folds[2]["train_rows"], "expanding windows"
    final = json.loads((p["eval"] / "evaluation.json").read_text())["metrics"]
    assert folds[-1]["rmse"] == pytest.approx(final["rmse"], rel=1e-4), "the last fold is what the pipeline trains"
    assert result["summary"]["rmse_mean"] == pytest.approx(np.mean([f["rmse"] for f in folds]))
    assert result["summary"]["rmse_std"] == pytest.approx(np.std([f["rmse"] for f in folds]))
    assert (tmp_path / "backtest" / "backtest.png").stat().st_size > 5000


def test_compiled_rolling_recipe_has_the_backtest_step(tmp_path):
    from pipelines.compile import main as compile_main
    import yaml

    out = tmp_path / "p.yaml"
    assert compile_main(["--recipe", str(ROOT / "pipelines" / "recipes" / "co2-weekly.yaml"),
                         "--set", "split.method=rolling", "--output", str(out)]) == 0
    tasks = next(yaml.safe_load_all(out.read_text()))["root"]["dag"]["tasks"]
    assert set(tasks["backtest-model"]["dependentTasks"]) == {"preprocess-data", "resolve-recipe"}
