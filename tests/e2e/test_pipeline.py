"""The whole DAG with the real kfp.local runner, a real MLflow server and a real KServe server."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from components.bundle import load_bundle
from components.recipe import Recipe
from components.steps.deploy import stop_local_server
from tests.conftest import ROOT, free_port, start_mlflow_server, stop_process

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mlflow_server(python, tmp_path_factory):
    proc, url = start_mlflow_server(python, tmp_path_factory.mktemp("mlflow"))
    yield url
    stop_process(proc)


def test_default_recipe_end_to_end(mlflow_server, tmp_path, monkeypatch):
    from pipelines.submit import run_local

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PLATFORM_ARTIFACT_ROOT", raising=False)
    name, port = "e2e-housing", free_port()
    recipe = Recipe.from_file(ROOT / "pipelines" / "recipes" / "california-housing.yaml", [
        "data.sample_rows=2000", "train.epochs=15", "model.params.hidden_sizes=[32, 32]", "evaluate.gate=['rmse <= 1.5']",
        f"register.model_name={name}", f"deploy.port={port}"])
    try:
        summary = run_local(recipe)
        assert summary["gate"] == "passed" and "(champion)" in summary["registered"]
        run_dir = Path(summary["outputs"])
        for step in ("load-data", "preprocess-data", "split-data", "train-model", "evaluate-model",
                     "register-model", "deploy-model"):
            assert (run_dir / step / "executor_output.json").is_file(), f"{step} ran"
        assert "| MedInc | numeric |" in (run_dir / "preprocess-data" / "report").read_text()

        # The registered version lives in the MLflow server's artifact store and carries lineage.
        from mlflow import MlflowClient

        version = MlflowClient(mlflow_server).get_model_version_by_alias(name, "champion")
        assert version.tags["recipe_hash"] and version.tags["pipeline_run_id"]

        # What the server answers equals what the bundle predicts on the same test rows.
        served = json.loads((tmp_path / "home" / "serving" / f"{name}.json").read_text())
        bundle = load_bundle(served["model_dir"])
        test = pd.read_parquet(run_dir / "split-data" / "test").head(20)[bundle.feature_names]
        expected = bundle.predict(test)
        v1 = requests.post(summary["served_url"], json={"instances": test.to_dict("records")}, timeout=30)
        np.testing.assert_allclose(v1.json()["predictions"], expected, rtol=1e-6)
        v2_body = {"inputs": [{"name": c, "shape": [len(test)], "datatype": "FP64", "data": test[c].tolist()}
                              for c in test.columns]}
        v2 = requests.post(f"http://127.0.0.1:{port}/v2/models/{name}/infer", json=v2_body, timeout=30)
        np.testing.assert_allclose(v2.json()["outputs"][0]["data"], expected, rtol=1e-6)
        assert summary["sample_answer"]["predictions"] and "curl -s" in summary["curl"]
    finally:
        stop_local_server(name)


def shipped_recipe(recipe_name: str, overrides: list[str], tmp_path, monkeypatch) -> tuple[Recipe, str]:
    """A recipe from pipelines/recipes with its own MLflow (sqlite), platform home and free port."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PLATFORM_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "home"))
    name = f"e2e-{recipe_name}"
    recipe = Recipe.from_file(ROOT / "pipelines" / "recipes" / f"{recipe_name}.yaml",
                              [*overrides, f"register.model_name={name}", f"deploy.port={free_port()}"])
    return recipe, name


def run_and_check_served(recipe: Recipe, tmp_path):
    """The whole DAG with kfp.local; the gate passed and the served bundle is the registered one."""
    from pipelines.submit import run_local

    summary = run_local(recipe)
    assert summary["gate"] == "passed", summary
    served = json.loads((tmp_path / "home" / "serving" / f"{recipe.registry.model_name}.json").read_text())
    return summary, load_bundle(served["model_dir"])


