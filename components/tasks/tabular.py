"""Tabular task: reading tables, stateless cleaning, the schema, and the train-fitted transform.

Stateless work (dtype coercion, duplicate and missing-target rows, the schema) happens in the
preprocess step. Everything *fitted* (imputers, scalers, encoders) is built by
``build_feature_transform`` and fitted on the train split only; it travels inside the bundle.
"""
from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import DataError, InvalidInputError
from .base import Family, FitInputs, TestInputs
from .compiled_transform import compiled
from .table_requests import typical_value, v1_rows, v2_rows

if TYPE_CHECKING:  # annotations only: recipe → check → tabular must not import back
    from ..recipe import Recipe
FORMAT_SUFFIX = {"csv": ".csv", "json": ".json", "parquet": ".parquet"}
SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".jsonl", ".parquet", ".pq")
log = logging.getLogger(__name__)

# Text that means "no value", as people and tools write it: pandas' own markers plus ? (ARFF, UCI) and
# a lone -. ``data.na_values`` replaces them (a list for every column, or a mapping for some columns);
# an empty cell is always missing.
MISSING_MARKERS = ("", "?", "-", "NA", "N/A", "n/a", "na", "null", "NULL", "Null", "None", "none", "NaN", "nan",
                   "#N/A", "#N/A N/A", "#NA", "<NA>", "-NaN", "-nan", "1.#IND", "-1.#IND", "1.#QNAN", "-1.#QNAN")
SNIFF_BYTES = 1 << 16
DELIMITERS = (",", ";", "\t", "|")
_COMMA_NUMBER = re.compile(r"^[+-]?(\d{1,3}(\.\d{3})+|\d+),\d+$")
_DOT_NUMBER = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)\.\d+$")
_DOTTED_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(\.\d{3})+,\d+$")


def markers_for(na_values, columns) -> dict[str, frozenset[str]]:
    """Column → the text read as missing there (see ``MISSING_MARKERS``)."""
    default = frozenset(MISSING_MARKERS)
    if isinstance(na_values, (list, tuple)):
        default = frozenset([*na_values, ""])
    per_column = na_values if isinstance(na_values, dict) else {}
    return {str(c): frozenset([*per_column[c], ""]) if c in per_column else default for c in columns}


def detect_encoding(sample: bytes) -> str:
    """UTF-8 (with or without BOM) when the bytes decode as it; else charset-normalizer's guess when it is
    installed; else latin-1, which decodes any byte."""
    import codecs

    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)  # a cut multi-byte tail is fine
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes
    except ImportError:
        return "latin-1"
    best = from_bytes(sample).best()
    return best.encoding if best is not None else "latin-1"


def sniff_csv(path: Path, options=None) -> dict[str, Any]:
    """The CSV dialect of ``path``: delimiter, decimal mark, thousands separator, encoding. What
    ``options`` (the recipe's ``data.read_options``) sets is used as is; the rest is sniffed from the
    first 64 KiB (``sniffed`` lists which)."""
    set_ = {k: getattr(options, k, None) for k in ("delimiter", "decimal", "thousands", "encoding")}
    with open(path, "rb") as fh:
        sample = fh.read(SNIFF_BYTES)
    truncated = len(sample) == SNIFF_BYTES
    encoding = set_["encoding"] or detect_encoding(sample)
    text = sample.decode(encoding, errors="replace")
    lines = text.splitlines()
    if truncated and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    lines = [ln for ln in lines[:200] if ln.strip()]
    delimiter = set_["delimiter"] or _sniff_delimiter(lines, "\t" if path.suffix.lower() == ".tsv" else ",")
    rows = list(csv.reader(lines, delimiter=delimiter))[1:]
    fields = [v.strip() for row in rows for v in row]
    decimal = set_["decimal"]
    if decimal is None:
        commas = sum(bool(_COMMA_NUMBER.match(v)) for v in fields) if delimiter != "," else 0
        dots = sum(bool(_DOT_NUMBER.match(v)) for v in fields)
        decimal = "," if commas > dots else "."
    thousands = set_["thousands"]
    if thousands is None and decimal == "," and any(_DOTTED_THOUSANDS.match(v) for v in fields):
        thousands = "."
    if thousands == decimal:
        raise DataError(f"{path}: data.read_options sets the same character {decimal!r} as decimal mark and "
                        "thousands separator; expected two different ones")
    return {"delimiter": delimiter, "decimal": decimal, "thousands": thousands, "encoding": encoding,
            "sniffed": sorted(k for k, v in set_.items() if v is None)}


