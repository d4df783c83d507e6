"""Conformance suite: every catalog adapter honours the same contract (cf. sklearn's estimator_checks)."""
import numpy as np
import pytest

from components.errors import NotFittedError
from components.models import build_adapter, get_entry, list_models, load_adapter
from components.recipe import RecipeError, TrainSpec

SPEC = TrainSpec(epochs=3, batch_size=32, early_stopping_patience=2)
CASES = [(e.name, task) for e in list_models() if e.family in ("tabular", "timeseries") for task in e.tasks]


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


@pytest.mark.parametrize("name,task", CASES)
def test_fit_save_load_predict_round_trip(tmp_path, name, task):
    family = get_entry(name).family
    X, y = data(task, family=family)
    adapter = build_adapter(name, task, 3 if task == "classification" else None, small_params(name), family)
    with pytest.raises(NotFittedError, match="not fitted"):
        adapter.predict_raw(X)
    states = []
    assert adapter.fit(X[:100], y[:100], X[100:], y[100:], SPEC, states.append) is adapter
    assert states and all("val_loss" in s for s in states) and adapter.history_ == states
    out = adapter.predict_raw(X)
    if task == "regression":
        assert out.shape == (len(X),)
    else:
        assert out.shape == (len(X), 3) and np.allclose(out.sum(axis=1), 1, atol=1e-5)
    adapter.save(tmp_path / "m")
    loaded = load_adapter(name, tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_raw(X), out, rtol=1e-5, atol=1e-6)


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
    ("mlp", {"hidden": [3]}, r"'hidden' is not a parameter of mlp; valid parameters are \['activation'"),
    ("mlp", {"activation": "sigmoidish"}, r"'activation' parameter of mlp"),
    ("random_forest", {"n_estimators": -3}, r"'n_estimators' parameter of RandomForestRegressor must be"),
    ("hist_gradient_boosting", {"max_itr": 3}, r"Invalid parameter 'max_itr'"),
])
def test_bad_parameters_name_param_owner_and_value(name, params, match):
    with pytest.raises(RecipeError, match=match):
        build_adapter(name, "regression", params=params)


def test_catalog_filters():
    assert {e.name for e in list_models(framework="sklearn")} >= {"random_forest", "hist_gradient_boosting", "linear"}
    assert all("fast" in e.tags for e in list_models(tag="fast"))
    assert {e.name for e in list_models(framework="torch")} >= {"mlp", "ft_transformer"}


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
