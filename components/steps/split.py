"""split: clean table → train / val / test, as the family splits (random, stratified, by group, in time)."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..recipe import Recipe
from ..storage import atomic_path
from ..tasks import family_for

log = logging.getLogger(__name__)


def split(recipe: Recipe, clean_path: str, train_path: str, val_path: str, test_path: str) -> dict:
    df = pd.read_parquet(clean_path)
    indices = family_for(recipe).split_indices(df, recipe)
    parts = dict(zip(("train", "val", "test"), indices))
    for name, path in (("train", train_path), ("val", val_path), ("test", test_path)):
        with atomic_path(path) as tmp:
            df.iloc[np.sort(parts[name])].reset_index(drop=True).to_parquet(tmp, index=False)
    sizes = {name: int(len(rows)) for name, rows in parts.items()}
    log.info("%s split: %s", recipe.split.method, sizes)
    return sizes
