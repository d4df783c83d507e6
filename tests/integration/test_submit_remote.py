"""`submit.py --host`: local data is uploaded to the object store, then a run is created through the
KFP REST API, here answered by a small server on 127.0.0.1 that records what it is asked (and
with which credentials), in single-user or multi-user mode."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from components.recipe import Recipe
from components.storage import object_store
from pipelines.submit import main as submit_main, stage_data
from tests.conftest import ROOT

REGISTRY = ["--image-registry", "registry.local/ml", "--image-tag", "v7"]

pytestmark = pytest.mark.integration


@pytest.fixture()
def kfp_api(monkeypatch):
    calls, mode = [], {"multi_user": False}
    for key in ("KF_PIPELINES_SA_TOKEN_PATH", "KF_PIPELINES_TOKEN", "KF_PIPELINES_COOKIE", "PLATFORM_IMAGE_REGISTRY"):
        monkeypatch.delenv(key, raising=False)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _auth(self):
            return {"authorization": self.headers.get("Authorization"), "cookie": self.headers.get("Cookie")}

        def do_GET(self):
            calls.append(("GET", self.path, None, self._auth()))
            if self.path.startswith("/apis/v2beta1/healthz"):
                return self._answer({"multi_user": mode["multi_user"]})
            if self.path.startswith("/apis/v2beta1/runs/run-1"):  # what the run looks like at each poll
                states = mode.setdefault("run_states", [("RUNNING", {})])
                state, tasks = states.pop(0) if len(states) > 1 else states[0]
                return self._answer({"run_id": "run-1", "state": state, "run_details": {"task_details": [
                    {"display_name": name, "state": s} for name, s in tasks.items()]}})
            return self._answer({"experiments": [], "total_size": 0})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            calls.append(("POST", self.path, body, self._auth()))
            if self.path.startswith("/apis/v2beta1/experiments"):
                return self._answer({"experiment_id": "exp-1", "display_name": body["display_name"]})
            return self._answer({"run_id": "run-1", "experiment_id": "exp-1", "display_name": body["display_name"],
                                 "state": "PENDING"})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", calls, mode
    server.shutdown()


def test_host_submission_uploads_data_and_creates_a_run(kfp_api, s3_env, capsys):
    host, calls, _ = kfp_api
    code = submit_main(["--recipe", "pipelines/recipes/wine.yaml", "--host", host, "--experiment", "wine-exp",
                        "--set", "split.seed=7", "--pipeline-root", "minio://team-bucket/runs", *REGISTRY])
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
    recipe = json.loads(spec_params["recipe_json"]["defaultValue"])
    assert recipe["split"]["seed"] == 7
    assert recipe["deploy"]["target"] == "kserve" and recipe["deploy"]["namespace"] is None, "served in the run's namespace"
    # the configured images, not the placeholders; resources and retries as compiled for a cluster
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {f"registry.local/ml/{i}:v7" for i in ("data", "train", "registry", "deploy")}
    assert all(e["container"]["resources"]["resourceMemoryLimit"] for e in spec["deploymentSpec"]["executors"].values())
    assert spec["root"]["dag"]["tasks"]["load-data"]["retryPolicy"]["maxRetryCount"] == 3


def test_without_an_image_registry_nothing_is_uploaded_or_submitted(kfp_api, s3_env, capsys):
    host, calls, _ = kfp_api
    assert submit_main(["--recipe", "pipelines/recipes/wine.yaml", "--host", host]) == 2
    err = capsys.readouterr().err
    assert "no image registry is configured" in err and "--image-registry" in err and "PLATFORM_IMAGE_REGISTRY" in err
    assert calls == [], "refused before talking to KFP"


def test_image_registry_and_tag_from_the_environment(kfp_api, s3_env, monkeypatch, capsys):
    host, calls, _ = kfp_api
    monkeypatch.setenv("PLATFORM_IMAGE_REGISTRY", "registry.example/team")
    monkeypatch.setenv("PLATFORM_IMAGE_TAG", "2026.11")
    assert submit_main(["--recipe", "pipelines/recipes/wine.yaml", "--host", host]) == 0
    run = next(c for c in calls if c[0] == "POST" and c[1].startswith("/apis/v2beta1/runs"))[2]
    images = {e["container"]["image"] for e in run["pipeline_spec"]["pipeline_spec"]["deploymentSpec"]["executors"].values()}
    assert images == {f"registry.example/team/{i}:2026.11" for i in ("data", "train", "registry", "deploy")}


def test_bearer_token_from_the_token_file_on_every_call(kfp_api, s3_env, tmp_path, monkeypatch):
    host, calls, _ = kfp_api
    token = tmp_path / "token"
    token.write_text("sa-token-123\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    monkeypatch.setenv("KF_PIPELINES_TOKEN", "not-this-one")
    assert submit_main(["--recipe", "pipelines/recipes/wine.yaml", "--host", host, *REGISTRY]) == 0
    assert len(calls) >= 3 and {c[3]["authorization"] for c in calls} == {"Bearer sa-token-123"}


def test_existing_token_and_session_cookie(kfp_api, s3_env, monkeypatch):
    host, calls, _ = kfp_api
    monkeypatch.setenv("KF_PIPELINES_TOKEN", "user-token-456")
    monkeypatch.setenv("KF_PIPELINES_COOKIE", "oauth2_proxy_kubeflow=session-789")
    assert submit_main(["--recipe", "pipelines/recipes/wine.yaml", "--host", host, *REGISTRY]) == 0
    assert {c[3]["authorization"] for c in calls} == {"Bearer user-token-456"}
    assert {c[3]["cookie"] for c in calls} == {"oauth2_proxy_kubeflow=session-789"}


def test_a_missing_token_file_is_named(kfp_api, s3_env, tmp_path, capsys):
    host, calls, _ = kfp_api
    missing = tmp_path / "no-token"
    assert submit_main(["--recipe", "pipelines/recipes/wine.yaml", "--host", host, "--token-path", str(missing),
                        *REGISTRY]) == 2
    assert f"the token file {missing} does not exist" in capsys.readouterr().err and calls == []


def test_multi_user_needs_a_namespace_and_the_run_lands_there(kfp_api, s3_env, capsys):
    host, calls, mode = kfp_api
    mode["multi_user"] = True
    assert submit_main(["--recipe", "pipelines/recipes/wine.yaml", "--host", host, *REGISTRY]) == 2
    assert "multi-user Kubeflow: pass --namespace" in capsys.readouterr().err
    assert not any(c[0] == "POST" for c in calls), "nothing created"
    assert submit_main(["--recipe", "pipelines/recipes/wine.yaml", "--host", host, "--namespace", "team-a",
                        *REGISTRY]) == 0
    experiment = next(c for c in calls if c[0] == "POST" and "experiments" in c[1])[2]
    assert experiment["namespace"] == "team-a"
    listed = [c[1] for c in calls if c[0] == "GET" and "experiments" in c[1]]
    assert listed and all("namespace=team-a" in path for path in listed), listed


def test_host_submission_without_object_store_says_so(kfp_api, monkeypatch, capsys):
    for key in ("S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"):
        monkeypatch.delenv(key, raising=False)
    assert submit_main(["--recipe", "pipelines/recipes/wine.yaml", "--host", kfp_api[0], *REGISTRY]) == 2
    assert "must be uploaded first, but no object store is configured" in capsys.readouterr().err


def _objects(uri: str) -> dict[str, int]:
    bucket, key = uri[len("s3://"):].split("/", 1)
    return {o.object_name[len(key) + 1:]: o.size
            for o in object_store().list_objects(bucket, prefix=key + "/", recursive=True)}


def _local_files(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}


@pytest.mark.parametrize("recipe_file, data_dir", [("digits-timm.yaml", "data/digits"), ("trees-yolo.yaml", "data/trees")])
def test_image_directories_are_uploaded_whole(s3_env, recipe_file, data_dir, capsys):
    """An ImageFolder (class folders) and a YOLO dataset (data.yaml, images/, labels/) keep every
    file and their layout under one prefix, and the recipe points at that prefix."""
    staged = stage_data(Recipe.from_file(ROOT / "pipelines" / "recipes" / recipe_file))
    uri = staged.data.uri
    assert uri.startswith("s3://kfp-ml-platform-data/") and uri.endswith("/" + Path(data_dir).name)
    local = _local_files(ROOT / data_dir)
    assert len(local) > 100 and _objects(uri) == local, "every file, same relative path and size"
    assert f"uploaded {len(local)} local file(s) to {uri}" in capsys.readouterr().out
    again = stage_data(Recipe.from_file(ROOT / "pipelines" / "recipes" / recipe_file))
    assert again.data.uri == uri, "the same data goes to the same prefix"


def test_a_staged_yolo_dataset_loads_from_the_object_store(s3_env, tmp_path):
    from components.steps.load import load

    staged = stage_data(Recipe.from_file(ROOT / "pipelines" / "recipes" / "trees-yolo.yaml"))
    out = tmp_path / "raw.parquet"
    load(staged, out)
    import pandas as pd

    table = pd.read_parquet(out)
    images = [p for p in (ROOT / "data" / "trees" / "images").iterdir() if p.is_file()]
    assert len(table) == len(images) > 100


def test_wait_follows_the_run_step_by_step_and_status_reports_it(kfp_api, s3_env, capsys):
    host, calls, mode = kfp_api
    mode["run_states"] = [("RUNNING", {"root-driver": "SUCCEEDED", "load": "RUNNING"}),
                          ("RUNNING", {"load": "SUCCEEDED", "preprocess": "RUNNING"}),
                          ("FAILED", {"load": "SUCCEEDED", "preprocess": "FAILED"})]
    code = submit_main(["--recipe", "pipelines/recipes/wine.yaml", "--host", host, *REGISTRY, "--wait",
                        "--poll-interval", "0.01"])
    out = capsys.readouterr().out
    assert code == 1, out
    lines = [line.strip() for line in out.splitlines()]
    assert lines[-4:] == ["load         succeeded", "preprocess   running", "preprocess   failed", "run run-1 FAILED"]
    assert "root-driver" not in out and lines.count("load         running") == 1

    assert submit_main(["status", "run-1", "--host", host]) == 0
    assert capsys.readouterr().out.splitlines() == ["run run-1: FAILED", "  load         SUCCEEDED",
                                                    "  preprocess   FAILED"]
