"""Time-series task: channels → sliding windows [N, C, L] → next-value regression or a binary label.

Windows are a zero-copy ``numpy.lib.stride_tricks.sliding_window_view`` over one contiguous
segment, so a window never crosses a split boundary: the split step cuts the series into
time-ordered segments and each segment is windowed on its own. Channel scaling is fitted on
the train segment only and travels in the bundle.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import DataError, InvalidInputError
from .base import FLOAT32_MAX, FitInputs, TestInputs, has_bool
from .table_requests import as_numpy, typical_value
from .tabular import TabularFamily, _stats


# --- reading channels ------------------------------------------------------------------------

def read_channels(paths: list[Path], frames: list[pd.DataFrame], timestamp: str | None) -> pd.DataFrame:
    """Several files, one channel each (named after the file), side by side; or one wide table."""
    if len(frames) == 1:
        return frames[0]
    columns = []
    for path, frame in zip(paths, frames):
        values = [c for c in frame.columns if c != timestamp]
        if len(values) != 1:
            raise DataError(f"{path}: a channel file holds one value column (besides {timestamp!r}); "
                            f"found {values}")
        col = frame.rename(columns={values[0]: path.stem})
        columns.append(col.set_index(timestamp) if timestamp else col)
    lengths = {len(c) for c in columns}
    if not timestamp and len(lengths) > 1:
        detail = ", ".join(f"{p.name}: {len(c)}" for p, c in zip(paths, columns))
        raise DataError(f"channel files have different lengths ({detail}); expected equal lengths or a "
                        "timeseries.timestamp_column to align them on")
    joined = pd.concat(columns, axis=1, join="inner")
    return joined.reset_index() if timestamp else joined


def clean_series(df: pd.DataFrame, recipe, source: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Sort by time, make channels numeric, fill gaps by interpolation; describe it as a schema."""
    spec = recipe.timeseries
    rows_in = len(df)
    if df.empty:
        raise DataError(f"{source}: the series is empty; expected at least one row")
    ts = spec.timestamp_column
    if ts:
        if ts not in df.columns:
            raise DataError(f"{source}: timestamp column {ts!r} not found; columns are {list(df.columns)}")
        df = df.sort_values(ts, kind="stable").reset_index(drop=True)
    channels = spec.channels or [c for c in df.columns if c not in (ts, spec.group_column)]
    missing = [c for c in channels if c not in df.columns]
    if missing:
        raise DataError(f"{source}: channels {missing} not found; columns are {list(df.columns)}")
    if spec.label_source_channel not in channels:
        raise DataError(f"{source}: timeseries.label_source_channel {spec.label_source_channel!r} is not a channel; "
                        f"channels are {channels}")
    out = df[[c for c in (ts, spec.group_column) if c] + channels].copy()
    for c in channels:
        values = pd.to_numeric(out[c], errors="coerce")
        bad = out[c][values.isna() & out[c].notna()]
        if len(bad):
            raise DataError(f"{source}: channel {c!r} must be numeric; row {bad.index[0]} holds {bad.iloc[0]!r}")
        if values.isna().all():
            raise DataError(f"{source}: channel {c!r} has no values")
        out[c] = values.interpolate(limit_direction="both").astype("float64")
    need = spec.context_len + spec.label_offset
    if len(out) < need + 1:
        raise DataError(f"{source}: {len(out)} rows are too few for context_len {spec.context_len} + "
                        f"label_offset {spec.label_offset}; expected at least {need + 1}")
    inputs = [c for c in channels if not (spec.drop_label_from_x and c == spec.label_source_channel)]
    schema = {
        "family": "timeseries", "source": source, "task": recipe.task, "target": spec.label_source_channel,
        "group_column": spec.group_column, "classes": ["0", "1"] if recipe.task == "classification" else None,
        "n_rows": int(len(out)), "rows": {"rows_in": rows_in, "gaps_interpolated": int(df[channels].isna().sum().sum())},
        "target_stats": _stats(out[spec.label_source_channel], categorical=False),
        "channels": channels,
        "features": [{"name": c, "kind": "numeric", "dtype": "float64", "missing": 0, "imputation": "interpolate",
                      "stats": _stats(out[c], categorical=False)} for c in inputs],
    }
    return out.reset_index(drop=True), schema


