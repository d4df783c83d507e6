"""The fitted feature transform on small requests: numpy form vs scikit-learn's parts, same process.

    .venv/bin/python tests/benchmarks/bench_transform.py [--repeats 2000]

For 1-row and 32-row requests of California Housing (8 numeric columns) and Titanic (numeric and
one-hot columns, gaps), times the bundle's input path (coerce + transform) both ways, interleaved,
and prints medians and the ratio. Both give the same numbers (tests/unit/test_compiled_transform.py).
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from components.recipe import Recipe  # noqa: E402
from components.tasks import family  # noqa: E402
from components.tasks.compiled_transform import compiled  # noqa: E402
from components.tasks.tabular import build_feature_transform, coerce_features  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def fitted(recipe_file: str):
    recipe = Recipe.from_file(ROOT / "pipelines/recipes" / recipe_file)
    fam = family("tabular")
    raw, info = fam.read(recipe)
    df, schema = fam.clean(raw, recipe, {"source": recipe_file, **info})
    df = pd.read_parquet(io.BytesIO(df.to_parquet(index=False)))
    names = [f["name"] for f in schema["features"]]
    return build_feature_transform(schema, recipe.preprocess.scaler).fit(df[names]), df[names], schema


def sklearn_parts(transform, frame):
    return np.hstack([pipe.transform(frame[cols]) for _, pipe, cols in transform.transformers_
                      if pipe != "drop" and len(cols)]).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    print(f"{'data':<12} {'rows':>4} {'sklearn parts µs':>17} {'numpy µs':>9} {'speed-up':>9}")
    for recipe_file in ("california-housing.yaml", "titanic.yaml"):
        transform, df, schema = fitted(recipe_file)
        fast = compiled(transform)
        for n in (1, 32):
            records = df.sample(n, random_state=1).astype(object).to_dict("records")
            slow_t, fast_t = [], []
            for _ in range(args.repeats):  # interleaved, so load on the machine hits both alike
                t0 = time.perf_counter()
                sklearn_parts(transform, coerce_features(pd.DataFrame.from_records(records), schema["features"]))
                t1 = time.perf_counter()
                fast(coerce_features(pd.DataFrame.from_records(records), schema["features"]))
                t2 = time.perf_counter()
                slow_t.append(t1 - t0)
                fast_t.append(t2 - t1)
            slow, quick = statistics.median(slow_t) * 1e6, statistics.median(fast_t) * 1e6
            print(f"{recipe_file.split('.')[0][:12]:<12} {n:>4} {slow:>17.0f} {quick:>9.0f} {slow / quick:>8.2f}x")


if __name__ == "__main__":
    main()
