"""Issue 13: missing markers, CSV dialects, dates, identifiers, ordered categories, unseen categories,
did-you-mean for recipe keys, --set model.name without the old model's params, model parameters shown."""
import json

import numpy as np
import pandas as pd
import pytest

from components.errors import DataError, InvalidInputError
from components.recipe import Recipe, RecipeError
from components.steps.load import load
from components.steps.preprocess import preprocess
from components.tasks.tabular import (coerce_features, known_categories, read_table, sniff_csv,
                                      unseen_categories)
from tests.conftest import DATA, ROOT, make_recipe, run_steps

TRAIN_DEFAULTS = {"epochs": 100, "batch_size": 256}  # scikit-learn models take no train options


def prep(tmp_path, src, task="regression", data=None, **sections):
    recipe = make_recipe(task, data={"uri": str(src), "target": "y", "sample_rows": None, **(data or {})}, **sections)
    load(recipe, tmp_path / "raw.parquet")
    out = [tmp_path / n for n in ("clean.parquet", "schema.json", "report.md")]
    schema = preprocess(recipe, tmp_path / "raw.parquet", *out)
    return pd.read_parquet(out[0]), schema, out[2].read_text()


def test_missing_markers_are_missing_by_default_and_reported_per_column(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("a,b,c,y\n1,x,?,1\n?,N/A,2,2\n3, - ,null,3\n4,None,4,NA\n5,y,5,5\n")
    clean, schema, report = prep(tmp_path, src)
    assert clean["a"].isna().sum() == 1 and pd.api.types.is_numeric_dtype(clean["a"])
    assert clean["b"].isna().sum() == 2 and set(clean["b"].dropna()) == {"x", "y"}  # " - " with spaces too
    assert schema["rows"]["missing_target_dropped"] == 1
    assert schema["missing_as_read"] == {"a": 1, "b": 3, "c": 2, "y": 1}
    assert "`a` 1, `b` 3, `c` 2, `y` 1" in report and "`?`" in report


def test_na_values_override_globally_and_per_column(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("a,b,y\n1,?,1\n-99,x,2\n3,-99,3\n4,x,4\n")
    clean, schema, _ = prep(tmp_path, src, data={"na_values": ["-99"]})
    assert clean["a"].isna().sum() == 1 and clean["b"].tolist().count("?") == 1
    clean, schema, _ = prep(tmp_path, src, data={"na_values": {"a": ["-99"]}})
    assert clean["a"].isna().sum() == 1 and clean["b"].isna().sum() == 1 and "-99" in clean["b"].tolist()


def test_semicolon_decimal_comma_latin1_is_sniffed(tmp_path):
    src = tmp_path / "eu.csv"
    src.write_bytes("stadt;preis;y\nZürich;1.234,5;1,5\nGenève;2,25;2,5\nKöln;3,5;NA\n".encode("cp1252"))
    dialect = sniff_csv(src)
    assert (dialect["delimiter"], dialect["decimal"], dialect["thousands"]) == (";", ",", ".")
    df, found = read_table(src)
    assert df["preis"].tolist() == [1234.5, 2.25, 3.5] and df["stadt"].tolist()[0] == "Zürich"
    assert found["csv"]["encoding"] != "utf-8"


def test_read_options_win_over_sniffing(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("a|y\n1,5|2\n2,5|3\n")
    df, found = read_table(src, data=make_recipe(data={"uri": str(src), "target": "y", "read_options": {
        "delimiter": "|", "decimal": ","}}).data)
    assert df["a"].tolist() == [1.5, 2.5] and found["csv"]["sniffed"] == ["encoding", "thousands"]


def test_a_wrong_delimiter_is_named_not_a_column_list(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("a;b;y\n1;2;3\n4;5;6\n")
    with pytest.raises(DataError, match=r"likely uses ';' between fields: set data.read_options.delimiter"):
        prep(tmp_path, src, data={"read_options": {"delimiter": ","}})


def test_dates_become_numbers_in_the_bundle_and_serving_parses_raw_strings(tmp_path):
    rng = np.random.default_rng(0)
    days = pd.date_range("2015-01-01", periods=400, freq="D")
    frame = pd.DataFrame({"when": days.strftime("%Y-%m-%d"), "stamp": (days + pd.Timedelta(hours=7)).strftime(
        "%Y-%m-%dT%H:%M:%S"), "x": rng.normal(size=400)})
    frame["y"] = days.dayofyear / 100 + frame["x"]
    src = tmp_path / "d.csv"
    frame.to_csv(src, index=False)
    recipe = make_recipe(data={"uri": str(src), "target": "y", "sample_rows": None},
                         model={"name": "hist_gradient_boosting", "params": {}}, train=TRAIN_DEFAULTS)
    p = run_steps(recipe, tmp_path)
    schema = json.loads(p["schema.json"].read_text())
    assert {f["name"]: f["kind"] for f in schema["features"]} == {"when": "datetime", "stamp": "datetime",
                                                                   "x": "numeric"}
    from components.bundle import load_bundle

    bundle = load_bundle(p["model"])
    names = list(bundle.transform.get_feature_names_out())
    assert {"when_year", "when_day_of_year", "when_ordinal", "stamp_hour"} <= set(names) and "when_hour" not in names
    future = pd.DataFrame({"when": ["2031-06-30"], "stamp": ["2031-06-30T07:00:00"], "x": [0.0]})
    assert np.isfinite(bundle.predict(future)).all()  # a year never seen is a number, not an unknown category
    with pytest.raises(InvalidInputError, match="feature 'when' expects a date"):
        bundle.predict(future.assign(when="yesterday"))


def test_id_columns_are_dropped_with_a_warning_unless_kept(tmp_path, caplog):
    frame = pd.DataFrame({"name": [f"person {i}" for i in range(40)], "group": list("ab") * 20,
                          "y": np.arange(40.0)})
    src = tmp_path / "t.csv"
    frame.to_csv(src, index=False)
    with caplog.at_level("WARNING"):
        clean, schema, report = prep(tmp_path, src)
    assert [f["name"] for f in schema["features"]] == ["group"] and schema["id_columns_dropped"] == {"name": 40}
    assert "identifier-like" in caplog.text and "`name` (40 distinct)" in report
    _, schema, _ = prep(tmp_path, src, preprocess={"keep_id_columns": ["name"]})
    assert [f["name"] for f in schema["features"]] == ["name", "group"]


def test_ordinal_orders_encode_ranks_and_refuse_unlisted_levels(tmp_path):
    frame = pd.DataFrame({"cut": ["Fair", "Good", "Ideal", "Good"] * 10, "y": np.arange(40.0)})
    src = tmp_path / "t.csv"
    frame.to_csv(src, index=False)
    order = ["Fair", "Good", "Very Good", "Ideal"]
    _, schema, report = prep(tmp_path, src, preprocess={"ordinal": {"cut": order}})
    assert schema["features"][0]["order"] == order and "Fair < Good < Very Good < Ideal" in report
    from components.tasks.tabular import build_feature_transform

    t = build_feature_transform(schema, "none").fit(pd.DataFrame({"cut": order}))
    assert t.transform(pd.DataFrame({"cut": order}))[:, 0].tolist() == [0, 1, 2, 3]
    with pytest.raises(DataError, match=r"column 'cut' has value\(s\) \['Ideal'\] that preprocess.ordinal.cut"):
        prep(tmp_path, src, preprocess={"ordinal": {"cut": ["Fair", "Good"]}})


def test_hist_gradient_boosting_splits_categories_natively(tmp_path):
    recipe = make_recipe("classification", data={"uri": str(DATA / "titanic.csv"), "target": "survived",
                                                  "drop_columns": ["boat", "body", "home.dest", "ticket"]},
                         model={"name": "hist_gradient_boosting", "params": {"max_iter": 20}}, train=TRAIN_DEFAULTS,
                         evaluate={"gate": []})
    from components.bundle import load_bundle

    bundle = load_bundle(run_steps(recipe, tmp_path)["model"])
    mask = bundle.adapter.estimator_.is_categorical_
    assert mask is not None and mask.sum() == 3  # sex, cabin, embarked
    known = known_categories(bundle.transform)
    rows = pd.DataFrame({"sex": ["female", "robot"], "cabin": [None, "B5"], "embarked": ["S", "S"]})
    assert unseen_categories(known, rows)["sex"] == {"count": 1, "values": ["robot"], "rows": [1]}


def test_unknown_recipe_keys_get_did_you_mean():
    with pytest.raises(RecipeError, match=r"data.targt: unknown field \(did you mean 'target'\?\).*"
                                          r"preprocess.ordinl: unknown field \(did you mean 'ordinal'\?\)"):
        Recipe.from_file(ROOT / "pipelines" / "recipes" / "wine.yaml", ["data.targt=x", "preprocess.ordinl={}"])


def test_set_model_name_drops_the_previous_models_params(caplog):
    path = ROOT / "pipelines" / "recipes" / "california-housing.yaml"
    with caplog.at_level("WARNING"):
        recipe = Recipe.from_file(path, ["model.name=hist_gradient_boosting"])
    assert recipe.model.params == {} and "dropped model.params" in caplog.text
    from components.check import check

    check(recipe)  # the README's example passes the one check
    kept = Recipe.from_file(path, ["model.name=hist_gradient_boosting", "model.params.max_iter=50"])
    assert kept.model.params == {"max_iter": 50}
    assert Recipe.from_file(path, ["model.name=mlp"]).model.params["hidden_sizes"] == [256, 256, 256]


def test_check_peeks_a_semicolon_header():
    from components.check import check

    check(Recipe.from_file(ROOT / "pipelines" / "recipes" / "penguins.yaml"))
    with pytest.raises(RecipeError, match="did you mean 'body_mass_g'"):
        check(Recipe.from_file(ROOT / "pipelines" / "recipes" / "penguins.yaml", ["data.target=body_mass"]))


def test_coerce_features_keeps_dates_and_categories(tmp_path):
    feats = [{"name": "d", "kind": "datetime", "stats": {"min": "2020-01-01"}}, {"name": "c", "kind": "categorical"}]
    out = coerce_features(pd.DataFrame({"d": ["2021/02/03", None], "c": ["a", None]}), feats)
    assert out["d"].iloc[0] == pd.Timestamp("2021-02-03") and pd.isna(out["d"].iloc[1])
    assert out["c"].tolist() == ["a", None]
