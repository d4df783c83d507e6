"""Table rows from V1 requests: the usual all-number request skips pandas' type inference, and
gives exactly the frame, and the errors, of the general path."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.errors import InvalidInputError
from components.tasks.table_requests import checked_numbers, plain_numbers, v1_rows

FEATURES = [{"name": "a", "kind": "numeric"}, {"name": "b", "kind": "numeric"}]


def test_plain_numbers_are_one_float_array_in_feature_order():
    values = plain_numbers(FEATURES, [{"b": 2, "a": 1.5}, {"a": -3, "b": 0.25}])
    assert values.dtype == np.float64 and values.tolist() == [[1.5, 2.0], [-3.0, 0.25]]
    frame = v1_rows(FEATURES, [{"b": 2, "a": 1.5}, {"a": -3, "b": 0.25}])
    general = checked_numbers(FEATURES, pd.DataFrame.from_records([{"a": 1.5, "b": 2}, {"a": -3, "b": 0.25}]))
    pd.testing.assert_frame_equal(frame, general.astype(np.float64))


@pytest.mark.parametrize("records", [
    [{"a": 1.0}],                          # a feature missing
    [{"a": 1.0, "b": 2.0, "c": 3.0}],      # an unknown one
    [{"a": 1.0, "c": 3.0}],                # same count, other name
    [{"a": None, "b": 2.0}],               # null: imputed by the transform, on the general path
    [{"a": "1.5", "b": 2.0}],              # text, even when it reads as a number
    [{"a": True, "b": 2.0}],               # true is not 1 here
    [{"a": 1e39, "b": 2.0}],               # beyond float32
    [{"a": 10 ** 400, "b": 2.0}],          # beyond float64
])
def test_anything_unusual_takes_the_general_path(records):
    assert plain_numbers(FEATURES, records) is None


def test_a_table_with_a_category_takes_the_general_path():
    features = [*FEATURES, {"name": "c", "kind": "categorical"}]
    assert plain_numbers(features, [{"a": 1.0, "b": 2.0, "c": 3}]) is None


@pytest.mark.parametrize("record, says", [
    ({"a": True, "b": 2.0}, "feature 'a' expects a number, got true (row 0)"),
    ({"a": 1.0, "b": 1e39}, "feature 'b' must be a finite number within"),
])
def test_the_general_path_names_what_is_wrong(record, says):
    with pytest.raises(InvalidInputError, match=says.replace("(", r"\(").replace(")", r"\)")):
        v1_rows(FEATURES, [{"a": 1.0, "b": 2.0}, record][1:])