def time_segments(n: int, ratios: tuple[float, float, float]) -> list[slice]:
    """Contiguous train / val / test row ranges in time order."""
    a = int(round(n * ratios[0]))
    b = a + int(round(n * ratios[1]))
    return [slice(0, a), slice(a, b), slice(b, n)]


def rolling_folds(n: int, n_folds: int, val_rows: int, test_rows: int) -> list[dict[str, tuple[int, int]]]:
    """Expanding-window folds: train grows, val and test follow it; the last fold ends at n."""
    first_end = n - n_folds * test_rows - val_rows
    if first_end <= 0:
        raise DataError(f"{n} rows cannot hold {n_folds} rolling folds of {val_rows} val + {test_rows} test rows")
    folds = []
    for k in range(n_folds):
        end = first_end + k * test_rows
        folds.append({"train": (0, end), "val": (end, end + val_rows), "test": (end + val_rows, end + val_rows + test_rows)})
    return folds


# --- windows and labels ----------------------------------------------------------------------

def windows(values: np.ndarray, context_len: int, label_offset: int) -> tuple[np.ndarray, slice]:
    """``values`` [T, C] → (X [N, C, L], a read-only view; the label rows, as a slice so labels are a view too)."""
    n = max(len(values) - context_len - label_offset + 1, 0)
    first = context_len - 1 + label_offset
    if n == 0:
        return np.empty((0, values.shape[1], context_len), values.dtype), slice(first, first)
    return sliding_window_view(values, context_len, axis=0)[:n], slice(first, first + n)


@dataclass
class LabelRule:
    kind: str          # value | nonzero | gt | lt | quantile
    threshold: float = 0.0

    def fit(self, y_train: np.ndarray) -> "LabelRule":
        if self.kind == "quantile":
            return LabelRule("gt", float(np.quantile(y_train, self.threshold)))
        return self

    def apply(self, y: np.ndarray) -> np.ndarray:
        return {"value": lambda: y, "nonzero": lambda: (y != 0).astype(np.int64),
                "gt": lambda: (y > self.threshold).astype(np.int64),
                "lt": lambda: (y < self.threshold).astype(np.int64)}[self.kind]()


class ChannelScaler:
    """Per-channel standardisation fitted on the train segment (sklearn-style fit/transform)."""

    def fit(self, values: np.ndarray | pd.DataFrame, channels: list[str] | None = None) -> "ChannelScaler":
        """[T, C] rows, or a table and its channel columns; one channel at a time, in float32 (no [T, C] copy)."""
        if isinstance(values, pd.DataFrame):
            columns = (values[c].to_numpy(np.float32) for c in (channels or values.columns))
        else:
            columns = (values[:, j].astype(np.float32, copy=False) for j in range(values.shape[1]))
        stats = np.array([(col.mean(), col.std()) for col in columns], dtype=np.float32).reshape(-1, 2)
        self.mean_, self.std_ = stats[:, 0].copy(), stats[:, 1].copy()
        self.std_[self.std_ == 0] = 1.0
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        """[T, C] rows or [N, C, L] windows."""
        if values.ndim == 3:
            return (values - self.mean_[None, :, None]) / self.std_[None, :, None]
        return (values - self.mean_) / self.std_