def _sniff_delimiter(lines: list[str], fallback: str) -> str:
    """The candidate that splits the header into the most fields, the same number in (nearly) every row;
    csv.Sniffer's choice breaks ties."""
    if not lines:
        return fallback
    try:
        preferred = csv.Sniffer().sniff("\n".join(lines[:50]), delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        preferred = fallback
    best, best_score = fallback, (0.0, 0, False, False)
    for cand in DELIMITERS:
        counts = [len(r) for r in csv.reader(lines, delimiter=cand)]
        if counts[0] < 2:
            continue
        consistent = sum(c == counts[0] for c in counts) / len(counts)
        score = (round(consistent, 2), counts[0], cand == preferred, cand == fallback)
        if score > best_score:
            best, best_score = cand, score
    return best


def _read_csv(path: Path, dialect: dict[str, Any], markers: dict[str, frozenset[str]]) -> pd.DataFrame:
    return pd.read_csv(path, sep=dialect["delimiter"], decimal=dialect["decimal"], thousands=dialect["thousands"],
                       encoding=dialect["encoding"], keep_default_na=False, na_values={c: sorted(m) for c, m in
                                                                                     markers.items()},
                       skipinitialspace=True, low_memory=False)


def _read_json(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".jsonl":
        return pd.read_json(path, lines=True, convert_dates=False)
    try:
        return pd.read_json(path, convert_dates=False)
    except ValueError:
        return pd.read_json(path, lines=True, convert_dates=False)


def mark_missing(df: pd.DataFrame, markers: dict[str, frozenset[str]]) -> pd.DataFrame:
    """Text cells that are a missing marker (surrounding spaces ignored) become missing."""
    changes = {}
    for col in df.columns:
        if df[col].dtype != object:
            continue
        values = df[col]
        text = values.map(lambda v: v.strip() if isinstance(v, str) else v)
        hit = text.map(lambda v: isinstance(v, str) and v in markers[str(col)]).astype(bool)
        if hit.any():
            changes[col] = values.mask(hit, np.nan)
    return df.assign(**changes) if changes else df


def read_table(path: Path, fmt: str = "auto", data=None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One file as a DataFrame, missing markers read as missing, and what was learnt about it (the CSV
    dialect, missing values per column). ``data`` is the recipe's DataSpec (na_values, read_options)."""
    suffix = FORMAT_SUFFIX.get(fmt) or path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix!r}; expected one of {sorted(SUFFIXES)}")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); expected a table with a header and rows")
    is_csv = suffix in (".csv", ".tsv", ".txt")
    try:
        dialect = sniff_csv(path, getattr(data, "read_options", None)) if is_csv else None
        names = _header_names(path, suffix, dialect)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path} could not be read as {suffix[1:]}: {exc}") from exc
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        raise DataError(f"{path}: column name(s) {repeated} appear more than once in the header; "
                        "expected each column name once")
    na_values = getattr(data, "na_values", None)
    unknown = sorted(set(na_values or {}) - set(names)) if isinstance(na_values, dict) and names else []
    if unknown:
        raise DataError(f"{path}: data.na_values names column(s) {unknown} that are not in the header; "
                        f"columns are {names}")
    try:
        if is_csv:
            frame = _read_csv(path, dialect, markers_for(na_values, names))
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = _read_json(path)
    except Exception as exc:  # the readers raise many types; name the file once
        hint = f" (read with {_describe_dialect(dialect)})" if dialect else ""
        raise DataError(f"{path} could not be read as {suffix[1:]}{hint}: {exc}") from exc
    if frame.empty:
        raise DataError(f"{path} holds no rows; expected at least one data row")
    frame = mark_missing(frame, markers_for(na_values, frame.columns))
    found: dict[str, Any] = {"missing_as_read": {str(c): int(n) for c, n in frame.isna().sum().items() if n}}
    if dialect:
        found["csv"] = dialect
        if dialect["sniffed"]:
            log.info("%s: %s", path, _describe_dialect(dialect))
    return frame, found


