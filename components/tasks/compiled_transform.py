"""The fitted feature transform as plain numpy, for requests of a few rows.

scikit-learn checks its input on every call (dtypes, feature names, finiteness), which costs
milliseconds per part on a one-row request while the arithmetic costs microseconds. The fitted
statistics are read once from the ``ColumnTransformer`` and applied as numpy expressions:
imputation (``statistics_``), standard / min-max / quantile scaling, one-hot codes (unknown → all zeros, as
``handle_unknown="ignore"``). A transform with another part (dates, ordered or ordinal codes) is
not compiled and keeps scikit-learn's path. ``tests/unit/test_compiled_transform.py``
checks both paths give the same numbers.
"""
from __future__ import annotations

import weakref
from typing import Callable

import numpy as np
import pandas as pd

_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled(transform) -> Callable[[pd.DataFrame], np.ndarray] | None:
    """The transform as a function of a coerced frame, or None where a part cannot be compiled."""
    if transform not in _COMPILED:
        _COMPILED[transform] = _compile(transform)
    return _COMPILED[transform]


def _compile(transform):
    parts, numeric_only = [], True
    for _, pipe, cols in transform.transformers_:
        if pipe == "drop" or not len(cols):
            continue
        steps = [step for _, step in getattr(pipe, "steps", [])]
        part = _numeric(steps)
        numeric_only &= part is not None
        part = part or _onehot(steps)
        if part is None:
            return None
        parts.append((list(cols), part))
    order = list(getattr(transform, "feature_names_in_", []))
    positions = [[order.index(c) for c in cols] if set(cols) <= set(order) else None for cols, _ in parts]
    numeric_only &= all(p is not None for p in positions)

    def apply(frame: pd.DataFrame) -> np.ndarray:
        if numeric_only and list(frame.columns) == order:  # one float block: no per-part frame indexing
            X = frame.to_numpy(dtype=np.float64, na_value=np.nan)
            return np.hstack([part(X[:, pos]) for pos, (_, part) in zip(positions, parts)]).astype(np.float32)
        return np.hstack([part(frame[cols]) for cols, part in parts]).astype(np.float32)

    return apply


def _numeric(steps):
    """SimpleImputer (mean / median / most_frequent / constant) then a scaler or nothing."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import MinMaxScaler, QuantileTransformer, StandardScaler

    if not steps or type(steps[0]) is not SimpleImputer or steps[0].strategy == "constant" or len(steps) > 2:
        return None
    fill = np.asarray(steps[0].statistics_, dtype=np.float64)
    scaler = steps[1] if len(steps) == 2 else "passthrough"
    if type(scaler) is StandardScaler:
        shift = scaler.mean_ if scaler.with_mean else 0.0
        scale = scaler.scale_ if scaler.with_std else 1.0

        def scaled(X):
            return (X - shift) / scale
    elif type(scaler) is MinMaxScaler and not scaler.clip:
        def scaled(X):
            return X * scaler.scale_ + scaler.min_
    elif type(scaler) is QuantileTransformer and scaler.output_distribution == "normal":
        scaled = _normal_quantiles(scaler.quantiles_, scaler.references_)
    elif scaler == "passthrough":
        def scaled(X):
            return X
    else:
        return None

    def part(block) -> np.ndarray:  # a frame of these columns, or their float values
        X = block.to_numpy(dtype=np.float64, na_value=np.nan) if isinstance(block, pd.DataFrame) else block
        return scaled(np.where(np.isnan(X), fill, X))

    return part


def _normal_quantiles(quantiles: np.ndarray, references: np.ndarray):
    """QuantileTransformer(output_distribution="normal").transform: the mean of the ascending and
    descending interpolations (ties), the ends pinned, then the normal's inverse CDF for all columns
    at once (scipy's ``norm.ppf`` per column dominates a one-row request), clipped as scikit-learn
    clips so its inverse stays finite."""
    from scipy.special import ndtri

    eps = 1e-7  # scikit-learn's BOUNDS_THRESHOLD
    low, high = ndtri(eps - np.spacing(1)), ndtri(1 - (eps - np.spacing(1)))

    # Where a column's quantiles have no ties the two interpolations agree: one is enough.
    columns = [(q, None if (np.diff(q) > 0).all() else (-q[::-1], -references[::-1])) for q in quantiles.T]
    first, last = quantiles[0], quantiles[-1]

    def scaled(X: np.ndarray) -> np.ndarray:
        U = np.empty_like(X)
        for j, (q, descending) in enumerate(columns):  # np.interp keeps NaN: gaps need no mask
            x = X[:, j]
            U[:, j] = np.interp(x, q, references) if descending is None else \
                0.5 * (np.interp(x, q, references) - np.interp(-x, *descending))
        with np.errstate(invalid="ignore"):
            U[X + eps > last] = 1.0
            U[X - eps < first] = 0.0
        with np.errstate(divide="ignore"):
            return np.clip(ndtri(U), low, high)

    return scaled


def _onehot(steps):
    """Missing → the constant category, then one-hot codes with unknown categories all zero."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    if len(steps) != 2 or type(steps[0]) is not SimpleImputer or steps[0].strategy != "constant" \
            or type(steps[1]) is not OneHotEncoder or steps[1].handle_unknown != "ignore" or steps[1].drop is not None:
        return None
    missing = steps[0].fill_value
    lookups = [pd.Index(cats) for cats in steps[1].categories_]
    offsets = np.cumsum([0] + [len(c) for c in steps[1].categories_])

    def part(frame: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(frame), offsets[-1]), dtype=np.float64)
        rows = np.arange(len(frame))
        for k, (column, lookup) in enumerate(zip(frame.columns, lookups)):
            codes = lookup.get_indexer([missing if v is None else v for v in frame[column].tolist()])
            known = codes >= 0
            out[rows[known], offsets[k] + codes[known]] = 1.0
        return out

    return part