def segment_windows(df: pd.DataFrame, series: dict[str, Any], input_channels: list[str],
                    scaler: ChannelScaler | None):
    """Windows, raw labels and label rows of one segment (per series when there is a group column)."""
    group = series["group_column"]
    groups = [g for _, g in df.groupby(group, sort=False)] if group else [df]
    Xs, ys, ts = [], [], []
    for g in groups:
        inputs = g[input_channels].to_numpy(np.float64)
        if scaler is not None:
            inputs = scaler.transform(inputs)
        X, label_rows = windows(inputs, series["context_len"], series["label_offset"])
        Xs.append(X)
        ys.append(g[series["label_source_channel"]].to_numpy(np.float64)[label_rows])
        ts.append(g.index.to_numpy()[label_rows])
    if len(Xs) == 1:
        return Xs[0], ys[0], ts[0]
    return np.concatenate(Xs), np.concatenate(ys), np.concatenate(ts)


def scaled_windows(df: pd.DataFrame, series: dict[str, Any], input_channels: list[str], scaler: ChannelScaler):
    """Training's windows, lazy: the segment's input channels scaled once into one float32 [T, C] array
    (series one after another when there is a group column) and the start row of every window that fits
    inside one series (``models.batches.Windows``, gathered batch by batch). Also the raw labels and, for
    delta mode, the raw label channel's value at each window's last step."""
    from ..models.batches import Windows

    L, offset = series["context_len"], series["label_offset"]
    group, chunk = series["group_column"], 1 << 16
    parts = list(df.groupby(group, sort=False).indices.values()) if group else [range(len(df))]
    rows = np.concatenate(parts) if group else slice(None)  # each series' rows, one series after another
    values = np.empty((len(df), len(input_channels)), np.float32, order="F")  # channels contiguous (Windows)
    for j, c in enumerate(input_channels):  # float64 arithmetic, a chunk of one channel at a time
        col = df[c].to_numpy(np.float64)[rows]
        for a in range(0, len(col), chunk):
            values[a:a + chunk, j] = (col[a:a + chunk] - scaler.mean_[j]) / scaler.std_[j]
    label = df[series["label_source_channel"]].to_numpy(np.float64)[rows]
    firsts = np.cumsum([0] + [len(part) for part in parts[:-1]])  # each series' first row in values
    counts = [max(len(part) - L - offset + 1, 0) for part in parts]
    ys = [label[f + L - 1 + offset:f + L - 1 + offset + n] for f, n in zip(firsts, counts)]  # views
    lasts = [label[f + L - 1:f + L - 1 + n] for f, n in zip(firsts, counts)]
    if len(parts) == 1:  # one series: window i starts at row i, and no start array is needed
        return Windows(values, None, L, n=counts[0]), ys[0], lasts[0]
    index_type = np.int32 if len(df) < 2**31 else np.int64
    starts = np.concatenate([np.arange(f, f + n, dtype=index_type) for f, n in zip(firsts, counts)])
    return Windows(values, starts, L), np.concatenate(ys), np.concatenate(lasts)


def check_windows(records: Any, n_channels: int, context_len: int) -> np.ndarray:
    """A request's windows → float32 [n, C, L]; wrong shape or non-finite values raise InvalidInputError."""
    try:
        X = np.asarray(records, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInputError(f"each instance must be a window of numbers shaped [{n_channels}][{context_len}] "
                                "(channels × time steps)") from None
    if X.ndim == 2 and n_channels == 1 and X.shape[1] == context_len:
        X = X[:, None, :]
    if X.ndim != 3 or X.shape[1:] != (n_channels, context_len):
        raise InvalidInputError(f"windows have shape {list(X.shape[1:]) if X.ndim >= 2 else list(X.shape)}; "
                                f"expected [{n_channels}, {context_len}] per instance (channels × time steps)")
    if not np.isfinite(X).all():
        raise InvalidInputError("windows must hold finite numbers (no NaN or infinity)")
    return X


def last_label_value(series: dict[str, Any], input_names: list[str], raw_windows: np.ndarray) -> np.ndarray:
    return np.asarray(raw_windows, dtype=np.float64)[:, input_names.index(series["label_source_channel"]), -1]


def check_window_values(windows, where: str) -> None:
    """Numbers only (no true/false), each finite and within float32's range; the shape is checked later."""
    if has_bool(windows):
        raise InvalidInputError(f"{where} must hold numbers, got true/false")
    try:
        values = np.asarray(windows, dtype=np.float64)
    except (TypeError, ValueError):
        return  # ragged or not numbers: check_windows says which window and what shape it expects
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(values) <= FLOAT32_MAX) & ~np.isnan(values)
    if bad.any():
        index = [int(i) for i in np.argwhere(bad)[0]]
        raise InvalidInputError(f"{where}: value {values[tuple(index)]!r} at {index} must be finite and within "
                                f"±{FLOAT32_MAX:.3g}")


