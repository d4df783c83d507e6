"""backtest: a rolling-split recipe evaluated on every fold, not only the last.

Each expanding fold is split, trained and scored with the same train and evaluate functions the
pipeline runs, so a fold's numbers mean exactly what the final model's numbers mean. The result
is per-fold metrics, their mean and standard deviation, and a plot of each metric across folds.
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..recipe import Recipe
from ..storage import atomic_path
from .evaluate import evaluate
from ..tasks.timeseries import fold_parts
from .train import train

log = logging.getLogger(__name__)


def backtest(recipe: Recipe, clean_path: str, schema_path: str, out_dir: str) -> dict:
    df = pd.read_parquet(clean_path)
    per_fold = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, parts in enumerate(fold_parts(len(df), recipe), start=1):
            work = Path(tmp) / f"fold{k}"
            work.mkdir()
            for name, rows in parts.items():
                df.iloc[rows].reset_index(drop=True).to_parquet(work / f"{name}.parquet", index=False)
            train(recipe, work / "train.parquet", work / "val.parquet", schema_path, work / "model", None)
            result = evaluate(recipe, work / "model", work / "test.parquet", work / "eval")
            per_fold.append({"fold": k, "train_rows": len(parts["train"]), "test_rows": len(parts["test"]),
                             **result["metrics"]})
            log.info("fold %d/%d: %s", k, recipe.split.folds,
                     {m: round(v, 5) for m, v in result["metrics"].items() if "_class_" not in m})
    names = [m for m in per_fold[0] if m not in ("fold", "train_rows", "test_rows") and "_class_" not in m]
    summary = {f"{m}_{stat}": float(fn([f[m] for f in per_fold])) for m in names
               for stat, fn in (("mean", np.mean), ("std", np.std))}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        (tmp / "backtest.json").write_text(json.dumps({"folds": per_fold, "summary": summary}, indent=2))
        _plot(per_fold, names, tmp / "backtest.png")
    log.info("backtest over %d folds: %s", len(per_fold), {k: round(v, 5) for k, v in summary.items()})
    return {"folds": per_fold, "summary": summary}


def _plot(per_fold: list[dict], names: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), dpi=100, squeeze=False)
    folds = [f["fold"] for f in per_fold]
    for ax, name in zip(axes[0], names):
        values = [f[name] for f in per_fold]
        ax.plot(folds, values, marker="o")
        ax.axhline(np.mean(values), color="grey", ls="--", lw=1, label="mean")
        ax.set_title(name)
        ax.set_xlabel("fold")
        ax.set_xticks(folds)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
