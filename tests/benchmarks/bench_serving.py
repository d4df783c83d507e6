"""Serving load: the project's KServe predictor vs `mlflow models serve`, same bundle, same machine.

    .venv/bin/python tests/benchmarks/bench_serving.py [--requests 400] [--model-dir DIR]

Without --model-dir, the default recipe's model is trained briefly (same architecture, few
epochs: serving cost does not depend on how well it was trained). Both servers run with one
worker on 127.0.0.1; a light asyncio client (kept-alive connections) sends one-row requests at
concurrency 1, 8 and 32, then 32-row requests at concurrency 1, and reports p50 / p99 latency, requests/s and
errors. Targets (issue 15): one-row requests at concurrency 8 >= 3x mlflow's requests/s with p99
< 20 ms; 32-row requests at concurrency 1 >= 1.5x; zero errors.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.conftest import free_port, run_steps, start_process, stop_process, wait_http  # noqa: E402


def train_default(out: Path) -> Path:
    from components.recipe import Recipe

    recipe = Recipe.from_file(ROOT / "pipelines" / "recipes" / "california-housing.yaml",
                              [f"data.uri={ROOT / 'data' / 'california_housing.parquet'}", "train.epochs=3"])
    return run_steps(recipe, out)["model"]


async def _post(reader, writer, host: str, path: str, body: bytes) -> int:
    """One HTTP/1.1 POST on a kept-alive connection; the status code (the body is read and dropped)."""
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    if "content-length" in fields:
        await reader.readexactly(int(fields["content-length"]))
    elif fields.get("transfer-encoding") == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    return int(head[0].split()[1])


async def load(url: str, bodies: list[bytes], concurrency: int) -> dict:
    """``concurrency`` kept-alive connections, each sending its next request when the last is answered.
    Plain asyncio streams, not an HTTP client library: httpx spends about 2 ms of CPU per request, which
    on the load generator's one core capped every server at about 330 requests/s (measured here)."""
    from urllib.parse import urlsplit

    target = urlsplit(url)
    latencies, errors = [], 0
    queue = list(bodies)

    async def worker():
        nonlocal errors
        reader, writer = await asyncio.open_connection(target.hostname, target.port)
        try:
            while queue:
                body = queue.pop()
                start = time.perf_counter()
                try:
                    errors += await _post(reader, writer, target.netloc, target.path, body) != 200
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(target.hostname, target.port)
                latencies.append(time.perf_counter() - start)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "rps": len(bodies) / elapsed, "errors": errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per concurrency level and server")
    parser.add_argument("--model-dir")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="let the servers and this load generator share every core (default: servers on "
                             "core 0, load generator on core 1, as a load generator on its own machine would be)")
    args = parser.parse_args()
    pin = args.pin and len(os.sched_getaffinity(0)) >= 2 and shutil.which("taskset")
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model_dir) if args.model_dir else train_default(Path(tmp) / "run")
        rows = pd.read_parquet(ROOT / "data" / "california_housing.parquet").drop(columns="MedHouseVal")
        records = rows.sample(args.requests, random_state=0).to_dict("records")
        ours_port, mlflow_port = free_port(), free_port()
        servers = {
            "kserve predictor (ours)": (
                [sys.executable, "-m", "serving", "--model_dir", str(model_dir), "--model_name", "m",
                 "--http_port", str(ours_port)],
                f"http://127.0.0.1:{ours_port}/v2/models/m/ready", f"http://127.0.0.1:{ours_port}/v1/models/m:predict",
                [json.dumps({"instances": [r]}).encode() for r in records],
                [json.dumps({"instances": records[i:i + 32]}).encode() for i in range(0, len(records), 32)]),
            "mlflow models serve": (
                [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model_dir), "-p", str(mlflow_port),
                 "-h", "127.0.0.1", "--env-manager", "local", "-w", "1"],
                f"http://127.0.0.1:{mlflow_port}/ping", f"http://127.0.0.1:{mlflow_port}/invocations",
                [json.dumps({"dataframe_records": [r]}).encode() for r in records],
                [json.dumps({"dataframe_records": records[i:i + 32]}).encode() for i in range(0, len(records), 32)]),
        }
        results = {}
        if pin:
            os.sched_setaffinity(0, {1})
        for name, (cmd, ready, url, bodies, batches) in servers.items():
            env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # uvicorn
            log = Path(tmp) / f"{len(results)}.log"
            proc = start_process(["taskset", "-c", "0", *cmd] if pin else cmd, log, env=env)
            try:
                wait_http(ready, proc, 180, log)
                asyncio.run(load(url, bodies[:20], 4))  # warm-up, not counted
                for c in (1, 8, 32):
                    results[(name, c)] = asyncio.run(load(url, bodies, c))
                results[(name, "32 rows, 1")] = asyncio.run(load(url, batches * 3, 1))
            finally:
                stop_process(proc)
    where = "server pinned to core 0, load generator to core 1" if pin else "server and load generator share the cores"
    print(f"{args.requests} one-row requests per level, then 32-row requests; one worker each, 127.0.0.1; {where}")
    print(f"{'server':<26}{'conc':>12}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'errors':>8}")
    for (name, c), r in results.items():
        print(f"{name:<26}{c:>12}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['rps']:>9.0f}{r['errors']:>8}")
    ours, theirs = "kserve predictor (ours)", "mlflow models serve"
    for level, target in ((1, None), (8, 3.0), (32, None), ("32 rows, 1", 1.5)):
        ratio = results[(ours, level)]["rps"] / results[(theirs, level)]["rps"]
        print(f"requests/s at {level if isinstance(level, str) else f'one row, {level}'}: {ratio:.2f}x mlflow models serve"
              + (f" (target >= {target:g}x)" if target else "") + (f"; p99 {results[(ours, 8)]['p99']:.1f} ms (target < 20 ms)"
                                                                   if level == 8 else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
