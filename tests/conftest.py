"""Shared fixtures: small recipes on the shipped data, trained bundles, local service helpers."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from components.recipe import Recipe
from components.steps.evaluate import evaluate
from components.steps.load import load
from components.steps.preprocess import preprocess
from components.steps.split import split
from components.steps.train import train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


def make_recipe(task: str = "regression", **sections) -> Recipe:
    """A quick recipe on shipped data; keyword sections are merged over the defaults."""
    base = {
        "regression": {"name": "housing-test", "task": "regression",
                       "data": {"uri": str(DATA / "california_housing.parquet"), "target": "MedHouseVal",
                                "sample_rows": 1500},
                       "model": {"name": "mlp", "params": {"hidden_sizes": [32, 32]}},
                       "train": {"epochs": 8, "batch_size": 128},
                       "evaluate": {"gate": ["rmse <= 5"]},
                       "register": {"model_name": "housing-test"}},
        "classification": {"name": "cancer-test", "task": "classification",
                           "data": {"uri": str(DATA / "breast_cancer.csv"), "target": "diagnosis"},
                           "split": {"method": "stratified"},
                           "model": {"name": "mlp", "params": {"hidden_sizes": [16]}},
                           "train": {"epochs": 8, "batch_size": 64},
                           "evaluate": {"gate": ["accuracy >= 0.5"]},
                           "register": {"model_name": "cancer-test"}},
    }[task]
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return Recipe.parse(base)


def run_steps(recipe: Recipe, out: Path) -> dict[str, Path]:
    """load → preprocess → split → train → evaluate as plain functions; returns the artifact paths."""
    p = {name: out / name for name in ("raw.parquet", "clean.parquet", "schema.json", "report.md", "train.parquet",
                                       "val.parquet", "test.parquet", "model", "curve.html", "eval", "report.html")}
    load(recipe, p["raw.parquet"])
    preprocess(recipe, p["raw.parquet"], p["clean.parquet"], p["schema.json"], p["report.md"])
    split(recipe, p["clean.parquet"], p["train.parquet"], p["val.parquet"], p["test.parquet"])
    train(recipe, p["train.parquet"], p["val.parquet"], p["schema.json"], p["model"], p["curve.html"])
    evaluate(recipe, p["model"], p["test.parquet"], p["eval"], p["report.html"])
    return p


@pytest.fixture(scope="session")
def regression_run(tmp_path_factory) -> tuple[Recipe, dict[str, Path]]:
    recipe = make_recipe("regression")
    return recipe, run_steps(recipe, tmp_path_factory.mktemp("regression"))


@pytest.fixture(scope="session")
def classification_run(tmp_path_factory) -> tuple[Recipe, dict[str, Path]]:
    recipe = make_recipe("classification")
    return recipe, run_steps(recipe, tmp_path_factory.mktemp("classification"))


@pytest.fixture()
def mlflow_sqlite(tmp_path, monkeypatch) -> str:
    """MLflow with a sqlite store and local artifacts, private to one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("PLATFORM_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "home"))
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) before {url} answered:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise TimeoutError(f"{url} did not answer within {timeout}s:\n{log.read_text()[-3000:]}")


def start_process(cmd: list[str], log: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=ROOT, **kwargs)


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def start_mlflow_server(python: str, home: Path, destination: str | None = None, *extra: str,
                        env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """A real ``mlflow server`` on a free loopback port (sqlite store); returns the process and its URL."""
    port = free_port()
    log = home / "server.log"
    proc = start_process([python, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                          "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
                          "--artifacts-destination", destination or str(home / "artifacts"), "--workers", "1",
                          *extra], log, env=env)
    wait_http(f"http://127.0.0.1:{port}/health", proc, 120, log)
    return proc, f"http://127.0.0.1:{port}"


def served_answer(response) -> dict:
    """What a model server answered and which version answered it (its timings differ call to call)."""
    body = response.json()
    return {"predictions": body["predictions"], "model_version": body.get("model_version")}


def evaluation_claiming(p: dict, tmp_path: Path, name: str, **changes) -> Path:
    """A copy of an evaluation directory whose evaluation.json claims other metrics or verdict
    (``rmse=0.9``, ``verdict="failed"``): decides champion or challenger at registration."""
    import json
    import shutil

    out = tmp_path / name
    shutil.copytree(p["eval"], out)
    data = json.loads((out / "evaluation.json").read_text())
    data["metrics"].update({k: v for k, v in changes.items() if k != "verdict"})
    data["verdict"] = changes.get("verdict", data["verdict"])
    (out / "evaluation.json").write_text(json.dumps(data))
    return out


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable


S3_KEY, S3_SECRET = "platform-test", "platform-test-secret"  # a throwaway store's credentials


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server on 127.0.0.1 standing in for MinIO: SeaweedFS's ``weed mini``."""
    import json
    import shutil

    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    home = tmp_path_factory.mktemp("seaweedfs")
    (home / "s3.json").write_text(json.dumps({"identities": [{
        "name": "admin", "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    port = free_port()
    log = home / "weed.log"
    proc = start_process([weed, "mini", f"-dir={home / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                          f"-s3.port={port}", f"-s3.config={home / 's3.json'}", "-webdav=false", "-admin.ui=false",
                          "-master.telemetry=false"], log)
    (home / "data").mkdir(exist_ok=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"weed exited: {log.read_text()[-2000:]}")
            time.sleep(0.3)
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)


@pytest.fixture()
def s3_env(s3_server, monkeypatch, tmp_path):
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "home"))
    return s3_server
