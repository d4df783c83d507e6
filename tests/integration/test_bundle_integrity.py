"""A registered bundle changed in the store after registration is refused before anything in it runs."""
import pickle

import pytest

from components.model_source import DIGEST_TAG, BundleIntegrityError, fetch_registered
from components.steps.register import register
from tests.conftest import make_recipe, run_steps

pytestmark = pytest.mark.integration


class Payload:
    """What an attacker puts in transform.joblib: unpickling it would create a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def tampered(regression_run, mlflow_sqlite, tmp_path):
    recipe, p = regression_run
    version = register(recipe, p["model"], p["eval"], "integrity-run")["version"]
    name = recipe.registry.model_name
    clean, _, _ = fetch_registered(f"models:/{name}/{version}", "test", tmp_path / "clean")
    assert (clean / "artifacts" / "bundle" / "transform.joblib").is_file(), "the untampered version loads"
    (stored,) = (tmp_path / "artifacts").rglob("artifacts/bundle/transform.joblib")
    marker = tmp_path / "pwned"
    stored.write_bytes(pickle.dumps(Payload(marker)))
    return recipe, name, version, marker


def test_fetch_refuses_a_swapped_file_and_names_it(tampered, tmp_path):
    _, name, version, marker = tampered
    with pytest.raises(BundleIntegrityError, match=r"not the registered ones.*artifacts/bundle/transform.joblib"):
        fetch_registered(f"models:/{name}@champion", "test", tmp_path / "dl")
    assert not marker.exists()


def test_the_model_server_refuses_it(tampered, tmp_path):
    from serving.__main__ import _local_model_dir

    _, name, version, marker = tampered
    with pytest.raises(BundleIntegrityError, match="--model_dir"):
        _local_model_dir(f"models:/{name}/{version}")
    # A bundle handed over as a directory (KServe's /mnt/models) is checked against --expected_digest.
    from mlflow import MlflowClient
    import mlflow.artifacts

    digest = MlflowClient().get_model_version(name, version).tags[DIGEST_TAG]
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(tmp_path / "m"))
    with pytest.raises(BundleIntegrityError, match="transform.joblib|not the registered ones"):
        _local_model_dir(local, digest)
    assert not marker.exists()


def test_fine_tuning_refuses_it(tampered, tmp_path):
    _, name, version, marker = tampered
    recipe = make_recipe(train={"epochs": 1, "init_from": f"models:/{name}/{version}"})
    with pytest.raises(BundleIntegrityError, match="train.init_from"):
        run_steps(recipe, tmp_path / "ft")
    assert not marker.exists()
