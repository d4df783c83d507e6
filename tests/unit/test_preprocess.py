import json

import numpy as np
import pandas as pd
import pytest

from components.errors import DataError
from components.steps.load import load
from components.steps.preprocess import preprocess
from tests.conftest import make_recipe


def run(tmp_path, frame, task="regression", data=None, **sections):
    src = tmp_path / "in.csv"
    frame.to_csv(src, index=False)
    recipe = make_recipe(task, data={"uri": str(src), "target": "y", "sample_rows": None, **(data or {})}, **sections)
    load(recipe, tmp_path / "raw.parquet")
    out = [tmp_path / n for n in ("clean.parquet", "schema.json", "report.md")]
    schema = preprocess(recipe, tmp_path / "raw.parquet", *out)
    return pd.read_parquet(out[0]), schema, out


def test_coerces_dtypes_detects_categoricals_and_drops_duplicates(tmp_path):
    frame = pd.DataFrame({"num_as_text": ["1", "2", "3", "3", "5"], "color": ["r", "g", "b", "b", "r"],
                          "x": [0.1, 0.2, np.nan, np.nan, 0.5], "y": [1.0, 2.0, 3.0, 3.0, 5.0]})
    clean, schema, (_, schema_file, report) = run(tmp_path, frame)
    assert len(clean) == 4 and schema["rows"]["duplicates_dropped"] == 1
    kinds = {f["name"]: f["kind"] for f in schema["features"]}
    assert kinds == {"num_as_text": "numeric", "color": "categorical", "x": "numeric"}
    assert pd.api.types.is_numeric_dtype(clean["num_as_text"])
    assert json.loads(schema_file.read_text())["features"][2]["missing"] == 1
    assert "| color | categorical |" in report.read_text()


def test_missing_strategies_global_and_per_column(tmp_path):
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "b": [np.nan, 1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0, 4.0]})
    clean, schema, _ = run(tmp_path, frame, preprocess={"missing": "mean", "missing_per_column": {"a": "drop"}})
    assert len(clean) == 3 and schema["rows"]["missing_feature_dropped"] == 1
    assert {f["name"]: f["imputation"] for f in schema["features"]} == {"a": "drop", "b": "mean"}


def test_rows_without_target_are_dropped_and_counted(tmp_path):
    frame = pd.DataFrame({"a": [1, 2, 3], "y": [1.0, np.nan, 3.0]})
    clean, schema, _ = run(tmp_path, frame)
    assert len(clean) == 2 and schema["rows"]["missing_target_dropped"] == 1


def test_classification_target_becomes_class_names(tmp_path):
    frame = pd.DataFrame({"a": range(6), "y": [0, 1, 2, 0, 1, 2]})
    clean, schema, _ = run(tmp_path, frame, task="classification", split={"method": "random"})
    assert schema["classes"] == ["0", "1", "2"] and clean["y"].tolist()[:3] == ["0", "1", "2"]


@pytest.mark.parametrize("frame,task,match", [
    (pd.DataFrame({"a": [1, 2], "z": [1, 2]}), "regression", r"target column 'y' not found; columns are \['a', 'z'\]"),
    (pd.DataFrame({"a": [1, 2], "b": [np.nan, np.nan], "y": [1, 2]}), "regression", r"column 'b' has no values"),
    (pd.DataFrame({"a": [1, 2], "y": ["cheap", "dear"]}), "regression",
     r"target 'y' must be numeric for regression; found values like 'cheap'"),
    (pd.DataFrame({"a": [1, 2, 3], "y": ["cat", "cat", "cat"]}), "classification", r"single class \['cat'\]"),
    (pd.DataFrame({"y": [1.0, 2.0]}), "regression", "no feature columns"),
])
def test_bad_tables_fail_with_a_clear_error_and_no_output(tmp_path, frame, task, match):
    with pytest.raises(DataError, match=match):
        run(tmp_path, frame, task=task, **({"split": {"method": "random"}} if task == "classification" else {}))
    assert not (tmp_path / "clean.parquet").exists() and not (tmp_path / "schema.json").exists()


def test_empty_table_after_load(tmp_path):
    from components.tasks.tabular import clean_table

    with pytest.raises(DataError, match="the table is empty"):
        clean_table(pd.DataFrame({"a": [], "y": []}), make_recipe(data={"target": "y"}), "t.csv")


def test_recipe_columns_must_exist(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "y": [1.0, 2.0]})
    with pytest.raises(DataError, match=r"names columns \['ghost'\]"):
        run(tmp_path, frame, data={"drop_columns": ["ghost"]})


# --- non-finite targets (issue 10, item 9) ----------------------------------------------------

def test_infinite_and_missing_targets_are_dropped_counted_and_reported(tmp_path, caplog):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0], "y": [1.0, np.inf, -np.inf, np.nan, 5.0]})
    with caplog.at_level("WARNING"):
        clean, schema, (_, schema_file, report) = run(tmp_path, frame)
    assert clean["y"].tolist() == [1.0, 5.0] and np.isfinite(clean["y"]).all()
    rows = json.loads(schema_file.read_text())["rows"]
    assert rows["infinite_target_dropped"] == 2 and rows["missing_target_dropped"] == 1
    assert "infinite target dropped: 2" in report.read_text()
    assert "2 whose target is infinite" in caplog.text
    assert np.isfinite(schema["target_stats"]["max"])


def test_target_with_no_finite_value_names_the_target(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": [np.inf, -np.inf, np.nan]})
    with pytest.raises(DataError, match=r"target column 'y' has no finite value \(1 missing, 2 infinite\)"):
        run(tmp_path, frame)
    assert not (tmp_path / "clean.parquet").exists() and not (tmp_path / "schema.json").exists()


def test_infinite_feature_values_become_missing_and_are_counted(tmp_path):
    frame = pd.DataFrame({"a": [1.0, np.inf, 3.0, 4.0], "y": [1.0, 2.0, 3.0, 4.0]})
    clean, schema, _ = run(tmp_path, frame)
    assert clean["a"].isna().sum() == 1 and schema["rows"]["infinite_feature_values_as_missing"] == 1
    assert schema["features"][0]["missing"] == 1 and np.isfinite(schema["features"][0]["stats"]["max"])


def test_nested_values_reaching_preprocess_are_named(tmp_path):
    from components.tasks.tabular import clean_table

    frame = pd.DataFrame({"a": [1, 2], "meta": [{"k": 1}, {"k": 2}], "y": [1.0, 2.0]})
    with pytest.raises(DataError, match=r"t\.parquet: column\(s\) 'meta' \(struct<k: int64>\) hold nested values"):
        clean_table(frame, make_recipe(data={"target": "y"}), "t.parquet")
