"""Thin KFP v2 components: each body sets up logging, parses the recipe, and calls a library step.

The functions are turned into components by ``build_components`` at pipeline-build time, so the
image registry and tag are chosen when compiling, not when this module is imported.
``install_kfp_package=False`` because every step image already holds kfp.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from pipelines.images import image_for


def resolve_recipe(recipe_json: str, data_uri: str, target: str, model_name: str, epochs: int, learning_rate: float,
                   registered_model_name: str) -> NamedTuple("Views", [("load", str), ("preprocess", str),
                                                                          ("split", str), ("tune", str), ("train", str),
                                                                          ("evaluate", str), ("backtest", str),
                                                                          ("register", str), ("deploy", str)]):
    """Apply the run form's knobs to the recipe and cut it into one view per step (what each step reads)."""
    from collections import namedtuple

    from components.runner import STEP_VIEWS, recipe_views, resolve_recipe as resolve, step_logging

    step_logging()
    recipe = resolve(recipe_json, data_uri=data_uri, target=target, model_name=model_name, epochs=epochs,
                     learning_rate=learning_rate, registered_model_name=registered_model_name)
    views = recipe_views(recipe)
    return namedtuple("Views", STEP_VIEWS)(**views)


def load_data(recipe_json: str, data_fingerprint: str, raw: Output[Dataset]):
    """Read the recipe's data into one Parquet table. ``data_fingerprint`` (a hash of local data
    files, empty for remote data) is an input only so that editing a file in place re-runs load."""
    from components.runner import recipe_for_step, step_logging
    from components.steps.load import load

    step_logging()
    raw.metadata.update(load(recipe_for_step(recipe_json, "load"), raw.path))


def preprocess_data(recipe_json: str, raw: Input[Dataset], clean: Output[Dataset], schema: Output[Artifact],
                    report: Output[Markdown]):
    """Stateless cleaning and schema inference, with a data report."""
    from components.runner import recipe_for_step, step_logging
    from components.steps.preprocess import preprocess

    step_logging()
    result = preprocess(recipe_for_step(recipe_json, "preprocess"), raw.path, clean.path, schema.path, report.path)
    clean.metadata.update({"rows": result["n_rows"], "features": len(result["features"])})


def split_data(recipe_json: str, clean: Input[Dataset], train: Output[Dataset], val: Output[Dataset],
               test: Output[Dataset]):
    """Train / validation / test split."""
    from components.runner import recipe_for_step, step_logging
    from components.steps.split import split

    step_logging()
    sizes = split(recipe_for_step(recipe_json, "split"), clean.path, train.path, val.path, test.path)
    for part, artifact in (("train", train), ("val", val), ("test", test)):
        artifact.metadata["rows"] = sizes[part]


def train_model(recipe_json: str, train: Input[Dataset], val: Input[Dataset], schema: Input[Artifact],
                model: Output[Model], metrics: Output[Metrics], learning_curve: Output[HTML], tuned_params: str = ""):
    """Fit the feature transform and the model on the train split; write the model bundle. ``tuned_params``:
    the tune step's best values (JSON), applied over the recipe's."""
    from components.models.tunable import with_values
    from components.runner import recipe_for_step, step_logging, write_metadata_file
    from components.steps.train import train as run_train

    step_logging()
    recipe = with_values(recipe_for_step(recipe_json, "train"), tuned_params)
    for name, value in run_train(recipe, train.path, val.path, schema.path, model.path, learning_curve.path).items():
        metrics.log_metric(name, value)
    write_metadata_file(metrics)
    model.metadata.update({"model": recipe.model.name, "task": recipe.task, "framework": "mlflow-pyfunc",
                           **({"tuned_params": tuned_params} if tuned_params else {})})


def tune_model(recipe_json: str, train: Input[Dataset], val: Input[Dataset], schema: Input[Artifact],
               metrics: Output[Metrics], study: Output[Artifact]) -> str:
    """Hyper-parameter search (Optuna) on train/val; returns the best values as JSON for train."""
    from components.runner import recipe_for_step, step_logging, write_metadata_file
    from components.steps.tune import tune

    step_logging()
    result = tune(recipe_for_step(recipe_json, "tune"), train.path, val.path, schema.path, study.path)
    for name, value in result["metrics"].items():
        metrics.log_metric(name, value)
    write_metadata_file(metrics)
    return result["best_json"]


