"""split: clean table → train / val / test (random, stratified or by group)."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..errors import DataError
from ..recipe import Recipe
from ..storage import atomic_path

log = logging.getLogger(__name__)


def split_indices(df: pd.DataFrame, recipe: Recipe) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    spec, idx = recipe.split, np.arange(len(df))
    if len(df) < 3:
        raise DataError(f"{len(df)} rows cannot be split three ways; expected at least 3")
    if spec.method == "group":
        groups = df[spec.group_column].to_numpy()
        if len(np.unique(groups)) < 3:
            raise DataError(f"group column {spec.group_column!r} has fewer than 3 groups; cannot split by group")
        rest, test = next(GroupShuffleSplit(1, test_size=spec.test, random_state=spec.seed).split(idx, groups=groups))
        inner = next(GroupShuffleSplit(1, test_size=spec.val / (spec.train + spec.val), random_state=spec.seed)
                     .split(rest, groups=groups[rest]))
        return rest[inner[0]], rest[inner[1]], test
    column = "label" if recipe.family == "image" else recipe.data.target  # images: the canonical table's label
    stratify = df[column].to_numpy() if spec.method == "stratified" else None
    if stratify is not None:
        counts = pd.Series(stratify).value_counts()
        if counts.min() < 3:
            raise DataError(f"class {counts.idxmin()!r} has {counts.min()} row(s); stratified split needs 3 per class")
    n_test, n_val = max(1, round(spec.test * len(df))), max(1, round(spec.val * len(df)))  # exact counts
    rest, test = train_test_split(idx, test_size=n_test, random_state=spec.seed, stratify=stratify)
    train, val = train_test_split(rest, test_size=n_val, random_state=spec.seed,
                                  stratify=None if stratify is None else stratify[rest])
    return train, val, test


def series_split_indices(df: pd.DataFrame, recipe: Recipe) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time order kept: contiguous segments (time), the last expanding fold (rolling), or whole series (group)."""
    spec, n = recipe.split, len(df)
    if spec.method == "group":
        grouped = recipe.model_copy(update={"split": spec.model_copy(update={"method": "group",
                                                                            "group_column": recipe.timeseries.group_column})})
        return tuple(np.sort(part) for part in split_indices(df, grouped))
    if spec.method == "rolling":
        last = fold_parts(n, recipe)[-1]
        return last["train"], last["val"], last["test"]
    from ..tasks.timeseries import time_segments

    return tuple(np.arange(n)[seg] for seg in time_segments(n, (spec.train, spec.val, spec.test)))


def fold_parts(n: int, recipe: Recipe) -> list[dict[str, np.ndarray]]:
    """Rolling split: expanding folds, each with train, val and test row indices; the pipeline trains
    on the last, the backtest step on every one."""
    from ..tasks.timeseries import rolling_folds

    spec = recipe.split
    folds = rolling_folds(n, spec.folds, int(round(spec.val * n)), int(round(spec.test * n / spec.folds)))
    return [{part: np.arange(*fold[part]) for part in ("train", "val", "test")} for fold in folds]


def split(recipe: Recipe, clean_path: str, train_path: str, val_path: str, test_path: str) -> dict:
    df = pd.read_parquet(clean_path)
    indices = series_split_indices(df, recipe) if recipe.family == "timeseries" else split_indices(df, recipe)
    parts = dict(zip(("train", "val", "test"), indices))
    for name, path in (("train", train_path), ("val", val_path), ("test", test_path)):
        with atomic_path(path) as tmp:
            df.iloc[np.sort(parts[name])].reset_index(drop=True).to_parquet(tmp, index=False)
    sizes = {name: int(len(rows)) for name, rows in parts.items()}
    log.info("%s split: %s", recipe.split.method, sizes)
    return sizes
