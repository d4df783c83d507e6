"""load: raw files (path, directory or glob; CSV, JSON, Parquet; an image dataset) → one Parquet table."""
from __future__ import annotations

import json
import logging

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..recipe import Recipe
from ..errors import DataError
from ..storage import atomic_path
from ..tasks import family_for

log = logging.getLogger(__name__)
META_KEY = b"kfp_ml_platform"


def load(recipe: Recipe, output_path: str) -> dict:
    df, found = family_for(recipe).read(recipe)
    return _write(recipe, df, found, output_path)


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
