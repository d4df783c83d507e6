"""MLflow server with artifacts in S3 (SeaweedFS); serving pulls the registered version from s3://
with KServe's own storage code (what the storage initializer does on a cluster), then answers."""
import numpy as np
import pandas as pd
import pytest
import requests

from components.bundle import load_bundle
from components.steps.deploy import champion_version, storage_uri
from components.steps.register import register
from components.storage import object_store
from tests.conftest import S3_KEY, S3_SECRET, free_port, start_mlflow_server, start_process, stop_process, wait_http

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mlflow_s3(python, s3_server, tmp_path_factory):
    home = tmp_path_factory.mktemp("mlflow-s3")
    import os

    creds = {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"S3_ENDPOINT_URL": s3_server, **creds}.items():
            mp.setenv(key, value)
        object_store().make_bucket("mlflow")
        proc, url = start_mlflow_server(python, home, "s3://mlflow/artifacts",
                                        env={**os.environ, "MLFLOW_S3_ENDPOINT_URL": s3_server})
    yield url
    stop_process(proc)


def test_registered_version_lives_in_s3_and_serves_from_there(mlflow_s3, s3_env, regression_run, python,
                                                               tmp_path, monkeypatch, capfd, caplog):
    """Also: the predictor fetches the storage URI itself (allowed: MLflow's bucket), and the
    store's secret key appears in no log of register or the server, even at DEBUG."""
    import logging

    caplog.set_level(logging.DEBUG)
    recipe, p = regression_run
    s3_server = s3_env
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_s3)
    monkeypatch.setenv("PLATFORM_MLFLOW_ARTIFACTS_DESTINATION", "s3://mlflow/artifacts")
    monkeypatch.delenv("PLATFORM_ARTIFACT_ROOT", raising=False)
    register(recipe, p["model"], p["eval"], "s3-run")
    version = champion_version(recipe.registry.model_name)
    uri = storage_uri(recipe.registry.model_name, version.version)
    assert uri.startswith("s3://mlflow/artifacts/")
    bucket, key = uri[len("s3://"):].split("/", 1)
    names = [o.object_name for o in object_store().list_objects(bucket, prefix=key + "/", recursive=True)]
    assert any(n.endswith("MLmodel") for n in names) and any(n.endswith("bundle.json") for n in names)

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_process([python, "-m", "serving", "--model_dir", uri, "--model_name", "housing",
                          "--http_port", str(port), "--log_level", "DEBUG"], log)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/models/housing/ready", proc, 90, log)
        rows = pd.read_parquet(p["test.parquet"]).drop(columns="MedHouseVal").head(4)
        expected = load_bundle(p["model"]).predict(rows)
        v1 = requests.post(f"http://127.0.0.1:{port}/v1/models/housing:predict",
                           json={"instances": rows.to_dict("records")}).json()
        np.testing.assert_allclose(v1["predictions"], expected, rtol=1e-6)
        body = {"inputs": [{"name": c, "shape": [4], "datatype": "FP64", "data": rows[c].tolist()} for c in rows]}
        v2 = requests.post(f"http://127.0.0.1:{port}/v2/models/housing/infer", json=body).json()
        np.testing.assert_allclose(v2["outputs"][0]["data"], expected, rtol=1e-6)
    finally:
        stop_process(proc)
    captured = capfd.readouterr()
    for where, text in (("server log", log.read_text()), ("register's output", captured.out + captured.err),
                        ("log records", caplog.text)):
        assert text.strip() and S3_SECRET not in text, f"the secret key is printed in the {where}"
