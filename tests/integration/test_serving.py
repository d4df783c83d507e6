"""The KServe predictor as a real server process on 127.0.0.1: V1, V2, and 400s for bad requests."""
import json

import numpy as np
import pandas as pd
import pytest
import requests

from components.bundle import load_bundle
from tests.conftest import free_port, start_process, stop_process, wait_http

pytestmark = pytest.mark.integration
LOGS = {}  # model name -> its server's log


def serve(python, run, name, tmp_path_factory, *extra):
    _, p = run
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    proc = start_process([python, "-m", "serving", "--model_dir", str(p["model"]), "--model_name", name,
                          "--http_port", str(port), *extra], log)
    wait_http(f"http://127.0.0.1:{port}/v2/models/{name}/ready", proc, 90, log)
    LOGS[name] = log
    return proc, f"http://127.0.0.1:{port}", p


@pytest.fixture(scope="module")
def housing(python, regression_run, tmp_path_factory):
    proc, url, p = serve(python, regression_run, "housing", tmp_path_factory, "--model_version=7")
    yield url, p
    stop_process(proc)


@pytest.fixture(scope="module")
def cancer(python, classification_run, tmp_path_factory):
    proc, url, p = serve(python, classification_run, "cancer", tmp_path_factory, "--log_requests")
    yield url, p
    stop_process(proc)


def rows(p, target, n=5):
    return pd.read_parquet(p["test.parquet"]).drop(columns=target).head(n)


def v2_body(frame):
    return {"inputs": [{"name": c, "shape": [len(frame)], "datatype": "FP64" if frame[c].dtype.kind == "f" else "BYTES",
                        "data": frame[c].tolist()} for c in frame.columns]}


def test_v1_and_v2_equal_bundle_predictions(housing):
    url, p = housing
    frame = rows(p, "MedHouseVal")
    expected = load_bundle(p["model"]).predict(frame)
    v1 = requests.post(f"{url}/v1/models/housing:predict", json={"instances": frame.to_dict("records")}).json()
    np.testing.assert_allclose(v1["predictions"], expected, rtol=1e-6)
    as_lists = requests.post(f"{url}/v1/models/housing:predict", json={"instances": frame.values.tolist()}).json()
    np.testing.assert_allclose(as_lists["predictions"], expected, rtol=1e-6)
    v2 = requests.post(f"{url}/v2/models/housing/infer", json=v2_body(frame)).json()
    assert v2["outputs"][0]["name"] == "prediction" and v2["outputs"][0]["shape"] == [5]
    np.testing.assert_allclose(v2["outputs"][0]["data"], expected, rtol=1e-6)


def test_classification_answers_carry_classes_and_probabilities(cancer):
    url, p = cancer
    frame = rows(p, "diagnosis")
    bundle = load_bundle(p["model"])
    proba, labels = bundle.predict_proba(frame), bundle.predict(frame)
    v1 = requests.post(f"{url}/v1/models/cancer:predict", json={"instances": frame.to_dict("records")}).json()
    assert [a["label"] for a in v1["predictions"]] == list(labels)
    np.testing.assert_allclose([a["probabilities"]["malignant"] for a in v1["predictions"]], proba[:, 1], rtol=1e-5)
    v2 = requests.post(f"{url}/v2/models/cancer/infer", json=v2_body(frame)).json()
    out = {o["name"]: o for o in v2["outputs"]}
    assert out["label"]["data"] == list(labels) and out["probabilities"]["shape"] == [5, 2]
    assert out["probabilities"]["parameters"]["classes"] == "benign,malignant"


BAD_V1 = [
    ("not json {", "Unrecognized request format"),
    ('{"rows": []}', 'with an \\"instances\\" list'),
    ('{"instances": 3}', "instances"),
    ('{"instances": []}', "non-empty list"),
    ('{"instances": [[1, 2]]}', "expected 8 in the order"),
    ('{"instances": [7]}', "object {feature: value} or a list"),
    ('{"instances": [{"MedInc": 1}]}', "missing feature(s) ['HouseAge'"),
]


