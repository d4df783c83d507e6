"""A registered bundle changed in the store after registration is refused before anything in it runs.

Real MLflow (sqlite store, local artifact directory); the attacker's change is made to the stored
files themselves, as someone with write access to the object store would.
"""
import pickle

import mlflow.artifacts
import pytest
from mlflow import MlflowClient

from components.model_source import DIGEST_TAG, MANIFEST_FILE, BundleIntegrityError, fetch_registered
from components.steps.register import register
from tests.conftest import make_recipe

pytestmark = pytest.mark.integration
SWAPPED = "artifacts/bundle/transform.joblib"


class Payload:
    """What an attacker puts in transform.joblib: unpickling it creates a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def registered(regression_run, mlflow_sqlite):
    recipe, p = regression_run
    version = register(recipe, p["model"], p["eval"], "integrity-run")["version"]
    return recipe.registry.model_name, version


@pytest.fixture
def tampered(registered, tmp_path):
    name, version = registered
    (stored,) = (tmp_path / "artifacts").rglob(SWAPPED)
    marker = tmp_path / "pwned"
    stored.write_bytes(pickle.dumps(Payload(marker)))
    return name, version, marker


def test_register_records_the_digest_and_the_manifest(registered, tmp_path):
    name, version = registered
    tag = MlflowClient().get_model_version(name, version).tags[DIGEST_TAG]
    local, _, _ = fetch_registered(f"models:/{name}@champion", "test", tmp_path / "clean")
    assert len(tag) == 64 and (local / MANIFEST_FILE).is_file() and (local / SWAPPED).is_file()


def test_the_untampered_version_is_served(registered, tmp_path):
    from serving.__main__ import _local_model_dir
    from serving.predictor import BundlePredictor

    name, version = registered
    assert BundlePredictor(name, _local_model_dir(f"models:/{name}/{version}")).load()
    digest = MlflowClient().get_model_version(name, version).tags[DIGEST_TAG]
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(tmp_path / "m"))
    assert BundlePredictor(name, local, expected_digest=digest).load()


def test_fetch_refuses_a_swapped_file_and_names_it(tampered, tmp_path):
    name, version, marker = tampered
    with pytest.raises(BundleIntegrityError, match=f"test: .*not the registered ones: {SWAPPED} was changed"):
        fetch_registered(f"models:/{name}@champion", "test", tmp_path / "dl")
    assert not marker.exists()


def test_the_model_server_refuses_it(tampered, tmp_path):
    from serving.__main__ import _local_model_dir
    from serving.predictor import BundlePredictor

    name, version, marker = tampered
    with pytest.raises(BundleIntegrityError, match=f"--model_dir: .*{SWAPPED} was changed"):
        _local_model_dir(f"models:/{name}/{version}")
    # A bundle handed over as a directory (KServe's /mnt/models, deploy's cache) is checked against
    # --expected_digest when the predictor loads it.
    digest = MlflowClient().get_model_version(name, version).tags[DIGEST_TAG]
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(tmp_path / "m"))
    with pytest.raises(BundleIntegrityError, match=f"model {name}: .*{SWAPPED} was changed"):
        BundlePredictor(name, local, expected_digest=digest).load()
    assert not marker.exists()


def test_fine_tuning_refuses_it(tampered, regression_run, tmp_path):
    from components.steps.train import train

    name, version, marker = tampered
    _, p = regression_run
    recipe = make_recipe(train={"epochs": 1, "init_from": f"models:/{name}/{version}"})
    with pytest.raises(BundleIntegrityError, match=f"train.init_from: .*{SWAPPED} was changed"):
        train(recipe, p["train.parquet"], p["val.parquet"], p["schema.json"], tmp_path / "ft")
    assert not marker.exists()


def test_a_version_without_a_digest_is_refused_unless_allowed(registered, tmp_path, monkeypatch):
    name, version = registered
    MlflowClient().delete_model_version_tag(name, version, DIGEST_TAG)  # as registered before digests existed
    with pytest.raises(BundleIntegrityError, match=f"has no {DIGEST_TAG} tag .*re-register it"):
        fetch_registered(f"models:/{name}/{version}", "test", tmp_path / "a")
    monkeypatch.setenv("PLATFORM_ALLOW_UNVERIFIED_VERSIONS", "true")
    assert (fetch_registered(f"models:/{name}/{version}", "test", tmp_path / "b")[0] / SWAPPED).is_file()
