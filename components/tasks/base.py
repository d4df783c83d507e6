"""The task family interface: how one kind of data is read, cleaned, split, fed to a model and
taken from a request. Steps, the bundle and the server call these methods and never ask which
family they hold; a family is one module with one ``Family`` subclass and one row in
``components/tasks/__init__.py``.

Serving declares two facts rather than branching on names: ``stacks_rows`` (concurrent requests'
records may be stacked into one model call: tables, windows) and ``top_k`` (classification answers
list the k likeliest classes instead of every probability: images, texts with many classes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from ..recipe import Recipe

FLOAT32_MAX = float(np.finfo(np.float32).max)  # models compute in float32: larger values become inf, then NaN


@dataclass
class FitInputs:
    """What train hands the adapter: model inputs and raw targets of train and val, the transform
    fitted on train (None where the adapter owns its preprocessing), the bundle metadata it adds and
    facts about the data the model needs beside its params (``adapter.fit``'s keyword arguments)."""
    X_train: Any
    y_train: Any
    X_val: Any
    y_val: Any
    transform: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    fit_params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TestInputs:
    """What evaluate feeds the bundle (raw records, as a client sends them), the truth, and the
    x-axis for plots over time (None where rows have no order)."""
    records: Any
    truth: Any
    time_index: Any = None


class Family:
    name: str = ""
    section: str | None = None   # the recipe section holding the family's options (None: tables)
    split_methods: tuple[str, ...] = ("random", "stratified", "group")
    stacks_rows: bool = True     # serving: concurrent requests' records go through one model call
    top_k: int | None = None     # serving: classification answers list the k likeliest classes
    target_in_header = False     # data.target is a column of the file's header (the pre-run check reads it)
    table_records = False        # a record is one row of the source table (batch scoring reads them in chunks)

    # --- recipe -------------------------------------------------------------------------------
    def check_recipe(self, recipe: Recipe) -> None:
        """Raise ``ValueError`` for a recipe this family cannot run (called by Recipe's validator)."""
        if recipe.split.method not in self.split_methods:
            raise ValueError(f"{self.name} data splits with method {' or '.join(map(repr, self.split_methods))}, "
                             f"not {recipe.split.method!r}")

    def options(self, recipe: Recipe):
        """The family's recipe section (image size, text length, windows), which models may read."""
        return getattr(recipe, self.section) if self.section else None

    def label_column(self, recipe: Recipe) -> str:
        """The column a stratified split balances."""
        return recipe.data.target

    # --- load, preprocess, split ----------------------------------------------------------------
    def read(self, recipe: Recipe) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The source as one table, and what reading taught (files, content hash, dialect, ...)."""
        raise NotImplementedError

    def clean(self, raw: pd.DataFrame, recipe: Recipe, info: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Stateless cleaning; the schema (features, classes, counts of what was dropped)."""
        raise NotImplementedError

    def report(self, schema: dict[str, Any]) -> str:
        """The data report a person reads, in Markdown."""
        raise NotImplementedError

    def split_indices(self, df: pd.DataFrame, recipe: Recipe) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from .splits import split_indices

        return split_indices(df, recipe, self.label_column(recipe))

    # --- train, evaluate, the bundle ------------------------------------------------------------
    def fit_inputs(self, recipe: Recipe, schema: dict[str, Any], train_df: pd.DataFrame, val_df: pd.DataFrame,
                   encoding: str) -> FitInputs:
        raise NotImplementedError

    def model_inputs(self, meta, transform, records):
        """Raw records (as a client sends them) → what the adapter was trained on; raises
        ``InvalidInputError`` naming the bad record."""
        raise NotImplementedError

    def prediction_offset(self, meta, records) -> np.ndarray | float:
        """Added to a de-standardised regression output (time series in delta mode: the window's last value)."""
        return 0.0

    def test_inputs(self, meta, test_df: pd.DataFrame) -> TestInputs:
        raise NotImplementedError

    def input_example(self, meta, records) -> pd.DataFrame:
        """A few raw records as the table MLflow keeps as the model's input example."""
        return pd.DataFrame({meta.features[0]["name"]: list(records)})

    def frame_records(self, meta, frame: pd.DataFrame):
        """What MLflow pyfunc hands over (a table) → raw records."""
        return frame

    # --- serving ------------------------------------------------------------------------------
    def category_levels(self, transform) -> dict[str, frozenset[str]]:
        """Column → the categories the fitted transform knows, so answers can flag unseen ones."""
        return {}

    def v1_records(self, meta, instances: list):
        """The ``instances`` of a V1 request → raw records (already checked to be a non-empty list)."""
        return instances

    def v2_records(self, meta, inputs: list):
        """The inputs of a V2 (Open Inference Protocol) request → raw records."""
        raise NotImplementedError

    def v2_request_records(self, meta, request) -> Any:
        """A whole V2 request → raw records; a family that reads the request's ``parameters`` overrides it."""
        return self.v2_records(meta, request.inputs)

    def bound(self, records) -> Any:
        """Refuse a request over this family's size limits before it is decoded (``RequestTooLarge``)."""
        return records

    def input_types(self, meta) -> list[dict[str, Any]]:
        """V2 metadata: the inputs the server takes."""
        raise NotImplementedError

    def warmup_records(self, bundle) -> Any:
        """One typical request, so the first real one pays no lazy initialisation."""
        raise NotImplementedError


def one_bytes_input(inputs: list, holding: str) -> list:
    """A V2 request with one BYTES input of shape [n]: its items."""
    if len(inputs) != 1 or inputs[0].datatype != "BYTES":
        raise InvalidInputError(f"expected one BYTES input of shape [n] holding {holding}; "
                                f"got {[(i.name, i.datatype) for i in inputs]}")
    data = inputs[0].data
    return data.tolist() if hasattr(data, "tolist") else list(data)


def has_bool(data) -> bool:
    """True/false anywhere in (nested) request data: numpy would take them as 1/0."""
    if isinstance(data, (bool, np.bool_)):
        return True
    if isinstance(data, np.ndarray):
        return data.dtype == bool or data.dtype == object and any(map(has_bool, data.ravel()))
    return isinstance(data, (list, tuple)) and any(map(has_bool, data))
