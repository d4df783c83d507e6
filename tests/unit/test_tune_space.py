"""The tune section: ranges parsed and checked against the model before anything runs, trial values
applied to the recipe, and the view train sees (the best values arrive as an input, not in its view)."""
import json
import subprocess
import sys
import textwrap

import pytest

from components.check import check
from components.models.tunable import FloatRange, current_values, parse_range, search_space, trial_values, with_values
from components.recipe import Recipe, RecipeError
from components.runner import recipe_for_step, recipe_views
from tests.conftest import ROOT

DEFAULT = ROOT / "pipelines" / "recipes" / "california-housing.yaml"


def recipe(*overrides: str) -> Recipe:
    return Recipe.from_file(DEFAULT, ["tune.trials=4", *overrides])


def problem(*overrides: str) -> str:
    with pytest.raises(RecipeError) as err:
        check(recipe(*overrides), peek_data=False)
    return str(err.value)


def test_catalog_ranges_with_the_recipe_overrides_on_top():
    space = search_space(recipe("tune.space={dropout: {low: 0, high: 0.2}, optimizer: [adam, sgd], batch_size: null}"))
    assert set(space) == {"learning_rate", "weight_decay", "hidden_sizes", "dropout", "optimizer", "num_embeddings",
                          "frequency_scale"}
    assert space["dropout"].range == FloatRange(low=0.0, high=0.2) and space["dropout"].target == "model"
    assert space["learning_rate"].range.log and space["learning_rate"].target == "train"
    assert space["hidden_sizes"].range.choices[0] == [64, 64]


@pytest.mark.parametrize("value,kind", [
    ({"low": 1, "high": 4}, "int"), ({"low": 0, "high": 0.5}, "float"), ([1, "a"], "categorical"),
    ({"type": "float", "low": 1, "high": 4, "log": True}, "float"), ({"choices": [[1], [2]]}, "categorical"),
])
def test_a_range_says_its_type_or_its_bounds_do(value, kind):
    assert parse_range("x", value).type == kind


@pytest.mark.parametrize("space,expected", [
    ("{dropuot: [0.1]}", "tune.space: 'dropuot' is neither a parameter of mlp nor a train option its training "
                         "honours (did you mean 'dropout'?); tunable names are ['activation', 'batch_norm', "),
    ("{learning_rat: [0.1]}", "(did you mean 'learning_rate'?)"),
    ("{device: [cpu, cuda]}", "'device' is neither a parameter"),
    ("{batch_size: {low: 32.5, high: 128.5}}", "tune.space.batch_size: a float range does not fit train.batch_size, "
                                               "which takes int; give an int range"),
    ("{hidden_sizes: {low: 1, high: 3}}", "an int range does not fit the mlp parameter 'hidden_sizes', which takes "
                                          "list; give a list of choices"),
    ("{batch_norm: {low: 0, high: 1}}", "which takes bool; give a list of choices"),
    ("{dropout: {low: 0.5, high: 1.0}}", "tune.space.dropout: the range holds 1.0, which mlp refuses"),
    ("{optimizer: [adam, sgdd]}", "tune.space.optimizer: 'sgdd' is not a valid train.optimizer"),
])
def test_space_errors_name_the_key_and_what_is_allowed(space, expected):
    assert expected in problem(f"tune.space={space}")


@pytest.mark.parametrize("space,expected", [
    ("{dropout: {low: 0.3, high: 0.1}}", "tune.space: the float range of 'dropout' is invalid (low 0.3 must be less "
                                         "than high 0.1)"),
    ("{learning_rate: {low: 0, high: 0.1, log: true}}", "a log range needs low > 0, got 0.0"),
    ("{dropout: 0.1}", "the range of 'dropout' must be a mapping such as {low: 0.0, high: 0.5} or a list of choices"),
    ("{dropout: {type: normal, low: 0, high: 1}}", "has type 'normal'; expected one of ['int', 'float', 'categorical']"),
    ("{dropout: []}", "the categorical range of 'dropout' is invalid (choices: List should have at least 1 item"),
    ("{dropout: {low: 0, high: 0.2, step: 0.1}}", "step: Extra inputs are not permitted"),
])
def test_malformed_ranges_are_refused_when_the_recipe_is_read(space, expected):
    with pytest.raises(RecipeError) as err:
        recipe(f"tune.space={space}")
    assert expected in str(err.value)


