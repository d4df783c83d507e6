"""Task families. Each module offers the same three functions, so steps and the bundle dispatch
on ``family`` without knowing how a family reads its data:

- ``fit_inputs(recipe, schema, train_df, val_df, encoding)`` → transform fitted on train, model
  inputs and raw targets for train and val, extra bundle metadata;
- ``model_inputs(meta, transform, records)`` → the float array the adapter takes, from raw records
  (raises ``InvalidInputError`` on bad records);
- ``prediction_offset(meta, records)`` → what is added to a de-standardised regression output
  (time series in delta mode: the window's last value; otherwise 0);
- ``test_inputs(meta, test_df)`` → raw records for the bundle, true targets, x-axis for plots.
"""
from __future__ import annotations

from types import ModuleType


def family(name: str) -> ModuleType:
    from . import images, tabular, text, timeseries

    return {"tabular": tabular, "timeseries": timeseries, "image": images, "text": text}[name]
