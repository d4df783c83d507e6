"""Batch scoring through submit.py's predict pipeline (kfp.local): chunked, metrics exact, any store."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from components.bundle import load_bundle
from components.steps.predict import predict_batch
from components.steps.register import register
from pipelines.submit import main as submit_main

pytestmark = pytest.mark.integration


def test_submit_predict_scores_in_chunks_with_the_champion(regression_run, mlflow_sqlite, tmp_path, capsys,
                                                          monkeypatch):
    recipe, p = regression_run
    scratch = tmp_path / "scratch"  # the step's TMPDIR: the champion is downloaded there, then removed
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    register(recipe, p["model"], p["eval"], "batch-1")
    test = pd.read_parquet(p["test.parquet"])
    out = tmp_path / "predictions.parquet"
    code = submit_main(["predict", "--model", f"models:/{recipe.registry.model_name}@champion",
                        "--data", str(p["test.parquet"]), "--output", str(out), "--chunk-rows", "77"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    scored = pd.read_parquet(out)
    assert scored["row"].tolist() == list(range(len(test))) and set(scored["model_version"]) == {"1"}
    assert set(scored["model_name"]) == {recipe.registry.model_name}, "the registered name, as KServe answers it"
    expected = load_bundle(p["model"]).predict(test.drop(columns=[recipe.data.target]))
    np.testing.assert_allclose(scored["prediction"], expected, rtol=1e-6)
    rmse = float(np.sqrt(skm.mean_squared_error(test[recipe.data.target], expected)))
    assert f"rmse {rmse:.4g}" in printed and f"scored {len(test)} rows" in printed
    assert [d.name for d in scratch.iterdir() if d.is_dir()] == [], "no download or step module is left behind"


def test_chunked_classification_metrics_equal_sklearns(classification_run, tmp_path):
    recipe, p = classification_run
    result = predict_batch(str(p["model"]), str(p["test.parquet"]), str(tmp_path / "out.parquet"), chunk_rows=13)
    scored = pd.read_parquet(tmp_path / "out.parquet")
    truth = scored[recipe.data.target].astype(str)
    classes = load_bundle(p["model"]).meta.classes
    proba = scored[[f"proba_{c}" for c in classes]].to_numpy()
    assert result["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(truth, scored["label"]))
    assert result["metrics"]["f1"] == pytest.approx(skm.f1_score(truth, scored["label"], pos_label=classes[1]))
    assert result["metrics"]["log_loss"] == pytest.approx(skm.log_loss(truth, proba, labels=classes), rel=1e-6)


def test_predictions_to_the_object_store_and_a_clear_error_for_a_missing_column(regression_run, s3_env, tmp_path,
                                                                               monkeypatch):
    import tempfile

    from components.storage import expand, upload

    recipe, p = regression_run
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    upload(p["test.parquet"], "s3://batch/in/test.parquet")
    result = predict_batch(str(p["model"]), "s3://batch/in/test.parquet", "s3://batch/out/preds.parquet", 100)
    (local,) = expand("s3://batch/out/preds.parquet")
    assert len(pd.read_parquet(local)) == result["rows"] == len(pd.read_parquet(p["test.parquet"]))
    assert list(scratch.iterdir()) == [], "the local copy of the uploaded predictions is removed"

    broken = tmp_path / "broken.csv"
    pd.read_parquet(p["test.parquet"]).drop(columns=["MedInc"]).to_csv(broken, index=False)
    from components.errors import DataError

    with pytest.raises(DataError, match=r"columns \['MedInc'\] that the model needs are missing"):
        predict_batch(str(p["model"]), str(broken), str(tmp_path / "x.parquet"), 100)
    assert not (tmp_path / "x.parquet").exists(), "nothing half-written"

    typo = pd.read_parquet(p["test.parquet"]).astype({"MedInc": object})
    typo.loc[3, "MedInc"] = "abc"  # one bad cell: the CSV's whole column reads as text
    typo.to_csv(tmp_path / "typo.csv", index=False)
    with pytest.raises(Exception, match=r"feature 'MedInc' expects a number, got 'abc' \(row 3\)"):
        predict_batch(str(p["model"]), str(tmp_path / "typo.csv"), str(tmp_path / "y.parquet"), 100)
    assert not (tmp_path / "y.parquet").exists()
    assert json.dumps(result)


def test_a_european_csv_with_missing_markers_scores_like_the_parquet(regression_run, tmp_path):
    recipe, p = regression_run
    table = pd.read_parquet(p["test.parquet"]).head(50)
    table.loc[3, "HouseAge"] = np.nan
    table.to_csv(tmp_path / "eu.csv", sep=";", decimal=",", index=False, na_rep="?")
    assert "?" in (tmp_path / "eu.csv").read_text() and ",5" in (tmp_path / "eu.csv").read_text()
    predict_batch(str(p["model"]), str(tmp_path / "eu.csv"), str(tmp_path / "eu.parquet"), chunk_rows=7)
    expected = load_bundle(p["model"]).predict(table.drop(columns=[recipe.data.target]))
    np.testing.assert_allclose(pd.read_parquet(tmp_path / "eu.parquet")["prediction"], expected, rtol=1e-6)
