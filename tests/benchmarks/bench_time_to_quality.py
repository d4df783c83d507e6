"""Time to quality on California Housing: seconds until test RMSE <= 0.52, the train step vs a plain PyTorch loop.

    .venv/bin/python tests/benchmarks/bench_time_to_quality.py [--target 0.52] [--seeds 0 1 2] [--max-epochs 60]

Both run in this process on the default recipe's split, with the same torch threads, one after the
other for each seed. The platform: the train step function itself (``components.steps.train.train``:
reads the splits, fits the feature transform, trains with the recipe's settings); its clock starts
when the step is called. The plain loop: the same network (``build_mlp`` with the recipe's params),
the same feature tensors and standardised targets (built before its clock starts), AdamW with the
recipe's learning rate and weight decay, shuffled batches of the recipe's size, no schedule; and the
same loop with the recipe's MLP without numeric embeddings (``num_embeddings: none``: the plain MLP a
hand-written loop would start from, and the default recipe before issue 15). After every epoch each
is scored on the test split (RMSE in the target's units); the time that scoring takes is left out of
every clock. Printed: per seed the epochs and seconds each needed, then the medians and their ratios
(plain / platform: above 1 means the platform got there sooner).
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from components import threads  # noqa: E402
from components.bundle import read_json  # noqa: E402
from components.models.mlp import MLPAdapter, MLPParams  # noqa: E402
from components.models.torch_nets import build_mlp  # noqa: E402
from components.recipe import Recipe  # noqa: E402
from components.steps.load import load  # noqa: E402
from components.steps.preprocess import preprocess  # noqa: E402
from components.steps.split import split  # noqa: E402
from components.steps.train import train  # noqa: E402
from components.tasks import family_for  # noqa: E402

BASE = ROOT / "pipelines" / "recipes" / "california-housing.yaml"


class Reached(Exception):
    """Raised from the per-epoch hook once the target is met: the run stops there."""


class Clock:
    """Seconds since start, less the time spent scoring."""

    def __init__(self):
        self.start, self.paused = time.perf_counter(), 0.0

    def score(self, fn):
        t = time.perf_counter()
        value = fn()
        self.paused += time.perf_counter() - t
        return value

    def elapsed(self) -> float:
        return time.perf_counter() - self.start - self.paused


def make_scorer(X_test: np.ndarray, y_test: np.ndarray, mean: float, std: float):
    Xt = torch.as_tensor(X_test)

    @torch.no_grad()
    def rmse(net) -> float:
        was_training = net.training
        pred = net.eval()(Xt)[:, 0].numpy() * std + mean
        net.train(was_training)
        return float(np.sqrt(np.mean((pred - y_test) ** 2)))
    return rmse


def platform_run(recipe, d: Path, rmse, target: float) -> tuple[int, float, float]:
    """The train step, stopped at the first epoch whose network scores ``target`` on test: epochs, seconds
    and the seconds outside epochs (reading the splits, fitting the feature transform, building the model)."""
    nets = []
    build = MLPAdapter.build_net

    def capture(self, *args):  # the network the step builds, so the hook can score it
        nets.append(build(self, *args))
        return nets[-1]

    clock, best, in_epochs = Clock(), [float("inf")], [0.0]

    def on_epoch(state):
        in_epochs[0] += state["seconds"]
        best[0] = min(best[0], clock.score(lambda: rmse(nets[-1])))
        if best[0] <= target:
            raise Reached(state["epoch"])

    MLPAdapter.build_net = capture
    try:
        train(recipe, d / "train.parquet", d / "val.parquet", d / "schema.json", d / "model", progress=on_epoch)
        return recipe.train.epochs, float("nan"), float("nan")
    except Reached as done:
        return done.args[0], clock.elapsed(), clock.elapsed() - in_epochs[0]
    finally:
        MLPAdapter.build_net = build


def plain_run(recipe, X, y, rmse, target: float, max_epochs: int, **params) -> tuple[int, float]:
    """What one writes by hand: a net (the recipe's, ``params`` changed), AdamW, shuffled batches over
    tensors, a score each epoch."""
    torch.manual_seed(recipe.train.seed)
    clock = Clock()
    net = build_mlp(X.shape[1], 1, **MLPParams.model_validate({**recipe.model.params, **params}).model_dump())
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y).view(-1, 1)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.train.learning_rate, weight_decay=recipe.train.weight_decay)
    bs, best = recipe.train.batch_size, float("inf")
    for epoch in range(1, max_epochs + 1):
        net.train()
        order = torch.randperm(len(Xt))
        for i in range(0, len(Xt), bs):
            idx = order[i:i + bs]
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(Xt[idx]), yt[idx]).backward()
            opt.step()
        best = min(best, clock.score(lambda: rmse(net)))
        if best <= target:
            return epoch, clock.elapsed()
    return max_epochs, float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.52, help="test RMSE to reach")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--set", nargs="*", default=[], help="recipe overrides (both sides)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    n_threads = threads.configure()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        data = f"data.uri={ROOT / 'data' / 'california_housing.parquet'}"
        recipe = Recipe.from_file(BASE, [data, f"train.threads={n_threads}", f"train.epochs={args.max_epochs}",
                                         *args.set])
        load(recipe, d / "raw.parquet")
        preprocess(recipe, d / "raw.parquet", d / "clean.parquet", d / "schema.json", d / "report.md")
        split(recipe, d / "clean.parquet", d / "train.parquet", d / "val.parquet", d / "test.parquet")
        # The plain loop's tensors: the same fitted transform the step fits, and standardised targets.
        schema, frames = read_json(d / "schema.json"), {s: pd.read_parquet(d / f"{s}.parquet") for s in ("train", "val", "test")}
        fam = family_for(recipe)
        inputs = fam.fit_inputs(recipe, schema, frames["train"], frames["val"], "onehot")
        mean, std = float(np.mean(inputs.y_train)), float(np.std(inputs.y_train))
        y = ((inputs.y_train - mean) / std).astype(np.float32)
        features = [f["name"] for f in schema["features"]]
        X_test = np.asarray(inputs.transform.transform(frames["test"][features]), dtype=np.float32)
        rmse = make_scorer(X_test, frames["test"][schema["target"]].to_numpy(), mean, std)
        print(f"{recipe.model.name} {recipe.model.params}; batch {recipe.train.batch_size}, lr "
              f"{recipe.train.learning_rate}; {len(y):,} train rows; {n_threads} torch thread(s); target test RMSE "
              f"{args.target}")
        print(f"{'seed':<6}{'platform epochs':>16}{'seconds':>9}{'(setup)':>9}{'plain loop epochs':>19}{'seconds':>9}"
              f"{'plain loop, plain MLP':>23}{'seconds':>9}")
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)])  # torch's lazy imports (torch._dynamo, ~1.5 s) before either clock
        rows = []
        for seed in args.seeds:
            seeded = recipe.model_copy(update={"train": recipe.train.model_copy(update={"seed": seed})})
            ours = platform_run(seeded, d, rmse, args.target)
            plain = plain_run(seeded, inputs.X_train, y, rmse, args.target, args.max_epochs)
            bare = plain_run(seeded, inputs.X_train, y, rmse, args.target, args.max_epochs, num_embeddings="none")
            rows.append((ours, plain, bare))
            print(f"{seed:<6}{ours[0]:>16}{ours[1]:>9.1f}{ours[2]:>9.1f}{plain[0]:>19}{plain[1]:>9.1f}{bare[0]:>23}"
                  f"{bare[1]:>9.1f}", flush=True)
        ours_s, plain_s, bare_s = (statistics.median(r[i][1] for r in rows) for i in range(3))
        epochs = [statistics.median(r[i][0] for r in rows) for i in range(3)]
        print(f"median seconds to test RMSE <= {args.target}: platform {ours_s:.1f} ({epochs[0]:.0f} epochs); plain "
              f"loop, same net {plain_s:.1f} ({epochs[1]:.0f} epochs): {plain_s / ours_s:.2f}x; plain loop, plain MLP "
              f"{bare_s:.1f} ({epochs[2]:.0f} epochs): {bare_s / ours_s:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