def _describe_dialect(d: dict[str, Any]) -> str:
    shown = {"\t": "tab", ",": "','", ";": "';'", "|": "'|'", ".": "'.'", " ": "space", "'": "\"'\""}
    text = (f"delimiter {shown.get(d['delimiter'], repr(d['delimiter']))}, decimal mark "
            f"{shown.get(d['decimal'], repr(d['decimal']))}, encoding {d['encoding']}")
    if d.get("thousands"):
        text += f", thousands separator {shown.get(d['thousands'], repr(d['thousands']))}"
    return text + (f" (sniffed: {', '.join(d['sniffed'])})" if d.get("sniffed") else "")


def read_frames(paths: list[Path], fmt: str = "auto", data=None) -> list[pd.DataFrame]:
    """One DataFrame per file; an empty, unreadable or unsupported file raises DataError naming it."""
    return [read_table(path, fmt, data)[0] for path in paths]


def header_names(path: Path, read_options=None) -> list[str] | None:
    """A table's column names without reading its rows (CSV in its sniffed dialect, Parquet's schema);
    None for formats without a cheap header."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        return _header_names(path, suffix, sniff_csv(path, read_options))
    if suffix in (".parquet", ".pq"):
        return _header_names(path, suffix, None)
    return None


def _header_names(path: Path, suffix: str, dialect: dict[str, Any] | None) -> list[str]:
    """Column names as the file spells them: pandas renames a repeated CSV name to ``a.1`` silently."""
    if suffix in (".csv", ".tsv", ".txt"):
        with open(path, newline="", encoding=dialect["encoding"], errors="replace") as fh:
            return [n.strip() for n in next(csv.reader(fh, delimiter=dialect["delimiter"]), [])]
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.read_schema(path).names
    return []


def delimiter_hint(columns) -> str:
    """When a table has one column whose name holds a ; tab or |, the file was split at the wrong delimiter."""
    cols = [str(c) for c in columns]
    if len(cols) == 1 and any(d in cols[0] for d in (";", "\t", "|", ",")):
        found = next(d for d in (";", "\t", "|", ",") if d in cols[0])
        return (f"; the header was read as one column, so the file likely uses {found!r} between fields: set "
                f"data.read_options.delimiter: {found!r}" if found != "\t" else
                "; the header was read as one column, so the file likely uses tabs between fields: set "
                "data.read_options.delimiter to a tab")
    return ""


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
        raise DataError(f"{source}: target column {target!r} not found; columns are {list(df.columns)}"
                        f"{delimiter_hint(df.columns)}")
    keep_ids = spec.keep_id_columns if isinstance(spec.keep_id_columns, list) else []
    missing_cols = [c for c in [*recipe.data.drop_columns, *(spec.categorical_columns or []),
                                *spec.missing_per_column, *spec.ordinal, *keep_ids] if c not in df.columns]
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
    orders = _check_orders(df, spec.ordinal, source)
    special = {target, recipe.split.group_column, *(spec.categorical_columns or []), *orders}
    dates = [c for c in df.columns if spec.dates and c not in special and is_date_column(df[c])]
    if spec.drop_duplicates:
        before = len(df)
        df = df.drop_duplicates()
        report["duplicates_dropped"] = before - len(df)
    df, dropped = _drop_unusable_targets(df, target, source)
    report.update(dropped)
    id_columns = {} if spec.keep_id_columns is True else {
        c: int(df[c].nunique()) for c in df.columns
        if c not in special and c not in dates and c not in keep_ids and is_id_like(df[c])}
    if id_columns:
        log.warning("%s: dropped identifier-like column(s) from the features (one distinct value in nearly every "
                    "row): %s; set preprocess.keep_id_columns to keep them", source,
                    ", ".join(f"{c!r} ({n:,} distinct in {len(df):,} rows)" for c, n in id_columns.items()))
        df = df.drop(columns=list(id_columns))
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
    forced = set(spec.categorical_columns or []) | set(orders)

    def kind(col: str) -> str:
        return "datetime" if col in dates else "categorical" if col in forced or is_categorical(df[col]) else "numeric"

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
                "kind": kind(col),
                "dtype": str(df[col].dtype),
                "missing": int(df[col].isna().sum()),
                "imputation": strategies[col],
                "stats": _date_stats(df[col]) if kind(col) == "datetime" else _stats(
                    df[col], categorical=kind(col) == "categorical"),
                **({"order": orders[col]} if col in orders else {}),
            }
            for col in features if col in df.columns
        ],
        "id_columns_dropped": id_columns,
        "missing_markers": _markers_note(recipe.data.na_values),
    }
    if not schema["features"]:
        raise DataError(f"{source}: no feature columns besides target {target!r}")
    return df.reset_index(drop=True), schema


# --- what the columns are: dates, identifiers, ordered categories ------------------------------

_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::\d{2}(?:\.\d+)?)?\s*"
                   r"(?:Z|[+-]\d{2}:?\d{2})?)?$")
_DATE_PART = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
ID_DISTINCT_SHARE = 0.9   # distinct values / non-missing rows at which a text column is an identifier
ID_MIN_ROWS = 20


def is_date_column(series: pd.Series) -> bool:
    """A datetime column, or text whose every value is an ISO-like date or date-time (2024-01-31,
    2024/01/31, 2024-01-31T12:30[:00][Z|+01:00])."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    if series.dtype != object:
        return False
    values = series.dropna()
    if values.empty or not all(isinstance(v, str) for v in values.head(1000)):
        return False
    text = values.astype(str).str.strip()
    if not text.str.match(_DATE).all():
        return False
    return bool(to_datetimes(text).notna().all())


