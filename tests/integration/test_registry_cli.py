"""The registry command line against a real MLflow store: list, show, promote, rollback."""
import json

import pytest

from components.registry import main
from components.steps.register import register
from tests.conftest import evaluation_claiming

pytestmark = pytest.mark.integration


def test_list_show_promote_and_rollback(regression_run, mlflow_sqlite, tmp_path, capsys):
    recipe, p = regression_run
    rmse = json.loads((p["eval"] / "evaluation.json").read_text())["metrics"]["rmse"]
    first = register(recipe, p["model"], p["eval"], "run-1")
    # A second version that loses on the metric becomes challenger; a third that failed its gate too.
    second = register(recipe, p["model"], evaluation_claiming(p, tmp_path, "worse", rmse=rmse + 1), "run-2")
    third = register(recipe, p["model"], evaluation_claiming(p, tmp_path, "failed", verdict="failed"), "run-3")
    assert (first["alias"], second["alias"], third["alias"]) == ("champion", "challenger", "challenger")
    name = recipe.registry.model_name

    assert main(["list"]) == 0
    assert f"{name}: 3 version(s); challenger → v3, champion → v1" in capsys.readouterr().out
    assert main(["show", name]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[1].split()[:2] == ["1", "champion"] and "gate=passed" in shown[1] and "rmse" in shown[1]

    assert main(["promote", name, "3"]) == 2
    assert "did not pass its gate (failed)" in capsys.readouterr().err
    assert main(["promote", name, "2"]) == 0
    assert "champion is now version 2 (was 1)" in capsys.readouterr().out
    assert main(["rollback", name]) == 0
    assert "champion is now version 1 (was 2)" in capsys.readouterr().out
    assert main(["promote", name, "9"]) == 2 and "has no version 9" in capsys.readouterr().err
    assert main(["show", "nobody"]) == 2 and "no registered model named 'nobody'" in capsys.readouterr().err
