"""Each step sees only the recipe sections it reads, so caching re-runs exactly what a change affects."""
from pathlib import Path

import pytest

from components.recipe import Recipe, RecipeError
from components.runner import STEP_VIEWS, recipe_for_step, recipe_views
from tests.conftest import ROOT

DEFAULT = ROOT / "pipelines" / "recipes" / "california-housing.yaml"
DOWNSTREAM = {"load": {"preprocess", "split", "train", "evaluate"}, "preprocess": {"split", "train", "evaluate"},
              "split": {"train", "evaluate"}, "train": {"evaluate"}, "evaluate": set()}


def changed_views(overrides: list[str], base: list[str] = (), recipe: Path = DEFAULT) -> set[str]:
    """Views whose text changes, plus the steps downstream of them (their input artifacts change)."""
    before = recipe_views(Recipe.from_file(recipe, list(base)))
    after = recipe_views(Recipe.from_file(recipe, [*base, *overrides]))
    direct = {step for step in STEP_VIEWS if before[step] != after[step]} - {"register", "deploy", "backtest"}
    return direct.union(*(DOWNSTREAM[s] for s in direct))


@pytest.mark.parametrize("override,reruns", [
    ("data.drop_columns=['Population']", {"load", "preprocess", "split", "train", "evaluate"}),
    ("preprocess.scaler=standard", {"preprocess", "split", "train", "evaluate"}),
    ("split.seed=7", {"split", "train", "evaluate"}),
    ("model.params.hidden_sizes=[8]", {"train", "evaluate"}),
    ("train.epochs=3", {"train", "evaluate"}),
    ("evaluate.gate=['rmse <= 0.9']", {"evaluate"}),
    ("register.experiment=other", set()),
    ("deploy.port=8181", set()),
])
def test_one_changed_field_reaches_exactly_the_steps_that_read_its_section(override, reruns):
    assert changed_views([override]) == reruns


def test_a_sampled_load_depends_on_the_split_seed_that_draws_the_sample():
    assert "load" not in changed_views(["split.seed=7"])
    assert "load" in changed_views(["split.seed=7"], base=["data.sample_rows=500"])


def test_register_and_deploy_see_what_they_need_and_register_sees_everything():
    recipe = Recipe.from_file(DEFAULT, ["deploy.port=8181"])
    views = recipe_views(recipe)
    assert recipe_for_step(views["register"], "register") == recipe
    assert recipe_for_step(views["deploy"], "deploy").deploy.port == 8181


def test_a_step_reading_a_section_it_did_not_declare_fails_loudly():
    train = recipe_for_step(recipe_views(Recipe.from_file(DEFAULT))["train"], "train")
    assert train.train.epochs == 200 and train.family == "tabular"
    with pytest.raises(RecipeError, match="step 'train' reads recipe section 'deploy'"):
        train.deploy.port
    with pytest.raises(RecipeError, match="section 'name'"):
        f"{train.name}"
    with pytest.raises(RecipeError, match="section 'evaluate'"):
        train.primary_metric


def test_a_view_with_one_field_of_a_section_withholds_the_others():
    views = recipe_views(Recipe.from_file(DEFAULT, ["data.sample_rows=500", "split.seed=7"]))
    load = recipe_for_step(views["load"], "load")
    assert load.split.seed == 7 and load.data.sample_rows == 500
    with pytest.raises(RecipeError, match="section 'split.method'"):
        load.split.method


def test_the_local_cache_is_kept_per_version_of_the_platforms_code(tmp_path):
    """kfp.local keys a step by its inputs and command, which name no code: the cache directory is per
    hash of the platform's code, so a step cached before the code changed is not reused after."""
    from pipelines.local_run import code_version

    for part in ("components", "pipelines", "serving"):
        (tmp_path / part).mkdir()
        (tmp_path / part / "step.py").write_text(f"# {part}\n")
    first = code_version(tmp_path)
    (tmp_path / "components" / "notes.md").write_text("not code")
    assert code_version(tmp_path) == first
    (tmp_path / "serving" / "step.py").write_text("# serving, changed\n")
    changed = code_version(tmp_path)
    assert changed != first
    (tmp_path / "serving" / "step.py").rename(tmp_path / "serving" / "moved.py")
    assert code_version(tmp_path) not in (first, changed)
    assert code_version() == code_version(), "the checkout's own version is stable"


RECIPES = ROOT / "pipelines" / "recipes"


@pytest.mark.parametrize("recipe,override,reruns", [
    ("co2-weekly", "timeseries.target_mode=level", {"train", "evaluate"}),
    ("sunspots-active", "timeseries.threshold=0.6", {"train", "evaluate"}),
    ("co2-weekly", "timeseries.context_len=20", {"load", "preprocess", "split", "train", "evaluate"}),
    ("digits-timm", "image.hflip=0.5", {"train", "evaluate"}),
    ("digits-timm", "image.layout=auto", {"load", "preprocess", "split", "train", "evaluate"}),
    ("debian-minilm", "text.max_length=96", {"train", "evaluate"}),
])
def test_a_family_field_only_the_model_reads_keeps_the_data_steps_cached(recipe, override, reruns):
    assert changed_views([override], recipe=RECIPES / f"{recipe}.yaml") == reruns


def test_a_data_step_cannot_read_a_model_only_field():
    from components.recipe import RecipeError

    views = recipe_views(Recipe.from_file(RECIPES / "co2-weekly.yaml"))
    preprocess = recipe_for_step(views["preprocess"], "preprocess")
    assert preprocess.timeseries.context_len == Recipe.from_file(RECIPES / "co2-weekly.yaml").timeseries.context_len
    with pytest.raises(RecipeError, match="step 'preprocess' reads recipe section 'timeseries.target_mode'"):
        preprocess.timeseries.target_mode
    train = recipe_for_step(views["train"], "train")
    assert train.timeseries.target_mode == "delta", "the model's steps see the whole section"
    tabular = recipe_for_step(recipe_views(Recipe.from_file(DEFAULT))["load"], "load")
    assert tabular.timeseries is None and tabular.image is None
