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


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable
