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