def to_datetimes(values) -> pd.Series:
    """Dates and date-times as naive UTC timestamps (NaT where missing or unparsable); ISO-like text
    with -, / or . between the date parts, or datetime values."""
    s = pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(s.dt, "tz", None) is not None else s
    text = s.map(lambda v: v.strip() if isinstance(v, str) else None if v is None or v is pd.NaT or (
        isinstance(v, float) and np.isnan(v)) else str(v))
    text = text.str.replace(_DATE_PART, lambda m: f"{m[1]}-{int(m[2]):02d}-{int(m[3]):02d}", regex=True)
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    return parsed.dt.tz_localize(None)


def is_id_like(series: pd.Series) -> bool:
    """Text with (nearly) one distinct value per row: a name, a key, free text. As a category it
    teaches nothing and makes the served model demand it."""
    if series.dtype != object:
        return False
    values = series.dropna()
    return len(values) >= ID_MIN_ROWS and values.astype(str).nunique() >= ID_DISTINCT_SHARE * len(values)


def _as_level(value) -> str:
    """A cell as the text an ordinal level is compared with (2.0 → '2')."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_orders(df: pd.DataFrame, orders: dict[str, list[str]], source: str) -> dict[str, list[str]]:
    """Every value of an ordered column is one of its listed levels."""
    for col, levels in orders.items():
        present = set(df[col].dropna().map(_as_level))
        stray = sorted(present - set(levels))
        if stray:
            raise DataError(f"{source}: column {col!r} has value(s) {stray[:10]} that preprocess.ordinal.{col} "
                            f"does not list; expected only {levels} (lowest first)")
    return dict(orders)


def _date_stats(col: pd.Series) -> dict[str, Any]:
    dt = to_datetimes(col).dropna()
    fmt = "%Y-%m-%dT%H:%M:%S" if (dt.dt.hour + dt.dt.minute + dt.dt.second).any() else "%Y-%m-%d"
    return {"min": dt.min().strftime(fmt), "median": dt.quantile(0.5, interpolation="nearest").strftime(fmt),
            "max": dt.max().strftime(fmt), "unique": int(dt.nunique())}


def _markers_note(na_values) -> str:
    if na_values is None:
        shown = [m for m in MISSING_MARKERS[1:8]]
        return "empty cells and " + ", ".join(f"`{m}`" for m in shown) + " (and pandas' markers)"
    if isinstance(na_values, dict):
        return "; ".join(f"{c}: " + ", ".join(f"`{m}`" for m in v) for c, v in na_values.items()) + \
            " (data.na_values; the other columns: the defaults)"
    return "empty cells and " + ", ".join(f"`{m}`" for m in na_values) + " (data.na_values)"


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
    if schema.get("missing_markers"):
        lines += ["", f"Read as missing: {schema['missing_markers']}."]
    if schema.get("missing_as_read"):
        lines += ["", "Missing values as read, per column: " + ", ".join(
            f"`{c}` {n:,}" for c, n in schema["missing_as_read"].items()) + "."]
    if schema.get("csv"):
        lines += ["", f"CSV read with {_describe_dialect(schema['csv'])}."]
    if schema.get("id_columns_dropped"):
        lines += ["", "**Identifier-like columns dropped from the features** (one distinct value in nearly every "
                  "row; `preprocess.keep_id_columns` keeps them): " + ", ".join(
                      f"`{c}` ({n:,} distinct)" for c, n in schema["id_columns_dropped"].items()) + "."]
    lines += ["", "| feature | kind | dtype | missing | imputation | summary |", "|---|---|---|---|---|---|"]
    for f in schema["features"]:
        s = f["stats"]
        summary = (f"ordered: {' < '.join(f['order'])}" if f.get("order") else
                   f"{s['unique']} values" if f["kind"] == "categorical" else
                   f"{s['min']} to {s['max']} → year, month, weekday, day of year, ordinal" if f["kind"] == "datetime"
                   else f"mean {s['mean']:.4g}, std {s['std']:.4g}, [{s['min']:.4g}, {s['max']:.4g}]")
        lines.append(f"| {f['name']} | {f['kind']} | {f['dtype']} | {f['missing']} | {f['imputation']} | {summary} |")
    return "\n".join(lines) + "\n"


# --- fitted transform (travels in the bundle) -------------------------------------------------

def _shift_unknown(codes):
    """Ordinal codes with unknown = -1 → unknown = 0, so every code indexes an embedding row."""
    return codes + 1


MISSING_CATEGORY = "(missing)"  # a missing category is a value of its own: "no cabin" is not "the usual cabin"
KIND_ORDER = {"numeric": 0, "datetime": 1, "ordered": 2, "categorical": 3}


class DateFeatures:
    """Date/datetime columns → year, month, day of week, day of year, hour (where the train data has a
    time of day) and a monotonic ordinal (days since 1970-01-01), as floats; NaN where missing.

    Stateless but for which columns carry hours, so a year never seen in training is still a number
    (not an unknown category). Text is parsed as ``to_datetimes`` does: the same at train and serve time.
    """

    def get_params(self, deep: bool = True) -> dict:  # no parameters; lets scikit-learn clone it
        return {}

    def set_params(self, **params) -> "DateFeatures":
        return self

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)

    def fit(self, X, y=None):
        frame = pd.DataFrame(X)
        self.columns_ = [str(c) for c in frame.columns]
        self.hours_ = {}
        for c in frame.columns:
            dt = to_datetimes(frame[c]).dropna()
            self.hours_[str(c)] = bool((dt.dt.hour + dt.dt.minute).any())
        return self

    def transform(self, X):
        frame = pd.DataFrame(X)
        parts = []
        for c, name in zip(frame.columns, self.columns_):
            dt = to_datetimes(frame[c])
            cols = [dt.dt.year, dt.dt.month, dt.dt.dayofweek, dt.dt.dayofyear]
            if self.hours_[name]:
                cols.append(dt.dt.hour + dt.dt.minute / 60)
            cols.append((dt - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1))
            parts.extend(np.asarray(col, dtype=np.float64) for col in cols)
        return np.column_stack(parts) if parts else np.zeros((len(frame), 0))

    def get_feature_names_out(self, input_features=None):
        names = []
        for name in self.columns_:
            parts = ["year", "month", "day_of_week", "day_of_year", *(["hour"] if self.hours_[name] else []), "ordinal"]
            names += [f"{name}_{p}" for p in parts]
        return np.asarray(names, dtype=object)


def build_feature_transform(schema: dict[str, Any], scaler: str, categorical: str = "onehot"):
    """A ColumnTransformer: imputation per column strategy, scaling, and one-hot or ordinal codes.

    Output order: numeric columns, date features, ordered categories (their rank, scaled), then the
    unordered categories last (token models and native-categorical boosting rely on it).
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
    orders: dict[str, list[str]] = {}
    for f in schema["features"]:
        kind = "ordered" if f.get("order") else f["kind"]
        # "drop" rows were removed before training; at serving time a gap gets the median.
        strategy = "most_frequent" if kind == "categorical" else "median" if f["imputation"] == "drop" else f["imputation"]
        groups.setdefault((kind, strategy), []).append(f["name"])
        if f.get("order"):
            orders[f["name"]] = list(f["order"])
    parts = []
    encoders = {
        "onehot": lambda: [OneHotEncoder(handle_unknown="ignore", sparse_output=False)],
        "ordinal": lambda: [OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                            FunctionTransformer(_shift_unknown)],
    }
    for (kind, strategy), cols in sorted(groups.items(), key=lambda item: KIND_ORDER[item[0][0]]):
        numeric_tail = [SimpleImputer(strategy=strategy, keep_empty_features=True), scalers[scaler]()]
        if kind == "numeric":
            steps = numeric_tail
        elif kind == "datetime":
            steps = [DateFeatures(), *numeric_tail]
        elif kind == "ordered":  # rank in the listed order; a level not listed is missing, then imputed
            steps = [FunctionTransformer(_as_levels, feature_names_out="one-to-one"),
                     OrdinalEncoder(categories=[orders[c] for c in cols], handle_unknown="use_encoded_value",
                                    unknown_value=np.nan, encoded_missing_value=np.nan), *numeric_tail]
        else:
            steps = [SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY, missing_values=None),
                     *encoders[categorical]()]
        parts.append((f"{kind}_{strategy}", make_pipeline(*steps), cols))
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)


