"""Text classification: a table with one text column and a label column.

Records at predict time are strings, ``{"text": ...}`` objects, or a frame with the text column.
Tokenisation belongs to the model (its own tokenizer), so there is no fitted transform here.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from ..errors import DataError, InvalidInputError, RequestTooLarge
from .base import Family, FitInputs, TestInputs, one_bytes_input
from .tabular import TabularFamily


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


class TextFamily(TabularFamily):
    """A text column and a label column, read as a table; the model's own tokenizer does the rest."""
    name = "text"
    section = "text"
    stacks_rows = False  # one request's texts go through the model at a time
    top_k = 5
    max_items = 256      # texts per request

    def check_recipe(self, recipe) -> None:
        if recipe.task != "classification":
            raise ValueError("text recipes have task 'classification'")
        super().check_recipe(recipe)

    def clean(self, raw, recipe, info):
        return clean_text(raw, recipe, info.get("source", "data"))

    def report(self, schema) -> str:
        return text_markdown(schema)

    def fit_inputs(self, recipe, schema, train_df, val_df, encoding) -> FitInputs:
        column, target = recipe.text.text_column, schema["target"]
        return FitInputs(X_train=train_df[column].tolist(), y_train=train_df[target].to_numpy(),
                         X_val=val_df[column].tolist(), y_val=val_df[target].to_numpy(),
                         meta={"text": {"text_column": column, "max_length": recipe.text.max_length}})

    def model_inputs(self, meta, transform, records) -> list[str]:
        return request_texts(records, meta.features[0]["name"])

    def test_inputs(self, meta, test_df: pd.DataFrame) -> TestInputs:
        return TestInputs(test_df[meta.features[0]["name"]].tolist(), test_df[meta.target].to_numpy())

    input_example = Family.input_example  # the texts themselves, not the table's columns

    def category_levels(self, transform) -> dict[str, frozenset[str]]:
        return {}

    def v1_records(self, meta, instances: list) -> list:
        return instances

    def v2_records(self, meta, inputs: list) -> list:
        return [v.decode() if isinstance(v, bytes) else v for v in one_bytes_input(inputs, "texts")]

    def bound(self, records) -> list:
        if len(records) > self.max_items:
            raise RequestTooLarge(f"{len(records)} texts in one request; at most {self.max_items}")
        return records

    def input_types(self, meta) -> list[dict[str, Any]]:
        return [{"name": "text", "datatype": "BYTES", "shape": [-1]}]

    def warmup_records(self, bundle) -> list[str]:
        return ["a short warm-up text"]


FAMILY = TextFamily()
