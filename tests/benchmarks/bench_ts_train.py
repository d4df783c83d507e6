"""Time-series train step: the platform's path vs a hand-written loop gathering each batch from a view.

    .venv/bin/python tests/benchmarks/bench_ts_train.py [--rows 1000000] [--channels 8] [--context 64]
        [--batch-size 256] [--old]

Same series (a random walk per channel, as the train step reads it from Parquet: a float64 DataFrame,
90% train / 10% val), same small model (the catalog's cnn1d, channels [16]), same batch size, optimizer,
seed and one epoch with a validation pass; both on the CPU.

- baseline: scale the train and val series once into float32 [T, C] arrays, then for each batch gather
  its windows from ``sliding_window_view`` of the scaled series (numpy fancy indexing) and train; then the
  validation loss, gathered the same way. Written by hand, no platform code but the network.
- platform: ``TimeSeriesFamily.fit_inputs`` (scaler fitted on train, lazy windows) + ``adapter.fit``
  (the one training loop), as the train step calls them.
- ``--old``: the path before lazy windows (materialised [N, C, L] windows, scaled in float64, cast to
  float32, and a whole-tensor gather per epoch). Needs about 8x N*C*L bytes; opt-in.

Each variant runs in its own subprocess, after one warm-up training step on random data (so torch's
code pages and allocator arenas are resident in all of them). Time is the train step (prepare + one
epoch); memory is the process's resident-set high-water mark (VmHWM, reset through
/proc/self/clear_refs once the data are built, so torch's own allocations count) and, as the step's
extra memory, that mark minus the RSS just before the step, in multiples of the input series (the
float32 [T, C] array, T*C*4 bytes). The platform's run then repeats fit_inputs, untimed, under
tracemalloc (which sees numpy's arrays, not torch's): what preparing the inputs allocates. Targets:
time <= 1.2x the baseline; peak memory <= 1.5x the input series.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def rss_reset() -> bool:
    """Reset the RSS high-water mark (Linux, writing 5 to clear_refs); False where it cannot be."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def make_frames(args):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    values = np.cumsum(rng.normal(size=(args.rows, args.channels)), axis=0)
    df = pd.DataFrame(values, columns=[f"c{j}" for j in range(args.channels)])
    cut = int(0.9 * args.rows)
    return df.iloc[:cut].reset_index(drop=True), df.iloc[cut:].reset_index(drop=True)


def spec(args):
    from components.recipe import TrainSpec

    return TrainSpec(epochs=1, batch_size=args.batch_size, device="cpu", scheduler="none", seed=0)


def run_baseline(args, train_df, val_df) -> None:
    import numpy as np
    import torch
    from numpy.lib.stride_tricks import sliding_window_view

    from components.models.torch_nets import CNN1dNet

    L, s = args.context, spec(args)

    def scaled(df, mean, std):
        v = df.to_numpy(np.float32)  # [T, C], channels contiguous (pandas' block, transposed)
        v -= mean
        v /= std
        return v

    def windows_and_targets(df, mean, std):
        raw = df["c0"].to_numpy(np.float64)
        n = len(df) - L
        view = sliding_window_view(scaled(df, mean, std), L, axis=0)[:n]
        return view, raw[L:L + n] - raw[L - 1:L - 1 + n]  # delta: next value minus the window's last

    torch.manual_seed(s.seed)
    np.random.seed(s.seed)
    stats = [(col.mean(), col.std()) for col in (train_df[c].to_numpy(np.float32) for c in train_df.columns)]
    mean, std = np.array(stats, np.float32).T.copy()
    Xt, yt = windows_and_targets(train_df, mean, std)
    Xv, yv = windows_and_targets(val_df, mean, std)
    y_mean, y_std = yt.mean(), yt.std()
    yt = torch.as_tensor(((yt - y_mean) / y_std).astype(np.float32)).view(-1, 1)
    yv = torch.as_tensor(((yv - y_mean) / y_std).astype(np.float32)).view(-1, 1)
    net = CNN1dNet(args.channels, 1, [16], 5, 0.1)
    opt = torch.optim.AdamW(net.parameters(), lr=s.learning_rate, weight_decay=s.weight_decay, foreach=True)
    loss_fn = torch.nn.MSELoss()
    bs = s.batch_size
    order = torch.randperm(len(Xt), generator=torch.Generator().manual_seed(s.seed)).numpy()
    net.train()
    for i in range(0, len(order), bs):
        idx = order[i:i + bs]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(torch.from_numpy(Xt[idx])), yt[idx])
        loss.backward()
        opt.step()
    net.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(Xv), bs):
            total += float(loss_fn(net(torch.from_numpy(Xv[i:i + bs])), yv[i:i + bs])) * len(Xv[i:i + bs])
    print(f"baseline val_loss {total / len(Xv):.5f}", file=sys.stderr)


