"""Text generation: a corpus of texts (a CSV/JSON/Parquet text column, or .txt files, one text per
line) that a causal language model learns to continue.

Records at predict time are prompts: strings, or ``{"prompt": ..., "max_new_tokens", "temperature",
"top_k", "top_p", "seed"}`` objects (V1); V2 takes one BYTES input ``prompt`` and the generation
parameters in the request's (or the input's) ``parameters``. Every prompt becomes a checked
``GenerationRequest``; a bad parameter is a 400 naming the instance, the parameter and its range.
Evaluation scores the test texts themselves (perplexity), so the truth is the texts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataError, InvalidInputError, RequestTooLarge
from ..models.hf_causal import GENERATION_DEFAULTS
from .base import Family, FitInputs, TestInputs, one_bytes_input
from .tabular import TabularFamily

MAX_NEW_TOKENS = 256
MAX_PROMPT_CHARS = 4096


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt and how to continue it. ``temperature`` 0 is greedy decoding (deterministic)."""
    prompt: str
    max_new_tokens: int = GENERATION_DEFAULTS["max_new_tokens"]
    temperature: float = GENERATION_DEFAULTS["temperature"]
    top_k: int = GENERATION_DEFAULTS["top_k"]
    top_p: float = GENERATION_DEFAULTS["top_p"]
    seed: int | None = GENERATION_DEFAULTS["seed"]


# parameter → (type(s) accepted, low, high, what a person reads)
RANGES: dict[str, tuple[tuple[type, ...], float, float, str]] = {
    "max_new_tokens": ((int,), 1, MAX_NEW_TOKENS, f"an integer from 1 to {MAX_NEW_TOKENS}"),
    "temperature": ((int, float), 0.0, 10.0, "a number from 0 (greedy) to 10"),
    "top_k": ((int,), 0, 100_000, "an integer >= 0 (0: no top-k filter)"),
    "top_p": ((int, float), 0.0, 1.0, "a number in (0, 1]"),
    "seed": ((int,), 0, 2 ** 32 - 1, "an integer from 0 to 2**32-1"),
}
PARAMETERS = tuple(RANGES)


def generation_request(item: Any, n: int, defaults: dict[str, Any] | None = None) -> GenerationRequest:
    """A V1 instance (string or object) or a V2 prompt with its parameters → a checked request."""
    if isinstance(item, str):
        item = {"prompt": item}
    if not isinstance(item, dict):
        raise InvalidInputError(f"instance {n} is {type(item).__name__}; expected a prompt string or "
                                f'{{"prompt": "...", "max_new_tokens": 20, ...}}')
    item = {**(defaults or {}), **item}
    unknown = sorted(set(item) - {"prompt", *PARAMETERS})
    if unknown:
        raise InvalidInputError(f"instance {n}: unknown field(s) {unknown}; expected prompt and optionally "
                                f"{', '.join(PARAMETERS)}")
    prompt = item.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInputError(f"instance {n}: prompt is {'empty' if isinstance(prompt, str) else type(prompt).__name__};"
                                f" expected a non-empty string")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInputError(f"instance {n}: prompt has {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")
    values = {}
    for name, (types, low, high, expected) in RANGES.items():
        value = item.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            raise InvalidInputError(f"instance {n}: {name} is {value!r} ({type(value).__name__}); expected {expected}")
        if not low <= value <= high or (name == "top_p" and value == 0):
            raise InvalidInputError(f"instance {n}: {name} is {value!r}; expected {expected}")
        values[name] = float(value) if float in types else int(value)
    return GenerationRequest(prompt, **values)


def _v2_parameters(params) -> dict[str, Any]:
    """A V2 ``parameters`` map (plain JSON values, or the gRPC InferParameter messages) → plain values."""
    out = {}
    for key, value in dict(params or {}).items():
        if key not in PARAMETERS:
            continue  # KServe's own parameters (binary_data_size, ...) ride here too
        for kind in ("int64_param", "double_param", "string_param", "bool_param"):
            if hasattr(value, kind) and value.HasField(kind):
                value = getattr(value, kind)
                break
        out[key] = value
    return out


def read_lines(paths: list[Path], column: str) -> pd.DataFrame:
    """Plain-text corpora: one text per non-blank line."""
    lines = [line for p in paths for line in Path(p).read_text(encoding="utf-8", errors="replace").splitlines()
             if line.strip()]
    return pd.DataFrame({column: lines})