def fold_parts(n: int, recipe) -> list[dict[str, np.ndarray]]:
    """Rolling split: expanding folds, each with train, val and test row indices; the pipeline trains
    on the last, the backtest step on every one."""
    spec = recipe.split
    folds = rolling_folds(n, spec.folds, int(round(spec.val * n)), int(round(spec.test * n / spec.folds)))
    return [{part: np.arange(*fold[part]) for part in ("train", "val", "test")} for fold in folds]


# --- the family (see components/tasks/base.py) -------------------------------------------------

class TimeSeriesFamily(TabularFamily):
    """Channels over time, read as tables (one wide file, or one file per channel), fed as windows."""
    name = "timeseries"
    section = "timeseries"
    split_methods = ("time", "rolling", "group")
    table_records = False  # a record is a window of rows

    def check_recipe(self, recipe) -> None:
        spec = recipe.timeseries
        if recipe.task == "detection":
            raise ValueError("task 'detection' needs an image section (YOLO or COCO data)")
        if recipe.split.method not in self.split_methods:
            raise ValueError("time series split with method 'time', 'rolling' or 'group'")
        if (spec.label_rule == "value") != (recipe.task == "regression"):
            raise ValueError(f"timeseries.label_rule {spec.label_rule!r} does not fit task {recipe.task!r} "
                             "('value' for regression, nonzero/gt/lt/quantile for classification)")
        if recipe.split.method == "group" and not spec.group_column:
            raise ValueError("a time-series group split needs timeseries.group_column")

    def combine(self, paths, frames, recipe) -> pd.DataFrame:
        return read_channels(paths, frames, recipe.timeseries.timestamp_column)

    def sample(self, df: pd.DataFrame, recipe) -> pd.DataFrame:
        return df.tail(recipe.data.sample_rows)  # the latest rows, in time order

    def clean(self, raw, recipe, info):
        return clean_series(raw, recipe, source=info.get("source", "data"))

    def split_indices(self, df: pd.DataFrame, recipe):
        """Time order kept: contiguous segments (time), the last expanding fold (rolling), or whole series (group)."""
        from .splits import split_indices

        spec, n = recipe.split, len(df)
        if spec.method == "group":
            grouped = recipe.model_copy(update={"split": spec.model_copy(
                update={"group_column": recipe.timeseries.group_column})})
            return tuple(np.sort(part) for part in split_indices(df, grouped, None))
        if spec.method == "rolling":
            last = fold_parts(n, recipe)[-1]
            return last["train"], last["val"], last["test"]
        return tuple(np.arange(n)[seg] for seg in time_segments(n, (spec.train, spec.val, spec.test)))

    def fit_inputs(self, recipe, schema, train_df, val_df, encoding) -> FitInputs:
        """Scaler fitted on the train segment; windows of train and val, lazy over each segment's scaled
        [T, C] series (``scaled_windows``); labels by the fitted rule."""
        spec = recipe.timeseries
        inputs = [f["name"] for f in schema["features"]]
        delta = recipe.task == "regression" and spec.target_mode == "delta"
        series = {"context_len": spec.context_len, "label_offset": spec.label_offset,
                  "label_source_channel": spec.label_source_channel, "group_column": spec.group_column,
                  "channels": schema["channels"], "target_mode": "delta" if delta else "level"}
        scaler = ChannelScaler().fit(train_df, inputs)
        X_train, y_train, last_train = scaled_windows(train_df, series, inputs, scaler)
        X_val, y_val, last_val = scaled_windows(val_df, series, inputs, scaler)
        if len(X_train) == 0 or len(X_val) == 0:
            raise DataError(f"the train or val segment ({len(train_df)} / {len(val_df)} rows) is shorter than one "
                            f"window ({spec.context_len} + {spec.label_offset} rows); use more data or a shorter "
                            "window")
        rule = LabelRule(spec.label_rule, spec.threshold).fit(y_train)
        if recipe.task == "classification":
            y_train, y_val = rule.apply(y_train).astype(str), rule.apply(y_val).astype(str)
        series.update(label_rule=rule.kind, threshold=rule.threshold)
        if delta:  # differences in float64 (levels may dwarf steps) straight into float32, as training reads them
            y_train, y_val = (np.subtract(y, last, dtype=np.float64, out=np.empty(len(y), np.float32),
                                          casting="same_kind") for y, last in ((y_train, last_train), (y_val, last_val)))
        return FitInputs(X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val, transform=scaler,
                         meta={"series": series})

    def model_inputs(self, meta, transform, records) -> np.ndarray:
        X = check_windows(records, len(meta.features), meta.series["context_len"])
        return transform.transform(X).astype(np.float32)

    def prediction_offset(self, meta, records) -> np.ndarray | float:
        """delta mode: the model predicts the change from the window's last label value; add it back."""
        if meta.series.get("target_mode") != "delta":
            return 0.0
        X = check_windows(records, len(meta.features), meta.series["context_len"])
        return last_label_value(meta.series, [f["name"] for f in meta.features], X)

    def test_inputs(self, meta, test_df: pd.DataFrame) -> TestInputs:
        s = meta.series
        X, y, rows = segment_windows(test_df, s, [f["name"] for f in meta.features], None)
        if s["label_rule"] != "value":
            y = LabelRule(s["label_rule"], s["threshold"]).apply(y).astype(str)
        return TestInputs(X, y, rows)

    def input_example(self, meta, records) -> pd.DataFrame:
        return pd.DataFrame({"window": [w.tolist() for w in records]})  # MLflow keeps one [C][L] list per row

    def frame_records(self, meta, frame: pd.DataFrame):
        if "window" not in frame:
            return frame
        return [np.asarray(w.tolist() if hasattr(w, "tolist") else w, dtype=np.float32).tolist()
                for w in frame["window"]]  # pyfunc hands windows over as a "window" column

    def category_levels(self, transform) -> dict[str, frozenset[str]]:
        return {}

    def v1_records(self, meta, instances: list):
        check_window_values(instances, "instances")
        return instances  # windows [C][L]; model_inputs checks their shape

    def v2_records(self, meta, inputs: list):
        if len(inputs) != 1:
            raise InvalidInputError(f"expected one input, a tensor of windows [n, {len(meta.features)}, "
                                    f"{meta.series['context_len']}]; got {len(inputs)} inputs")
        inp = inputs[0]
        if inp.datatype in ("BOOL", "BYTES") or has_bool(inp.data):
            raise InvalidInputError(f"input {inp.name!r} must hold numbers (FP32/FP64/INT*), not "
                                    f"{'booleans' if inp.datatype != 'BYTES' else 'BYTES'}")
        windows = as_numpy(inp)
        check_window_values(windows, f"input {inp.name!r}")
        return windows

    def input_types(self, meta) -> list[dict[str, Any]]:
        return [{"name": "window", "datatype": "FP32", "shape": [-1, len(meta.features), meta.series["context_len"]]}]

    def warmup_records(self, bundle) -> list:
        return [[[typical_value(f)] * bundle.meta.series["context_len"] for f in bundle.meta.features]]


FAMILY = TimeSeriesFamily()
