"""load: raw files (path, directory or glob; CSV, JSON, Parquet; an image dataset) → one Parquet table."""
from __future__ import annotations

import json
import logging

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..recipe import Recipe
from ..storage import atomic_path, content_hash, expand
from ..errors import DataError
from ..tasks.tabular import check_flat_columns, concat_tables, read_table
from ..tasks.timeseries import read_channels

log = logging.getLogger(__name__)
META_KEY = b"kfp_ml_platform"


def _load_images(recipe: Recipe) -> tuple[pd.DataFrame, dict]:
    import hashlib

    from ..tasks.images import read_dataset

    df, classes, layout = read_dataset(recipe.data.uri, recipe.image.layout)
    digest = hashlib.sha256()
    for data in df["image"]:
        digest.update(data)
    return df, {"files": df["name"].head(20).tolist(), "data_hash": digest.hexdigest()[:16],
                "classes": classes, "layout": layout}


def load(recipe: Recipe, output_path: str) -> dict:
    if recipe.family == "image":
        df, found = _load_images(recipe)
        return _write(recipe, df, found, output_path)
    paths = expand(recipe.data.uri)
    log.info("reading %d file(s) from %s", len(paths), recipe.data.uri)
    read = [read_table(path, recipe.data.format, recipe.data) for path in paths]
    frames = [frame for frame, _ in read]
    found = _merge_found([f for _, f in read])
    if recipe.family == "timeseries":
        df = read_channels(paths, frames, recipe.timeseries.timestamp_column)
    else:
        df = concat_tables(paths, frames)
    check_flat_columns(df, recipe.data.uri, skip=recipe.data.drop_columns)
    if recipe.data.sample_rows and recipe.data.sample_rows < len(df):
        df = (df.tail(recipe.data.sample_rows) if recipe.family == "timeseries"  # keep time order
              else df.sample(n=recipe.data.sample_rows, random_state=recipe.split.seed)).reset_index(drop=True)
    return _write(recipe, df, {"files": [str(p) for p in paths], "data_hash": content_hash(paths), **found},
                  output_path)


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


def _write(recipe: Recipe, df: pd.DataFrame, found: dict, output_path: str) -> dict:
    info = {"source": recipe.data.uri, **found, "rows": len(df), "columns": list(map(str, df.columns))}
    try:
        table = pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # e.g. a column mixing numbers and text
        mixed = {str(c): sorted({type(v).__name__ for v in df[c].dropna()}) for c in df.columns
                 if df[c].dtype == object and len({type(v) for v in df[c].dropna()}) > 1}
        what = "; ".join(f"column {c!r} mixes {' and '.join(kinds)} values" for c, kinds in mixed.items()) or str(exc)
        raise DataError(f"{recipe.data.uri}: {what}; expected one type per column (numbers, or text)") from None
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(info).encode()})
    with atomic_path(output_path) as tmp:
        pq.write_table(table, tmp)
    log.info("loaded %d rows x %d columns (data hash %s)", len(df), df.shape[1], info["data_hash"])
    return info


def read_info(path: str) -> dict:
    """What load recorded about the source (file list, content hash), carried in the Parquet footer."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(META_KEY, b"{}"))
