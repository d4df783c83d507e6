import json

import numpy as np
import pandas as pd
import pytest

from components.bundle import load_bundle
from components.errors import DataError, InvalidInputError
from components.recipe import Recipe, RecipeError
from components.steps.load import load
from components.steps.preprocess import preprocess
from components.steps.split import split
from components.tasks.timeseries import ChannelScaler, LabelRule, check_windows, rolling_folds, windows
from tests.conftest import DATA, ROOT, run_steps


def ts_recipe(uri, task="regression", split_method="time", **ts):
    spec = {"context_len": 6, "label_offset": 1, "label_source_channel": "a", **ts}
    return Recipe.parse({"name": "ts", "task": task, "data": {"uri": str(uri)}, "timeseries": spec,
                         "split": {"method": split_method}, "model": {"name": "lstm", "params": {"hidden_size": 8}},
                         "train": {"epochs": 3, "batch_size": 16}, "register": {"model_name": "ts"}})


def test_windows_are_a_zero_copy_view_with_labels_at_the_offset():
    values = np.arange(40, dtype=np.float32).reshape(20, 2)  # row r holds [2r, 2r+1]
    X, label_rows = windows(values, context_len=5, label_offset=2)
    assert X.shape == (20 - 5 - 2 + 1, 2, 5) and np.shares_memory(X, values)
    assert X[0, 0].tolist() == [0, 2, 4, 6, 8] and X[3, 1].tolist() == [7, 9, 11, 13, 15]
    assert label_rows.start == 4 + 2, "label is label_offset steps after the window's last step"
    assert np.shares_memory(values[label_rows, 0], values), "labels are a view as well"


def test_label_rules_and_quantile_fitted_on_train():
    y = np.array([0.0, 1.0, 2.0, 3.0, -1.0])
    assert LabelRule("nonzero").apply(y).tolist() == [0, 1, 1, 1, 1]
    assert LabelRule("gt", 1.5).apply(y).tolist() == [0, 0, 1, 1, 0]
    assert LabelRule("lt", 0.5).apply(y).tolist() == [1, 0, 0, 0, 1]
    fitted = LabelRule("quantile", 0.5).fit(np.array([10.0, 20.0, 30.0]))
    assert (fitted.kind, fitted.threshold) == ("gt", 20.0)


def test_rolling_folds_expand_and_never_overlap():
    folds = rolling_folds(100, 3, val_rows=10, test_rows=10)
    assert [f["train"] for f in folds] == [(0, 60), (0, 70), (0, 80)]
    for f in folds:
        assert f["train"][1] == f["val"][0] and f["val"][1] == f["test"][0] and f["test"][1] <= 100
    assert folds[-1]["test"][1] == 100
    with pytest.raises(DataError, match="cannot hold"):
        rolling_folds(20, 3, 10, 10)


def test_channel_files_are_stacked_and_windows_never_cross_a_split(tmp_path):
    recipe = ts_recipe(DATA / "macro" / "*.csv", label_source_channel="infl", timestamp_column="quarter")
    load(recipe, tmp_path / "raw.parquet")
    schema = preprocess(recipe, tmp_path / "raw.parquet", tmp_path / "clean.parquet", tmp_path / "s.json",
                        tmp_path / "r.md")
    assert schema["channels"] == ["infl", "realint", "tbilrate", "unemp"] and schema["n_rows"] == 203
    parts = [tmp_path / f"{p}.parquet" for p in ("train", "val", "test")]
    sizes = split(recipe, tmp_path / "clean.parquet", *parts)
    assert sizes == {"train": 142, "val": 20, "test": 41}
    quarters = [pd.read_parquet(p)["quarter"] for p in parts]
    assert quarters[0].iloc[-1] < quarters[1].iloc[0] and quarters[1].iloc[-1] < quarters[2].iloc[0], "time order"
    from components.tasks import family_for

    train_df, val_df = pd.read_parquet(parts[0]), pd.read_parquet(parts[1])
    inputs = family_for(recipe).fit_inputs(recipe, schema, train_df, val_df, "onehot")
    assert inputs.X_train.shape == (142 - 6, 4, 6) and inputs.X_val.shape == (20 - 6, 4, 6)
    np.testing.assert_allclose(inputs.transform.mean_, train_df[schema["channels"]].mean().to_numpy(), rtol=1e-5)
    assert inputs.meta["series"]["target_mode"] == "delta"


