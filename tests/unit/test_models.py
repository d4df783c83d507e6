"""Conformance suite: every catalog adapter honours the same contract (cf. sklearn's estimator_checks):
built by the one factory, refuses unknown params and train options it would ignore in scikit-learn's
message style, raises before fit, and round-trips fit → predict → save → load → predict. Every
entry gets the cheap checks; the round trip runs on every table and window model and on one model of
each image and text adapter (those are marked slow)."""
import re

import numpy as np
import pytest

from components.errors import NotFittedError
from components.models import build_adapter, get_entry, list_models, load_adapter
from components.models.registry import TRAIN_OPTIONS
from components.recipe import ImageSpec, RecipeError, TextSpec, TrainSpec
from tests.conftest import DATA

SPEC = TrainSpec(epochs=3, batch_size=32, early_stopping_patience=2)
# Params without a default: the cheap checks give one (no I/O happens before fit). The round trip of such
# an entry needs what the value names: the external model's runs on a git repository its test creates
# (tests/integration/test_external_adapter.py).
REQUIRED = {"external": {"repo": "/nonexistent/git/repository"}}
CASES = [(e.name, task) for e in list_models() if e.family in ("tabular", "timeseries") and e.name not in REQUIRED
         for task in e.tasks]
ENTRIES = [e.name for e in list_models()]
# A value other than the default for every train option.
CHANGED = {"epochs": 7, "batch_size": 7, "learning_rate": 0.5, "optimizer": "sgd", "weight_decay": 0.1,
           "scheduler": "none", "warmup_epochs": 2, "early_stopping_patience": 3, "seed": 7, "ensemble": 2,
           "device": "cpu",
           "amp": False, "compile": "default", "grad_clip": 1.0, "pos_weight": 2.0, "loss": "bce_soft_f1", "soft_f1_alpha": 0.3,
           "checkpoint_path": "best.pt", "init_from": "model.pt", "deterministic": True}


