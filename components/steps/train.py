"""train: fit the input transform and the model on the train split; write the bundle."""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .. import plots, threads
from ..bundle import Bundle, BundleMeta, read_json
from ..models import build_adapter, get_entry
from ..recipe import Recipe
from ..storage import atomic_path
from ..tasks import family_for
from ..tasks.instances import INSTANCE_TASKS, encode as encode_instances
from ..tasks.tabular import category_cardinalities

log = logging.getLogger(__name__)


def target_scaling(y, task: str) -> dict[str, float]:
    """Regression targets are standardised with the train split's mean and std (summed in float64)."""
    if task != "regression":
        return {"target_mean": 0.0, "target_std": 1.0}
    return {"target_mean": float(np.mean(y, dtype=np.float64)), "target_std": float(np.std(y, dtype=np.float64) or 1.0)}


def encode_target(y, meta: BundleMeta):
    if meta.task == "regression":  # centred in float64 straight into float32: no full-size temporaries
        y = np.asarray(y)
        y = y.astype(np.float64) if y.dtype == object else y
        out = np.subtract(y, meta.target_mean, dtype=np.float64, out=np.empty(y.shape, np.float32), casting="same_kind")
        return np.divide(out, meta.target_std, out=out)
    if meta.task == "generation":
        return y  # a text is its own target
    if meta.task in INSTANCE_TASKS:
        return encode_instances(y, meta.classes)
    index = {c: i for i, c in enumerate(meta.classes)}
    return pd.Series(y).astype(str).map(index).to_numpy(dtype=np.int64)


def ensemble_loss(adapter, X_val, y_val) -> float:
    """The averaged prediction's validation loss, in the members' own terms: mean squared error of the
    standardised target, or the cross-entropy of the averaged class probabilities."""
    from sklearn.metrics import log_loss, mean_squared_error

    scores = adapter.predict_raw(X_val)
    if adapter.task == "regression":
        return float(mean_squared_error(y_val, scores))
    return float(log_loss(y_val, scores, labels=list(range(scores.shape[1]))))


def data_facts(inputs, encoding: str) -> dict:
    """Facts about the data the model needs beside its params: the family's (pose: ``flip_idx``) and,
    for ordinal-coded categories, their counts (FT-Transformer's embeddings)."""
    counts = {"cat_cardinalities": category_cardinalities(inputs.transform)} if encoding == "ordinal" else {}
    return {**inputs.fit_params, **counts}


def train(recipe: Recipe, train_path: str, val_path: str, schema_path: str, model_path: str,
          curve_html_path: str | None = None, progress=None) -> dict[str, float]:
    schema = read_json(schema_path)
    train_df, val_df = pd.read_parquet(train_path), pd.read_parquet(val_path)
    n_classes = len(schema["classes"] or []) or None
    fam = family_for(recipe)
    adapter = build_adapter(recipe.model.name, recipe.task, n_classes, recipe.model.params, recipe.family,
                            train=recipe.train, section=fam.options(recipe))
    encoding = getattr(adapter, "categorical_encoding", "onehot")
    inputs = fam.fit_inputs(recipe, schema, train_df, val_df, encoding)
    fit_params = data_facts(inputs, encoding)
    meta = BundleMeta(
        task=recipe.task, family=recipe.family, target=schema["target"], model_name=recipe.model.name,
        framework=get_entry(recipe.model.name).framework, params=adapter.get_params(), features=schema["features"],
        classes=schema["classes"], **target_scaling(inputs.y_train, recipe.task),
        lineage={"recipe_hash": recipe.hash(), "data_hash": schema.get("data_hash", "")},
        train_options=recipe.train.model_dump(mode="json"), **inputs.meta)
    epochs, members = recipe.train.epochs, recipe.train.ensemble

    def on_epoch(state: dict) -> None:
        whose = f"member {state['member']}/{members}  " if "member" in state else ""
        log.info("%sepoch %d/%d  %s", whose, state["epoch"], epochs,
                 "  ".join(f"{k}={v:.5g}" for k, v in state.items() if k not in ("epoch", "member")))
        if progress:
            progress(state)

    X_train, X_val = inputs.X_train, inputs.X_val
    log.info("fitting %s on %d samples (input %s), validating on %d", recipe.model.name, len(X_train),
             tuple(X_train.shape[1:]) if hasattr(X_train, "shape") else type(X_train[0]).__name__, len(X_val))
    threads.configure(recipe.train.threads)  # before the first parallel region: torch fixes its pool then
    y_train, y_val = encode_target(inputs.y_train, meta), encode_target(inputs.y_val, meta)
    inputs.y_train = inputs.y_val = None  # training reads the encoded targets; raw ones may be a copy (delta mode)
    adapter.fit(X_train, y_train, X_val, y_val, recipe.train, on_epoch, **fit_params)
    best = min(adapter.history_, key=lambda h: h["val_loss"])
    metrics = {"best_epoch": float(best["epoch"]), "best_val_loss": float(best["val_loss"]),
               "epochs_run": float(len(adapter.history_)), "n_train": float(len(X_train))}
    if members > 1:  # best_* then name the best member's best epoch; epochs_run counts every member's
        metrics.update(best_member=float(best["member"]), ensemble_members=float(members),
                       ensemble_val_loss=ensemble_loss(adapter, X_val, y_val))
    meta.train_metrics = metrics
    example = fam.test_inputs(meta, val_df).records[:5]  # raw records, as a client sends them

    with tempfile.TemporaryDirectory() as tmp:
        curve = plots.learning_curve(adapter.history_, Path(tmp) / "learning_curve.png")
        history = Path(tmp) / "history.json"  # per-epoch metrics, which register logs with step=epoch
        history.write_text(json.dumps(adapter.history_))
        with atomic_path(model_path) as out:
            Bundle(meta, inputs.transform, adapter).save(out, input_example=example,
                                                  extra_files={"learning_curve.png": curve, "history.json": history})
        if curve_html_path:
            with atomic_path(curve_html_path) as out:
                out.write_text(plots.html_report(f"Training: {recipe.model.name}", {"training": metrics}, [curve]))
    log.info("bundle written to %s; best epoch %d, val loss %.5f", model_path, best["epoch"], best["val_loss"])
    return metrics
