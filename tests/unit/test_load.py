import pandas as pd
import pytest

from components.errors import DataError
from components.steps.load import load, read_info
from tests.conftest import DATA, make_recipe


def _recipe(uri, **data):
    return make_recipe("classification", data={"uri": str(uri), "target": "diagnosis", **data})


@pytest.fixture()
def frame():
    return pd.read_csv(DATA / "breast_cancer.csv").head(40)


@pytest.mark.parametrize("suffix", ["csv", "json", "parquet", "jsonl"])
def test_formats_load_the_same_table(tmp_path, frame, suffix):
    src = tmp_path / f"data.{suffix}"
    {"csv": lambda: frame.to_csv(src, index=False), "json": lambda: frame.to_json(src, orient="records"),
     "jsonl": lambda: frame.to_json(src, orient="records", lines=True),
     "parquet": lambda: frame.to_parquet(src)}[suffix]()
    info = load(_recipe(src), tmp_path / "out.parquet")
    out = pd.read_parquet(tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(out, frame, check_dtype=False)
    assert info["rows"] == 40 and read_info(tmp_path / "out.parquet")["data_hash"] == info["data_hash"]


def test_glob_concatenates_files_in_order(tmp_path, frame):
    frame.iloc[:25].to_csv(tmp_path / "part-1.csv", index=False)
    frame.iloc[25:].to_csv(tmp_path / "part-2.csv", index=False)
    info = load(_recipe(tmp_path / "part-*.csv"), tmp_path / "out.parquet")
    assert len(info["files"]) == 2
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out.parquet"), frame, check_dtype=False)


def test_sample_rows_is_seeded(tmp_path):
    a = load(_recipe(DATA / "breast_cancer.csv", sample_rows=50), tmp_path / "a.parquet")
    load(_recipe(DATA / "breast_cancer.csv", sample_rows=50), tmp_path / "b.parquet")
    assert a["rows"] == 50
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet"))


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("setup,match", [
    (lambda d: d / "missing.csv", "does not exist"),
    (lambda d: _write(d / "empty.csv", ""), r"empty \(0 bytes\)"),
    (lambda d: _write(d / "header.csv", "a,b\n"), "holds no rows"),
    (lambda d: _write(d / "x.xlsx", "x"), "unsupported file type '.xlsx'"),
    (lambda d: _write(d / "bad.parquet", "not parquet"), "could not be read as parquet"),
    (lambda d: d / "*.nothing", "no file matches"),
])
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, setup, match):
    src = setup(tmp_path)
    with pytest.raises(DataError, match=match):
        load(_recipe(src), tmp_path / "out" / "raw.parquet")
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), "a failed load leaves no file behind"


def test_glob_with_mismatched_columns(tmp_path):
    pd.DataFrame({"a": [1], "diagnosis": ["x"]}).to_csv(tmp_path / "1.csv", index=False)
    pd.DataFrame({"b": [1], "diagnosis": ["x"]}).to_csv(tmp_path / "2.csv", index=False)
    with pytest.raises(DataError, match="expected the same columns"):
        load(_recipe(tmp_path / "*.csv"), tmp_path / "out.parquet")


# --- data that used to crash later or load wrongly (issue 10, item 9) ------------------------

def _table_recipe(uri, **data):
    return make_recipe(data={"uri": str(uri), "target": "y", "sample_rows": None, **data})


def _assert_refused(recipe, tmp_path, match):
    with pytest.raises(DataError, match=match) as info:
        load(recipe, tmp_path / "out" / "raw.parquet")
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), "a refused load leaves no file behind"
    return str(info.value)


def test_duplicate_csv_header_is_refused_not_renamed(tmp_path):
    src = _write(tmp_path / "dup.csv", "a,a,b,y\n1,2,3,4\n5,6,7,8\n")  # pandas would load a, a.1, b, y
    message = _assert_refused(_table_recipe(src), tmp_path, r"dup\.csv: column name\(s\) \['a'\] appear more than once")
    assert "\n" not in message


def test_duplicate_parquet_columns_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "dup.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array([1, 2]), pa.array([3, 4]), pa.array([1.0, 2.0])],
                                        names=["x", "x", "y"]), src)
    _assert_refused(_table_recipe(src), tmp_path, r"dup\.parquet: column name\(s\) \['x'\] appear more than once")


def test_nested_parquet_columns_are_named_with_their_type(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"a": [1, 2, 3], "address": [{"zip": 1}, {"zip": 2}, {"zip": 3}],
                             "tags": [[1], [2, 3], []], "y": [1.0, 2.0, 3.0]}), src)
    _assert_refused(_table_recipe(src), tmp_path,
                    r"nested\.parquet: column\(s\) 'address' \(struct<zip: int64>\), 'tags' \(list<.*int64>\) "
                    r"hold nested values; expected flat columns.*data\.drop_columns")
    info = load(_table_recipe(src, drop_columns=["address", "tags"]), tmp_path / "ok.parquet")
    assert info["rows"] == 3, "nested columns listed in data.drop_columns are allowed"


def test_nested_json_objects_and_mixed_types_are_named(tmp_path):
    src = _write(tmp_path / "nested.json", '[{"a": 1, "meta": {"k": 1}, "y": 1}, {"a": 2, "meta": {"k": 2}, "y": 2}]')
    _assert_refused(_table_recipe(src), tmp_path, r"column\(s\) 'meta' \(struct<k: int64>\) hold nested values")
    src = _write(tmp_path / "mixed.json", '[{"a": 1, "y": 1}, {"a": "x", "y": 2}]')
    _assert_refused(_table_recipe(src), tmp_path, r"mixed\.json: column 'a' mixes int and str values")


@pytest.mark.parametrize("uri,match", [
    ("s3://bucket/x.csv", r"cannot read s3://bucket/x\.csv: no object store is configured: set S3_ENDPOINT_URL.*"
                          r"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    ("minio://bucket/dir/", r"cannot read minio://bucket/dir/: no object store is configured"),
])
def test_object_store_uri_without_a_store_is_named_never_read_locally(tmp_path, monkeypatch, uri, match):
    from components.storage import ObjectStoreError, resolve_data_uri

    for name in ("S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ObjectStoreError, match=match):
        load(_table_recipe(uri), tmp_path / "out" / "raw.parquet")
    assert not (tmp_path / "out").exists()
    assert resolve_data_uri(uri, tmp_path) == uri, "submit must not join an object-store URI to the repo path"
    assert resolve_data_uri("data/x.csv", tmp_path) == str(tmp_path / "data" / "x.csv")


@pytest.mark.parametrize("uri", ["gs://bucket/x.csv", "https://example.com/x.csv", "hdfs://nn/x.csv"])
def test_unsupported_schemes_are_refused_at_validation_and_in_storage(uri):
    from components.recipe import RecipeError
    from components.storage import expand

    with pytest.raises(RecipeError, match=rf"data\.uri: the \w+:// scheme is not supported; expected a local path"):
        _table_recipe(uri)
    with pytest.raises(DataError, match=rf"{uri}: the \w+:// scheme is not supported"):
        expand(uri)
