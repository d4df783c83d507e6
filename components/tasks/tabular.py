"""Tabular task: reading tables, stateless cleaning, the schema, and the train-fitted transform.

Stateless work (dtype coercion, duplicate and missing-target rows, the schema) happens in the
preprocess step. Everything *fitted* (imputers, scalers, encoders) is built by
``build_feature_transform`` and fitted on the train split only; it travels inside the bundle.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, InvalidInputError
from ..recipe import Recipe

READERS = {
    ".csv": lambda p: pd.read_csv(p),
    ".tsv": lambda p: pd.read_csv(p, sep="\t"),
    ".json": lambda p: _read_json(p),
    ".jsonl": lambda p: pd.read_json(p, lines=True),
    ".parquet": lambda p: pd.read_parquet(p),
    ".pq": lambda p: pd.read_parquet(p),
}
FORMAT_SUFFIX = {"csv": ".csv", "json": ".json", "parquet": ".parquet"}
log = logging.getLogger(__name__)


def _read_json(path: Path) -> pd.DataFrame:
    try:
        return pd.read_json(path)
    except ValueError:
        return pd.read_json(path, lines=True)


def read_frames(paths: list[Path], fmt: str = "auto") -> list[pd.DataFrame]:
    """One DataFrame per file; an empty, unreadable or unsupported file raises DataError naming it."""
    frames = []
    for path in paths:
        suffix = FORMAT_SUFFIX.get(fmt) or path.suffix.lower()
        reader = READERS.get(suffix)
        if reader is None:
            raise DataError(f"{path}: unsupported file type {suffix!r}; expected one of {sorted(READERS)}")
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty (0 bytes); expected a table with a header and rows")
        try:
            names = _header_names(path, suffix)
        except Exception as exc:
            raise DataError(f"{path} could not be read as {suffix[1:]}: {exc}") from exc
        repeated = sorted({n for n in names if n and names.count(n) > 1})
        if repeated:
            raise DataError(f"{path}: column name(s) {repeated} appear more than once in the header; "
                            "expected each column name once")
        try:
            frame = reader(path)
        except Exception as exc:  # the readers raise many types; name the file once
            raise DataError(f"{path} could not be read as {suffix[1:]}: {exc}") from exc
        if frame.empty:
            raise DataError(f"{path} holds no rows; expected at least one data row")
        frames.append(frame)
    return frames


def _header_names(path: Path, suffix: str) -> list[str]:
    """Column names as the file spells them: pandas renames a repeated CSV name to ``a.1`` silently."""
    if suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
            return next(csv.reader(fh, delimiter="\t" if suffix == ".tsv" else ","), [])
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.read_schema(path).names
    return []


def _is_nested(value: Any) -> bool:
    return isinstance(value, (dict, list, tuple, set, np.ndarray))


def check_flat_columns(df: pd.DataFrame, source: str, skip: list[str] = ()) -> None:
    """Tables hold one number, string or missing value per cell; nested values (Parquet struct, list or
    map columns, JSON objects or arrays) are named with their type instead of failing later."""
    import pyarrow as pa

    nested = {}
    for col in df.columns:
        if col in skip or df[col].dtype != object:
            continue
        values = df[col][df[col].map(_is_nested)]
        if len(values):
            try:
                kind = str(pa.array(values.head(20).tolist()).type)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                kind = type(values.iloc[0]).__name__
            nested[str(col)] = kind
    if nested:
        listed = ", ".join(f"{name!r} ({kind})" for name, kind in nested.items())
        raise DataError(f"{source}: column(s) {listed} hold nested values; expected flat columns (one number or "
                        "string per cell): flatten them or list them in data.drop_columns")


def concat_tables(paths: list[Path], frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Files of one table (a glob of parts): same columns, rows appended in file order."""
    if len(frames) > 1:
        columns = [list(f.columns) for f in frames]
        for path, cols in zip(paths[1:], columns[1:]):
            if cols != columns[0]:
                raise DataError(f"{path} has columns {cols}, expected the same columns as {paths[0]}")
    return pd.concat(frames, ignore_index=True)


