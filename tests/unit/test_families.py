"""Task families are plugins: one table, one interface, and no step that asks which family it holds."""
import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.errors import InvalidInputError, RequestTooLarge
from components.recipe import Recipe
from components.tasks import FAMILIES, family, family_for
from components.tasks.base import Family
from tests.conftest import ROOT

# Every module that used to branch on the family (issue 12): they call the family's methods instead.
CALLERS = ["components/steps/load.py", "components/steps/preprocess.py", "components/steps/split.py",
           "components/steps/train.py", "components/steps/evaluate.py", "components/steps/predict.py",
           "components/steps/deploy.py", "components/bundle.py", "components/recipe.py", "components/check.py",
           "components/runner.py", "serving/predictor.py", "serving/media.py", "serving/__main__.py"]
# What every family must say for itself (the rest has defaults in Family).
REQUIRED = ("read", "clean", "report", "fit_inputs", "model_inputs", "test_inputs", "v2_records", "input_types",
            "warmup_records")


def family_branches(path: Path) -> list[str]:
    """Comparisons of anything with a family's name, and reads of a family's recipe section."""
    names = set(FAMILIES) | {section for section, _ in FAMILIES.values() if section}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            consts = [c for c in ast.walk(node) if isinstance(c, ast.Constant) and c.value in FAMILIES]
            if consts:
                found.append(f"line {node.lineno}: compares with {consts[0].value!r}")
        if isinstance(node, ast.Attribute) and node.attr in names - {"text"} and isinstance(node.value, ast.Name) \
                and node.value.id in ("recipe", "meta", "self") and path.name != "recipe.py":
            found.append(f"line {node.lineno}: reads {node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("module", CALLERS)
def test_no_caller_branches_on_the_family(module):
    assert family_branches(ROOT / module) == [], module


def test_the_check_finds_a_branch(tmp_path):
    """The scan above can fail: a branch written the old way is found."""
    bad = tmp_path / "step.py"
    bad.write_text("def f(recipe):\n    if recipe.family == 'image':\n        return recipe.timeseries\n")
    assert family_branches(bad) == ["line 2: compares with 'image'", "line 3: reads recipe.timeseries"]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_table_row_names_a_family_that_implements_the_interface(name):
    fam = family(name)
    section, module = FAMILIES[name]
    assert isinstance(fam, Family) and fam.name == name and fam.section == section
    assert type(fam).__module__ == f"components.tasks.{module}"
    missing = [m for m in REQUIRED if getattr(type(fam), m) is getattr(Family, m)]
    assert not missing, f"{name} leaves {missing} to the base class, which cannot know them"


def test_an_unknown_family_names_the_known_ones():
    with pytest.raises(KeyError, match="no task family 'audio'; the families are"):
        family("audio")


@pytest.mark.parametrize("recipe_file,expected", [("california-housing.yaml", "tabular"),
                                                  ("co2-weekly.yaml", "timeseries"),
                                                  ("digits-timm.yaml", "image"), ("debian-minilm.yaml", "text")])
def test_a_recipe_selects_its_family_by_its_section(recipe_file, expected):
    recipe = Recipe.from_file(ROOT / "pipelines/recipes" / recipe_file)
    assert recipe.family == expected and family_for(recipe).name == expected


def test_two_family_sections_are_refused():
    raw = Recipe.from_file(ROOT / "pipelines/recipes/co2-weekly.yaml").model_dump(by_alias=True)
    raw["text"] = {"text_column": "x"}
    with pytest.raises(Exception, match="at most one family section .*this one has timeseries, text"):
        Recipe.parse(raw)


def test_each_family_refuses_what_it_cannot_run():
    raw = Recipe.from_file(ROOT / "pipelines/recipes/digits-timm.yaml").model_dump(by_alias=True)
    with pytest.raises(Exception, match="image data splits with method 'random' or 'stratified'"):
        Recipe.parse(raw, ["split.method=time"])
    raw = Recipe.from_file(ROOT / "pipelines/recipes/california-housing.yaml").model_dump(by_alias=True)
    with pytest.raises(Exception, match="is for time series"):
        Recipe.parse(raw, ["split.method=rolling"])


class Inp:
    """A V2 input as the KServe SDK hands it over (name, datatype, data, as_numpy)."""

    def __init__(self, name, datatype, data):
        self.name, self.datatype, self.data = name, datatype, data

    def as_numpy(self):
        return np.asarray(self.data, dtype=object if self.datatype == "BYTES" else None)


def test_request_decoding_belongs_to_the_family():
    meta = type("Meta", (), {"features": [{"name": "x", "kind": "numeric"}, {"name": "c", "kind": "categorical"}],
                             "series": {"context_len": 3}})()
    rows = family("tabular").v2_records(meta, [Inp("x", "FP64", [1.0, 2.0]), Inp("c", "BYTES", [b"a", b"b"])])
    assert rows.to_dict("list") == {"x": [1.0, 2.0], "c": ["a", "b"]}
    with pytest.raises(InvalidInputError, match="feature 'x' expects a number, got true"):
        family("tabular").v1_records(meta, [{"x": True, "c": "a"}])
    with pytest.raises(InvalidInputError, match=r"expected one input, a tensor of windows \[n, 2, 3\]"):
        family("timeseries").v2_records(meta, [Inp("a", "FP32", [1]), Inp("b", "FP32", [1])])
    assert family("text").v2_records(meta, [Inp("text", "BYTES", [b"hello"])]) == ["hello"]
    with pytest.raises(InvalidInputError, match="expected one BYTES input of shape \\[n\\] holding images"):
        family("image").v2_records(meta, [Inp("image", "FP32", [1.0])])
    with pytest.raises(RequestTooLarge, match="300 texts in one request; at most 256"):
        family("text").bound(["t"] * 300)


def test_fit_inputs_is_a_dataclass_not_a_tuple():
    recipe = Recipe.from_file(ROOT / "pipelines/recipes/california-housing.yaml")
    df = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3, "y": np.arange(20.0)})
    schema = {"target": "y", "features": [{"name": "a", "kind": "numeric", "imputation": "median"},
                                          {"name": "b", "kind": "numeric", "imputation": "median"}]}
    inputs = family_for(recipe).fit_inputs(recipe, schema, df[:15], df[15:], "onehot")
    assert inputs.X_train.shape == (15, 2) and inputs.X_val.shape == (5, 2) and inputs.meta == {}
    assert list(inputs.y_val) == [15.0, 16.0, 17.0, 18.0, 19.0]


def test_the_input_example_is_what_a_client_sends():
    """Text extends the tabular family but its records are texts, not table rows."""
    meta = type("Meta", (), {"features": [{"name": "description", "kind": "text"}]})()
    example = family("text").input_example(meta, ["a game", "a font"])
    assert example.to_dict("list") == {"description": ["a game", "a font"]}
    rows = pd.DataFrame({"description": ["x"], "other": [1]})
    assert list(family("tabular").input_example(meta, rows).columns) == ["description"]
