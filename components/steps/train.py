"""train: fit the feature transform and the model on the train split; write the bundle."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .. import plots
from ..bundle import Bundle, BundleMeta, read_json
from ..models import build_adapter, get_entry
from ..recipe import Recipe
from ..storage import atomic_path
from ..tasks.tabular import build_feature_transform, category_cardinalities

log = logging.getLogger(__name__)


def encode_target(y: pd.Series, meta: BundleMeta) -> np.ndarray:
    if meta.task == "regression":
        return ((y.to_numpy(dtype=np.float64) - meta.target_mean) / meta.target_std).astype(np.float32)
    index = {c: i for i, c in enumerate(meta.classes)}
    return y.astype(str).map(index).to_numpy(dtype=np.int64)


def train(recipe: Recipe, train_path: str, val_path: str, schema_path: str, model_path: str,
          curve_html_path: str | None = None, progress=None) -> dict[str, float]:
    schema = read_json(schema_path)
    train_df, val_df = pd.read_parquet(train_path), pd.read_parquet(val_path)
    target = schema["target"]
    y_train = train_df[target]
    meta = BundleMeta(
        task=recipe.task, target=target, model_name=recipe.model.name,
        framework=get_entry(recipe.model.name).framework, params={}, features=schema["features"],
        classes=schema["classes"],
        target_mean=float(y_train.mean()) if recipe.task == "regression" else 0.0,
        target_std=float(y_train.std() or 1.0) if recipe.task == "regression" else 1.0,
        lineage={"recipe_hash": recipe.hash(), "data_hash": schema.get("data_hash", "")},
    )
    features = [f["name"] for f in schema["features"]]
    adapter = build_adapter(recipe.model.name, recipe.task, len(meta.classes or []) or None, recipe.model.params)
    encoding = getattr(adapter, "categorical_encoding", "onehot")
    transform = build_feature_transform(schema, recipe.preprocess.scaler, encoding).fit(train_df[features])
    if encoding == "ordinal":
        adapter.params["cat_cardinalities"] = category_cardinalities(transform)
    X_train = np.asarray(transform.transform(train_df[features]), dtype=np.float32)
    X_val = np.asarray(transform.transform(val_df[features]), dtype=np.float32)
    meta.params = adapter.get_params()
    epochs = recipe.train.epochs

    def on_epoch(state: dict) -> None:
        log.info("epoch %d/%d  %s", state["epoch"], epochs,
                 "  ".join(f"{k}={v:.5g}" for k, v in state.items() if k != "epoch"))
        if progress:
            progress(state)

    log.info("fitting %s on %d rows (%d features after transform), validating on %d",
             recipe.model.name, len(X_train), X_train.shape[1], len(X_val))
    adapter.fit(X_train, encode_target(y_train, meta), X_val, encode_target(val_df[target], meta),
                recipe.train, on_epoch)
    best = min(adapter.history_, key=lambda h: h["val_loss"])
    metrics = {"best_epoch": float(best["epoch"]), "best_val_loss": float(best["val_loss"]),
               "epochs_run": float(len(adapter.history_)), "n_train": float(len(X_train))}
    meta.train_metrics = metrics

    with tempfile.TemporaryDirectory() as tmp:
        curve = plots.learning_curve(adapter.history_, Path(tmp) / "learning_curve.png")
        with atomic_path(model_path) as out:
            Bundle(meta, transform, adapter).save(out, input_example=val_df, extra_files={"learning_curve.png": curve})
        if curve_html_path:
            with atomic_path(curve_html_path) as out:
                out.write_text(plots.html_report(f"Training: {recipe.model.name}", {"training": metrics}, [curve]))
    log.info("bundle written to %s; best epoch %d, val loss %.5f", model_path, best["epoch"], best["val_loss"])
    return metrics
