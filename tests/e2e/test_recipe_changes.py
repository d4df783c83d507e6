"""A run is what its recipe says: a changed field re-runs exactly the steps that read it, the same
recipe reuses every finished step, and the run's result shows the change. Real kfp.local runner
and MLflow (sqlite); the gate is set to fail so no server is started (deploy is tested elsewhere)."""
import json
from pathlib import Path

import pandas as pd
import pytest

from components.bundle import load_bundle
from components.recipe import Recipe
from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.heavy]

CACHEABLE = {"resolve", "load", "preprocess", "split", "train", "evaluate"}
TASK_DIRS = {"load": "load-data", "preprocess": "preprocess-data", "split": "split-data", "train": "train-model",
             "evaluate": "evaluate-model"}
BASE = ["model.params.hidden_sizes=[8]", "train.epochs=2", "evaluate.gate=['rmse <= 0.0001']",
        "register.model_name=cache-housing"]


@pytest.fixture
def run(tmp_path, monkeypatch):
    from pipelines.submit import run_local

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PLATFORM_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "home"))

    def run_recipe(*overrides: str) -> tuple[dict, set[str], Path]:
        recipe = Recipe.from_file(ROOT / "pipelines" / "recipes" / "california-housing.yaml", [*BASE, *overrides])
        summary = run_local(recipe)
        outputs = Path(summary["outputs"])
        ran = {step for step, task in TASK_DIRS.items() if (outputs / task).is_dir()}
        assert ran == CACHEABLE - {"resolve"} - set(summary["cached"]), "a step is either cached or run here"
        return summary, ran, outputs

    return run_recipe


def bundle(outputs: Path):
    return load_bundle(outputs / "train-model" / "model")


def test_each_changed_section_reruns_exactly_its_steps_and_the_result_shows_it(run):
    """One baseline, then one changed field per run (each run compared with the baseline)."""
    first, ran, base = run()
    assert first["cached"] == [] and ran == set(TASK_DIRS)
    again, ran, _ = run()
    assert set(again["cached"]) == CACHEABLE and ran == set(), "the same recipe on the same data reuses every step"
    assert again["registered"] == first["registered"], "and the version registered: no copy of it"

    second, ran, out = run("name=second-recipe", "model.name=linear", "model.params={}", "train={}",
                           "register.model_name=second-model", "deploy.port=8199")
    assert ran == {"train", "evaluate"}, "a second recipe on the same data shares the data steps, not the model"
    assert bundle(out).meta.model_name == "linear" and second["registered"].startswith("second-model version 1")

    _, ran, out = run("data.drop_columns=['Population']")
    assert ran == {"load", "preprocess", "split", "train", "evaluate"}
    assert "Population" not in bundle(out).feature_names and "Population" in bundle(base).feature_names

    _, ran, out = run("preprocess.scaler=standard")
    assert ran == {"preprocess", "split", "train", "evaluate"}
    assert "StandardScaler" in repr(bundle(out).transform) and "StandardScaler" not in repr(bundle(base).transform)

    _, ran, out = run("split.seed=7")
    assert ran == {"split", "train", "evaluate"}
    assert not pd.read_parquet(out / "split-data" / "test").equals(pd.read_parquet(base / "split-data" / "test"))

    _, ran, out = run("train.epochs=3")
    assert ran == {"train", "evaluate"} and bundle(out).meta.train_metrics["epochs_run"] == 3

    summary, ran, out = run("evaluate.gate=['rmse <= 0.0002']")
    assert ran == {"evaluate"}
    gate = json.loads((out / "evaluate-model" / "evaluation" / "evaluation.json").read_text())["gate"]
    assert [g["rule"] for g in gate] == ["rmse <= 0.0002"], gate

    summary, ran, _ = run("register.experiment=other-experiment")
    assert ran == set()
    from mlflow import MlflowClient

    run_id = MlflowClient().get_model_version("cache-housing", summary["registered"].split()[2]).run_id
    assert MlflowClient().get_experiment(MlflowClient().get_run(run_id).info.experiment_id).name == "other-experiment"