@pytest.mark.parametrize("body,reason", BAD_V1)
def test_bad_v1_requests_get_400_with_reason(housing, body, reason):
    url, _ = housing
    resp = requests.post(f"{url}/v1/models/housing:predict", data=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert reason in resp.text


def test_a_json_body_sent_without_its_content_type_is_told_which_header_to_send(housing):
    url, p = housing
    body = json.dumps({"instances": rows(p, "MedHouseVal", 1).to_dict("records")})
    resp = requests.post(f"{url}/v1/models/housing:predict", data=body,  # curl -d sends form-urlencoded
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 400
    assert "application/x-www-form-urlencoded" in resp.json()["error"]
    assert "Content-Type: application/json" in resp.json()["error"]


def test_json_answers_match_kservers_own_v1_handler(housing):
    """Plain JSON predictions take the direct path (serving/direct_v1.py); ld+json ones KServe's own
    V1 handler. Both must give the same answers and the same errors."""
    url, p = housing
    good = json.dumps({"instances": rows(p, "MedHouseVal", 3).to_dict("records")})
    for body in [good, '{"instances": []}', '{"instances": [{"MedInc": 1}]}']:
        direct, kservers = (requests.post(f"{url}/v1/models/housing:predict", data=body, headers={"Content-Type": kind})
                            for kind in ("application/json", "application/ld+json"))
        assert direct.status_code == kservers.status_code, (body, direct.text, kservers.text)
        assert direct.headers["content-type"] == kservers.headers["content-type"] == "application/json"
        answer, expected = direct.json(), kservers.json()
        answer.pop("timings_ms", None), expected.pop("timings_ms", None)
        assert answer == expected


def test_access_lines_only_when_asked(housing, cancer):
    """One log line per request is off by default (/metrics counts them) and on with --log_requests."""
    for name, (url, p), target in [("housing", housing, "MedHouseVal"), ("cancer", cancer, "diagnosis")]:
        ok = requests.post(f"{url}/v1/models/{name}:predict", json={"instances": rows(p, target, 1).to_dict("records")})
        assert ok.status_code == 200
    lines = [line for line in LOGS["cancer"].read_text().splitlines() if '"POST /v1/models/cancer' in line]
    assert lines and lines[-1].endswith('HTTP/1.1" 200'), lines  # uvicorn writes the path quoted (%3Apredict)
    assert '"POST /v1/models/housing' not in LOGS["housing"].read_text()


def test_wrong_types_and_unknown_features(housing):
    url, p = housing
    record = rows(p, "MedHouseVal", 1).to_dict("records")[0]
    for bad, reason in [({**record, "HouseAge": "old"}, "feature 'HouseAge' expects a number, got 'old'"),
                        ({**record, "colour": "red"}, "unknown feature(s) ['colour']")]:
        resp = requests.post(f"{url}/v1/models/housing:predict", json={"instances": [bad]})
        assert resp.status_code == 400 and reason in resp.json()["error"]
    frame = rows(p, "MedHouseVal", 2)
    body = v2_body(frame)
    body["inputs"][0]["data"] = body["inputs"][0]["data"][:1]
    assert requests.post(f"{url}/v2/models/housing/infer", json=body).status_code == 400
    body = v2_body(frame.astype({"HouseAge": object}).assign(HouseAge=["a", "b"]))
    resp = requests.post(f"{url}/v2/models/housing/infer", json=body)
    assert resp.status_code == 400 and "HouseAge" in resp.text
    assert requests.post(f"{url}/v1/models/ghost:predict", json={"instances": [record]}).status_code == 404
    ok = requests.post(f"{url}/v1/models/housing:predict", json={"instances": [record]})
    assert ok.status_code == 200, "the server keeps serving after bad requests"


@pytest.fixture(scope="module")
def sunspots(python, tmp_path_factory):
    from components.recipe import Recipe
    from tests.conftest import ROOT, run_steps

    recipe = Recipe.from_file(ROOT / "pipelines" / "recipes" / "sunspots-active.yaml",
                              ["train.epochs=3", "model.params.hidden_size=8"])
    run = (recipe, run_steps(recipe, tmp_path_factory.mktemp("sun")))
    proc, url, p = serve(python, run, "sun", tmp_path_factory)
    yield url, p
    stop_process(proc)


def test_time_series_windows_over_v1_and_v2(sunspots):
    from components.tasks import family

    url, p = sunspots
    bundle = load_bundle(p["model"])
    X = family("timeseries").test_inputs(bundle.meta, pd.read_parquet(p["test.parquet"])).records
    X = np.asarray(X[:4])
    expected = bundle.predict_proba(X)[:, 1]
    v1 = requests.post(f"{url}/v1/models/sun:predict", json={"instances": X.tolist()}).json()
    np.testing.assert_allclose([a["probabilities"]["1"] for a in v1["predictions"]], expected, rtol=1e-5)
    body = {"inputs": [{"name": "window", "shape": list(X.shape), "datatype": "FP32", "data": X.ravel().tolist()}]}
    v2 = requests.post(f"{url}/v2/models/sun/infer", json=body).json()
    out = {o["name"]: o for o in v2["outputs"]}
    np.testing.assert_allclose(np.asarray(out["probabilities"]["data"]).reshape(4, 2)[:, 1], expected, rtol=1e-5)
    bad = requests.post(f"{url}/v1/models/sun:predict", json={"instances": [[[1, 2, 3]]]})
    assert bad.status_code == 400 and "expected [1, 11] per instance" in bad.json()["error"]
    two = {"inputs": [body["inputs"][0], {**body["inputs"][0], "name": "other"}]}
    assert requests.post(f"{url}/v2/models/sun/infer", json=two).status_code == 400


def test_prometheus_metrics_and_request_size_limit(housing):
    url, p = housing
    record = rows(p, "MedHouseVal", 1).to_dict("records")[0]
    assert requests.post(f"{url}/v1/models/housing:predict", json={"instances": [record]}).status_code == 200
    assert requests.post(f"{url}/v1/models/housing:predict", json={"instances": [{"MedInc": "x"}]}).status_code == 400
    assert requests.post(f"{url}/v1/models/nope:predict", json={"instances": [record]}).status_code == 404
    versioned = requests.post(f"{url}/v2/models/housing/versions/7/infer", json={"inputs": []})
    assert versioned.status_code == 404 and "served without versions" in versioned.json()["error"]
    metrics = requests.get(f"{url}/metrics").text
    assert "request_predict_seconds_bucket" in metrics and 'model_name="housing"' in metrics  # KServe's own
    for line in ('kfp_ml_requests_total{code="200",model="housing",protocol="v1"}',
                 'kfp_ml_requests_total{code="400",model="housing",protocol="v1"}',
                 'kfp_ml_requests_total{code="404",model="unknown",protocol="v1"}',
                 'kfp_ml_prediction_errors_total{kind="invalid_input",model="housing"}',
                 'kfp_ml_batch_rows_bucket{le="1.0",model="housing"}',
                 'kfp_ml_request_seconds_count{model="housing",protocol="v1"}'):
        assert line in metrics, line
    huge = b'{"instances": [' + b"1," * (9 << 20) + b"1]}"
    resp = requests.post(f"{url}/v1/models/housing:predict", data=huge, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413 and "exceeds the limit" in resp.json()["error"]


def test_concurrent_requests_are_batched_and_keep_their_own_answers(housing):
    """Good and bad requests at once: each gets its own answer; a missing column is never imputed away."""
    from concurrent.futures import ThreadPoolExecutor

    url, p = housing
    frame = rows(p, "MedHouseVal", 16)
    expected = load_bundle(p["model"]).predict(frame)

    def ask(i):
        record = frame.iloc[i].to_dict()
        if i % 4 == 3:
            record.pop("MedInc")
        return i, requests.post(f"{url}/v1/models/housing:predict", json={"instances": [record]})

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(16)))
    for i, resp in answers:
        if i % 4 == 3:
            assert resp.status_code == 400 and "missing feature(s) ['MedInc']" in resp.json()["error"]
        else:
            assert resp.status_code == 200
            np.testing.assert_allclose(resp.json()["predictions"], [expected[i]], rtol=1e-6)


def test_a_slow_prediction_times_out_with_504_and_the_server_keeps_answering(regression_run):
    """In process: a timeout far below one model call's time must give PredictionTimeout (504),
    and the batcher must go on answering later requests once the caller gave up."""
    import asyncio

    from serving.predictor import BundlePredictor, PredictionTimeout

    _, p = regression_run
    frame = rows(p, "MedHouseVal", 3)
    predictor = BundlePredictor("housing", str(p["model"]), timeout_s=1e-6)
    predictor.load()

    async def scenario():
        with pytest.raises(PredictionTimeout, match="did not answer within"):
            await predictor({"instances": frame.to_dict("records")})  # KServe's stages, as the server calls them
        predictor.timeout_s = 30
        answer, _headers = await predictor({"instances": frame.to_dict("records")})
        return answer

    answer = asyncio.run(scenario())
    np.testing.assert_allclose(answer["predictions"], load_bundle(p["model"]).predict(frame), rtol=1e-6)


def test_the_server_describes_its_model_and_every_answer_names_its_version(housing, cancer):
    url, p = housing
    meta = requests.get(f"{url}/v2/models/housing", timeout=10).json()
    features = list(rows(p, "MedHouseVal").columns)
    assert [i["name"] for i in meta["inputs"]] == features and {i["datatype"] for i in meta["inputs"]} == {"FP64"}
    assert meta["outputs"] == [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    assert meta["versions"] == ["7"]
    frame = rows(p, "MedHouseVal", 2)
    v1 = requests.post(f"{url}/v1/models/housing:predict", json={"instances": frame.to_dict("records")}).json()
    assert v1["model_version"] == "7" and set(v1["timings_ms"]) == {"preprocess", "inference", "postprocess"}
    v2 = requests.post(f"{url}/v2/models/housing/infer", json=v2_body(frame)).json()
    assert v2["model_version"] == "7" and {"preprocess_ms", "inference_ms", "postprocess_ms"} <= set(v2["parameters"])

    curl, cp = cancer
    outputs = requests.get(f"{curl}/v2/models/cancer", timeout=10).json()["outputs"]
    assert [o["name"] for o in outputs] == ["label", "probability", "probabilities"]
    assert outputs[2]["shape"] == [-1, 2]