# --- preprocess (stateless) ------------------------------------------------------------------

def _coerce_numeric(series: pd.Series) -> pd.Series:
    """Object columns whose every value parses as a number become numeric."""
    if series.dtype != object:
        return series
    converted = pd.to_numeric(series, errors="coerce")
    if converted.notna().sum() == series.notna().sum() and series.notna().any():
        return converted
    return series


def is_categorical(series: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def clean_table(df: pd.DataFrame, recipe: Recipe, source: str = "data") -> tuple[pd.DataFrame, dict[str, Any]]:
    """Coerce dtypes, drop duplicate and unusable rows, and describe the result as a schema."""
    spec, target = recipe.preprocess, recipe.data.target
    if df.empty:
        raise DataError(f"{source}: the table is empty; expected at least one row")
    if target not in df.columns:
        raise DataError(f"{source}: target column {target!r} not found; columns are {list(df.columns)}")
    missing_cols = [c for c in [*recipe.data.drop_columns, *(spec.categorical_columns or []),
                                *spec.missing_per_column] if c not in df.columns]
    if recipe.split.group_column and recipe.split.group_column not in df.columns:
        missing_cols.append(recipe.split.group_column)
    if missing_cols:
        raise DataError(f"{source}: the recipe names columns {missing_cols} that are not in the table; "
                        f"columns are {list(df.columns)}")
    report: dict[str, int] = {"rows_in": len(df)}
    df = df.drop(columns=recipe.data.drop_columns)
    check_flat_columns(df, source)
    df = df.apply(_coerce_numeric)

    for col in df.columns:
        if df[col].isna().all():
            if col == target:
                raise DataError(f"{source}: target column {target!r} has no values (all missing); "
                                "expected a value to predict in each row")
            raise DataError(f"{source}: column {col!r} has no values (all missing); "
                            "drop it with data.drop_columns or fix the file")
    if spec.drop_duplicates:
        before = len(df)
        df = df.drop_duplicates()
        report["duplicates_dropped"] = before - len(df)
    df, dropped = _drop_unusable_targets(df, target, source)
    report.update(dropped)
    inf_features = [c for c in df.columns if c != target and _is_float(df[c]) and np.isinf(df[c]).any()]
    if inf_features:
        counts = {c: int(np.isinf(df[c]).sum()) for c in inf_features}
        log.warning("%s: infinite feature values treated as missing: %s", source, counts)
        df = df.assign(**{c: df[c].replace([np.inf, -np.inf], np.nan) for c in inf_features})
        report["infinite_feature_values_as_missing"] = sum(counts.values())

    features = [c for c in df.columns if c != target and c != recipe.split.group_column]
    strategies = {c: spec.missing_per_column.get(c, spec.missing) for c in features}
    drop_rows = [c for c, s in strategies.items() if s == "drop"]
    if drop_rows:
        before = len(df)
        df = df.dropna(subset=drop_rows)
        report["missing_feature_dropped"] = before - len(df)
    if df.empty:
        raise DataError(f"{source}: no rows left after dropping duplicates and missing values")

    classes = _check_target(df[target], recipe, source)
    if classes is not None:
        df = df.assign(**{target: df[target].astype(str)})
    forced = set(spec.categorical_columns or [])
    schema = {
        "family": "tabular",
        "source": source,
        "task": recipe.task,
        "target": target,
        "group_column": recipe.split.group_column,
        "classes": classes,
        "n_rows": int(len(df)),
        "rows": report,
        "target_stats": _stats(df[target], categorical=classes is not None),
        "features": [
            {
                "name": col,
                "kind": "categorical" if col in forced or is_categorical(df[col]) else "numeric",
                "dtype": str(df[col].dtype),
                "missing": int(df[col].isna().sum()),
                "imputation": strategies[col],
                "stats": _stats(df[col], categorical=col in forced or is_categorical(df[col])),
            }
            for col in features
        ],
    }
    if not schema["features"]:
        raise DataError(f"{source}: no feature columns besides target {target!r}")
    return df.reset_index(drop=True), schema


def _is_float(col: pd.Series) -> bool:
    return pd.api.types.is_float_dtype(col)


def _drop_unusable_targets(df: pd.DataFrame, target: str, source: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows whose target is missing or ±inf teach nothing and crash the fit: dropped and counted."""
    y = df[target]
    missing = y.isna()
    infinite = np.isinf(y) if _is_float(y) else pd.Series(False, index=y.index)
    counts = {"missing_target_dropped": int(missing.sum()), "infinite_target_dropped": int(infinite.sum())}
    if not counts["missing_target_dropped"] and not counts["infinite_target_dropped"]:
        return df, counts
    log.warning("%s: dropped %d row(s) whose target %r is missing and %d whose target is infinite", source,
                counts["missing_target_dropped"], target, counts["infinite_target_dropped"])
    kept = df[~(missing | infinite)]
    if kept.empty:
        raise DataError(f"{source}: target column {target!r} has no finite value ({counts['missing_target_dropped']} "
                        f"missing, {counts['infinite_target_dropped']} infinite); expected a value to predict in "
                        "each row")
    return kept, counts


def _check_target(y: pd.Series, recipe: Recipe, source: str) -> list[str] | None:
    name = recipe.data.target
    if recipe.task == "regression":
        if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
            example = y.dropna().astype(str).iloc[0]
            raise DataError(f"{source}: target {name!r} must be numeric for regression; "
                            f"found values like {example!r}")
        return None
    classes = sorted(y.astype(str).unique())
    if len(classes) < 2:
        raise DataError(f"{source}: target {name!r} has a single class {classes}; "
                        "classification needs at least two")
    return classes


def _stats(col: pd.Series, categorical: bool) -> dict[str, Any]:
    if categorical:
        counts = col.astype(str).value_counts()
        return {"unique": int(counts.size), "top": {str(k): int(v) for k, v in counts.head(10).items()}}
    values = col.astype(float)
    return {k: float(getattr(values, k)()) for k in ("mean", "std", "min", "median", "max")}


def schema_markdown(schema: dict[str, Any]) -> str:
    lines = [f"# Data report: {schema['source']}", "",
             f"Task **{schema['task']}**, target `{schema['target']}`, **{schema['n_rows']:,}** rows kept.", ""]
    lines += [f"- {k.replace('_', ' ')}: {v:,}" for k, v in schema["rows"].items()]
    if schema["classes"] and "top" in schema["target_stats"]:
        lines += ["", "Class counts: " + ", ".join(f"`{k}` {v}" for k, v in schema["target_stats"]["top"].items())]
    lines += ["", "| feature | kind | dtype | missing | imputation | summary |", "|---|---|---|---|---|---|"]
    for f in schema["features"]:
        s = f["stats"]
        summary = (f"{s['unique']} values" if f["kind"] == "categorical"
                   else f"mean {s['mean']:.4g}, std {s['std']:.4g}, [{s['min']:.4g}, {s['max']:.4g}]")
        lines.append(f"| {f['name']} | {f['kind']} | {f['dtype']} | {f['missing']} | {f['imputation']} | {summary} |")
    return "\n".join(lines) + "\n"


# --- fitted transform (travels in the bundle) -------------------------------------------------

def _shift_unknown(codes):
    """Ordinal codes with unknown = -1 → unknown = 0, so every code indexes an embedding row."""
    return codes + 1


def build_feature_transform(schema: dict[str, Any], scaler: str, categorical: str = "onehot"):
    """A ColumnTransformer: imputation per column strategy, scaling, and one-hot or ordinal codes.

    Numeric columns come first in the output, categorical ones last (token models rely on it).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import (FunctionTransformer, MinMaxScaler, OneHotEncoder, OrdinalEncoder,
                                       QuantileTransformer, StandardScaler)

    scalers = {
        "standard": StandardScaler,
        "minmax": MinMaxScaler,
        "quantile": lambda: QuantileTransformer(output_distribution="normal", subsample=10**9, random_state=0),
        "none": lambda: "passthrough",
    }
    groups: dict[tuple[str, str], list[str]] = {}
    for f in schema["features"]:
        # "drop" rows were removed before training; at serving time a gap gets the median.
        strategy = "most_frequent" if f["kind"] == "categorical" else (
            "median" if f["imputation"] == "drop" else f["imputation"])
        groups.setdefault((f["kind"], strategy), []).append(f["name"])
    parts = []
    encoders = {
        "onehot": lambda: [OneHotEncoder(handle_unknown="ignore", sparse_output=False)],
        "ordinal": lambda: [OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                            FunctionTransformer(_shift_unknown)],
    }
    for (kind, strategy), cols in sorted(groups.items(), key=lambda item: item[0][0] != "numeric"):
        if kind == "numeric":
            steps = [SimpleImputer(strategy=strategy, keep_empty_features=True), scalers[scaler]()]
        else:
            steps = [SimpleImputer(strategy="most_frequent", missing_values=None), *encoders[categorical]()]
        parts.append((f"{kind}_{strategy}", make_pipeline(*steps), cols))
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)


def coerce_features(records: pd.DataFrame, features: list[dict[str, Any]]) -> pd.DataFrame:
    """Check raw records against the feature schema and give each column its trained type.

    Missing or unknown columns and unparsable values raise ``InvalidInputError`` naming them.
    """
    names = [f["name"] for f in features]
    missing = [n for n in names if n not in records.columns]
    unknown = [c for c in records.columns if c not in names]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing feature(s) {missing}")
        if unknown:
            parts.append(f"unknown feature(s) {unknown}")
        raise InvalidInputError(f"{' and '.join(parts)}; expected exactly {names}")
    out = {}
    for f in features:
        col = records[f["name"]]
        if f["kind"] == "categorical":
            out[f["name"]] = col.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
            continue
        if col.dtype == object:
            bad = col[[not (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))) for v in col]]
            if len(bad):
                raise InvalidInputError(f"feature {f['name']!r} expects a number, got {bad.iloc[0]!r} "
                                        f"(row {bad.index[0]})")
        values = pd.to_numeric(col, errors="coerce").astype(float)
        if np.isinf(values).any():
            raise InvalidInputError(f"feature {f['name']!r} must be finite, got infinity")
        out[f["name"]] = values
    return pd.DataFrame(out, index=records.index)


