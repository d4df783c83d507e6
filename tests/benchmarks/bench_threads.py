"""Training beside a busy core: PyTorch's default thread count vs the platform's choice.

    .venv/bin/python tests/benchmarks/bench_threads.py [--rows 20000] [--epochs 5]

Trains a plain MLP ([256, 256, 256], batch 256) on synthetic rows in a fresh process, four ways:
idle machine and torch's default threads (the baseline), then with a busy loop pinned to another
core: torch's default, the platform's ``threads.configure()`` (affinity and cgroup quota, less busy
cores), and one thread. Prints each time and its ratio to the baseline. Target: no collapse, i.e.
the platform's choice beside a busy core within 1.5x of the idle baseline.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys, time
import numpy as np
import torch
from components import threads
from components.models import build_adapter
from components.recipe import TrainSpec
mode, rows, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if mode == "platform":
    threads.configure()
elif mode != "default":
    torch.set_num_threads(int(mode))
rng = np.random.default_rng(0)
X = rng.normal(size=(rows, 8)).astype(np.float32); y = X @ rng.normal(size=8).astype(np.float32)
adapter = build_adapter("mlp", "regression", None, {"hidden_sizes": [256, 256, 256]})
spec = TrainSpec(epochs=epochs, batch_size=256, early_stopping_patience=epochs + 1)
start = time.perf_counter()
adapter.fit(X, y, X[:2000], y[:2000], spec)
print(torch.get_num_threads(), time.perf_counter() - start)
"""


def run(mode: str, rows: int, epochs: int) -> tuple[int, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(rows), str(epochs)], cwd=ROOT, check=True,
                         capture_output=True, text=True, env={**os.environ, "PLATFORM_THREADS": ""})
    threads, seconds = out.stdout.split()[-2:]
    return int(threads), float(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        print("needs two cores to put a busy process beside training")
        return 0
    _, baseline = run("default", args.rows, args.epochs)
    print(f"idle machine, torch default threads: {baseline:6.2f} s (baseline)")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    os.sched_setaffinity(busy.pid, {cores[-1]})
    try:
        time.sleep(0.5)
        for label, mode in (("torch default", "default"), ("platform choice", "platform"), ("one thread", "1")):
            threads, seconds = run(mode, args.rows, args.epochs)
            print(f"other core busy, {label:<15} ({threads} thread{'s' if threads > 1 else ''}): {seconds:6.2f} s "
                  f"= {seconds / baseline:4.2f}x the baseline")
    finally:
        busy.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
