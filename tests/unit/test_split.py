import numpy as np
import pandas as pd
import pytest

from components.errors import DataError
from components.steps.split import split
from components.tasks import family_for


def split_indices(df, recipe):
    return family_for(recipe).split_indices(df, recipe)
from tests.conftest import make_recipe


def frame(n=200, classes=("a", "b")):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x": rng.normal(size=n), "g": rng.integers(0, 20, n),
                         "y": rng.choice(classes, size=n, p=[0.8, 0.2] if len(classes) == 2 else None)})


def test_random_split_ratios_cover_all_rows_once():
    tr, va, te = split_indices(frame(), make_recipe())
    assert (len(tr), len(va), len(te)) == (140, 20, 40)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(200))


def test_split_is_seeded():
    a = split_indices(frame(), make_recipe(split={"seed": 1}))
    b = split_indices(frame(), make_recipe(split={"seed": 1}))
    c = split_indices(frame(), make_recipe(split={"seed": 2}))
    assert all((x == y).all() for x, y in zip(a, b)) and not (a[2] == c[2]).all()


def test_stratified_keeps_class_proportions():
    df = frame()
    recipe = make_recipe("classification", data={"uri": "x", "target": "y"})
    for part in split_indices(df, recipe):
        share = (df["y"].iloc[part] == "b").mean()
        assert abs(share - (df["y"] == "b").mean()) < 0.06


def test_group_split_never_shares_a_group():
    df = frame()
    tr, va, te = split_indices(df, make_recipe(split={"method": "group", "group_column": "g"}))
    groups = [set(df["g"].iloc[p]) for p in (tr, va, te)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])


def test_split_step_writes_three_tables(tmp_path):
    src = tmp_path / "clean.parquet"
    frame().to_parquet(src)
    sizes = split(make_recipe(), src, *(tmp_path / f"{p}.parquet" for p in ("train", "val", "test")))
    assert sizes == {"train": 140, "val": 20, "test": 40}
    assert len(pd.read_parquet(tmp_path / "test.parquet")) == 40


@pytest.mark.parametrize("df,recipe,match", [
    (frame(2), make_recipe(), "cannot be split three ways"),
    (frame().assign(g=1), make_recipe(split={"method": "group", "group_column": "g"}), "fewer than 3 groups"),
    (frame().assign(y=["a"] * 198 + ["b"] * 2),
     make_recipe("classification", data={"uri": "x", "target": "y"}), "class 'b' has 2 row"),
])
def test_unsplittable_data(df, recipe, match):
    with pytest.raises(DataError, match=match):
        split_indices(df, recipe)
