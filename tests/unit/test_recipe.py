import json
import time

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
    path = str(ROOT / "pipelines" / "recipes" / "breast-cancer.yaml")  # an MLP: it takes train.epochs
    assert main(["validate", path, "--set", "train.epochs=4"]) == 0 and "epochs: 4" in capsys.readouterr().out
    assert main(["validate", path, "--set", "split.method=sideways"]) == 2
    assert "split.method" in capsys.readouterr().err


# --- untrusted recipe text (issue 10, item 7) ------------------------------------------------

def _valid_yaml() -> str:
    return (ROOT / "pipelines" / "recipes" / "wine.yaml").read_text()


def _billion_laughs() -> str:
    lines = ['lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    return _valid_yaml() + "\n".join(lines) + "\n"


def _merge_bomb() -> str:
    lines = ["m0: &m0 {x: 1, y: 2, z: 3}"]
    lines += [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}], k{i}: 1}}" for i in range(1, 10)]
    return _valid_yaml() + "\n".join(lines) + "\n"


@pytest.mark.parametrize("text,match", [
    (_billion_laughs(), r"line \d+, column \d+: holds more than [\d,]+ values once its YAML aliases"),
    (_merge_bomb(), r"line \d+, column \d+: holds more than [\d,]+ values once its YAML aliases"),
    ("name: x\ndata: !!python/object/apply:os.system ['echo pwned']\n",
     r"line 2, column 7: tag '!!python/object/apply:os.system' is not allowed"),
    ("name: !!python/name:os.system x\n", r"tag '!!python/name:os.system' is not allowed"),
    ("name: !!binary aGk=\n", r"tag '!!binary' is not allowed"),
    ("a: &a [1, *a]\n", "an alias refers to the value that contains it"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 32 levels deep"),
    ("name: x\nname: y\n", r"line 2, column 1: duplicate key 'name'"),
    ("name: [x\n", r"recipe file .*bad\.yaml, line \d+, column \d+: "),
    ("---\nname: x\n---\nname: y\n", "expected a single document"),
])
def test_hostile_or_broken_recipe_text_is_refused_in_one_line_fast(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    started = time.perf_counter()
    with pytest.raises(RecipeError, match=match) as info:
        Recipe.from_file(path)
    assert time.perf_counter() - started < 1.0
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_billion_laughs_is_refused_by_the_cli_in_under_a_second(tmp_path, capsys):
    from components.recipe import main

    path = tmp_path / "laughs.yaml"
    path.write_text(_billion_laughs())
    started = time.perf_counter()
    assert main(["validate", str(path)]) == 2
    assert time.perf_counter() - started < 1.0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "aliases" in err and str(path) in err


def test_anchors_merge_keys_and_dates_within_budget_still_work(tmp_path):
    head = ("name: wine\ntask: classification\ndata: {uri: data/wine.csv, target: cultivar}\n"
            "split: {method: stratified}\nregister: {model_name: wine}\n")
    path = tmp_path / "ok.yaml"
    path.write_text(head + "model:\n  name: mlp\n  params:\n    base: &b {sizes: &s [8, 4], dropout: 0.1}\n"
                    "    merged: {<<: *b, dropout: 0.2}\n    again: *s\n")
    params = Recipe.from_file(path).model.params
    assert params["merged"] == {"sizes": [8, 4], "dropout": 0.2} and params["again"] == [8, 4]
    path.write_text(head.replace("model_name: wine", "model_name: wine, experiment: 2024-01-01"))
    assert Recipe.from_file(path).registry.experiment == "2024-01-01"  # a date is text, never a datetime


def test_oversized_or_binary_files_are_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(RecipeError, match=r"big\.yaml is [\d,]+ bytes; a recipe is at most"):
        Recipe.from_file(big)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"name: \xff\xfe\x00")
    with pytest.raises(RecipeError, match="is not UTF-8 text"):
        Recipe.from_file(binary)


@pytest.mark.parametrize("override,match", [
    ("model.params=*nowhere", r"override 'model\.params', line 1, column 1: found undefined alias 'nowhere'"),
    ("model.params=!!python/object/apply:os.system ['echo pwned']", "is not allowed"),
    ("model.params={a: &a [1,1,1,1,1,1,1,1,1,1], b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], "
     "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], "
     "e: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]}", "aliases"),
    ("train..epochs=3", "empty part"),
])
def test_set_overrides_are_read_as_safely_as_files(override, match):
    started = time.perf_counter()
    with pytest.raises(RecipeError, match=match):
        Recipe.from_file(ROOT / "pipelines" / "recipes" / "wine.yaml", [override])
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("text,match", [
    ("[" * 100_000 + "]" * 100_000, "nested more than 32 levels deep"),
    ('{"name": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}", "nested more than 32 levels deep"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must hold an object"),
])
def test_json_recipes_are_bounded(text, match):
    with pytest.raises(RecipeError, match=match):
        Recipe.from_json(text)


@pytest.mark.parametrize("name", ["bad/name", "UpperCase", "under_score", "1starts-with-digit", "ends-with-",
                                  "dots.in.name", "x" * 46, ""])
def test_registered_model_name_must_be_a_kserve_name(name):
    with pytest.raises(RecipeError, match=r"register\.model_name: model name .* lowercase letters, digits and '-'"):
        make_recipe(register={"model_name": name})


def test_registered_model_name_fits_kserve_host_label_with_its_namespace():
    assert make_recipe(register={"model_name": "a" * 45}).registry.model_name == "a" * 45
    with pytest.raises(RecipeError, match=r"KServe's host label .* at most 63"):
        make_recipe(register={"model_name": "house-prices"}, deploy={"target": "kserve", "namespace": "n" * 45})
