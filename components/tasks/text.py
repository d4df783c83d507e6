"""Text classification: a table with one text column and a label column.

Records at predict time are strings, ``{"text": ...}`` objects, or a frame with the text column.
Tokenisation belongs to the model (its own tokenizer), so there is no fitted transform here.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from ..errors import DataError, InvalidInputError


def clean_text(df: pd.DataFrame, recipe, source: str = "data") -> tuple[pd.DataFrame, dict[str, Any]]:
    column, target = recipe.text.text_column, recipe.data.target
    missing = [c for c in (column, target) if c not in df.columns]
    if missing:
        raise DataError(f"{source}: column(s) {missing} not found; expected the text column {column!r} and the "
                        f"label column {target!r} among {list(map(str, df.columns))}")
    df = df[[column, target]].copy()
    if not (df[column].map(lambda v: isinstance(v, str) or pd.isna(v))).all():
        raise DataError(f"{source}: column {column!r} holds non-text values; expected strings")
    empty = df[column].isna() | (df[column].astype(str).str.strip() == "") | df[target].isna()
    dupes = df.duplicated()
    df = df.loc[~empty & ~dupes].reset_index(drop=True)
    if df.empty:
        raise DataError(f"{source}: no rows with both a text and a label; expected at least one")
    classes = sorted(df[target].astype(str).unique())
    if len(classes) < 2:
        raise DataError(f"{source}: label column {target!r} has {len(classes)} class; expected at least 2")
    df[target] = df[target].astype(str)
    lengths = df[column].str.len()
    schema = {"target": target, "classes": classes, "features": [{"name": column, "kind": "text"}],
              "n_rows": len(df), "rows": {"empty_dropped": int(empty.sum()), "duplicates_dropped": int(dupes.sum())},
              "class_counts": df[target].value_counts().to_dict(),
              "text_length": {"median": float(lengths.median()), "max": int(lengths.max())}}
    return df, schema


def text_markdown(schema: dict[str, Any]) -> str:
    lines = [f"# Text data: {schema['n_rows']} rows, {len(schema['classes'])} classes", "",
             f"Median length {schema['text_length']['median']:.0f} characters (max {schema['text_length']['max']}); "
             f"dropped: {schema['rows']}.", "", "| class | rows |", "|---|---|"]
    lines += [f"| {c} | {n} |" for c, n in schema["class_counts"].items()]
    return "\n".join(lines) + "\n"


def request_texts(records, column: str = "text") -> list[str]:
    if isinstance(records, pd.DataFrame):
        records = records[column if column in records else records.columns[0]].tolist()
    texts = []
    for n, item in enumerate(records):
        if isinstance(item, dict):
            item = item.get(column, item.get("text"))
        if not isinstance(item, str) or not item.strip():
            raise InvalidInputError(f"instance {n} is {type(item).__name__ if not isinstance(item, str) else 'empty'}; "
                                    f'expected a non-empty string or {{"{column}": "..."}}')
        texts.append(item)
    if not texts:
        raise InvalidInputError("no texts in the request; expected at least one")
    return texts


def fit_inputs(recipe, schema: dict[str, Any], train_df: pd.DataFrame, val_df: pd.DataFrame, encoding: str):
    column, target = recipe.text.text_column, schema["target"]
    extra = {"text": {"text_column": column, "max_length": recipe.text.max_length}}
    return (None, train_df[column].tolist(), train_df[target].to_numpy(), val_df[column].tolist(),
            val_df[target].to_numpy(), extra)


def model_inputs(meta, transform, records) -> list[str]:
    return request_texts(records, meta.features[0]["name"])


def prediction_offset(meta, records) -> float:
    return 0.0


def test_inputs(meta, test_df: pd.DataFrame):
    column = meta.features[0]["name"]
    return test_df[column].tolist(), test_df[meta.target].to_numpy(), None
