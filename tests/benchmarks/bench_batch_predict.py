"""Batch scoring memory: peak RSS scoring the largest shipped table vs the same table repeated 10×.

    .venv/bin/python tests/benchmarks/bench_batch_predict.py [--times 10] [--chunk-rows 50000]

Trains a small MLP bundle on California Housing (the largest table in data/), writes the table once
and --times over as Parquet, scores each in a fresh process and prints peak RSS and rows/s for both.
Target: the 10× file's peak memory within 1.2× of the 1× file's (chunked scoring; the file's size
does not matter).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CHILD = """
import json, resource, sys, time
from components.steps.predict import predict_batch
started = time.perf_counter()
result = predict_batch(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
print(json.dumps({"rows": result["rows"], "seconds": time.perf_counter() - started,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def score(model: Path, data: Path, out: Path, chunk_rows: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(model), str(data), str(out), str(chunk_rows)],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--times", type=int, default=10)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    args = parser.parse_args()
    from tests.conftest import make_recipe, run_steps

    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    recipe = make_recipe("regression", data={"sample_rows": 5000}, train={"epochs": 2})
    paths = run_steps(recipe, work)
    table = pd.read_parquet(ROOT / "data" / "california_housing.parquet")
    one, many = work / "x1.parquet", work / f"x{args.times}.parquet"
    table.to_parquet(one)
    pd.concat([table] * args.times, ignore_index=True).to_parquet(many, row_group_size=args.chunk_rows)
    small = score(paths["model"], one, work / "p1.parquet", args.chunk_rows)
    large = score(paths["model"], many, work / "pN.parquet", args.chunk_rows)
    for name, r in (("1x", small), (f"{args.times}x", large)):
        print(f"{name:>4}: {r['rows']:>9,} rows  {r['seconds']:6.2f} s  {r['rows'] / r['seconds']:>10,.0f} rows/s  "
              f"peak RSS {r['peak_mib']:7.1f} MiB")
    ratio = large["peak_mib"] / small["peak_mib"]
    print(f"peak memory {args.times}x file / 1x file: {ratio:.2f}x (target <= 1.2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