def recipe_and_schema(args):
    from components.recipe import Recipe

    recipe = Recipe.parse({"name": "bench", "task": "regression", "data": {"uri": "bench.parquet"},
                           "timeseries": {"context_len": args.context, "label_offset": 1, "label_source_channel": "c0"},
                           "split": {"method": "time"},
                           "model": {"name": "cnn1d", "params": {"channels": [16], "kernel_size": 5, "dropout": 0.1}},
                           "register": {"model_name": "bench"}})
    names = [f"c{j}" for j in range(args.channels)]
    return recipe, {"channels": names, "features": [{"name": c} for c in names]}


def fit_platform(args, inputs) -> None:
    """What the train step does with the family's inputs: targets standardised by its own encode_target
    (the raw ones then let go), then the adapter's fit."""
    from types import SimpleNamespace

    import numpy as np

    from components.models import build_adapter
    from components.steps.train import encode_target

    recipe, _ = recipe_and_schema(args)
    meta = SimpleNamespace(task="regression", target_mean=float(np.mean(inputs.y_train, dtype=np.float64)),
                           target_std=float(np.std(inputs.y_train, dtype=np.float64)))
    y_train, y_val = encode_target(inputs.y_train, meta), encode_target(inputs.y_val, meta)
    inputs.y_train = inputs.y_val = None
    adapter = build_adapter("cnn1d", "regression", None, recipe.model.params, "timeseries")
    adapter.fit(inputs.X_train, y_train, inputs.X_val, y_val, spec(args))
    print(f"{args.variant} val_loss {adapter.history_[0]['val_loss']:.5f}", file=sys.stderr)


def run_platform(args, train_df, val_df) -> None:
    from components.tasks import family_for

    recipe, schema = recipe_and_schema(args)
    fit_platform(args, family_for(recipe).fit_inputs(recipe, schema, train_df, val_df, "onehot"))


def run_old(args, train_df, val_df) -> None:
    """fit_inputs as it was: materialised float64 windows, scaled, cast to float32."""
    import numpy as np

    from components.tasks.base import FitInputs
    from components.tasks.timeseries import ChannelScaler, segment_windows

    recipe, schema = recipe_and_schema(args)
    names = schema["channels"]
    series = {"context_len": args.context, "label_offset": 1, "label_source_channel": "c0", "group_column": None}
    scaler = ChannelScaler().fit(train_df[names].to_numpy(np.float32))
    parts = []
    for df in (train_df, val_df):
        X, y, _ = segment_windows(df, series, names, None)
        parts += [scaler.transform(X).astype(np.float32), y - np.asarray(X[:, 0, -1], dtype=np.float64)]
    fit_platform(args, FitInputs(*parts, transform=scaler))


def warm_up(args) -> None:
    """One training step on random data, so the pages of torch's code and its allocator's arenas that
    any training touches are resident before the measurement: what remains is the step's own memory."""
    import torch

    from components.models.torch_nets import CNN1dNet

    net = CNN1dNet(args.channels, 1, [16], 5, 0.1)
    opt = torch.optim.AdamW(net.parameters(), foreach=True)
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        net(torch.randn(args.batch_size, args.channels, args.context)).square().mean().backward()
        opt.step()
    with torch.no_grad():
        net.eval()(torch.randn(args.batch_size, args.channels, args.context))


