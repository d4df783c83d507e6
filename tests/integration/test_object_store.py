"""s3:// and minio:// data URIs against a real S3 server (SeaweedFS) on 127.0.0.1."""
import time

import pandas as pd
import pytest

from components.errors import DataError
from components.steps.load import load
from components.storage import ObjectStoreError, object_store, upload, with_retries
from tests.conftest import DATA, make_recipe

pytestmark = pytest.mark.integration


def _recipe(uri):
    return make_recipe("classification", data={"uri": uri, "target": "diagnosis"})


def test_load_reads_an_object_a_prefix_and_a_glob(s3_env, tmp_path):
    frame = pd.read_csv(DATA / "breast_cancer.csv")
    parts = tmp_path / "parts"
    parts.mkdir()
    frame.iloc[:300].to_csv(parts / "part-1.csv", index=False)
    frame.iloc[300:].to_csv(parts / "part-2.csv", index=False)
    upload(DATA / "breast_cancer.csv", "s3://raw/cancer/all.csv")
    upload(parts, "minio://raw/cancer/parts")
    for uri in ("s3://raw/cancer/all.csv", "minio://raw/cancer/parts", "s3://raw/cancer/parts/part-*.csv"):
        info = load(_recipe(uri), tmp_path / "out.parquet")
        assert info["rows"] == len(frame), uri
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out.parquet"), frame, check_dtype=False)
    assert len(info["files"]) == 2


def test_image_dataset_from_a_prefix_and_an_archive_in_the_store(s3_env, tmp_path):
    import shutil

    from components.tasks.images import read_dataset

    upload(DATA / "trees", "s3://raw/trees")
    archive = shutil.make_archive(str(tmp_path / "digits"), "gztar", DATA, "digits")
    upload(archive, "s3://raw/digits.tar.gz")
    trees, classes, layout = read_dataset("s3://raw/trees")
    assert (layout, classes, len(trees)) == ("yolo", ["tree"], len(list((DATA / "trees" / "images").iterdir())))
    digits, classes, layout = read_dataset("s3://raw/digits.tar.gz")
    assert (layout, classes, len(digits)) == ("imagefolder", [str(i) for i in range(10)], 600)


def test_missing_objects_and_buckets_are_named(s3_env, tmp_path):
    upload(DATA / "wine.csv", "s3://raw/wine.csv")
    with pytest.raises(DataError, match="nothing found at s3://raw/nope.csv"):
        load(_recipe("s3://raw/nope.csv"), tmp_path / "out.parquet")
    with pytest.raises(DataError, match="NoSuchBucket"):
        load(_recipe("s3://no-such-bucket/x.csv"), tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_no_configuration_is_a_clear_error(monkeypatch):
    for key in ("S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ObjectStoreError, match="no object store is configured: set S3_ENDPOINT_URL"):
        object_store()


def test_unreachable_store_retries_with_backoff_then_fails(monkeypatch, tmp_path):
    from tests.conftest import free_port

    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    client = object_store()
    client._http.connection_pool_kw["retries"] = 0  # count our retries, not urllib3's
    calls = []
    start = time.monotonic()
    with pytest.raises(ObjectStoreError, match="unreachable while listing after 3 attempts"):
        with_retries(lambda: calls.append(1) or client.bucket_exists("raw"), "listing", attempts=3, base_delay=0.1)
    assert len(calls) == 3 and time.monotonic() - start >= 0.3  # waited 0.1 + 0.2
