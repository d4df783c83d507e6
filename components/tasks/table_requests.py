"""Table rows as clients send them over V1 and V2, checked before the fitted transform sees them.

V1  ``{"instances": [{"col": value, ...}, ...]}`` or lists of values in feature order.
V2  one input per feature column, each of shape [n] (or [n, 1]).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from .base import FLOAT32_MAX, has_bool


def v1_rows(features: list[dict[str, Any]], instances: list) -> pd.DataFrame:
    names = [f["name"] for f in features]
    if all(isinstance(i, dict) for i in instances):
        return checked_numbers(features, pd.DataFrame.from_records(instances))
    if all(isinstance(i, list) for i in instances):
        bad = next((n for n, i in enumerate(instances) if len(i) != len(names)), None)
        if bad is not None:
            raise InvalidInputError(f"instance {bad} has {len(instances[bad])} values; expected {len(names)} "
                                    f"in the order {names}")
        return checked_numbers(features, pd.DataFrame(instances, columns=names))
    raise InvalidInputError("each instance must be an object {feature: value} or a list of feature values")


def v2_rows(features: list[dict[str, Any]], inputs: list) -> pd.DataFrame:
    columns, lengths = {}, set()
    numeric = {f["name"] for f in features if f["kind"] == "numeric"}
    for inp in inputs:
        if inp.name in numeric and (inp.datatype == "BOOL" or inp.datatype != "BYTES" and has_bool(inp.data)):
            raise InvalidInputError(f"input {inp.name!r} expects numbers (FP64, FP32, INT64, ...), got booleans")
        values = as_numpy(inp)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1:
            raise InvalidInputError(f"input {inp.name!r} has shape {list(values.shape)}; expected [n] (one column)")
        if inp.datatype == "BYTES":
            values = np.array([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object)
        elif not np.issubdtype(values.dtype, np.number) and values.dtype != bool:
            raise InvalidInputError(f"input {inp.name!r} has datatype {inp.datatype}; expected a number or BYTES")
        columns[inp.name] = values
        lengths.add(len(values))
    if len(lengths) != 1:
        raise InvalidInputError(f"inputs have different lengths {sorted(lengths)}; every column needs the same n")
    return checked_numbers(features, pd.DataFrame(columns))


def as_numpy(inp) -> np.ndarray:
    try:
        return inp.as_numpy()
    except Exception as exc:  # the SDK raises several types for data that does not fit shape/datatype
        raise InvalidInputError(f"input {inp.name!r}: {exc}") from None


def checked_numbers(features: list[dict[str, Any]], frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric features: true/false is not a number (pandas would read it as 1/0), and a value beyond
    float32's range cannot be computed with (the model would answer NaN). The transform checks the rest."""
    for f in features:
        if f["kind"] != "numeric" or f["name"] not in frame.columns:
            continue
        col = frame[f["name"]]
        flags = [isinstance(v, (bool, np.bool_)) for v in col] if col.dtype in (bool, object) else []
        if any(flags):
            row = flags.index(True)
            raise InvalidInputError(f"feature {f['name']!r} expects a number, got {str(bool(col.iloc[row])).lower()} "
                                    f"(row {row})")
        values = pd.to_numeric(col, errors="coerce") if col.dtype == object else col
        with np.errstate(invalid="ignore", over="ignore"):
            big = np.abs(np.asarray(values, dtype=np.float64)) > FLOAT32_MAX
        if big.any():
            row = int(np.flatnonzero(big)[0])
            raise InvalidInputError(f"feature {f['name']!r} must be a finite number within ±{FLOAT32_MAX:.3g}, got "
                                    f"{float(values.iloc[row]):g} (row {row})")
    return frame


def typical_value(feature: dict[str, Any]):
    """The most frequent category or the median: what a warm-up request sends."""
    return next(iter(feature["stats"]["top"])) if feature["kind"] == "categorical" else feature["stats"]["median"]
