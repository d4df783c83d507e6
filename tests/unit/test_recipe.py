import json

import pytest

from components.recipe import Recipe, RecipeError, json_schema
from components.runner import resolve_recipe
from tests.conftest import ROOT, make_recipe

RECIPES = sorted((ROOT / "pipelines" / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipes_validate_and_round_trip(path):
    recipe = Recipe.from_file(path)
    assert Recipe.from_json(recipe.to_json()) == recipe
    assert (ROOT / recipe.data.uri).exists(), "shipped recipes point at data shipped in the repo"


def test_defaults_fill_sections():
    recipe = Recipe.parse({"name": "x", "task": "regression", "data": {"uri": "a.csv", "target": "y"},
                           "register": {"model_name": "x"}})
    assert (recipe.split.train, recipe.split.val, recipe.split.test) == (0.7, 0.1, 0.2)
    assert recipe.primary_metric == "rmse" and recipe.experiment == "x"


def test_unknown_field_is_named():
    with pytest.raises(RecipeError, match=r"train\.epoch: unknown field"):
        make_recipe(train={"epoch": 3})


def test_bad_value_names_field_and_value():
    with pytest.raises(RecipeError, match=r"train\.learning_rate: .*greater than 0.*got -1"):
        make_recipe(train={"learning_rate": -1})


def test_split_ratios_must_sum_to_one():
    with pytest.raises(RecipeError, match="sum to 1"):
        make_recipe(split={"train": 0.5, "val": 0.1, "test": 0.1})


def test_stratified_needs_classification_and_gate_syntax():
    with pytest.raises(RecipeError, match="stratified"):
        make_recipe(split={"method": "stratified"})
    with pytest.raises(RecipeError, match="gate rule 'rmse is small'"):
        make_recipe(evaluate={"gate": ["rmse is small"]})


def test_set_overrides_parse_yaml_values(tmp_path):
    path = ROOT / "pipelines" / "recipes" / "california-housing.yaml"
    recipe = Recipe.from_file(path, ["train.epochs=7", "model.params.hidden_sizes=[8, 4]", "data.sample_rows=100"])
    assert recipe.train.epochs == 7
    assert recipe.model.params["hidden_sizes"] == [8, 4]
    with pytest.raises(RecipeError, match="key.path=value"):
        Recipe.from_file(path, ["train.epochs"])


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        Recipe.from_file(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="must hold a mapping"):
        Recipe.from_file(tmp_path / "list.yaml")


def test_json_schema_exports_every_section():
    schema = json_schema()
    assert set(schema["properties"]) >= {"data", "preprocess", "split", "model", "train", "evaluate", "register",
                                          "deploy"}
    json.dumps(schema)


def test_hash_changes_with_content_only():
    a, b = make_recipe(), make_recipe()
    assert a.hash() == b.hash()
    assert make_recipe(train={"epochs": 9}).hash() != a.hash()


def test_run_form_knobs_override_recipe():
    recipe = make_recipe()
    resolved = resolve_recipe(recipe.to_json(), epochs=3, learning_rate=0.01, model_name="linear", target="",
                              data_uri=None, registered_model_name="other")
    assert (resolved.train.epochs, resolved.train.learning_rate, resolved.model.name) == (3, 0.01, "linear")
    assert resolved.registry.model_name == "other" and resolved.data.target == recipe.data.target


def test_cli_schema_and_validate(capsys):
    from components.recipe import main

    assert main(["schema"]) == 0 and '"properties"' in capsys.readouterr().out
    path = str(ROOT / "pipelines" / "recipes" / "wine.yaml")
    assert main(["validate", path, "--set", "train.epochs=4"]) == 0 and "epochs: 4" in capsys.readouterr().out
    assert main(["validate", path, "--set", "split.method=sideways"]) == 2
    assert "split.method" in capsys.readouterr().err
