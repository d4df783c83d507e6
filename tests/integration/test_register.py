"""register and deploy against a real MLflow tracking store (sqlite) and a real model server."""
import json

import pytest
import requests
from mlflow import MlflowClient

from components.steps.deploy import deploy, stop_local_server
from components.steps.register import register
from tests.conftest import evaluation_claiming, free_port, make_recipe, served_answer

pytestmark = pytest.mark.integration


def test_champion_only_when_gate_passes_and_not_worse(regression_run, mlflow_sqlite, tmp_path):
    recipe, p = regression_run
    client = MlflowClient()
    first = register(recipe, p["model"], evaluation_claiming(p, tmp_path, "a", rmse=0.6), "run-1")
    assert first["alias"] == "champion" and first["version"] == "1"
    worse = register(recipe, p["model"], evaluation_claiming(p, tmp_path, "b", rmse=0.7), "run-2")
    assert worse["alias"] == "challenger"
    better = register(recipe, p["model"], evaluation_claiming(p, tmp_path, "c", rmse=0.5), "run-3")
    assert better["alias"] == "champion"
    assert str(client.get_model_version_by_alias(recipe.registry.model_name, "champion").version) == "3"
    assert str(client.get_model_version_by_alias(recipe.registry.model_name, "challenger").version) == "2"

    failed_dir = evaluation_claiming(p, tmp_path, "d", rmse=0.1, verdict="failed")
    assert register(recipe, p["model"], failed_dir, "run-4")["alias"] == "challenger", "a failed gate never wins"


def test_lineage_params_metrics_and_idempotence(regression_run, mlflow_sqlite):
    recipe, p = regression_run
    result = register(recipe, p["model"], p["eval"], "run-42")
    again = register(recipe, p["model"], p["eval"], "run-42")
    assert again["version"] == result["version"], "registering the same pipeline run twice makes one version"
    client = MlflowClient()
    version = client.get_model_version(recipe.registry.model_name, result["version"])
    assert version.tags["pipeline_run_id"] == "run-42" and version.tags["recipe_hash"] == recipe.hash()
    assert len(version.tags["data_hash"]) == 16 and "git_commit" in version.tags
    run = client.get_run(result["run_id"])
    assert run.data.params["train.epochs"] == str(recipe.train.epochs)
    assert run.data.metrics["rmse"] == pytest.approx(json.loads((p["eval"] / "evaluation.json").read_text())["metrics"]["rmse"])
    artifacts = {a.path for a in client.list_artifacts(result["run_id"], "evaluation")}
    assert "evaluation/residuals.png" in artifacts and "evaluation/report.html" in artifacts


def test_deploy_local_serves_the_champion_and_replaces_it(regression_run, mlflow_sqlite, tmp_path):
    recipe, p = regression_run
    recipe = make_recipe(deploy={"port": free_port()})
    register(recipe, p["model"], p["eval"], "run-a")
    try:
        first = deploy(recipe, str(tmp_path / "isvc.yaml"))
        example = json.loads((p["model"] / "input_example.json").read_text())
        row = dict(zip(example["columns"], example["data"][0]))
        answer = served_answer(requests.post(first["url"], json={"instances": [row]}, timeout=30))
        assert isinstance(answer["predictions"][0], float)
        manifest = (tmp_path / "isvc.yaml").read_text()
        assert "kind: InferenceService" in manifest and "storageUri:" in manifest
        second = deploy(recipe, None)  # same champion: the old process is replaced, still one server
        assert served_answer(requests.post(second["url"], json={"instances": [row]}, timeout=30)) == answer
    finally:
        stop_local_server(recipe.registry.model_name)


def test_fine_tune_from_the_registered_champion(regression_run, mlflow_sqlite, tmp_path, monkeypatch):
    import tempfile

    import torch

    from components.bundle import load_bundle
    from components.steps.train import train

    recipe, p = regression_run
    register(recipe, p["model"], p["eval"], "run-ft")
    tuned = make_recipe(train={"epochs": 1, "learning_rate": 1e-7,
                               "init_from": f"models:/{recipe.registry.model_name}@champion"})
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    train(tuned, p["train.parquet"], p["val.parquet"], p["schema.json"], tmp_path / "tuned")
    assert list(scratch.iterdir()) == [], "the champion's download is removed once its weights are read"
    before, after = load_bundle(p["model"]).adapter.net_, load_bundle(tmp_path / "tuned").adapter.net_
    for a, b in zip(before.parameters(), after.parameters()):
        assert torch.allclose(a, b, atol=1e-4), "training started from the champion's weights"


def test_unreachable_tracking_server_fails_fast_and_clearly(regression_run, monkeypatch):
    import time

    recipe, p = regression_run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=r"MLflow tracking server http://127.0.0.1:\d+ is unreachable"):
        register(recipe, p["model"], p["eval"], "run-x")
    assert time.monotonic() - start < 60


def test_object_store_down_during_register_is_a_clear_error_and_registers_nothing(regression_run, mlflow_sqlite,
                                                                                  monkeypatch):
    """Artifacts go straight to an S3 bucket whose endpoint nothing answers: bounded retries, then
    one clear error; no model version exists, so the step can be re-run."""
    import time

    recipe, p = regression_run
    monkeypatch.setenv("PLATFORM_ARTIFACT_ROOT", "s3://mlflow-artifacts/experiments")
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=r"uploading to MLflow's artifact store \(s3://mlflow-artifacts/.*"
                                              r"no model version was registered"):
        register(recipe, p["model"], p["eval"], "run-s3-down")
    assert time.monotonic() - start < 120
    assert MlflowClient().search_model_versions(f"name='{recipe.registry.model_name}'") == []
    runs = MlflowClient().search_runs([e.experiment_id for e in MlflowClient().search_experiments()])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_a_rerun_of_the_same_bundle_recipe_and_evaluation_is_the_same_version(regression_run, mlflow_sqlite,
                                                                               tmp_path):
    """A rerun whose steps all came from the cache registers nothing new; a changed evaluation or recipe
    field (another experiment) is a new version."""
    from mlflow import MlflowClient

    recipe, p = regression_run
    first = register(recipe, p["model"], p["eval"], "run-a")
    again = register(recipe, p["model"], p["eval"], "run-b")
    assert first["version"] == again["version"] == "1" and again["registered_before"]
    assert again["alias"] == "champion" and again["metrics"] == first["metrics"] and again["gate"] == first["gate"]
    assert [str(v.version) for v in MlflowClient().search_model_versions(f"name='{recipe.registry.model_name}'")] == ["1"]
    claimed = register(recipe, p["model"], evaluation_claiming(p, tmp_path, "worse", rmse=9.0), "run-c")
    moved = register(recipe.model_copy(update={"registry": recipe.registry.model_copy(
        update={"experiment": "elsewhere"})}), p["model"], p["eval"], "run-d")
    assert (claimed["version"], claimed["alias"], moved["version"]) == ("2", "challenger", "3")
    assert "registered_before" not in claimed and "registered_before" not in moved