@pytest.mark.parametrize("setup,match", [
    (lambda d: [pd.DataFrame({"a": range(10)}).to_csv(d / "a.csv", index=False),
                pd.DataFrame({"b": range(12)}).to_csv(d / "b.csv", index=False)], "different lengths"),
    (lambda d: pd.DataFrame({"a": ["1", "x"] * 10}).to_csv(d / "a.csv", index=False),
     "channel 'a' must be numeric; row 1 holds 'x'"),
    (lambda d: pd.DataFrame({"a": range(5)}).to_csv(d / "a.csv", index=False), "too few for context_len 6"),
])
def test_bad_series_fail_clearly(tmp_path, setup, match):
    setup(tmp_path)
    recipe = ts_recipe(tmp_path / "*.csv")
    with pytest.raises(DataError, match=match):
        load(recipe, tmp_path / "raw.parquet")
        preprocess(recipe, tmp_path / "raw.parquet", tmp_path / "c.parquet", tmp_path / "s.json", tmp_path / "r.md")


def test_recipe_checks_for_time_series():
    with pytest.raises(RecipeError, match="does not fit task 'classification'"):
        ts_recipe("x", task="classification")
    with pytest.raises(RecipeError, match="quantile' needs threshold in"):
        ts_recipe("x", task="classification", label_rule="quantile", threshold=3)
    with pytest.raises(RecipeError, match="for time series"):
        Recipe.parse({"name": "t", "task": "regression", "data": {"uri": "x", "target": "y"},
                      "split": {"method": "time"}, "register": {"model_name": "t"}})


@pytest.fixture(scope="module")
def sunspots_run(tmp_path_factory):
    recipe = Recipe.from_file(ROOT / "pipelines" / "recipes" / "sunspots-active.yaml",
                              ["train.epochs=4", "model.params.hidden_size=8"])
    return recipe, run_steps(recipe, tmp_path_factory.mktemp("sunspots"))


def test_binary_series_evaluation_reports_threshold_and_plots(sunspots_run):
    _, p = sunspots_run
    result = json.loads((p["eval"] / "evaluation.json").read_text())
    assert 0 <= result["metrics"]["best_threshold"] <= 1 and "f1_at_0.5" in result["metrics"]
    assert {"score_histogram.png", "roc_curve.png", "predicted_over_time.png"} <= {f.name for f in p["eval"].iterdir()}
    bundle = load_bundle(p["model"])
    assert bundle.meta.series["label_rule"] == "gt" and bundle.meta.classes == ["0", "1"]


def test_delta_regression_adds_the_last_value_back(tmp_path):
    t = np.arange(300, dtype=float)
    pd.DataFrame({"a": 100 + 0.5 * t + np.sin(t / 3)}).to_csv(tmp_path / "trend.csv", index=False)
    recipe = ts_recipe(tmp_path / "trend.csv")
    p = run_steps(recipe, tmp_path / "out")
    rmse = json.loads((p["eval"] / "evaluation.json").read_text())["metrics"]["rmse"]
    assert rmse < 2.0, "a trend beyond the train range is still followed (the test level is ~+100 above train)"


def test_served_windows_are_checked():
    assert check_windows([[1.0, 2.0, 3.0]], 1, 3).shape == (1, 1, 3)
    with pytest.raises(InvalidInputError, match=r"expected \[2, 3\] per instance"):
        check_windows([[[1, 2, 3]]], 2, 3)
    with pytest.raises(InvalidInputError, match="finite"):
        check_windows([[[1, float("nan"), 3]]], 1, 3)
    with pytest.raises(InvalidInputError, match="window of numbers"):
        check_windows([[["a", "b", "c"]]], 1, 3)


def test_channel_scaler_on_rows_and_windows():
    rows = np.random.default_rng(0).normal(5, 2, size=(50, 3))
    s = ChannelScaler().fit(rows)
    np.testing.assert_allclose(s.transform(rows).mean(axis=0), 0, atol=1e-5)
    win, _ = windows(rows, 4, 1)
    np.testing.assert_allclose(s.transform(win)[0], s.transform(rows)[:4].T, rtol=1e-5)