def category_cardinalities(transform) -> list[int]:
    """Embedding sizes of the ordinal-coded columns of a fitted transform (unknown included)."""
    return [len(cats) + 1 for name, pipe, _ in transform.transformers_ if name.startswith("categorical")
            for cats in pipe.steps[1][1].categories_]


# --- the family interface (see components/tasks/__init__.py) ---------------------------------

def fit_inputs(recipe, schema: dict[str, Any], train_df: pd.DataFrame, val_df: pd.DataFrame, encoding: str):
    """Fit the feature transform on train; return it with model inputs and raw targets."""
    features = [f["name"] for f in schema["features"]]
    transform = build_feature_transform(schema, recipe.preprocess.scaler, encoding).fit(train_df[features])
    X_train = np.asarray(transform.transform(train_df[features]), dtype=np.float32)
    X_val = np.asarray(transform.transform(val_df[features]), dtype=np.float32)
    return transform, X_train, train_df[schema["target"]].to_numpy(), X_val, val_df[schema["target"]].to_numpy(), {}


def model_inputs(meta, transform, records) -> np.ndarray:
    frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(records)
    names = [f["name"] for f in meta.features]
    if frame.empty:
        raise InvalidInputError(f"no records given; expected at least one with features {names}")
    frame = coerce_features(frame, meta.features)
    # The fitted parts one after another, as ColumnTransformer.transform would, minus its joblib
    # dispatch, which costs more than the work itself on a one-row request.
    parts = [pipe.transform(frame[cols]) for _, pipe, cols in transform.transformers_ if pipe != "drop" and len(cols)]
    return np.hstack(parts).astype(np.float32)


def prediction_offset(meta, records) -> float:
    return 0.0


def test_inputs(meta, test_df: pd.DataFrame):
    """What evaluate feeds the bundle, the true targets, and the x-axis for plots."""
    return test_df[[f["name"] for f in meta.features]], test_df[meta.target].to_numpy(), None