def data(task, n=120, seed=0, family="tabular"):
    """Rows [n, 5], or windows [n, 3, 8] for time-series models; y depends on the inputs."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5) if family == "tabular" else (n, 3, 8)).astype(np.float32)
    flat = X.reshape(n, -1)
    y = flat[:, 0] * 2 + flat[:, 1] if task == "regression" else (flat[:, 0] + flat[:, 1] > 0).astype(int) + (flat[:, 2] > 1)
    return X, y


def small_params(name):
    return {"mlp": {"hidden_sizes": [8]}, "ft_transformer": {"d_token": 16, "n_blocks": 1, "n_heads": 2},
            "lstm": {"hidden_size": 8}, "cnn1d": {"channels": [8]}, "random_forest": {"n_estimators": 10},
            "extra_trees": {"n_estimators": 10}, "hist_gradient_boosting": {"max_iter": 20}}.get(name, {})


def build(name, params=None, **kwargs):
    entry = get_entry(name)
    task = entry.tasks[0]
    n_classes = None if task == "regression" else 1 if task == "detection" else 3
    return build_adapter(name, task, n_classes, {**REQUIRED.get(name, {}), **(params or {})}, family=entry.family,
                         **kwargs)


def round_trip(tmp_path, adapter, X, y, X_val, y_val, spec):
    """The contract every adapter keeps, whatever it reads."""
    with pytest.raises(NotFittedError, match="not fitted"):
        adapter.predict_raw(X_val)
    states = []
    assert adapter.fit(X, y, X_val, y_val, spec, states.append) is adapter
    assert states and all("val_loss" in s for s in states) and adapter.history_ == states
    out = adapter.predict_raw(X_val)
    adapter.save(tmp_path / "m")
    again = load_adapter(adapter.catalog_name, tmp_path / "m").predict_raw(X_val)
    if adapter.task == "detection":
        assert len(out) == len(X_val) and all(d["boxes"].shape[1:] == (4,) for d in out)
        for a, b in zip(out, again):
            np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-3)
    elif adapter.task == "regression":
        assert out.shape == (len(X_val),)
        np.testing.assert_allclose(again, out, rtol=1e-5, atol=1e-6)
    else:
        assert out.shape == (len(X_val), adapter.n_classes) and np.allclose(out.sum(axis=1), 1, atol=1e-4)
        np.testing.assert_allclose(again, out, rtol=1e-4, atol=1e-5)


# --- every entry ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ENTRIES)
def test_predict_before_fit_raises(name):
    with pytest.raises(NotFittedError, match=rf"not fitted; call fit first"):
        build(name).predict_raw(np.zeros((2, 5), np.float32))


@pytest.mark.parametrize("name", ENTRIES)
def test_unknown_params_are_refused_naming_param_and_valid_ones(name):
    with pytest.raises(RecipeError, match=r"^model\.params: .*'not_a_param'.*(?i:valid parameters are)"):
        build(name, params={"not_a_param": 1})


@pytest.mark.parametrize("name", ENTRIES)
def test_train_options_the_model_ignores_are_refused(name):
    honoured = get_entry(name).builder.train_options
    build(name, train=TrainSpec(**{o: CHANGED[o] for o in honoured}))  # everything it honours is taken
    ignored = [o for o in TRAIN_OPTIONS if o not in honoured]
    for option in ignored:
        pattern = (rf"^train\.{option}: the '{option}' option of {re.escape(name)} must be left at its default "
                   rf"{re.escape(repr(getattr(TrainSpec(), option)))}; .* Got {re.escape(repr(CHANGED[option]))} "
                   r"instead\.$")
        with pytest.raises(RecipeError, match=pattern):
            build(name, train=TrainSpec(**{option: CHANGED[option]}))
    if get_entry(name).framework == "sklearn":
        assert ignored == list(TRAIN_OPTIONS), "a forest has no epochs, batches or learning rate"


def test_image_and_text_settings_the_model_does_not_read_are_refused():
    yolo = build("yolov8n", section=ImageSpec(size=64, hflip=0.0))
    assert (yolo.params["size"], yolo.params["hflip"]) == (64, 0.0)
    for setting in ({"scale": (0.2, 1.0)}, {"auto_augment": "rand-m9-mstd0.5"}):
        key = next(iter(setting))
        with pytest.raises(RecipeError, match=rf"^image\.{key}: the '{key}' setting of yolov8n must be left at its "
                                              r"default .* Got .* instead\.$"):
            build("yolov8n", section=ImageSpec(**setting))
    timm = build("timm:resnet10t", section=ImageSpec(scale=(0.2, 1.0), auto_augment="rand-m9-mstd0.5"))
    assert timm.params["scale"] == [0.2, 1.0] and timm.params["auto_augment"] == "rand-m9-mstd0.5"
    with pytest.raises(RecipeError, match=r"'size' is also set as image\.size; set it in one place"):
        build("timm:resnet10t", params={"size": 64}, section=ImageSpec(size=32))
    assert build("hf:bert-tiny", section=TextSpec(max_length=16)).params["max_length"] == 16


# --- round trips ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,task", CASES)
def test_fit_save_load_predict_round_trip(tmp_path, name, task):
    family = get_entry(name).family
    X, y = data(task, family=family)
    spec = SPEC if get_entry(name).builder.train_options else TrainSpec()
    adapter = build_adapter(name, task, 3 if task == "classification" else None, small_params(name), family,
                            train=spec)
    round_trip(tmp_path, adapter, X[:100], y[:100], X[100:], y[100:], spec)


@pytest.fixture(scope="module")
def digits():
    from components.tasks.images import decode, read_dataset

    df, classes, _ = read_dataset(str(DATA / "digits"))
    df = df.groupby("label").head(4).reset_index(drop=True)  # 40 images
    return [decode(b) for b in df["image"]], df["label"].astype(int).to_numpy() % 3


TINY_VIT = {"model_type": "deit", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 64, "patch_size": 8}
TINY_BERT = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 64}


@pytest.mark.slow
@pytest.mark.parametrize("name,params", [
    ("timm:resnet10t", {"size": 32}),
    ("hf:deit-tiny", {"size": 32, "config": TINY_VIT}),
    ("yolo11n-cls", {"size": 32}),
])
def test_image_classifier_round_trip(tmp_path, digits, name, params):
    images, y = digits
    spec = TrainSpec(epochs=1, batch_size=16, learning_rate=1e-3)
    adapter = build_adapter(name, "classification", 3, params, "image", train=spec)
    round_trip(tmp_path, adapter, images[::2], y[::2], images[1::2], y[1::2], spec)
    if name.startswith("hf:"):  # the normalisation is DeiT's image processor's, and rides in the bundle
        from transformers import DeiTImageProcessor

        loaded = load_adapter(name, tmp_path / "m")
        assert loaded.image_mean_ == list(DeiTImageProcessor().image_mean) == adapter.image_mean_


@pytest.mark.slow
def test_text_classifier_round_trip(tmp_path):
    import pandas as pd

    df = pd.read_csv(DATA / "text" / "debian_packages.csv").groupby("label").head(6)
    texts, y = df["text"].tolist(), pd.factorize(df["label"], sort=True)[0] % 3
    spec = TrainSpec(epochs=1, batch_size=8, learning_rate=1e-3)
    adapter = build_adapter("hf:bert-tiny", "classification", 3, {"config": TINY_BERT, "max_length": 16}, "text",
                            train=spec)
    round_trip(tmp_path, adapter, texts[::2], y[::2], texts[1::2], y[1::2], spec)


@pytest.mark.slow
def test_detector_round_trip(tmp_path, monkeypatch):
    from components.tasks.images import decode, read_dataset

    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "home"))
    df = read_dataset(str(DATA / "trees"))[0].head(6)
    images = [decode(b) for b in df["image"]]
    targets = [{"boxes": np.asarray(list(b), dtype=np.float32).reshape(-1, 4), "classes": np.zeros(len(b), int)}
               for b in df["boxes"]]
    spec = TrainSpec(epochs=1, batch_size=4)
    adapter = build_adapter("yolov8n", "detection", 1, {"size": 64, "conf": 0.001}, "image", train=spec)
    round_trip(tmp_path, adapter, images[:4], targets[:4], images[4:], targets[4:], spec)
    assert (tmp_path / "m" / "weights.pt").stat().st_size > 100_000, "the trained weights travel in the bundle"
    assert not list(tmp_path.glob("**/Arial.ttf.*")), "no font download was tried"


def test_models_learn_something():
    X, y = data("regression", n=400)
    adapter = build_adapter("mlp", "regression", params={"hidden_sizes": [32]}).fit(
        X[:300], y[:300], X[300:], y[300:], TrainSpec(epochs=40, batch_size=32), None)
    baseline = np.mean((y[300:] - y[:300].mean()) ** 2)
    assert np.mean((adapter.predict_raw(X[300:]) - y[300:]) ** 2) < 0.2 * baseline


def test_unknown_model_suggests_close_names():
    with pytest.raises(RecipeError, match=r"unknown model 'random_forrest'; did you mean \['random_forest'\]"):
        build_adapter("random_forrest", "regression")


@pytest.mark.parametrize("name,params,match", [
    ("mlp", {"dropout": 1.5}, r"the 'dropout' parameter of mlp .*less than 1.*Got 1.5 instead"),
    ("mlp", {"hidden": [3]}, r"'hidden' is not a parameter of mlp \(did you mean 'hidden_sizes'\?\); valid "
                             r"parameters are \['activation'"),
    ("mlp", {"dropuot": 0.2}, r"'dropuot' is not a parameter of mlp \(did you mean 'dropout'\?\)"),
    ("mlp", {"zzz": 1}, r"'zzz' is not a parameter of mlp; valid parameters are"),
    ("mlp", {"activation": "sigmoidish"}, r"'activation' parameter of mlp"),
    ("random_forest", {"n_estimators": -3}, r"'n_estimators' parameter of RandomForestRegressor must be"),
    ("hist_gradient_boosting", {"max_itr": 3}, r"Invalid parameter 'max_itr'"),
])
def test_bad_parameters_name_param_owner_and_value(name, params, match):
    with pytest.raises(RecipeError, match=match):
        build_adapter(name, "regression", params=params)


def test_catalog_filters():
    everything = {e.name for e in list_models()}
    assert {e.name for e in list_models(framework="sklearn")} == {"random_forest", "extra_trees",
                                                                  "hist_gradient_boosting", "linear"}
    fast = {e.name for e in list_models(tag="fast")}
    assert {"mlp", "extra_trees", "yolo11n"} <= fast < everything and "resnet50" not in str(fast)
    assert all("fast" in get_entry(n).tags for n in fast)
    assert {e.name for e in list_models(family="timeseries")} == {"lstm", "cnn1d"}
    assert {e.name for e in list_models(task="detection")} == {"yolov8n", "yolov8s", "yolo11n", "yolo11s"}
    assert {e.name for e in list_models(framework="torch")} == {"mlp", "ft_transformer", "lstm", "cnn1d"}
    assert list_models(tag="fast", framework="sklearn", task="regression") and \
        not list_models(tag="no-such-tag")


def test_list_command_prints_table(capsys):
    from components.models.__main__ import main

    assert main(["list", "--tag", "trees"]) == 0
    out = capsys.readouterr().out
    assert "random_forest" in out and "mlp" not in out


def test_binary_torch_models_use_one_logit_and_pos_weight():
    X, y = data("classification")
    y = (y > 0).astype(int)
    spec = TrainSpec(epochs=2, batch_size=32, pos_weight="global", loss="bce_soft_f1", grad_clip=1.0)
    adapter = build_adapter("mlp", "classification", 2, {"hidden_sizes": [8]}).fit(X, y, X, y, spec, None)
    assert adapter.net_[-1].out_features == 1
    proba = adapter.predict_raw(X)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(1), 1)


def test_family_mismatch_names_fitting_models():
    with pytest.raises(RecipeError, match=r"'lstm' reads timeseries data but this recipe is tabular"):
        build_adapter("lstm", "regression")


def test_torch_bundles_written_before_input_shape_still_load(tmp_path):
    """A registered champion from an older bundle keeps serving after an upgrade."""
    import json

    X, y = data("classification")
    adapter = build_adapter("mlp", "classification", 3, {"hidden_sizes": [8]}).fit(X, y, X, y, SPEC, None)
    adapter.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    legacy = {"task": cfg["task"], "n_classes": cfg["n_classes"], "n_features": 5, "params": cfg["params"]}
    (tmp_path / "m" / "config.json").write_text(json.dumps(legacy))
    np.testing.assert_allclose(load_adapter("mlp", tmp_path / "m").predict_raw(X), adapter.predict_raw(X), rtol=1e-6)


def test_bundles_written_before_the_base_adapter_still_load(tmp_path):
    """Champions registered before config.json moved into the base keep serving: a pickled sklearn
    adapter, and an FT-Transformer whose category counts the train step wrote into its params."""
    import json

    import joblib

    X, y = data("classification")
    forest = build_adapter("random_forest", "classification", 3, {"n_estimators": 5}).fit(X, y, X, y, TrainSpec())
    (tmp_path / "rf").mkdir()
    joblib.dump(forest, tmp_path / "rf" / "adapter.joblib")  # the old format: the whole adapter
    np.testing.assert_allclose(load_adapter("random_forest", tmp_path / "rf").predict_raw(X), forest.predict_raw(X))

    Xc = np.concatenate([X[:, :3], np.random.default_rng(0).integers(0, 3, size=(len(X), 2))], axis=1)
    ft = build_adapter("ft_transformer", "classification", 3, small_params("ft_transformer"))
    ft.fit(Xc, y, Xc, y, TrainSpec(epochs=1, batch_size=32), None, cat_cardinalities=[4, 4])
    ft.save(tmp_path / "ft")
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert cfg["cat_cardinalities"] == [4, 4] and "cat_cardinalities" not in cfg["params"]
    legacy = {"task": cfg["task"], "n_classes": cfg["n_classes"], "input_shape": cfg["input_shape"],
              "n_out": cfg["n_out"], "params": {**cfg["params"], "cat_cardinalities": [4, 4]}}
    (tmp_path / "ft" / "config.json").write_text(json.dumps(legacy))
    np.testing.assert_allclose(load_adapter("ft_transformer", tmp_path / "ft").predict_raw(Xc), ft.predict_raw(Xc),
                               rtol=1e-5)
