"""pipelines/submit.py with a tune section: the tune step runs before train, train fits with its best
values, and the same recipe again takes both from the cache. Real kfp.local and MLflow (sqlite); the
gate fails so no server starts."""
import json
from pathlib import Path

import pytest

from components.bundle import load_bundle
from components.recipe import Recipe
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

OVERRIDES = ["data.sample_rows=3000", "model.params.hidden_sizes=[16]", "train.epochs=3",
             "evaluate.gate=['rmse <= 0.0001']", "register.model_name=tune-housing", "tune.trials=3",
             "tune.space={hidden_sizes: [[16], [32, 32]], dropout: [0.0, 0.1], weight_decay: null, batch_size: null, "
             "num_embeddings: null, frequency_scale: null}"]


def test_tune_step_feeds_train_its_best_values_and_a_rerun_is_cached(tmp_path, monkeypatch):
    from pipelines.submit import run_local

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PLATFORM_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "home"))
    recipe = Recipe.from_file(ROOT / "pipelines" / "recipes" / "california-housing.yaml", OVERRIDES)

    first = run_local(recipe)
    outputs = Path(first["outputs"])
    assert "tune" not in first["cached"] and (outputs / "tune-model").is_dir(), first["cached"]
    best = first["tuned"]
    study = json.loads((outputs / "tune-model" / "study" / "study.json").read_text())
    assert len(study["trials"]) == 3 and study["trials"][study["best_trial"]]["values"] == best
    assert set(best["model"]) == {"hidden_sizes", "dropout"} and set(best["train"]) == {"learning_rate"}

    train_out = json.loads((outputs / "train-model" / "executor_output.json").read_text())
    model_meta = train_out["artifacts"]["model"]["artifacts"][0]["metadata"]
    assert json.loads(model_meta["tuned_params"]) == best, "train received the best values as its input"
    params = load_bundle(outputs / "train-model" / "model").meta.params
    assert {k: params[k] for k in best["model"]} == best["model"], "the bundle was trained with them"
    assert (tmp_path / "home" / "tuning" / "studies.db").is_file()
    from mlflow import MlflowClient

    client = MlflowClient()
    version = client.search_model_versions(f"name='{recipe.registry.model_name}'")[0]
    logged = client.get_run(version.run_id).data.params  # what a person reads in MLflow: the values trained
    assert logged["model.params.hidden_sizes"] == json.dumps(best["model"]["hidden_sizes"])
    assert logged["model.params.dropout"] == str(best["model"]["dropout"])
    assert logged["train.learning_rate"] == str(best["train"]["learning_rate"])

    again = run_local(recipe)
    assert {"tune", "train", "evaluate"} <= set(again["cached"]), again["cached"]
    assert not (Path(again["outputs"]) / "tune-model").exists()
