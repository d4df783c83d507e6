"""Generated requests against the real predictor: whatever arrives, the answer is never a 5xx.

1,000+ requests across the V1 and V2 routes of a tabular model, and 250 against an image classifier
(base64 images, truncated images, random bytes, wrong types), from hypothesis strategies
shaped like the protocols (right and wrong keys, shapes, datatypes, values), plus raw bytes.
"""
import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.test_serving import serve
from tests.conftest import stop_process

pytestmark = pytest.mark.integration
FEATURES = ["MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup", "Latitude", "Longitude"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.text(max_size=8),
                    st.floats(allow_nan=True, allow_infinity=True))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                            max_size=4), max_leaves=12)
RECORD = st.dictionaries(st.sampled_from(FEATURES + ["extra", ""]), SCALARS | JSON, max_size=9)
V1 = st.one_of(JSON, st.fixed_dictionaries({"instances": st.one_of(JSON, st.lists(RECORD | JSON, max_size=5))}))
V2_INPUT = st.fixed_dictionaries({
    "name": st.sampled_from(FEATURES) | st.text(max_size=6),
    "shape": st.lists(st.integers(-2, 6), max_size=3),
    "datatype": st.sampled_from(["FP64", "FP32", "INT64", "BOOL", "BYTES", "UINT8", "FP16", "nonsense"]),
    "data": st.lists(SCALARS, max_size=6) | JSON,
})
V2 = st.one_of(JSON, st.fixed_dictionaries({"inputs": st.lists(V2_INPUT, max_size=9) | JSON}))
FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def server(python, regression_run, tmp_path_factory):
    proc, url, _ = serve(python, regression_run, "housing", tmp_path_factory)
    yield url
    stop_process(proc)


def _post(url, body) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body, allow_nan=True).encode()
    return requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=30)


@pytest.mark.parametrize("route,bodies", [("v1/models/housing:predict", V1), ("v2/models/housing/infer", V2)],
                         ids=["v1", "v2"])
def test_no_request_gets_a_5xx(server, route, bodies):
    @FUZZ
    @given(st.one_of(bodies, st.binary(max_size=64)))
    def check(body):
        resp = _post(f"{server}/{route}", body)
        assert resp.status_code < 500, (body, resp.text)

    check()
    assert requests.get(f"{server}/v2/models/housing/ready").status_code == 200, "still serving"


@pytest.fixture(scope="module")
def image_server(python, tmp_path_factory):
    """A small timm digits classifier (16 px, one epoch) behind the real server."""
    from tests.conftest import DATA, make_recipe, run_steps

    recipe = make_recipe("classification", name="digits-fuzz", data={"uri": str(DATA / "digits")},
                         image={"size": 16}, model={"name": "timm:resnet10t", "params": {}},
                         train={"epochs": 1, "batch_size": 64})
    run = (recipe, run_steps(recipe, tmp_path_factory.mktemp("digits-fuzz")))
    proc, url, p = serve(python, run, "digits", tmp_path_factory)
    yield url, p
    stop_process(proc)


def _valid_images(p) -> list[str]:
    import base64

    import pandas as pd

    return [base64.b64encode(bytes(b)).decode() for b in pd.read_parquet(p["test.parquet"])["image"].head(3)]


def _image_items(p):
    import base64

    valid = _valid_images(p)
    broken = [v[: len(v) // 2] for v in valid]  # truncated images, still valid base64 prefixes
    item = st.one_of(st.sampled_from(valid + broken), st.binary(max_size=32).map(lambda b: base64.b64encode(b).decode()),
                     st.text(max_size=12), SCALARS, st.fixed_dictionaries({"b64": st.sampled_from(valid) | SCALARS}),
                     JSON)
    return item


def test_no_image_request_gets_a_5xx(image_server):
    url, p = image_server
    item = _image_items(p)
    v1 = st.one_of(JSON, st.fixed_dictionaries({"instances": st.lists(item, max_size=4)}))
    v2 = st.fixed_dictionaries({"inputs": st.lists(st.fixed_dictionaries({
        "name": st.just("image"), "shape": st.lists(st.integers(-1, 4), max_size=2),
        "datatype": st.sampled_from(["BYTES", "FP32", "UINT8"]), "data": st.lists(item, max_size=4)}), max_size=2)})

    codes = []

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.one_of(st.tuples(st.just("v1/models/digits:predict"), v1), st.tuples(st.just("v2/models/digits/infer"), v2)))
    def check(route_body):
        route, body = route_body
        resp = _post(f"{url}/{route}", body)
        codes.append(resp.status_code)
        assert resp.status_code < 500, (body, resp.text)

    check()
    assert 200 in codes and 400 in codes, "the generated requests held both good and bad images"
    good = requests.post(f"{url}/v1/models/digits:predict", json={"instances": _valid_images(p)})
    assert good.status_code == 200 and len(good.json()["predictions"]) == 3, "still serving"
