"""preprocess: stateless cleaning and schema inference; fitted statistics wait for train."""
from __future__ import annotations

import json
import logging

import pandas as pd

from ..recipe import Recipe
from ..storage import atomic_path
from ..tasks.tabular import clean_table, schema_markdown
from ..tasks.images import clean_images, images_markdown
from ..tasks.text import clean_text, text_markdown
from ..tasks.timeseries import clean_series
from .load import read_info

log = logging.getLogger(__name__)


def preprocess(recipe: Recipe, raw_path: str, clean_path: str, schema_path: str, report_path: str) -> dict:
    info = read_info(raw_path)
    source = info.get("source", raw_path)
    raw = pd.read_parquet(raw_path)
    if recipe.family == "image":
        df, schema = clean_images(raw, recipe, info["classes"])
        schema["layout"] = info.get("layout", "")
    elif recipe.family == "text":
        df, schema = clean_text(raw, recipe, source)
    else:
        df, schema = (clean_series if recipe.family == "timeseries" else clean_table)(raw, recipe, source=source)
    schema["data_hash"] = info.get("data_hash", "")
    if recipe.family == "tabular":  # what load learnt reading the file: its CSV dialect, missing values as read
        schema.update({k: info[k] for k in ("csv", "missing_as_read") if k in info})
    with atomic_path(clean_path) as tmp:
        df.to_parquet(tmp, index=False)
    with atomic_path(schema_path) as tmp:
        tmp.write_text(json.dumps(schema, indent=2))
    with atomic_path(report_path) as tmp:
        tmp.write_text({"image": images_markdown, "text": text_markdown}.get(recipe.family, schema_markdown)(schema))
    log.info("clean table: %d rows, %d features; %s", schema["n_rows"], len(schema["features"]), schema["rows"])
    return schema
