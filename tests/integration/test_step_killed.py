"""A step killed with SIGKILL half way through writing its output leaves no half-written artifact,
and the re-run of that step writes a complete one."""
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from components.bundle import load_bundle
from components.steps.train import train
from tests.conftest import make_recipe

pytestmark = pytest.mark.integration

# In the child: the bundle directory is written, its MLmodel file cut in half, then the process
# kills itself, as if the node went away in the middle of the write.
CHILD = textwrap.dedent("""
    import os, signal, sys
    import mlflow.pyfunc
    from components.recipe import Recipe
    from components.steps.train import train

    real_save = mlflow.pyfunc.save_model
    def save_half_then_die(path, *args, **kwargs):
        real_save(path, *args, **kwargs)
        mlmodel = os.path.join(path, "MLmodel")
        os.truncate(mlmodel, os.path.getsize(mlmodel) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    mlflow.pyfunc.save_model = save_half_then_die
    recipe = Recipe.from_json(sys.argv[1])
    train(recipe, *sys.argv[2:])
""")


def test_killed_train_step_leaves_no_bundle_and_a_rerun_completes(regression_run, tmp_path):
    _, p = regression_run
    recipe = make_recipe("regression", train={"epochs": 1})
    model, curve = tmp_path / "model", tmp_path / "curve.html"
    args = [str(p["train.parquet"]), str(p["val.parquet"]), str(p["schema.json"]), str(model), str(curve)]
    child = subprocess.run([sys.executable, "-c", CHILD, recipe.to_json(), *args], capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == -9, child.stderr[-2000:]  # killed inside the patched dump: mid-write
    assert not model.exists(), "no model bundle after the step was killed while writing it"
    assert list(tmp_path.glob(".model.partial-*")), "the half-written bundle is in a temporary sibling"

    train(recipe, *args)
    assert load_bundle(model).predict(pd.read_parquet(p["test.parquet"]).drop(columns="MedHouseVal").head(3)).shape == (3,)
    assert not list(tmp_path.glob(".model.partial-*")), "the re-run removed the dead step's leftovers"
