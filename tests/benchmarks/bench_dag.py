"""The default recipe's DAG (kfp.local, one process per step) vs the same steps in one Python process.

    .venv/bin/python tests/benchmarks/bench_dag.py [--epochs N]   (default: the recipe's own)

Both run load → preprocess → split → train → evaluate → register → deploy on the same recipe,
with their own MLflow (sqlite) and platform home, caching off. Prints the wall of each, their
ratio (issue 15 target: ≤ 1.5×), and per step the DAG's wall beside the step's own work in one
process, so the difference (process start, imports, KFP's executor) shows where the rest goes.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
STEPS = ("load", "preprocess", "split", "train", "evaluate", "register", "deploy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_env(tmp: Path) -> None:
    os.environ.update(PLATFORM_HOME=str(tmp / "home"), PLATFORM_ARTIFACT_ROOT=str(tmp / "art"),
                      MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}")


def recipe_for(epochs: int, name: str):
    from components.recipe import Recipe

    return Recipe.from_file(ROOT / "pipelines/recipes/california-housing.yaml",
                            [*([f"train.epochs={epochs}"] if epochs else []), f"register.model_name={name}",
                             f"deploy.port={free_port()}"])


def in_one_process(epochs: int, tmp: Path) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    from components.steps import deploy, evaluate, load, preprocess, register, split, train  # imports count
    from components.storage import resolve_data_uri

    recipe = recipe_for(epochs, "bench-one")
    recipe = type(recipe).parse(recipe.model_dump(mode="json", by_alias=True),
                                [f"data.uri={resolve_data_uri(recipe.data.uri, ROOT)}"])
    d, times = tmp / "steps", {}

    def timed(step, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        times[step] = time.perf_counter() - t0
        return out

    d.mkdir()
    timed("load", load.load, recipe, str(d / "raw.parquet"))
    timed("preprocess", preprocess.preprocess, recipe, str(d / "raw.parquet"), str(d / "clean.parquet"),
          str(d / "schema.json"), str(d / "report.md"))
    timed("split", split.split, recipe, str(d / "clean.parquet"), *(str(d / f"{p}.parquet") for p in ("tr", "va", "te")))
    # The same calls, with the same outputs, as the KFP components make (pipelines/kfp_steps.py).
    timed("train", train.train, recipe, str(d / "tr.parquet"), str(d / "va.parquet"), str(d / "schema.json"),
          str(d / "model"), str(d / "curve.html"))
    timed("evaluate", evaluate.evaluate, recipe, str(d / "model"), str(d / "te.parquet"), str(d / "eval"),
          str(d / "report.html"), str(d / "schema.json"), str(d / "report.md"), str(d / "card.html"))
    registered = timed("register", register.register, recipe, str(d / "model"), str(d / "eval"), "bench",
                       str(d / "schema.json"), str(d / "report.md"))
    timed("deploy", deploy.deploy, recipe, str(d / "isvc.yaml"), registered)
    wall = time.perf_counter() - started
    deploy.stop_local_server(recipe.registry.model_name)
    return wall, times


def as_dag(epochs: int) -> tuple[float, dict[str, float]]:
    from components.steps.deploy import stop_local_server
    from pipelines.submit import run_local

    recipe = recipe_for(epochs, "bench-dag")
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        run_local(recipe, caching=False)
    wall = time.perf_counter() - started
    stop_local_server(recipe.registry.model_name)
    times = {m.group(1): float(m.group(2)) for m in re.finditer(r"^\s+(\w+)\s+done in\s+([\d.]+) s", out.getvalue(), re.M)}
    return wall, times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=0, help="train.epochs (default: the recipe's)")
    parser.add_argument("--variant", choices=["dag", "one"], help=argparse.SUPPRESS)  # a fresh process each
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        fresh_env(Path(args.tmp))
        wall, times = as_dag(args.epochs) if args.variant == "dag" else in_one_process(args.epochs, Path(args.tmp))
        print("RESULT " + json.dumps({"wall": wall, "times": times}))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("dag", "one"):  # each in a new interpreter: imports count for both
            (Path(tmp) / variant).mkdir()
            run = subprocess.run([sys.executable, __file__, "--variant", variant, "--epochs", str(args.epochs or 0),
                                  "--tmp", str(Path(tmp) / variant)], capture_output=True, text=True, cwd=ROOT)
            line = next((x for x in run.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{variant} failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
            results[variant] = json.loads(line[len("RESULT "):])
    dag_wall, dag = results["dag"]["wall"], results["dag"]["times"]
    one_wall, one = results["one"]["wall"], results["one"]["times"]
    print(f"default recipe, {args.epochs or 'its own'} epochs: DAG {dag_wall:.1f} s, one process {one_wall:.1f} s, "
          f"ratio {dag_wall / one_wall:.2f}x (target <= 1.5x)")
    print(f"{'step':<11} {'DAG s':>7} {'in-process s':>13} {'overhead s':>11}")
    for step in STEPS:
        print(f"{step:<11} {dag.get(step, float('nan')):>7.1f} {one.get(step, float('nan')):>13.2f} "
              f"{dag.get(step, float('nan')) - one.get(step, 0.0):>11.1f}")
    print(f"{'(between)':<11} {dag_wall - sum(dag.values()):>7.1f}  resolve step, DAG compilation, kfp.local's "
          f"bookkeeping, summary; one process's imports: {one_wall - sum(one.values()):.1f} s")


if __name__ == "__main__":
    main()
