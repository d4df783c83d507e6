"""Row splits for families whose rows have no order: random, stratified by a label, or by group."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError


def split_indices(df: pd.DataFrame, recipe, label_column: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    stratify = df[label_column].to_numpy() if spec.method == "stratified" else None
    if stratify is not None:
        counts = pd.Series(stratify).value_counts()
        if counts.min() < 3:
            raise DataError(f"class {counts.idxmin()!r} has {counts.min()} row(s); stratified split needs 3 per class")
    n_test, n_val = max(1, round(spec.test * len(df))), max(1, round(spec.val * len(df)))  # exact counts
    rest, test = train_test_split(idx, test_size=n_test, random_state=spec.seed, stratify=stratify)
    train, val = train_test_split(rest, test_size=n_val, random_state=spec.seed,
                                  stratify=None if stratify is None else stratify[rest])
    return train, val, test