def test_group_series_keep_windows_inside_one_series(tmp_path):
    from components.tasks.timeseries import segment_windows

    frames = [pd.DataFrame({"sid": f"s{g}", "a": 1000.0 * g + np.arange(30)}) for g in range(5)]
    pd.concat(frames).to_csv(tmp_path / "long.csv", index=False)
    recipe = ts_recipe(tmp_path / "long.csv", split_method="group", group_column="sid")
    load(recipe, tmp_path / "raw.parquet")
    preprocess(recipe, tmp_path / "raw.parquet", tmp_path / "clean.parquet", tmp_path / "s.json", tmp_path / "r.md")
    parts = [tmp_path / f"{p}.parquet" for p in ("train", "val", "test")]
    split(recipe, tmp_path / "clean.parquet", *parts)
    groups = [set(pd.read_parquet(p)["sid"]) for p in parts]
    assert not (groups[0] & groups[2] or groups[1] & groups[2] or groups[0] & groups[1])
    series = {"context_len": 6, "label_offset": 1, "label_source_channel": "a", "group_column": "sid"}
    X, y, _ = segment_windows(pd.read_parquet(parts[0]), series, ["a"], None)
    assert len(X) == (30 - 6 - 1 + 1) * len(groups[0]), "windows per series, none spanning two"
    assert (X.max(axis=(1, 2)) // 1000 == X.min(axis=(1, 2)) // 1000).all(), "each window from one series"
    assert (y // 1000 == X[:, 0, -1] // 1000).all() and (y - X[:, 0, -1] == 1).all()


def _long_series(n_groups=3, rows=40, seed=0):
    """Two channels per series, rows interleaved by time across series (as a timestamp sort leaves them)."""
    rng = np.random.default_rng(seed)
    frames = [pd.DataFrame({"t": np.arange(rows + g), "sid": f"s{g}",
                            "a": 1000.0 * g + np.cumsum(rng.normal(size=rows + g)), "b": rng.normal(5, 2, size=rows + g)})
              for g in range(n_groups)]
    return pd.concat(frames).sort_values("t", kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("group", [None, "sid"])
def test_lazy_windows_gather_the_materialised_windows(group):
    """fit_inputs' windows (scaled [T, C] series + starts) gather exactly what scaling the materialised
    [N, C, L] windows gave, batch by batch, per series, with the delta mode's last values."""
    import torch

    from components.models.batches import Windows, WindowBatches, batch_source
    from components.tasks.timeseries import last_label_value, scaled_windows, segment_windows

    df = _long_series()
    if group is None:
        df = df[df["sid"] == "s1"].reset_index(drop=True)
    series = {"context_len": 6, "label_offset": 2, "label_source_channel": "a", "group_column": group}
    scaler = ChannelScaler().fit(df[["a", "b"]].to_numpy(np.float32))
    raw, y_ref, _ = segment_windows(df, series, ["a", "b"], None)
    ref = scaler.transform(raw).astype(np.float32)  # what fit_inputs materialised before
    W, y, last = scaled_windows(df, series, ["a", "b"], scaler)
    assert isinstance(W, Windows) and W.shape == ref.shape and len(W) == len(ref) and W.dtype == np.float32
    assert np.array_equal(np.asarray(W), ref) and np.array_equal(y, y_ref)
    assert np.array_equal(last, last_label_value(series, ["a", "b"], raw)), "delta mode subtracts the same values"
    idx = np.random.default_rng(1).permutation(len(W))[:17]
    assert np.array_equal(W[idx], ref[idx]) and np.array_equal(W[3:9], ref[3:9]) and np.array_equal(W[5], ref[5])
    if group:
        assert len(W) == sum(40 + g - 6 - 2 + 1 for g in range(3)), "windows per series, none spanning two"
    else:
        assert W.starts is None and W.nbytes == W.values.nbytes, "one series holds no start array"
        assert np.array_equal(W[len(W) - 1], ref[-1]) and np.array_equal(W[-1], ref[-1])
        with pytest.raises(IndexError):
            W[np.array([len(W)])]  # a window without a label is not one of the samples
    W5 = W[5]
    W5[:] = 0  # a gathered window is the caller's copy
    assert np.array_equal(W[5], ref[5])

    order = torch.randperm(len(W), generator=torch.Generator().manual_seed(0), dtype=torch.int32)  # as fit_module
    lazy, dense = batch_source(W, y), batch_source(ref, y)
    assert isinstance(lazy, WindowBatches)
    for source in (lazy, dense):
        source.prepare(torch.device("cpu"), "regression", 1)
    pairs = list(zip(lazy.batches(8, order), dense.batches(8, order)))
    assert len(pairs) == -(-len(W) // 8)
    for (xa, ya), (xb, yb) in pairs:
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and xa.is_contiguous(), "the same, contiguous batches"
    lazy.series_to(torch.device("cpu"))  # the accelerator path: gather from the series' tensor view
    for (xa, _), (xb, _) in zip(lazy.batches(8, order), dense.batches(8, order)):
        assert torch.equal(xa, xb)


def test_fit_inputs_keeps_windows_lazy_and_small():
    """No [N, C, L] array: the windows object holds the scaled series, and fitting inputs allocates far
    less than N*C*L*4 bytes; the LSTM trains and predicts on it, as it did on the materialised array."""
    import tracemalloc

    from components.models import build_adapter
    from components.models.batches import Windows
    from components.tasks import family_for

    T, L = 20_000, 64
    rng = np.random.default_rng(0)
    df = pd.DataFrame({c: np.cumsum(rng.normal(size=T)) for c in "abcd"})
    recipe = ts_recipe("x", context_len=L)
    schema = {"channels": list("abcd"), "features": [{"name": c} for c in "abcd"]}
    train_df, val_df = df.iloc[:16_000].reset_index(drop=True), df.iloc[16_000:].reset_index(drop=True)
    tracemalloc.start()
    inputs = family_for(recipe).fit_inputs(recipe, schema, train_df, val_df, "onehot")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    n = 16_000 - L - 1 + 1
    dense_bytes = n * 4 * L * 4
    assert isinstance(inputs.X_train, Windows) and inputs.X_train.shape == (n, 4, L)
    assert inputs.X_train.nbytes == inputs.X_train.values.nbytes == 16_000 * 4 * 4, "the scaled series, no starts"
    assert peak < dense_bytes / 4, peak
    ref = inputs.transform.transform(np.asarray(sliding_windows_raw(train_df, L))).astype(np.float32)
    assert np.array_equal(np.asarray(inputs.X_train), ref)
    delta = train_df["a"].to_numpy()[L:] - train_df["a"].to_numpy()[L - 1:-1]
    assert inputs.y_train.dtype == np.float32, "delta targets are kept as training reads them"
    np.testing.assert_array_equal(inputs.y_train, delta[:n].astype(np.float32))

    small = slice(0, 300)
    from components.recipe import TrainSpec

    spec = TrainSpec(epochs=1, batch_size=64, device="cpu")
    lazy = build_adapter("lstm", "regression", None, {"hidden_size": 4}, "timeseries")
    lazy.fit(Windows(inputs.X_train.values, np.arange(300), L), inputs.y_train[small],
             inputs.X_val, inputs.y_val, spec)
    dense = build_adapter("lstm", "regression", None, {"hidden_size": 4}, "timeseries")
    dense.fit(np.asarray(inputs.X_train)[small], inputs.y_train[small], np.asarray(inputs.X_val), inputs.y_val, spec)
    assert lazy.history_ == [dict(h, seconds=lazy.history_[0]["seconds"]) for h in dense.history_]
    np.testing.assert_array_equal(lazy.predict_raw(inputs.X_val), dense.predict_raw(np.asarray(inputs.X_val)))


def sliding_windows_raw(df, L):
    X, _ = windows(df.to_numpy(np.float64), L, 1)
    return X


def test_delta_targets_and_their_encoding_keep_small_steps_of_large_levels():
    """Levels near 1e7 with steps of 0.01: float32 levels could not hold the steps (their spacing there
    is 1), so the differences are taken in float64; encode_target standardises them in float64 into
    float32 without full-size temporaries, as the train step feeds them."""
    from types import SimpleNamespace

    from components.steps.train import encode_target
    from components.tasks import family_for

    T, L = 600, 8
    steps = np.random.default_rng(3).choice([-0.01, 0.02], size=T)
    df = pd.DataFrame({"a": 1e7 + np.cumsum(steps), "b": np.arange(T, dtype=float)})
    recipe = ts_recipe("x", context_len=L)
    schema = {"channels": ["a", "b"], "features": [{"name": "a"}, {"name": "b"}]}
    inputs = family_for(recipe).fit_inputs(recipe, schema, df.iloc[:500].reset_index(drop=True),
                                          df.iloc[500:].reset_index(drop=True), "onehot")
    np.testing.assert_allclose(inputs.y_train, steps[L:500], rtol=1e-5)
    meta = SimpleNamespace(task="regression", target_mean=float(np.mean(inputs.y_train, dtype=np.float64)),
                           target_std=float(np.std(inputs.y_train, dtype=np.float64)))
    encoded = encode_target(inputs.y_train, meta)
    reference = (inputs.y_train.astype(np.float64) - meta.target_mean) / meta.target_std
    assert encoded.dtype == np.float32 and encoded.shape == inputs.y_train.shape
    np.testing.assert_allclose(encoded, reference, rtol=1e-6, atol=1e-6)
    assert len(np.unique(np.round(encoded, 3))) == 2, "the two step sizes stay apart"
