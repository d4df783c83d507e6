"""Windowing speed and memory: the time-series task's zero-copy windows vs a Python loop over df.iloc.

    .venv/bin/python tests/benchmarks/bench_windowing.py [--rows 1000000] [--channels 8] [--context 64]

Both build the same windows X [N, C, L] and labels y [N] (next value of channel 0). The loop is
timed on its first --loop-windows windows and its rate extrapolated to N (a full run takes many
minutes and needs N*C*L*4 bytes for the copies). Targets: >= 100x faster, peak extra memory of the
vectorised path <= 0.5x the input array (i.e. total <= 1.5x the input).
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from components.tasks.timeseries import windows  # noqa: E402


def loop_windows(df: pd.DataFrame, context: int, count: int):
    X, y = [], []
    for i in range(count):
        X.append(df.iloc[i:i + context].to_numpy().T)
        y.append(df.iloc[i + context, 0])
    return np.stack(X), np.array(y)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--loop-windows", type=int, default=20_000)
    args = parser.parse_args()
    values = np.random.default_rng(0).normal(size=(args.rows, args.channels)).astype(np.float32)
    df = pd.DataFrame(values)

    tracemalloc.start()
    start = time.perf_counter()
    X, label_rows = windows(values, args.context, 1)
    y = values[label_rows, 0]
    checksum = float(X[::1000, :, -1].sum()) + float(y[::1000].sum())  # touch the data
    fast = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n = len(X)

    start = time.perf_counter()
    dense = np.ascontiguousarray(X)  # what training does once, to hand a tensor to torch
    copy = time.perf_counter() - start
    del dense

    start = time.perf_counter()
    Xl, yl = loop_windows(df, args.context, args.loop_windows)
    slow = (time.perf_counter() - start) / args.loop_windows * n
    assert np.array_equal(Xl, X[:args.loop_windows]) and np.array_equal(yl, y[:args.loop_windows]), "same windows"

    print(f"input {args.rows:,} rows x {args.channels} channels, L={args.context}: {n:,} windows "
          f"({values.nbytes / 2**20:.0f} MiB input; checksum {checksum:.3f})")
    print(f"{'method':<34}{'seconds':>12}{'extra peak MiB':>16}")
    print(f"{'sliding_window_view (ours)':<34}{fast:>12.5f}{peak / 2**20:>16.2f}")
    print(f"{'  + one contiguous copy (training)':<34}{fast + copy:>12.3f}{X.nbytes / 2**20:>16.0f}")
    print(f"{'python loop over df.iloc':<34}{slow:>12.1f}{'(N*C*L*4 B copy)':>16}   "
          f"extrapolated from {args.loop_windows:,} windows")
    print(f"speed-up: {slow / fast:,.0f}x as a view, {slow / (fast + copy):,.0f}x including one contiguous copy "
          "(target >= 100x)")
    print(f"peak memory, input + extra: {(values.nbytes + peak) / values.nbytes:.3f}x the input (target <= 1.5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