def test_an_unknown_metric_is_named_with_the_ones_that_exist():
    assert problem("tune.metric=rmsee") == ("tune.metric: regression trials cannot be scored on 'rmsee' (did you "
                                            "mean 'rmse'?); known metrics are val_loss, mae, mse, rmse, r2")
    check(recipe("tune.metric=r2"), peek_data=False)


def test_a_direction_against_the_metric_is_refused():
    from components.steps.tune import direction_of

    assert direction_of("val_loss", None) == "minimize" and direction_of("r2", None) == "maximize"
    with pytest.raises(RecipeError, match="'maximize' would search for the worst rmse, which is better when lower"):
        direction_of("rmse", "maximize")


def test_scikit_learn_models_are_searched_over_their_estimators_parameters():
    r = recipe("model.name=hist_gradient_boosting", "model.params={}", "train={}",
               "tune.space={learning_rate: {low: 0.01, high: 0.3, log: true}, max_leaf_nodes: {low: 8, high: 64}}")
    space = search_space(r)
    assert set(space) == {"learning_rate", "max_leaf_nodes"}, "no train option: its fit honours none"
    assert space["learning_rate"].target == "model", "the estimator's own learning_rate, not train.learning_rate"
    assert "a float range does not fit the hist_gradient_boosting parameter 'max_iter'" in problem(
        "model.name=hist_gradient_boosting", "model.params={}", "train={}", "tune.space={max_iter: {low: 1.5, high: 9.5}}")


class FakeTrial:
    """What optuna's Trial offers a search space: suggest_* returning the low end or the first choice."""

    def __init__(self):
        self.asked = {}

    def suggest_int(self, name, low, high, step=1, log=False):
        return self.asked.setdefault(name, low)

    def suggest_float(self, name, low, high, log=False):
        return self.asked.setdefault(name, low)

    def suggest_categorical(self, name, choices):
        assert all(c is None or isinstance(c, (bool, int, float, str)) for c in choices), "optuna stores scalars only"
        return self.asked.setdefault(name, choices[-1])


def test_trial_values_reach_the_recipe_and_lists_travel_as_json():
    r = recipe()
    trial = FakeTrial()
    values = trial_values(search_space(r), trial)
    assert trial.asked["hidden_sizes"] == "[256, 256, 256]" and values["model"]["hidden_sizes"] == [256, 256, 256]
    assert values["train"] == {"learning_rate": 1e-4, "batch_size": 512, "weight_decay": 1e-6}
    tuned = with_values(r, json.dumps(values))
    assert tuned.train.batch_size == 512 and tuned.model.params["dropout"] == 0.0
    assert tuned.model.params["activation"] == "relu", "params not searched keep the recipe's value"
    assert with_values(r, "") is r
    assert current_values(r, search_space(r)) == {"learning_rate": 0.001, "batch_size": 256, "weight_decay": 1e-5,
                                                   "hidden_sizes": "[256, 256, 256]", "dropout": 0.1,
                                                   "num_embeddings": "periodic", "frequency_scale": 1.0}


def test_train_gets_tune_results_as_an_input_and_its_view_ignores_the_tune_section():
    base, tuned = recipe_views(recipe()), recipe_views(recipe("tune.trials=9", "tune.seed=3"))
    assert base["train"] == tuned["train"] and base["tune"] != tuned["tune"]
    assert recipe_views(Recipe.from_file(DEFAULT))["tune"] == "{}", "no tune section: an empty view"
    view = recipe_for_step(base["tune"], "tune")
    assert view.tune.trials == 4 and view.experiment == "california-housing"
    train_view = recipe_for_step(base["train"], "train")
    applied = with_values(train_view, {"model": {"dropout": 0.2}, "train": {"learning_rate": 0.01}})
    assert applied.model.params["dropout"] == 0.2 and applied.train.learning_rate == 0.01
    assert applied.hash() == train_view.hash()
    with pytest.raises(RecipeError, match="'evaluate'"):
        applied.evaluate.gate


def test_reading_a_tune_recipe_imports_neither_optuna_nor_torch():
    script = textwrap.dedent(f"""
        import sys
        from components.recipe import Recipe
        from components.check import check
        from components.runner import recipe_views
        r = Recipe.from_file("{DEFAULT}", ["tune.trials=3", "tune.space={{dropout: [0.0, 0.2]}}"])
        check(r, peek_data=False)
        recipe_views(r)
        assert "optuna" not in sys.modules and "torch" not in sys.modules, "a torch-free step would import them"
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
