"""Issue 13: the shipped trait tables through submit.py (run_local) and the served model, V1 and V2."""
import json

import numpy as np
import pandas as pd
import pytest
import requests

from components.steps.deploy import stop_local_server
from components.tasks.tabular import known_categories
from tests.e2e.test_pipeline import run_and_check_served, shipped_recipe

pytestmark = [pytest.mark.e2e, pytest.mark.heavy]


@pytest.mark.parametrize("recipe_name,check", [
    ("titanic", lambda report, feats: "`name` (1,307 distinct)" in report and "`age` 263" in report
     and "name" not in feats),
    ("cars", lambda report, feats: "missing target dropped: 8" in report and feats["Year"] == "datetime"),
    ("diamonds", lambda report, feats: "ordered: Fair < Good < Very Good < Premium < Ideal" in report),
    ("penguins", lambda report, feats: "delimiter ';', decimal mark ','" in report and feats["bill_length_mm"] == "numeric"),
])
def test_trait_recipes_end_to_end(recipe_name, check, tmp_path, monkeypatch):
    from pathlib import Path

    recipe, name = shipped_recipe(recipe_name, [], tmp_path, monkeypatch)
    port = recipe.deploy.port
    try:
        summary, bundle = run_and_check_served(recipe, tmp_path)
        run_dir = Path(summary["outputs"])
        report = (run_dir / "preprocess-data" / "report").read_text()
        assert check(report, {f["name"]: f["kind"] for f in bundle.meta.features}), report
        # Raw rows as a client sends them (date strings, category text, missing values) answer as the bundle does.
        test = pd.read_parquet(run_dir / "split-data" / "test").head(10)[bundle.feature_names]
        rows = json.loads(test.to_json(orient="records", date_format="iso"))
        v1 = requests.post(summary["served_url"], json={"instances": rows}, timeout=60)
        assert v1.status_code == 200, v1.text
        expected = bundle.predict(pd.DataFrame.from_records(rows))
        got = v1.json()["predictions"]
        if recipe.task == "regression":
            np.testing.assert_allclose(got, expected, rtol=1e-5)
        else:
            assert [p["label"] for p in got] == list(expected)
        known = known_categories(bundle.transform)  # test rows may hold values train never saw (a cabin)
        for column, seen in v1.json().get("unseen_categories", {}).items():
            assert seen["values"] and not set(seen["values"]) & known[column], seen
        categorical = next((f["name"] for f in bundle.meta.features if f["kind"] == "categorical"), None)
        if categorical:  # an unseen category is answered, counted and flagged (V1 field, V2 parameter)
            full = next(r for r in rows if all(v is not None for v in r.values()))
            odd = [{**full, categorical: "never-seen-value"}]
            flagged = requests.post(summary["served_url"], json={"instances": odd}, timeout=60).json()
            assert flagged["unseen_categories"][categorical]["values"] == ["never-seen-value"], flagged
            v2_body = {"inputs": [{"name": c, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP64", "data": [v]} for c, v in odd[0].items()]}
            v2 = requests.post(f"http://127.0.0.1:{port}/v2/models/{name}/infer", json=v2_body, timeout=60)
            assert v2.status_code == 200, v2.text
            assert categorical in json.loads(v2.json()["parameters"]["unseen_categories"])
            metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
            assert f'kfp_ml_unseen_categories_total{{column="{categorical}",model="{name}"}}' in metrics
    finally:
        stop_local_server(name)
