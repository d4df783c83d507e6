import json

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from components.bundle import PAYLOAD, load_bundle, read_meta
from components.errors import InvalidInputError
from components.recipe import TrainSpec
from components.steps.evaluate import check_gate, evaluate
from tests.conftest import make_recipe


def test_bundle_carries_transform_fitted_on_train_only(regression_run):
    recipe, p = regression_run
    bundle = load_bundle(p["model"])
    train = pd.read_parquet(p["train.parquet"])
    assert bundle.meta.target_mean == pytest.approx(train["MedHouseVal"].mean())
    imputer = bundle.transform.named_transformers_["numeric_median"].steps[0][1]
    np.testing.assert_allclose(imputer.statistics_, train[bundle.feature_names].median().to_numpy())
    assert (p["model"] / PAYLOAD / "learning_curve.png").stat().st_size > 1000
    assert read_meta(p["model"]).lineage["data_hash"] and bundle.meta.train_metrics["epochs_run"] >= 1


def test_regression_metrics_match_sklearn_and_plots_exist(regression_run):
    recipe, p = regression_run
    test = pd.read_parquet(p["test.parquet"])
    bundle = load_bundle(p["model"])
    pred = bundle.predict(test[bundle.feature_names])
    result = json.loads((p["eval"] / "evaluation.json").read_text())
    m = result["metrics"]
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(test["MedHouseVal"], pred)))
    assert m["r2"] == pytest.approx(skm.r2_score(test["MedHouseVal"], pred))
    assert m["rmse"] < test["MedHouseVal"].std(), "8 epochs beat predicting the mean"
    assert {f.name for f in p["eval"].iterdir()} >= {"predicted_vs_actual.png", "residuals.png", "report.html"}
    assert "data:image/png;base64" in p["report.html"].read_text() and result["verdict"] == "passed"


def test_classification_metrics_and_curves(classification_run):
    recipe, p = classification_run
    test = pd.read_parquet(p["test.parquet"])
    bundle = load_bundle(p["model"])
    proba = bundle.predict_proba(test[bundle.feature_names])
    y = (test["diagnosis"] == bundle.meta.classes[1]).astype(int)
    result = json.loads((p["eval"] / "evaluation.json").read_text())
    assert result["metrics"]["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]))
    assert result["metrics"]["f1"] == pytest.approx(skm.f1_score(y, proba.argmax(1)))
    assert np.sum(result["confusion_matrix"]["matrix"]) == len(test)
    assert {"confusion_matrix.png", "roc_curve.png", "pr_curve.png"} <= {f.name for f in p["eval"].iterdir()}
    assert result["metrics"]["accuracy"] > 0.8


def test_multiclass_with_sklearn_model(tmp_path):
    from tests.conftest import DATA, run_steps

    recipe = make_recipe("classification", data={"uri": str(DATA / "wine.csv"), "target": "cultivar"},
                         model={"name": "random_forest", "params": {"n_estimators": 30}})
    recipe = recipe.model_copy(update={"train": TrainSpec()})  # a forest takes no epochs or batch size
    p = run_steps(recipe, tmp_path)
    m = json.loads((p["eval"] / "evaluation.json").read_text())["metrics"]
    assert m["accuracy"] > 0.8 and 0.5 < m["roc_auc"] <= 1 and "pr_auc" in m


def test_pyfunc_and_bundle_agree(classification_run):
    _, p = classification_run
    test = pd.read_parquet(p["test.parquet"]).drop(columns="diagnosis").head(20)
    via_mlflow = mlflow.pyfunc.load_model(str(p["model"])).predict(test)
    pd.testing.assert_frame_equal(via_mlflow.reset_index(drop=True), load_bundle(p["model"]).predict_frame(test))


def test_bundle_rejects_bad_records(regression_run):
    _, p = regression_run
    bundle = load_bundle(p["model"])
    row = pd.read_parquet(p["test.parquet"]).drop(columns="MedHouseVal").iloc[:1]
    with pytest.raises(InvalidInputError, match=r"missing feature\(s\) \['MedInc'\]"):
        bundle.predict(row.drop(columns="MedInc"))
    with pytest.raises(InvalidInputError, match=r"unknown feature\(s\) \['extra'\]"):
        bundle.predict(row.assign(extra=1))
    with pytest.raises(InvalidInputError, match="feature 'HouseAge' expects a number, got 'old'"):
        bundle.predict(row.astype(object).assign(HouseAge="old"))
    with pytest.raises(InvalidInputError, match="must be finite"):
        bundle.predict(row.assign(HouseAge=np.inf))
    assert np.isfinite(bundle.predict(row.assign(HouseAge=np.nan))).all(), "gaps are imputed"


def test_gate_rules():
    assert check_gate(["rmse <= 0.6", "r2 >= 0.5"], {"rmse": 0.5, "r2": 0.7})[0] == "passed"
    verdict, rules = check_gate(["rmse < 0.5"], {"rmse": 0.5})
    assert verdict == "failed" and rules[0]["passed"] is False
    with pytest.raises(KeyError, match="names metric 'f1'"):
        check_gate(["f1 >= 0.5"], {"rmse": 0.5})


def test_failed_gate_and_no_half_written_eval(regression_run, tmp_path):
    recipe, p = regression_run
    strict = make_recipe(evaluate={"gate": ["rmse <= 0.0001"]})
    assert evaluate(strict, p["model"], p["test.parquet"], tmp_path / "eval")["verdict"] == "failed"
    with pytest.raises(KeyError):
        evaluate(make_recipe(evaluate={"gate": ["f1 >= 0.1"]}), p["model"], p["test.parquet"], tmp_path / "e2")
    assert not (tmp_path / "e2").exists()
