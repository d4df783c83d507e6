"""A small real study on California Housing: the search beats the recipe's own values (trial 0 of the
same study), every trial is a nested MLflow run, and a stopped study resumes where it was."""
import json
import time

import pytest

from components.steps.load import load
from components.steps.preprocess import preprocess
from components.steps.split import split
from tests.conftest import make_recipe

pytestmark = pytest.mark.integration

# Deliberately plain starting values (a small net, a small learning rate, few epochs): room to improve.
TUNE = {"trials": 8, "seed": 0, "prune_startup_trials": 3, "prune_warmup_epochs": 2,
        "space": {"learning_rate": {"low": 3e-4, "high": 3e-2, "log": True}, "batch_size": [64, 128, 256],
                  "hidden_sizes": [[32], [64, 64], [128, 128]], "dropout": [0.0, 0.1], "weight_decay": None,
                  "num_embeddings": None, "frequency_scale": None}}  # the catalog's embedding ranges: not here


def recipe_with(**tune):
    return make_recipe("regression", data={"sample_rows": 4000}, model={"name": "mlp", "params": {"hidden_sizes": [32]}},
                       train={"epochs": 6, "batch_size": 256, "learning_rate": 3e-4},
                       tune={**TUNE, **tune})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out, recipe = tmp_path_factory.mktemp("tune-data"), recipe_with()
    load(recipe, out / "raw.parquet")
    preprocess(recipe, out / "raw.parquet", out / "clean.parquet", out / "schema.json", out / "report.md")
    split(recipe, out / "clean.parquet", out / "train.parquet", out / "val.parquet", out / "test.parquet")
    return {k: str(out / f"{k}.parquet") for k in ("train", "val")} | {"schema": str(out / "schema.json")}


def test_study_beats_the_recipe_values_logs_every_trial_and_resumes(data, mlflow_sqlite, tmp_path):
    import optuna
    from mlflow import MlflowClient

    from components.steps.tune import STUDY_TAG, storage_url, tune

    started = time.perf_counter()
    result = tune(recipe_with(), data["train"], data["val"], data["schema"], str(tmp_path / "study"))
    seconds = time.perf_counter() - started
    assert seconds < 90, f"the study took {seconds:.0f} s"

    record = json.loads((tmp_path / "study" / "study.json").read_text())
    trials = record["trials"]
    assert len(trials) == 8 and trials[0]["values"] == {"model": {"dropout": 0.1, "hidden_sizes": [32]},
                                                         "train": {"batch_size": 256, "learning_rate": 3e-4}}
    assert trials[0]["state"] == "complete", "trial 0 holds the recipe's own values"
    m = result["metrics"]
    assert m["recipe_val_loss"] == trials[0]["value"]
    assert m["best_val_loss"] < 0.95 * m["recipe_val_loss"], m
    assert record["best_trial"] != 0 and result["best"] == trials[record["best_trial"]]["values"]
    assert json.loads(result["best_json"]) == result["best"]
    assert m["trials_complete"] + m["trials_pruned"] + m["trials_failed"] == 8

    client = MlflowClient()
    experiment = client.get_experiment_by_name("housing-test").experiment_id
    parents = client.search_runs([experiment], f"tags.`{STUDY_TAG}` = '{result['study']}'")
    assert len(parents) == 1 and parents[0].info.run_name == "tune"
    assert parents[0].data.metrics["best_val_loss"] == m["best_val_loss"]
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    assert len(children) == 8
    by_trial = {int(c.data.tags["platform.tune_trial"]): c for c in children}
    assert json.loads(by_trial[0].data.params["train.learning_rate"]) == 3e-4
    assert json.loads(by_trial[0].data.params["hidden_sizes"]) == [32]
    for t in trials:
        run = by_trial[t["number"]]
        assert run.data.tags["platform.trial_state"] == t["state"]
        if t["state"] == "complete":
            assert run.data.metrics["val_loss"] == t["value"] and run.info.status == "FINISHED"
        else:
            assert run.info.status == "KILLED"

    # A step stopped mid-trial leaves that trial running; a larger budget continues the same study.
    study = optuna.load_study(study_name=result["study"], storage=storage_url())
    study.ask()
    again = tune(recipe_with(trials=10), data["train"], data["val"], data["schema"])
    assert again["study"] == result["study"]
    states = [t.state.name for t in optuna.load_study(study_name=result["study"], storage=storage_url()).trials]
    assert len(states) == 10 and states[8] == "FAIL", states
    assert len(client.search_runs([experiment], f"tags.`{STUDY_TAG}` = '{result['study']}'")) == 1
