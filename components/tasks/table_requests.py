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
        numbers = plain_numbers(features, instances)
        if numbers is not None:
            return pd.DataFrame(numbers, columns=names)
        return checked_numbers(features, pd.DataFrame.from_records(instances))
    if all(isinstance(i, list) for i in instances):
        bad = next((n for n, i in enumerate(instances) if len(i) != len(names)), None)
        if bad is not None:
            raise InvalidInputError(f"instance {bad} has {len(instances[bad])} values; expected {len(names)} "
                                    f"in the order {names}")
        return checked_numbers(features, pd.DataFrame(instances, columns=names))
    raise InvalidInputError("each instance must be an object {feature: value} or a list of feature values")


def plain_numbers(features: list[dict[str, Any]], instances: list[dict]) -> np.ndarray | None:
    """The usual request to a numeric table, as one float array without pandas' per-column type
    inference: records holding exactly the features, each value an int or float within float32's
    range. Anything else (a missing or extra key, null, text, true/false, a huge number) gives None,
    and the general path names what is wrong."""
    if any(f["kind"] != "numeric" for f in features):
        return None
    names = [f["name"] for f in features]
    try:
        rows = [[record[name] for name in names] for record in instances if len(record) == len(names)]
    except KeyError:
        return None
    if len(rows) != len(instances) or any(type(v) not in (int, float) for row in rows for v in row):
        return None  # type(v), not isinstance: bool is an int subclass, and true is not a number here
    try:
        values = np.array(rows, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        return None
    return values if np.abs(values).max(initial=0.0) <= FLOAT32_MAX else None


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
    float32's range cannot be computed with (the model would answer NaN). The transform checks the rest.
    One conversion for all numeric columns: per-column pandas calls cost more than a one-row request."""
    names = [f["name"] for f in features if f["kind"] == "numeric" and f["name"] in frame.columns]
    if not names:
        return frame
    dtypes = frame.dtypes
    if all(dtype.kind in "iuf" for dtype in dtypes):  # numbers only (the usual request): one array, no copies
        columns = list(frame.columns)
        values = frame.to_numpy(dtype=np.float64)[:, [columns.index(n) for n in names]]
    else:
        block, loose = frame[names], []
        for name in names:
            if dtypes[name] == object or dtypes[name] == bool:  # only these can hold true/false
                flags = [isinstance(v, (bool, np.bool_)) for v in block[name]]
                if any(flags):
                    row = flags.index(True)
                    raise InvalidInputError(f"feature {name!r} expects a number, got "
                                            f"{str(bool(block[name].iloc[row])).lower()} (row {row})")
                loose += [name] if dtypes[name] == object else []
        if loose:  # text cells: the transform names those it cannot read; here only their size matters
            block = block.assign(**{name: pd.to_numeric(block[name], errors="coerce") for name in loose})
        values = block.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore", over="ignore"):
        big = np.abs(values) > FLOAT32_MAX
    if big.any():
        row, column = (int(i[0]) for i in np.nonzero(big))
        raise InvalidInputError(f"feature {names[column]!r} must be a finite number within ±{FLOAT32_MAX:.3g}, got "
                                f"{values[row, column]:g} (row {row})")
    return frame


def typical_value(feature: dict[str, Any]):
    """The most frequent category or the median: what a warm-up request sends."""
    return next(iter(feature["stats"]["top"])) if feature["kind"] == "categorical" else feature["stats"]["median"]
