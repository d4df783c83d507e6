"""Tabular training throughput: the train step's loop vs the usual DataLoader(TensorDataset) loop.

    .venv/bin/python tests/benchmarks/bench_tabular_training.py [--epochs 5] [--batch-size 256]

Same MLP (the default recipe's), same California Housing train rows, same batch size, optimizer
and epochs, on the CPU here: the seeds' DataLoader loop, a hand-written fused loop over tensors
built once (the compute-bound limit), and the train step's loop. Prints samples/s and the ratios.
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


def fused_loop(net, X, y, spec, X_val, y_val) -> None:
    """The compute-bound limit on a CPU: tensors built once, a shuffled index, fused AdamW, and the same
    per-epoch validation pass the train step makes."""
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y).view(-1, 1)
    Xv, yv = torch.as_tensor(X_val), torch.as_tensor(y_val).view(-1, 1)
    opt = torch.optim.AdamW(net.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay, fused=True)
    loss_fn = torch.nn.MSELoss()
    for _ in range(spec.epochs):
        net.train()
        order = torch.randperm(len(Xt))
        for start in range(0, len(Xt), spec.batch_size):
            idx = order[start:start + spec.batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(Xt[idx]), yt[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            loss_fn(net(Xv), yv).item()


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
    n_train, n_val = int(0.7 * len(X)), int(0.1 * len(X))  # the recipe's split sizes
    spec = TrainSpec(epochs=args.epochs, batch_size=args.batch_size, scheduler="none",
                     early_stopping_patience=10**6, device="cpu")
    print(f"{n_train:,} rows, batch {args.batch_size}, {args.epochs} epochs, {torch.get_num_threads()} torch threads")
    print(f"{'MLP':<22}{'DataLoader/s':>14}{'fused loop/s':>14}{'ours/s':>10}{'vs DataLoader':>15}{'vs fused':>10}")
    val = (X[n_train:n_train + n_val], y[n_train:n_train + n_val])
    for hidden in (recipe.model.params["hidden_sizes"], [64, 64]):  # the recipe's net, and a small one
        rates = {}
        for variant in ("dataloader", "fused", "ours"):
            torch.manual_seed(0)
            net = build_mlp(X.shape[1], 1, **recipe.model.params | {"batch_norm": False, "hidden_sizes": hidden})
            start = time.perf_counter()
            if variant == "ours":  # includes its per-epoch validation pass, as the fused loop does
                fit_module(net, X[:n_train], y[:n_train], *val, "regression", spec, lambda s: None)
            elif variant == "fused":
                fused_loop(net, X[:n_train], y[:n_train], spec, *val)
            else:
                dataloader_loop(net, X[:n_train], y[:n_train], spec)
            rates[variant] = n_train * args.epochs / (time.perf_counter() - start)
        print(f"{str(hidden):<22}{rates['dataloader']:>14,.0f}{rates['fused']:>14,.0f}{rates['ours']:>10,.0f}"
              f"{rates['ours'] / rates['dataloader']:>14.2f}x{rates['ours'] / rates['fused']:>9.2f}x")
    print("targets: >= 2x the DataLoader loop at batch 256, >= 0.95x the fused loop at batch 32 and 256")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
