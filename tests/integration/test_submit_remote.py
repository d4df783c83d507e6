"""`submit.py --host`: local data is uploaded to the object store, then a run is created through the
KFP REST API, here answered by a small server on 127.0.0.1 that records what it is asked."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from components.storage import object_store
from pipelines.submit import main as submit_main

pytestmark = pytest.mark.integration


@pytest.fixture()
def kfp_api():
    calls = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            calls.append(("GET", self.path, None))
            if self.path.startswith("/apis/v2beta1/healthz"):
                return self._answer({"multi_user": False})
            return self._answer({"experiments": [], "total_size": 0})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            calls.append(("POST", self.path, body))
            if self.path.startswith("/apis/v2beta1/experiments"):
                return self._answer({"experiment_id": "exp-1", "display_name": body["display_name"]})
            return self._answer({"run_id": "run-1", "experiment_id": "exp-1", "display_name": body["display_name"],
                                 "state": "PENDING"})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", calls
    server.shutdown()


def test_host_submission_uploads_data_and_creates_a_run(kfp_api, s3_env, capsys):
    host, calls = kfp_api
    code = submit_main(["--recipe", "pipelines/recipes/wine.yaml", "--host", host, "--experiment", "wine-exp",
                        "--set", "train.epochs=3", "--pipeline-root", "minio://team-bucket/runs"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"{host}/#/runs/details/run-1" in out
    uploaded = next(line.split(" to ")[1] for line in out.splitlines() if line.startswith("uploaded"))
    bucket, key = uploaded[len("s3://"):].split("/", 1)
    assert object_store().stat_object(bucket, key).size > 0, "the data is in the object store"

    experiment = next(c for c in calls if c[0] == "POST" and "experiments" in c[1])
    assert experiment[2]["display_name"] == "wine-exp"
    run = next(c for c in calls if c[0] == "POST" and c[1].startswith("/apis/v2beta1/runs"))[2]
    assert run["experiment_id"] == "exp-1"
    assert run["runtime_config"]["pipeline_root"] == "minio://team-bucket/runs"
    params = run["runtime_config"]["parameters"]
    assert params == {} or "data_uri" not in params, "knob defaults live in the compiled spec"
    spec = run["pipeline_spec"]["pipeline_spec"]
    assert "exec-train-model" in run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    spec_params = spec["root"]["inputDefinitions"]["parameters"]
    assert spec_params["data_uri"]["defaultValue"] == uploaded
    assert json.loads(spec_params["recipe_json"]["defaultValue"])["train"]["epochs"] == 3


def test_host_submission_without_object_store_says_so(kfp_api, monkeypatch, capsys):
    for key in ("S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"):
        monkeypatch.delenv(key, raising=False)
    assert submit_main(["--recipe", "pipelines/recipes/wine.yaml", "--host", kfp_api[0]]) == 2
    assert "must be uploaded first, but no object store is configured" in capsys.readouterr().err