@pytest.mark.parametrize("recipe_name,overrides", [
    ("co2-weekly", ["train.epochs=4"]),
    ("sunspots-active", ["train.epochs=40", "evaluate.gate=['roc_auc >= 0.6']"]),
])
def test_time_series_recipes_end_to_end(recipe_name, overrides, tmp_path, monkeypatch):
    """Time series through the real kfp.local runner, MLflow (sqlite) and a KServe server; run twice,
    the second run reuses the finished steps from kfp.local's cache, and so the version registered."""
    from pipelines.submit import run_local

    recipe, name = shipped_recipe(recipe_name, overrides, tmp_path, monkeypatch)
    try:
        summary, bundle = run_and_check_served(recipe, tmp_path)
        windows = summary["sample_request"]["instances"]
        answer = summary["sample_answer"]["predictions"]
        if recipe.task == "regression":
            np.testing.assert_allclose(answer, bundle.predict(windows), rtol=1e-6)
        else:
            assert [a["label"] for a in answer] == list(bundle.predict(windows))
        assert summary["cached"] == []
        again = run_local(recipe)
        assert set(again["cached"]) == {"resolve", "load", "preprocess", "split", "train", "evaluate"}, again
        assert again["registered"] == summary["registered"] == f"{name} version 1 (champion)"
        assert again["registration"]["registered_before"] and "registered_before" not in summary["registration"]
        assert again["sample_answer"]["predictions"] == summary["sample_answer"]["predictions"]
    finally:
        stop_local_server(name)


@pytest.mark.heavy
@pytest.mark.parametrize("recipe_name,overrides", [
    ("digits-timm", ["train.epochs=3", "evaluate.gate=['accuracy >= 0.2']"]),
    ("digits-vit", ["train.epochs=2", "evaluate.gate=['accuracy >= 0.12']"]),
    ("debian-minilm", ["train.epochs=2"]),
    # 16 epochs at 160 px reach map50 ≈ 0.22 on the held-out tiles (chance ≈ 0; 8 epochs at 128 px: 0.0)
    ("trees-yolo", ["train.epochs=16", "image.size=160", "evaluate.gate=['map50 >= 0.05']"]),
])
def test_vision_and_text_recipes_end_to_end(recipe_name, overrides, tmp_path, monkeypatch):
    """Images and texts through the same DAG, served over V1 and V2, with timings in every answer;
    a corrupt image gets a 400 and the server keeps answering."""
    recipe, name = shipped_recipe(recipe_name, overrides, tmp_path, monkeypatch)
    port = recipe.deploy.port
    try:
        summary, bundle = run_and_check_served(recipe, tmp_path)
        instances = summary["sample_request"]["instances"]
        v1 = summary["sample_answer"]
        assert set(v1["timings_ms"]) == {"preprocess", "inference", "postprocess"}
        predictions = v1["predictions"]
        if recipe.task == "detection":
            expected = bundle.predict(instances)
            for got, want in zip(predictions, expected):
                assert got["labels"] == want["labels"]
                np.testing.assert_allclose(got["boxes"], want["boxes"], atol=0.01)
        else:
            assert [p["label"] for p in predictions] == list(bundle.predict(instances))
            top5 = predictions[0]["top5"]
            assert len(top5) == min(5, len(bundle.meta.classes)) and top5[0]["label"] == predictions[0]["label"]
            assert all(a["probability"] >= b["probability"] for a, b in zip(top5, top5[1:]))
        field = "text" if recipe.family == "text" else "image"
        v2_body = {"inputs": [{"name": field, "shape": [len(instances)], "datatype": "BYTES",
                               "data": [i[field] for i in instances]}]}
        v2 = requests.post(f"http://127.0.0.1:{port}/v2/models/{name}/infer", json=v2_body, timeout=60)
        assert v2.status_code == 200, v2.text
        assert {"preprocess_ms", "inference_ms", "postprocess_ms"} <= set(v2.json()["parameters"])
        bad = {"instances": [{"b64": "bm90IGFuIGltYWdl"}]} if field == "image" else {"instances": [42]}
        resp = requests.post(summary["served_url"], json=bad, timeout=30)
        assert resp.status_code == 400 and "instance 0" in resp.json()["error"], resp.text
        again = requests.post(summary["served_url"], json={"instances": instances}, timeout=60)
        assert again.status_code == 200
    finally:
        stop_local_server(name)