def tune_trials(recipe_json: str, train: Input[Dataset], val: Input[Dataset], schema: Input[Artifact],
                worker: int) -> str:
    """One of ``tune.workers`` trial workers on a shared study (a cluster's RDB); tune_model reads the result."""
    from components.runner import recipe_for_step, step_logging
    from components.steps.tune import tune

    step_logging()
    return tune(recipe_for_step(recipe_json, "tune"), train.path, val.path, schema.path, worker=worker)["study"]


def evaluate_model(recipe_json: str, model: Input[Model], test: Input[Dataset], schema: Input[Artifact],
                   data_report: Input[Markdown], metrics: Output[Metrics],
                   classification_metrics: Output[ClassificationMetrics], evaluation: Output[Artifact],
                   report: Output[HTML], model_card: Output[HTML]) -> str:
    """Test metrics, plots, the model card and the gate verdict ('passed' or 'failed')."""
    from components.runner import recipe_for_step, step_logging, write_metadata_file
    from components.steps.evaluate import evaluate

    step_logging()
    result = evaluate(recipe_for_step(recipe_json, "evaluate"), model.path, test.path, evaluation.path, report.path,
                      schema.path, data_report.path, model_card.path)
    for name, value in result["metrics"].items():
        metrics.log_metric(name, value)
    if "confusion_matrix" in result:
        cm = result["confusion_matrix"]
        classification_metrics.log_confusion_matrix(cm["classes"], cm["matrix"])
    if "roc" in result:
        roc = result["roc"]
        classification_metrics.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
    write_metadata_file(metrics, classification_metrics)
    return result["verdict"]


def backtest_model(recipe_json: str, clean: Input[Dataset], schema: Input[Artifact], metrics: Output[Metrics],
                   folds: Output[Artifact], report: Output[HTML]) -> str:
    """Rolling split: train and score every fold; per-fold metrics, mean ± std and a plot."""
    import json

    from components import plots
    from components.runner import recipe_for_step, step_logging, write_metadata_file
    from components.steps.backtest import backtest

    step_logging()
    recipe = recipe_for_step(recipe_json, "backtest")
    result = backtest(recipe, clean.path, schema.path, folds.path)
    for name, value in result["summary"].items():
        metrics.log_metric(name, value)
    write_metadata_file(metrics)
    table = {f"fold {f['fold']}": ", ".join(f"{k} {v:.4g}" for k, v in f.items() if k != "fold" and "_class_" not in k)
             for f in result["folds"]}
    with open(report.path, "w") as out:
        out.write(plots.html_report(f"Backtest: {recipe.name}", {"folds": table, "mean ± std": result["summary"]},
                                    [f"{folds.path}/backtest.png"]))
    return json.dumps(result["summary"])


def register_model(recipe_json: str, model: Input[Model], evaluation: Input[Artifact], schema: Input[Artifact],
                   data_report: Input[Markdown], pipeline_run_id: str) -> str:
    """Log and register the bundle in MLflow; alias champion or challenger. Returns the version as JSON."""
    import json

    from components.runner import recipe_for_step, step_logging
    from components.steps.register import register

    step_logging()
    return json.dumps(register(recipe_for_step(recipe_json, "register"), model.path, evaluation.path, pipeline_run_id,
                               schema.path, data_report.path))


def deploy_model(recipe_json: str, registration: str, manifest: Output[Artifact]) -> str:
    """Serve the champion: a local model server, or the InferenceService manifest for a cluster."""
    from components.runner import recipe_for_step, step_logging
    from components.steps.deploy import deploy

    step_logging()
    result = deploy(recipe_for_step(recipe_json, "deploy"), manifest.path, registration=registration)
    manifest.metadata.update({"url": result["url"], "version": result["version"], "after": registration})
    return result["url"]


STEP_IMAGES = {resolve_recipe: "data", backtest_model: "train", tune_model: "train", tune_trials: "train", load_data: "data", preprocess_data: "data", split_data: "data", train_model: "train",
               evaluate_model: "train", register_model: "registry", deploy_model: "deploy"}


def build_components(registry: str | None = None, tag: str | None = None) -> dict:
    """Function name → KFP component, each on its step's image."""
    return {func.__name__: dsl.component(func, base_image=image_for(step, registry, tag), install_kfp_package=False)
            for func, step in STEP_IMAGES.items()}
