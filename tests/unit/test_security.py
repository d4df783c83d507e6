"""Security rules that need no service: where models may come from, and secrets kept out of logs."""
import pytest

from components.model_source import (BundleIntegrityError, check_model_source, file_manifest, manifest_digest,
                                     verify_bundle, write_manifest)
from components.settings import redact_uri
from tests.conftest import make_recipe, run_steps


@pytest.mark.parametrize("uri", ["models:/housing@champion", "mlflow-artifacts:/1/models/m-1/artifacts",
                                 "/mnt/models", "relative/bundle", "file:///tmp/model.pt",
                                 "s3://mlflow-artifacts/1/models/m-1/artifacts", "minio://team-models/x.pt"])
def test_configured_sources_are_allowed(uri, monkeypatch):
    monkeypatch.setenv("PLATFORM_MODEL_BUCKETS", "team-models")
    monkeypatch.setenv("PLATFORM_MLFLOW_ARTIFACTS_DESTINATION", "s3://mlflow-artifacts/")
    assert check_model_source(uri, "test") == uri


@pytest.mark.parametrize("uri", ["https://example.com/model.pt", "s3://someone-elses-bucket/model.pt",
                                 "gs://bucket/model", "hf://org/model"])
def test_other_sources_are_refused_with_what_is_allowed(uri, monkeypatch):
    monkeypatch.setenv("PLATFORM_MODEL_BUCKETS", "team-models")
    monkeypatch.delenv("PLATFORM_MLFLOW_ARTIFACTS_DESTINATION", raising=False)
    with pytest.raises(PermissionError, match=r"refusing to load a model from .*s3://team-models/"):
        check_model_source(uri, "test")


@pytest.mark.parametrize("uri", [
    "mlflow-artifacts://any-host:5000/x", "models://any-host/x",            # another server's authority
    "s3://team-models/../other-bucket/m", "s3://team-models/a/%2e%2e/b/m",  # traversal, plain or encoded
    "s3://team-models/a\\..\\b", "s3://team-models/", "s3:///team-models/x", "models:/a/../../b",
    "s3://team-models/a/%252e%252e/b", "file://evil-host/tmp/model.pt",
])
def test_bypasses_are_refused(uri, monkeypatch):
    monkeypatch.setenv("PLATFORM_MODEL_BUCKETS", "team-models")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.kubeflow:5000")
    with pytest.raises(PermissionError, match="refusing to load a model from"):
        check_model_source(uri, "test")


def test_only_the_configured_tracking_server_may_be_named(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.kubeflow:5000")
    assert check_model_source("models://mlflow.kubeflow:5000/housing/1", "t")
    assert check_model_source("mlflow-artifacts://mlflow.kubeflow:5000/1/models/m-1/artifacts", "t")


def test_a_symlink_cannot_lead_out_of_the_model_roots(tmp_path, monkeypatch):
    root, outside = tmp_path / "models", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "ok").mkdir()
    (root / "escape").symlink_to(outside)
    monkeypatch.setenv("PLATFORM_MODEL_ROOTS", str(root))
    assert check_model_source(str(root / "ok"), "t")
    for bad in (root / "escape", root / "ok" / ".." / ".." / "elsewhere"):
        with pytest.raises(PermissionError, match=r"a local path under"):
            check_model_source(str(bad), "t")


@pytest.mark.parametrize("uri", ["models://evil@mlflow.kubeflow:5000/housing/1",
                                 "mlflow-artifacts://mlflow.kubeflow:5000/1/x?redirect=evil", "models:/housing/1#x"])
def test_the_tracking_server_named_with_extras_is_refused(uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:s3cr3t@mlflow.kubeflow:5000")
    with pytest.raises(PermissionError, match="refusing") as refused:
        check_model_source(uri, "t")
    assert "s3cr3t" not in str(refused.value), "the allowed list shows the tracking host, never its password"


def _bundle(tmp_path):
    root = tmp_path / "bundle"
    (root / "artifacts" / "bundle").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}")
    (root / "artifacts" / "bundle" / "transform.joblib").write_bytes(b"fitted")
    manifest = file_manifest(root)
    write_manifest(manifest, root)  # as register logs it beside the files
    return root, manifest_digest(manifest)


def test_a_bundle_as_registered_passes(tmp_path):
    root, digest = _bundle(tmp_path)
    (root / "registered_model_meta").write_text("model_name: x")  # MLflow adds it to every download
    verify_bundle(root, digest, "t")


@pytest.mark.parametrize("change, named", [
    (lambda r: (r / "artifacts/bundle/transform.joblib").write_bytes(b"evil"), "transform.joblib was changed"),
    (lambda r: (r / "artifacts/bundle/transform.joblib").unlink(), "transform.joblib is missing"),
    (lambda r: (r / "artifacts/bundle/extra.pkl").write_bytes(b"x"), "extra.pkl was not registered"),
])
def test_a_changed_bundle_is_refused_naming_the_file(tmp_path, change, named):
    root, digest = _bundle(tmp_path)
    change(root)
    with pytest.raises(BundleIntegrityError, match=f"t: the model files in .* are not the registered ones: .*{named}"):
        verify_bundle(root, digest, "t")


def test_a_rewritten_manifest_does_not_make_a_changed_bundle_pass(tmp_path):
    root, digest = _bundle(tmp_path)
    (root / "artifacts/bundle/transform.joblib").write_bytes(b"evil")
    write_manifest(file_manifest(root), root)  # the attacker updates the manifest file too
    with pytest.raises(BundleIntegrityError, match="does not match the registered digest either"):
        verify_bundle(root, digest, "t")


def test_a_symlink_out_of_the_bundle_is_refused(tmp_path):
    root, digest = _bundle(tmp_path)
    outside = tmp_path / "outside.joblib"
    outside.write_bytes(b"fitted")  # same bytes: still refused, the link itself is the escape
    (root / "artifacts/bundle/transform.joblib").unlink()
    (root / "artifacts/bundle/transform.joblib").symlink_to(outside)
    with pytest.raises(BundleIntegrityError, match="symlink .* outside the bundle"):
        verify_bundle(root, digest, "t")


def test_the_predictor_checks_a_bundle_dir_before_unpickling(tmp_path):
    from serving.predictor import BundlePredictor

    root, digest = _bundle(tmp_path)
    (root / "artifacts/bundle/transform.joblib").write_bytes(b"evil")
    with pytest.raises(BundleIntegrityError, match="model m: .*transform.joblib was changed"):
        BundlePredictor("m", str(root), expected_digest=digest).load()


def test_fine_tuning_refuses_weights_from_an_unconfigured_place(tmp_path):
    recipe = make_recipe(train={"epochs": 1, "init_from": "https://example.com/weights.pt"})
    with pytest.raises(PermissionError, match="train.init_from: refusing"):
        run_steps(recipe, tmp_path)


def test_serving_refuses_a_model_dir_outside_the_configured_stores():
    from serving.__main__ import _local_model_dir

    with pytest.raises(PermissionError, match="--model_dir: refusing"):
        _local_model_dir("https://example.com/bundle.tar.gz")


def test_uris_printed_by_submit_hide_credentials():
    assert redact_uri("https://alice:s3cr3t@mlflow.example.com/path") == "https://***@mlflow.example.com/path"
    assert redact_uri("postgresql://u:p@db:5432/mlflow") == "postgresql://***@db:5432/mlflow"
    assert redact_uri("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