def _as_levels(frame):
    """Ordered-category cells as level text (2.0 → '2'); missing stays missing."""
    return pd.DataFrame(frame).map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v))
                                   else _as_level(v)).to_numpy(dtype=object)


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
    numeric = [f["name"] for f in features if f["kind"] not in ("categorical", "datetime")]
    if numeric == names:  # a numeric table: one float block, already in the feature order
        return _numeric_block(records, numeric)
    out = dict(_numeric_block(records, numeric).items()) if numeric else {}
    for f in features:
        col = records[f["name"]]
        if f["name"] in out:
            continue
        if f["kind"] == "categorical":
            out[f["name"]] = col.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
            continue
        if f["kind"] == "datetime":
            parsed = to_datetimes(col)
            given = col.map(lambda v: not (v is None or v is pd.NaT or (isinstance(v, float) and np.isnan(v))))
            bad = col[given.to_numpy(bool) & parsed.isna().to_numpy()]
            if len(bad):
                raise InvalidInputError(f"feature {f['name']!r} expects a date such as {f['stats'].get('min', '2024-01-31')!r}"
                                        f" (ISO: YYYY-MM-DD[THH:MM[:SS]]), got {bad.iloc[0]!r} (row {bad.index[0]})")
            out[f["name"]] = pd.Series(parsed.to_numpy(), index=records.index)
    return pd.DataFrame(out, index=records.index)[names]