class TextGenFamily(TabularFamily):
    """A corpus of texts for a causal language model; the model's own tokenizer does the rest."""
    name = "textgen"
    section = "textgen"
    split_methods = ("random",)
    stacks_rows = False   # generation is one heavy call per request: the media path
    target_in_header = False
    table_records = False
    max_items = 16        # prompts per request

    def check_recipe(self, recipe) -> None:
        if recipe.task != "generation":
            raise ValueError("textgen recipes have task 'generation'")
        Family.check_recipe(self, recipe)

    def label_column(self, recipe) -> str:
        return recipe.textgen.text_column

    def read(self, recipe):
        from ..storage import content_hash, expand

        paths = expand(recipe.data.uri)
        if not all(Path(p).suffix.lower() == ".txt" for p in paths):
            return super().read(recipe)
        df = read_lines(paths, recipe.textgen.text_column)
        if recipe.data.sample_rows and recipe.data.sample_rows < len(df):
            df = self.sample(df, recipe).reset_index(drop=True)
        return df, {"files": [str(p) for p in paths], "data_hash": content_hash(paths)}

    def clean(self, raw, recipe, info):
        column, source = recipe.textgen.text_column, info.get("source", "data")
        if column not in raw.columns:
            raise DataError(f"{source}: text column {column!r} not found among {list(map(str, raw.columns))}")
        df = raw[[column]].copy()
        if not df[column].map(lambda v: isinstance(v, str) or pd.isna(v)).all():
            raise DataError(f"{source}: column {column!r} holds non-text values; expected strings")
        empty = df[column].isna() | (df[column].astype(str).str.strip() == "")
        dupes = df.duplicated() & ~empty
        df = df.loc[~empty & ~dupes].reset_index(drop=True)
        if len(df) < 3:
            raise DataError(f"{source}: {len(df)} non-empty texts in column {column!r}; expected at least 3")
        lengths = df[column].str.len()
        schema = {"target": column, "classes": None, "features": [{"name": column, "kind": "text"}],
                  "n_rows": len(df), "rows": {"empty_dropped": int(empty.sum()), "duplicates_dropped": int(dupes.sum())},
                  "text_length": {"median": float(lengths.median()), "max": int(lengths.max()),
                                  "total": int(lengths.sum())}}
        return df, schema

    def report(self, schema) -> str:
        t = schema["text_length"]
        return (f"# Text corpus: {schema['n_rows']} texts\n\nMedian length {t['median']:.0f} characters "
                f"(max {t['max']}, {t['total']} in all); dropped: {schema['rows']}.\n")

    def fit_inputs(self, recipe, schema, train_df, val_df, encoding) -> FitInputs:
        column = recipe.textgen.text_column
        train, val = train_df[column].tolist(), val_df[column].tolist()
        return FitInputs(X_train=train, y_train=train, X_val=val, y_val=val,  # a text is its own target
                         meta={"textgen": {"text_column": column, "block_size": recipe.textgen.block_size}})

    def model_inputs(self, meta, transform, records) -> list[GenerationRequest]:
        if isinstance(records, pd.DataFrame):
            records = self.frame_records(meta, records)
        if not records:
            raise InvalidInputError("no prompts in the request; expected at least one")
        return [r if isinstance(r, GenerationRequest) else generation_request(r, n) for n, r in enumerate(records)]

    def test_inputs(self, meta, test_df: pd.DataFrame) -> TestInputs:
        texts = test_df[meta.features[0]["name"]].tolist()
        return TestInputs(texts, texts)

    def input_example(self, meta, records) -> pd.DataFrame:
        """Prompts as a client sends them: the first words of a few texts."""
        prompts = [r if isinstance(r, str) else r["prompt"] for r in records]
        return pd.DataFrame({"prompt": [" ".join(p.split()[:3]) for p in prompts]})

    def frame_records(self, meta, frame: pd.DataFrame) -> list[dict]:
        column = "prompt" if "prompt" in frame else frame.columns[0]
        return [{("prompt" if k == column else k): v for k, v in row.items() if not _missing(v)}
                for row in frame.to_dict("records")]

    def category_levels(self, transform) -> dict:
        return {}

    def v1_records(self, meta, instances: list) -> list[GenerationRequest]:
        return [generation_request(item, n) for n, item in enumerate(instances)]

    def v2_records(self, meta, inputs: list, parameters=None) -> list[GenerationRequest]:
        prompts = one_bytes_input(inputs, "prompts")
        defaults = {**_v2_parameters(parameters), **_v2_parameters(getattr(inputs[0], "parameters", None))}
        return [generation_request({"prompt": p.decode() if isinstance(p, bytes) else p}, n, defaults)
                for n, p in enumerate(prompts)]

    def v2_request_records(self, meta, request) -> list[GenerationRequest]:
        return self.v2_records(meta, request.inputs, request.parameters)

    def bound(self, records) -> list:
        if len(records) > self.max_items:
            raise RequestTooLarge(f"{len(records)} prompts in one request; at most {self.max_items}")
        return records

    def input_types(self, meta) -> list[dict[str, Any]]:
        return [{"name": "prompt", "datatype": "BYTES", "shape": [-1]}]

    def warmup_records(self, bundle) -> list[dict]:
        return [{"prompt": "a", "max_new_tokens": 2}]


def _missing(value) -> bool:
    return value is None or isinstance(value, float) and value != value


FAMILY = TextGenFamily()
