"""Tabular training throughput: the train step's loop vs the usual DataLoader(TensorDataset) loop.

    .venv/bin/python tests/benchmarks/bench_tabular_training.py [--epochs 5] [--batch-size 256]

Same MLP (the default recipe's), same California Housing train rows, same batch size, optimizer
and epochs; both on the CPU here. Prints samples/s of each and the ratio (target >= 3x).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from components.models.torch_nets import build_mlp  # noqa: E402
from components.models.torch_training import fit_module  # noqa: E402
from components.recipe import Recipe, TrainSpec  # noqa: E402


def dataloader_loop(net, X, y, spec) -> None:
    """The seeds' loop: per-sample __getitem__ and collate for every batch."""
    loader = DataLoader(TensorDataset(torch.as_tensor(X), torch.as_tensor(y).view(-1, 1)),
                        batch_size=spec.batch_size, shuffle=True)
    opt = torch.optim.AdamW(net.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay)
    loss_fn = torch.nn.MSELoss()
    net.train()
    for _ in range(spec.epochs):
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(net(xb), yb)
            loss.backward()
            opt.step()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    recipe = Recipe.from_file(ROOT / "pipelines" / "recipes" / "california-housing.yaml")
    df = pd.read_parquet(ROOT / "data" / "california_housing.parquet")
    X = ((df.drop(columns="MedHouseVal") - df.mean()) / df.std()).drop(columns="MedHouseVal", errors="ignore")
    X = X.to_numpy(np.float32)
    y = ((df["MedHouseVal"] - df["MedHouseVal"].mean()) / df["MedHouseVal"].std()).to_numpy(np.float32)
    n_train = int(0.7 * len(X))
    spec = TrainSpec(epochs=args.epochs, batch_size=args.batch_size, scheduler="none",
                     early_stopping_patience=10**6, device="cpu")
    results = {}
    for name in ("DataLoader(TensorDataset)", "train step (ours)"):
        torch.manual_seed(0)
        net = build_mlp(X.shape[1], 1, **recipe.model.params | {"batch_norm": False})
        start = time.perf_counter()
        if name.startswith("DataLoader"):
            dataloader_loop(net, X[:n_train], y[:n_train], spec)
        else:  # includes its per-epoch validation pass over the remaining rows
            fit_module(net, X[:n_train], y[:n_train], X[n_train:], y[n_train:], "regression", spec, lambda s: None)
        results[name] = n_train * args.epochs / (time.perf_counter() - start)
    print(f"MLP {recipe.model.params['hidden_sizes']}, {n_train:,} rows, batch {args.batch_size}, "
          f"{args.epochs} epochs, {torch.get_num_threads()} torch threads")
    print(f"{'loop':<30}{'samples/s':>12}")
    for name, rate in results.items():
        print(f"{name:<30}{rate:>12,.0f}")
    ratio = results["train step (ours)"] / results["DataLoader(TensorDataset)"]
    print(f"ratio: {ratio:.2f}x (target >= 3x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
