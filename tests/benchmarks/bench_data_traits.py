"""Data as people bring it: the platform's hist_gradient_boosting recipe vs scikit-learn by hand, same split.

    .venv/bin/python tests/benchmarks/bench_data_traits.py [--only titanic cars ...]

For each shipped table with one trait (coded ``?`` missing values and an id column, an ISO date
column, ordered categories, a ``;``-separated CSV with a decimal comma), the platform runs its recipe
(pipelines/recipes/<name>.yaml) through the same load → preprocess → split → train → evaluate
functions as the pipeline. The hand model is what a careful person writes in ten lines: read the
file with the right options, drop the identifier, turn the date into numbers, encode the grades in
order, let HistGradientBoosting handle the categories (``categorical_features="from_dtype"``) and
the missing values itself; the same estimator settings as the platform's catalog entry
(max_iter=300, random_state=0), the same train rows and the same test rows (the platform's split
indices, drawn the same way, and checked: the test targets must match row for row).

Pass: the platform is within 1% of the hand model or better on every table (accuracy: at least
0.99x the hand model's; RMSE: at most 1.01x).
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from components.recipe import Recipe  # noqa: E402
from components.steps.evaluate import evaluate  # noqa: E402
from components.steps.load import load  # noqa: E402
from components.steps.preprocess import preprocess  # noqa: E402
from components.steps.split import split  # noqa: E402
from components.steps.train import train  # noqa: E402

DATA = ROOT / "data"
HGB = {"max_iter": 300, "random_state": 0}  # the catalog's defaults for hist_gradient_boosting


def _categories(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return df.assign(**{c: df[c].astype("category") for c in columns})


def hand_titanic() -> tuple[pd.DataFrame, str]:
    df = pd.read_csv(DATA / "titanic.csv", na_values="?")
    df = df.drop(columns=["boat", "body", "home.dest", "ticket"]).drop_duplicates().drop(columns=["name"])
    return _categories(df, ["sex", "cabin", "embarked"]), "survived"


def hand_cars() -> tuple[pd.DataFrame, str]:
    df = pd.read_json(DATA / "cars.json").drop(columns=["Name"]).drop_duplicates()
    df["Year"] = pd.to_datetime(df["Year"]).dt.year
    return _categories(df, ["Origin"]), "Miles_per_Gallon"


def hand_diamonds() -> tuple[pd.DataFrame, str]:
    df = pd.read_csv(DATA / "diamonds.csv").drop_duplicates()
    grades = {"cut": ["Fair", "Good", "Very Good", "Premium", "Ideal"], "color": list("JIHGFED"),
              "clarity": ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"]}
    for col, order in grades.items():
        df[col] = df[col].map({level: rank for rank, level in enumerate(order)})
    return df, "price"


def hand_penguins() -> tuple[pd.DataFrame, str]:
    df = pd.read_csv(DATA / "penguins_eu.csv", sep=";", decimal=",", encoding="cp1252").drop_duplicates()
    return _categories(df, ["species", "island", "sex"]), "body_mass_g"


HAND = {"titanic": hand_titanic, "cars": hand_cars, "diamonds": hand_diamonds, "penguins": hand_penguins}


def hand_split(df: pd.DataFrame, recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """The platform's split (components/steps/split.py), drawn by hand with the same calls."""
    from sklearn.model_selection import train_test_split

    spec, idx = recipe.split, np.arange(len(df))
    stratify = df[recipe.data.target].astype(str).to_numpy() if spec.method == "stratified" else None
    n_test, n_val = max(1, round(spec.test * len(df))), max(1, round(spec.val * len(df)))
    rest, test = train_test_split(idx, test_size=n_test, random_state=spec.seed, stratify=stratify)
    train_rows, _ = train_test_split(rest, test_size=n_val, random_state=spec.seed,
                                     stratify=None if stratify is None else stratify[rest])
    return np.sort(train_rows), np.sort(test)


def hand_model(name: str, recipe: Recipe, platform_test: pd.DataFrame) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import accuracy_score, mean_squared_error

    df, target = HAND[name]()
    df = df.dropna(subset=[target]).reset_index(drop=True)
    train_rows, test_rows = hand_split(df, recipe)
    X, y = df.drop(columns=[target]), df[target]
    expected = platform_test[target].astype(str if recipe.task == "classification" else float).to_numpy()
    got = y.iloc[test_rows].astype(str if recipe.task == "classification" else float).to_numpy()
    if len(expected) != len(got) or not (expected == got).all():
        raise SystemExit(f"{name}: the hand split's test rows differ from the platform's; cannot compare")
    if recipe.task == "classification":
        est = HistGradientBoostingClassifier(categorical_features="from_dtype", **HGB)
        est.fit(X.iloc[train_rows], y.iloc[train_rows])
        return float(accuracy_score(y.iloc[test_rows], est.predict(X.iloc[test_rows])))
    est = HistGradientBoostingRegressor(categorical_features="from_dtype", **HGB)
    est.fit(X.iloc[train_rows], y.iloc[train_rows])
    return float(np.sqrt(mean_squared_error(y.iloc[test_rows], est.predict(X.iloc[test_rows]))))


def platform_model(name: str, work: Path) -> tuple[Recipe, float, pd.DataFrame, dict]:
    path = ROOT / "pipelines" / "recipes" / f"{name}.yaml"
    recipe = Recipe.from_file(path, [f"data.uri={ROOT / Recipe.from_file(path).data.uri}"])
    p = {n: work / n for n in ("raw", "clean", "schema.json", "report.md", "train", "val", "test", "model", "eval")}
    load(recipe, p["raw"])
    schema = preprocess(recipe, p["raw"], p["clean"], p["schema.json"], p["report.md"])
    split(recipe, p["clean"], p["train"], p["val"], p["test"])
    train(recipe, p["train"], p["val"], p["schema.json"], p["model"])
    metrics = evaluate(recipe, p["model"], p["test"], p["eval"])["metrics"]
    metric = "accuracy" if recipe.task == "classification" else "rmse"
    return recipe, float(metrics[metric]), pd.read_parquet(p["test"]), schema


TRAITS = {"titanic": "'?' for missing, an id column", "cars": "ISO date column, missing targets",
          "diamonds": "ordered categories", "penguins": "';' CSV, decimal comma, cp1252"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=list(HAND))
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    warnings.filterwarnings("ignore")
    print(f"{'data':<10}{'trait':<36}{'rows':>6}{'metric':>10}{'platform':>10}{'by hand':>10}{'ratio':>8}  verdict")
    failed = []
    for name in args.only or HAND:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            recipe, ours, test, schema = platform_model(name, Path(tmp))
            theirs = hand_model(name, recipe, test)
        higher = recipe.task == "classification"
        ratio = ours / theirs if theirs else float("inf")
        ok = ratio >= 0.99 if higher else ratio <= 1.01
        failed += [] if ok else [name]
        metric = "accuracy" if higher else "RMSE"
        print(f"{name:<10}{TRAITS[name]:<36}{schema['n_rows']:>6}{metric:>10}{ours:>10.4f}{theirs:>10.4f}"
              f"{ratio:>8.3f}  {'ok' if ok else 'WORSE than 1%'} ({time.perf_counter() - start:.0f} s)", flush=True)
    print("all within 1% of the hand model or better" if not failed else f"worse than the hand model by >1%: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