def child(args) -> None:
    import torch

    import components.models.torch_training  # noqa: F401  (modules loaded before the step, for every variant)
    import components.tasks.timeseries  # noqa: F401

    torch.set_num_threads(args.threads)
    warm_up(args)
    train_df, val_df = make_frames(args)
    series_bytes = (len(train_df) + len(val_df)) * args.channels * 4
    reset = rss_reset()
    before = status_bytes("VmRSS")
    start = time.perf_counter()
    {"baseline": run_baseline, "platform": run_platform, "old": run_old}[args.variant](args, train_df, val_df)
    seconds = time.perf_counter() - start
    result = {"seconds": seconds, "before": before, "peak": status_bytes("VmHWM"), "reset": reset,
              "series_bytes": series_bytes}
    if args.variant == "platform":  # untimed: what fit_inputs itself allocates (numpy arrays; tracemalloc sees them)
        import tracemalloc

        from components.tasks import family_for

        recipe, schema = recipe_and_schema(args)
        tracemalloc.start()
        inputs = family_for(recipe).fit_inputs(recipe, schema, train_df, val_df, "onehot")
        result["prepare_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        result["windows_bytes"] = inputs.X_train.nbytes + inputs.X_val.nbytes
    print(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each variant (1: steady on a "
                        "shared 2-core machine)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant, alternating; the fastest counts")
    parser.add_argument("--old", action="store_true", help="also run the materialising path (needs ~8x N*C*L B)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child(args)
        return 0
    common = ["--rows", str(args.rows), "--channels", str(args.channels), "--context", str(args.context),
              "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    results = {}
    for _ in range(args.repeat):
        for variant in ["baseline", "platform"] + (["old"] if args.old else []):
            out = subprocess.run([sys.executable, __file__, "--variant", variant, *common], check=True,
                                 capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            r = json.loads(out.stdout.strip().splitlines()[-1])
            if variant not in results or r["seconds"] < results[variant]["seconds"]:
                results[variant] = r
    base = results["baseline"]
    if not base["reset"]:
        print("note: the RSS high-water mark could not be reset; peaks include the data's construction")
    n = int(0.9 * args.rows) - args.context
    mib = 2 ** 20
    print(f"{args.rows:,} rows x {args.channels} channels, L = {args.context}: {n:,} train windows, batch "
          f"{args.batch_size}, one epoch of cnn1d [16]; input series {base['series_bytes'] / mib:.0f} MiB float32 "
          f"(N*C*L*4 = {n * args.channels * args.context * 4 / mib:,.0f} MiB); {args.threads} torch thread(s), "
          f"best of {args.repeat}")
    print(f"{'variant':<44}{'seconds':>9}{'x base':>8}{'peak RSS MiB':>14}{'extra MiB':>11}{'x series':>10}")
    for variant, label in (("baseline", "baseline: batches gathered from the view"),
                           ("platform", "platform: fit_inputs + adapter.fit"),
                           ("old", "before: materialised [N, C, L] windows")):
        if variant not in results:
            continue
        r = results[variant]
        extra = r["peak"] - r["before"]
        print(f"{label:<44}{r['seconds']:>9.2f}{r['seconds'] / base['seconds']:>8.2f}{r['peak'] / mib:>14.0f}"
              f"{extra / mib:>11.0f}{extra / r['series_bytes']:>10.2f}")
    p = results["platform"]
    series = p["series_bytes"]
    print(f"fit_inputs alone (tracemalloc): peak {p['prepare_peak'] / mib:.0f} MiB = {p['prepare_peak'] / series:.2f}x "
          f"the input series; its windows object holds {p['windows_bytes'] / mib:.0f} MiB (the scaled series; start "
          "rows only for several series)")
    print(f"platform / baseline: time {p['seconds'] / base['seconds']:.2f}x (target <= 1.2x), peak RSS "
          f"{p['peak'] / base['peak']:.2f}x; step's extra RSS {(p['peak'] - p['before']) / series:.2f}x the input "
          f"series (baseline {(base['peak'] - base['before']) / series:.2f}x); target <= 1.5x")
    print(f"against the series as the step reads it (float64 frames, {2 * series / mib:.0f} MiB): platform "
          f"{(p['peak'] - p['before']) / (2 * series):.2f}x, baseline {(base['peak'] - base['before']) / (2 * series):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
