"""The numpy form of the fitted transform gives scikit-learn's numbers, or is not used."""
import io

import numpy as np
import pandas as pd
import pytest

from components.recipe import Recipe
from components.tasks import family
from components.tasks.compiled_transform import compiled
from components.tasks.tabular import build_feature_transform, coerce_features
from tests.conftest import ROOT


def fitted(recipe_file: str, scaler: str, encoding: str = "onehot"):
    recipe = Recipe.from_file(ROOT / "pipelines/recipes" / recipe_file)
    fam = family("tabular")
    raw, info = fam.read(recipe)
    df, schema = fam.clean(raw, recipe, {"source": recipe_file, **info})
    df = pd.read_parquet(io.BytesIO(df.to_parquet(index=False)))  # as train reads its split
    features = [f["name"] for f in schema["features"]]
    return build_feature_transform(schema, scaler, encoding).fit(df[features]), df, schema


def sklearn_path(transform, frame):
    return np.hstack([pipe.transform(frame[cols]) for _, pipe, cols in transform.transformers_
                      if pipe != "drop" and len(cols)]).astype(np.float32)


@pytest.mark.parametrize("recipe_file,scaler", [("california-housing.yaml", "standard"),
                                                ("california-housing.yaml", "quantile"), ("titanic.yaml", "quantile"),
                                                ("titanic.yaml", "standard"),
                                                ("titanic.yaml", "minmax"), ("titanic.yaml", "none"),
                                                ("penguins.yaml", "standard")])
def test_the_compiled_transform_gives_sklearns_numbers(recipe_file, scaler):
    transform, df, schema = fitted(recipe_file, scaler)
    rows = df.sample(min(len(df), 300), random_state=0).reset_index(drop=True)[[f["name"] for f in schema["features"]]]
    rows = rows.astype(object)
    for f in schema["features"][:3]:  # gaps, and a category the model never saw
        rows.loc[0, f["name"]] = None
        if f["kind"] == "categorical":
            rows.loc[1, f["name"]] = "never-seen-level"
    frame = coerce_features(rows, schema["features"])
    fast = compiled(transform)
    assert fast is not None, "numeric, scaled and one-hot parts compile"
    np.testing.assert_allclose(fast(frame), sklearn_path(transform, frame), rtol=1e-6, atol=1e-6)
    one = frame.iloc[[5]]
    np.testing.assert_allclose(fast(one), sklearn_path(transform, one), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("recipe_file,scaler,encoding", [("titanic.yaml", "standard", "ordinal"),
                                                         ("cars.yaml", "standard", "onehot")])  # cars: a date column
def test_parts_it_cannot_compile_keep_sklearns_path(recipe_file, scaler, encoding):
    transform, _, _ = fitted(recipe_file, scaler, encoding)
    assert compiled(transform) is None
