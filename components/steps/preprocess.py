"""preprocess: stateless cleaning and schema inference; fitted statistics wait for train."""
from __future__ import annotations

import json
import logging

import pandas as pd

from ..recipe import Recipe
from ..storage import atomic_path
from ..tasks import family_for
from .load import read_info

log = logging.getLogger(__name__)


def preprocess(recipe: Recipe, raw_path: str, clean_path: str, schema_path: str, report_path: str) -> dict:
    info = read_info(raw_path)
    fam = family_for(recipe)
    df, schema = fam.clean(pd.read_parquet(raw_path), recipe, {"source": raw_path, **info})
    schema["data_hash"] = info.get("data_hash", "")
    with atomic_path(clean_path) as tmp:
        df.to_parquet(tmp, index=False)
    with atomic_path(schema_path) as tmp:
        tmp.write_text(json.dumps(schema, indent=2))
    with atomic_path(report_path) as tmp:
        tmp.write_text(fam.report(schema))
    log.info("clean table: %d rows, %d features; %s", schema["n_rows"], len(schema["features"]), schema["rows"])
    return schema
