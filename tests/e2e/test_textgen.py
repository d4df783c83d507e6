"""Text generation through the whole DAG (kfp.local, MLflow on sqlite, a local KServe server): the
debian-gpt2 recipe trains a tiny byte-level GPT-2, evaluate scores perplexity, and the served model
continues prompts over V1 and V2 with the request's generation parameters and timings."""
import json
from pathlib import Path

import pytest
import requests

from components.steps.deploy import stop_local_server
from tests.e2e.test_pipeline import run_and_check_served, shipped_recipe

pytestmark = [pytest.mark.e2e, pytest.mark.heavy]


def test_debian_gpt2_end_to_end(tmp_path, monkeypatch):
    recipe, name = shipped_recipe("debian-gpt2", ["train.epochs=3", "evaluate.gate=['perplexity <= 200']"],
                                  tmp_path, monkeypatch)
    port = recipe.deploy.port
    try:
        summary, bundle = run_and_check_served(recipe, tmp_path)
        evaluation = json.loads(next(Path(summary["outputs"]).rglob("evaluation.json")).read_text())
        assert 1 < evaluation["metrics"]["perplexity"] <= 200 and evaluation["primary_metric"] == "perplexity"
        assert all(s["generated_text"] for s in evaluation["samples"])
        v1 = summary["sample_answer"]
        assert set(v1["timings_ms"]) == {"preprocess", "inference", "postprocess"}
        assert all(set(p) == {"generated_text", "tokens"} for p in v1["predictions"])
        prompts = [i["prompt"] for i in summary["sample_request"]["instances"]]
        assert [p["generated_text"][:len(q)] for p, q in zip(v1["predictions"], prompts)] == prompts

        greedy = {"prompt": "a font", "max_new_tokens": 16, "temperature": 0}
        expected = bundle.predict([greedy])[0]
        v1 = requests.post(summary["served_url"], json={"instances": [greedy]}, timeout=60).json()
        assert v1["predictions"] == [expected] and v1["timings_ms"]["inference"] > 0
        v2_body = {"inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["a font"]}],
                   "parameters": {"max_new_tokens": 16, "temperature": 0}}
        v2 = requests.post(f"http://127.0.0.1:{port}/v2/models/{name}/infer", json=v2_body, timeout=60)
        assert v2.status_code == 200, v2.text
        outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
        assert outputs == {"generated_text": [expected["generated_text"]], "tokens": [expected["tokens"]]}
        assert {"preprocess_ms", "inference_ms", "postprocess_ms"} <= set(v2.json()["parameters"])
        bad = requests.post(summary["served_url"], json={"instances": [{"prompt": "x", "top_p": 3}]}, timeout=30)
        assert bad.status_code == 400 and "instance 0: top_p is 3" in bad.json()["error"], bad.text
    finally:
        stop_local_server(name)
