"""California Housing test RMSE: MLP vs FT-Transformer vs histogram gradient boosting, same split.

    .venv/bin/python tests/benchmarks/bench_california.py [--ft-epochs N] [--mlp-epochs N]

Every model goes through the same load → preprocess → split → train → evaluate functions as the
pipeline, on the default recipe's seeded split. Targets (Gorishniy et al. 2021, 15 seeds: MLP 0.499,
FT-Transformer 0.459): FT-Transformer <= 0.47, MLP <= 0.50.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from components.recipe import Recipe  # noqa: E402
from components.steps.evaluate import evaluate  # noqa: E402
from components.steps.load import load  # noqa: E402
from components.steps.preprocess import preprocess  # noqa: E402
from components.steps.split import split  # noqa: E402
from components.steps.train import train  # noqa: E402

TARGETS = {"mlp": 0.50, "ft_transformer": 0.47, "hist_gradient_boosting": None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ft-epochs", type=int, default=100)
    parser.add_argument("--mlp-epochs", type=int, default=200)
    parser.add_argument("--only", nargs="*", choices=list(TARGETS), help="run only these models")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = ROOT / "pipelines" / "recipes" / "california-housing.yaml"
    runs = {
        "mlp": [f"train.epochs={args.mlp_epochs}"],
        "ft_transformer": ["model.name=ft_transformer", "model.params={}", f"train.epochs={args.ft_epochs}",
                           "train.learning_rate=0.0001", "train.weight_decay=0.00001", "train.early_stopping_patience=16",
                           "train.scheduler=none"],  # the paper's constant learning rate
        "hist_gradient_boosting": ["model.name=hist_gradient_boosting", "model.params={max_iter: 1000, early_stopping: true}",
                                   "train={}"],  # the recipe's epochs etc. are for the MLP; a forest refuses them
    }
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        recipe = Recipe.from_file(base, [f"data.uri={ROOT / 'data' / 'california_housing.parquet'}"])
        load(recipe, d / "raw.parquet")
        preprocess(recipe, d / "raw.parquet", d / "clean.parquet", d / "schema.json", d / "report.md")
        sizes = split(recipe, d / "clean.parquet", d / "train.parquet", d / "val.parquet", d / "test.parquet")
        print(f"split {sizes} (seed {recipe.split.seed}); torch threads on this machine decide the times")
        print(f"{'model':<24}{'test RMSE':>10}{'target':>8}{'epochs':>8}{'seconds':>9}")
        for name, overrides in runs.items():
            if args.only and name not in args.only:
                continue
            r = Recipe.from_file(base, [f"data.uri={ROOT / 'data' / 'california_housing.parquet'}", *overrides])
            start = time.perf_counter()
            fit = train(r, d / "train.parquet", d / "val.parquet", d / "schema.json", d / name)
            rmse = evaluate(r, d / name, d / "test.parquet", d / f"{name}-eval")["metrics"]["rmse"]
            target = TARGETS[name]
            verdict = "" if target is None else ("  ok" if rmse <= target else "  MISSED")
            print(f"{name:<24}{rmse:>10.4f}{'' if target is None else target:>8}{int(fit['epochs_run']):>8}"
                  f"{time.perf_counter() - start:>9.1f}{verdict}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
