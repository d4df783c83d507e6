"""The model card: written by evaluate, completed by register, logged to MLflow, readable in a browser."""
import json
import shutil
import subprocess

import numpy as np
import pytest

from components.steps.evaluate import evaluate
from components.steps.register import register
from tests.conftest import evaluation_claiming

pytestmark = pytest.mark.integration
SECTIONS = ["Model", "Data", "Test metrics", "Per-slice metrics", "Feature importance", "Gate",
            "Champion comparison", "Intended use and limits"]


def chromium(*args: str) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium)")
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           *args], capture_output=True, text=True, timeout=120)


def test_mlflow_run_holds_epoch_history_dataset_data_report_and_description(mlflow_sqlite, tmp_path):
    from mlflow import MlflowClient

    from tests.conftest import make_recipe, run_steps

    recipe = make_recipe("regression", train={"epochs": 4})
    p = run_steps(recipe, tmp_path)
    run_id = register(recipe, p["model"], p["eval"], "record-run", p["schema.json"], p["report.md"])["run_id"]
    client = MlflowClient()
    history = client.get_metric_history(run_id, "val_loss")
    assert [m.step for m in history] == [1, 2, 3, 4] and len({m.value for m in history}) > 1
    run = client.get_run(run_id)
    (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
    assert recipe.data.uri in dataset.source and dataset.digest == json.loads(p["schema.json"].read_text())["data_hash"]
    assert run.data.tags["mlflow.source.name"] == f"recipe {recipe.name}"
    assert "MedHouseVal" in run.data.tags["mlflow.note.content"]
    artifacts = {a.path for a in client.list_artifacts(run_id, "data")}
    assert artifacts == {"data/schema.json", "data/report.md"}
    assert "model_card.md" in {a.path for a in client.list_artifacts(run_id)}


def test_an_ensemble_run_logs_one_epoch_curve_per_member(mlflow_sqlite, tmp_path):
    from mlflow import MlflowClient

    from tests.conftest import make_recipe, run_steps

    recipe = make_recipe("regression", train={"epochs": 3, "ensemble": 2})
    p = run_steps(recipe, tmp_path)
    run_id = register(recipe, p["model"], p["eval"], "ensemble-run", p["schema.json"], p["report.md"])["run_id"]
    client = MlflowClient()
    curves = {m: client.get_metric_history(run_id, f"val_loss_member{m}") for m in (1, 2)}
    assert all([x.step for x in curve] == [1, 2, 3] for curve in curves.values())
    assert [x.value for x in curves[1]] != [x.value for x in curves[2]], "two seeds, two curves"
    assert client.get_metric_history(run_id, "member") == [], "the member number is not a metric"
    card = (p["eval"] / "model_card.md").read_text()
    assert "- model: `mlp` (torch), an ensemble of 2 networks (seeds 0–1), predictions averaged" in card


def test_model_card_reaches_mlflow_and_renders_in_a_browser(regression_run, mlflow_sqlite, tmp_path):
    recipe, p = regression_run
    eval_dir = tmp_path / "eval"
    evaluate(recipe, p["model"], p["test.parquet"], eval_dir, None, p["schema.json"], p["report.md"],
             tmp_path / "card.html")
    card = (eval_dir / "model_card.md").read_text()
    rmse_row = next(line for line in card.splitlines() if line.startswith("| rmse |"))
    value, interval = rmse_row.split("|")[2:4]
    lo, hi = (float(x) for x in interval.split("–"))
    assert lo < float(value) < hi, rmse_row  # the bootstrap interval brackets the point estimate
    assert "| MedInc |" in card.split("## Feature importance")[1], "permutation importance names the features"

    first = register(recipe, p["model"], eval_dir, "card-run-1")
    rmse = json.loads((eval_dir / "evaluation.json").read_text())["metrics"]["rmse"]
    second = register(recipe, p["model"], evaluation_claiming({"eval": eval_dir}, tmp_path, "better", rmse=rmse - 0.01),
                      "card-run-2")  # the same bundle and evaluation again would be the same version
    from mlflow import MlflowClient

    logged = MlflowClient().download_artifacts(second["run_id"], "model_card.md", str(tmp_path / "dl"))
    text = open(logged).read()
    assert "the champion before was version 1" in text and "became **champion**" in text, text[-800:]
    assert "first version" in open(MlflowClient().download_artifacts(first["run_id"], "model_card.md",
                                                                   str(tmp_path / "dl1"))).read()
    html = MlflowClient().download_artifacts(second["run_id"], "model_card.html", str(tmp_path / "dl2"))

    dom = chromium("--dump-dom", f"file://{html}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    headings = [h for h in SECTIONS if f"<h2>{h}</h2>" in dom.stdout]
    assert headings == SECTIONS, headings
    assert "data:image/png;base64," in dom.stdout, "the learning curve is inlined"

    shot = tmp_path / "card.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,2400", f"file://{html}")
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2400, 1200) and pixels.std() > 10, "the screenshot shows a rendered page"