def _reads_as_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool)


def _numeric_block(records: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The numeric features as one float block (one conversion for all columns, not one per column)."""
    block = records if list(records.columns) == names else records[names]
    loose = [name for name, dtype in block.dtypes.items() if dtype == object]
    for name in loose:
        col = block[name]
        bad = col[[not (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))) for v in col]]
        if len(bad):  # name a value that is no number at all where there is one: one such cell in a CSV
            worst = bad[[not _reads_as_number(v) for v in bad]]  # makes the whole column text ('8.3', 'abc')
            first = worst if len(worst) else bad
            raise InvalidInputError(f"feature {name!r} expects a number, got {first.iloc[0]!r} (row {first.index[0]})")
    if loose:
        block = block.apply(pd.to_numeric, errors="coerce")
    values = block.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.isinf(values).any(axis=0)
    if infinite.any():
        raise InvalidInputError(f"feature {names[int(np.flatnonzero(infinite)[0])]!r} must be finite, got infinity")
    if block is records and not loose:  # already numbers in the feature order: nothing to rebuild
        return records
    return pd.DataFrame(values, columns=names, index=records.index)


def known_categories(transform) -> dict[str, frozenset[str]]:
    """Column → the categories a fitted transform knows (train's values, or an ordered column's levels)."""
    known = {}
    for name, pipe, cols in getattr(transform, "transformers_", []):
        if not (name.startswith("categorical") or name.startswith("ordered")) or pipe == "drop":
            continue
        encoder = next(step for _, step in pipe.steps if hasattr(step, "categories_"))
        for col, cats in zip(cols, encoder.categories_):
            known[col] = frozenset(str(c) for c in cats if str(c) != MISSING_CATEGORY)
    return known


def unseen_categories(known: dict[str, frozenset[str]], frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per categorical column of raw records: how many values the model never saw, and which (up to 10)."""
    out = {}
    for col, cats in known.items():
        if col not in frame.columns:
            continue
        values = frame[col].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v))
                                else _as_level(v))
        new = values[values.notna() & ~values.isin(cats)]
        if len(new):
            out[col] = {"count": int(len(new)), "values": sorted(set(new))[:10],
                        "rows": [int(i) for i in np.flatnonzero((values.notna() & ~values.isin(cats)).to_numpy())][:100]}
    return out


def category_cardinalities(transform) -> list[int]:
    """Embedding sizes of the ordinal-coded columns of a fitted transform (unknown included)."""
    return [len(cats) + 1 for name, pipe, _ in transform.transformers_ if name.startswith("categorical")
            for cats in next(step for _, step in pipe.steps if hasattr(step, "categories_")).categories_]


# --- the family (see components/tasks/base.py) -------------------------------------------------

class TabularFamily(Family):
    """Rows of named columns: one or many CSV, JSON or Parquet files, or a glob."""
    name = "tabular"
    target_in_header = True
    table_records = True

    def check_recipe(self, recipe: Recipe) -> None:
        if recipe.task not in ("regression", "classification"):
            raise ValueError(f"task {recipe.task!r} needs an image section; tables are for regression or "
                             "classification")
        if not recipe.data.target:
            raise ValueError(f"data.target is required for {self.name} data")
        if recipe.split.method not in self.split_methods:
            raise ValueError(f"split.method {recipe.split.method!r} is for time series (add a timeseries section)")
        if recipe.split.method == "group" and not recipe.split.group_column:
            raise ValueError("split.method 'group' needs split.group_column")

    def read(self, recipe: Recipe) -> tuple[pd.DataFrame, dict[str, Any]]:
        from ..storage import content_hash, expand

        paths = expand(recipe.data.uri)
        log.info("reading %d file(s) from %s", len(paths), recipe.data.uri)
        read = [read_table(path, recipe.data.format, recipe.data) for path in paths]
        df = self.combine(paths, [frame for frame, _ in read], recipe)
        check_flat_columns(df, recipe.data.uri, skip=recipe.data.drop_columns)
        if recipe.data.sample_rows and recipe.data.sample_rows < len(df):
            df = self.sample(df, recipe).reset_index(drop=True)
        return df, {"files": [str(p) for p in paths], "data_hash": content_hash(paths),
                    **_merge_found([f for _, f in read])}

    def combine(self, paths: list[Path], frames: list[pd.DataFrame], recipe: Recipe) -> pd.DataFrame:
        return concat_tables(paths, frames)

    def sample(self, df: pd.DataFrame, recipe: Recipe) -> pd.DataFrame:
        return df.sample(n=recipe.data.sample_rows, random_state=recipe.split.seed)

    def clean(self, raw: pd.DataFrame, recipe: Recipe, info: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
        df, schema = clean_table(raw, recipe, source=info.get("source", "data"))
        # What load learnt reading the file, for the report: its CSV dialect, missing values as read.
        schema.update({k: info[k] for k in ("csv", "missing_as_read") if k in info})
        return df, schema

    def report(self, schema: dict[str, Any]) -> str:
        return schema_markdown(schema)

    def fit_inputs(self, recipe, schema, train_df, val_df, encoding) -> FitInputs:
        """The feature transform fitted on train; model inputs and raw targets."""
        features = [f["name"] for f in schema["features"]]
        transform = build_feature_transform(schema, recipe.preprocess.scaler, encoding).fit(train_df[features])
        return FitInputs(X_train=np.asarray(transform.transform(train_df[features]), dtype=np.float32),
                         y_train=train_df[schema["target"]].to_numpy(),
                         X_val=np.asarray(transform.transform(val_df[features]), dtype=np.float32),
                         y_val=val_df[schema["target"]].to_numpy(), transform=transform)

    def model_inputs(self, meta, transform, records) -> np.ndarray:
        frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(records)
        if frame.empty:
            raise InvalidInputError(f"no records given; expected at least one with features "
                                    f"{[f['name'] for f in meta.features]}")
        frame = coerce_features(frame, meta.features)
        fast = compiled(transform)  # the fitted statistics as numpy: microseconds, not milliseconds, a row
        if fast is not None:
            return fast(frame)
        # The fitted parts one after another, as ColumnTransformer.transform would, minus its joblib
        # dispatch, which costs more than the work itself on a one-row request.
        parts = [pipe.transform(frame[cols]) for _, pipe, cols in transform.transformers_
                 if pipe != "drop" and len(cols)]
        return np.hstack(parts).astype(np.float32)

    def test_inputs(self, meta, test_df: pd.DataFrame) -> TestInputs:
        return TestInputs(test_df[[f["name"] for f in meta.features]], test_df[meta.target].to_numpy())

    def input_example(self, meta, records) -> pd.DataFrame:
        return records[[f["name"] for f in meta.features]].reset_index(drop=True)

    def category_levels(self, transform) -> dict[str, frozenset[str]]:
        return known_categories(transform)

    def v1_records(self, meta, instances: list) -> pd.DataFrame:
        return v1_rows(meta.features, instances)

    def v2_records(self, meta, inputs: list) -> pd.DataFrame:
        return v2_rows(meta.features, inputs)

    def input_types(self, meta) -> list[dict[str, Any]]:
        return [{"name": f["name"], "datatype": "FP64" if f.get("kind") == "numeric" else "BYTES", "shape": [-1]}
                for f in meta.features]

    def warmup_records(self, bundle) -> pd.DataFrame:
        return pd.DataFrame([{f["name"]: typical_value(f) for f in bundle.meta.features}])


def _merge_found(found: list[dict]) -> dict:
    """What reading each file taught (CSV dialect, missing values per column), once for the table."""
    missing: dict[str, int] = {}
    for f in found:
        for col, n in f.get("missing_as_read", {}).items():
            missing[col] = missing.get(col, 0) + n
    out: dict = {"missing_as_read": missing}
    dialects = [f["csv"] for f in found if "csv" in f]
    if dialects:
        out["csv"] = dialects[0]
    return out


FAMILY = TabularFamily()
