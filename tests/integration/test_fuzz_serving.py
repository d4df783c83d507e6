"""Generated requests against the real predictor: whatever arrives, the answer is never a 5xx.

1,000+ requests across the V1 and V2 routes of a tabular model, and 250 against an image classifier
(base64 images, truncated images, random bytes, wrong types), from hypothesis strategies
shaped like the protocols (right and wrong keys, shapes, datatypes, values), plus raw bytes.
Then the V2 binary-data extension, chunked bodies (small ones and 40 MB streams) and image bombs
(huge pixel counts in small files, too many images), while ``/v2/health/ready`` is timed and the
server's RSS sampled: zero 5xx, readiness under 100 ms throughout, RSS growth under 200 MB.
"""
import json
import struct

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.test_serving import serve
from tests.integration.test_serving_limits import ReadyWatch, stream_chunked
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
    yield url, proc
    stop_process(proc)


def _post(url, body) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body, allow_nan=True).encode()
    return requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=30)


@pytest.mark.parametrize("route,bodies", [("v1/models/housing:predict", V1), ("v2/models/housing/infer", V2)],
                         ids=["v1", "v2"])
def test_no_request_gets_a_5xx(server, route, bodies):
    server, _ = server

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
    yield url, p, proc
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
    url, p, _ = image_server
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


# --- the V2 binary-data extension and chunked bodies -----------------------------------------
BINARY_INPUT = st.fixed_dictionaries({
    "name": st.sampled_from(FEATURES) | st.text(max_size=6),
    "shape": st.lists(st.integers(-2, 6), max_size=3) | JSON,
    "datatype": st.sampled_from(["FP64", "FP32", "INT64", "BOOL", "BYTES", "UINT8", "FP16", "nonsense"]) | SCALARS,
    "parameters": st.fixed_dictionaries({"binary_data_size": st.integers(-10, 80) | st.integers(-2**70, 2**70)
                                         | SCALARS}) | JSON,
}, optional={"data": st.lists(SCALARS, max_size=3)})


@st.composite
def binary_requests(draw):
    """(JSON part, raw part, Inference-Header-Content-Length): loose shapes, or all eight features as
    FP64 tensors of n rows holding any doubles (NaN, inf, 1e308 included) with right or wrong sizes."""
    if draw(st.booleans()):
        head = draw(st.fixed_dictionaries({"inputs": st.lists(BINARY_INPUT, max_size=9)}) | JSON)
        raw = draw(st.binary(max_size=200))
    else:
        n = draw(st.integers(1, 3))
        values = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=8 * n, max_size=8 * n))
        raw = struct.pack(f"<{8 * n}d", *values)
        sizes = draw(st.lists(st.sampled_from([8 * n, 8 * n, 8 * n, 0, 4, -8, 10**9]), min_size=8, max_size=8))
        head = {"inputs": [{"name": f, "shape": [n], "datatype": "FP64", "parameters": {"binary_data_size": size}}
                           for f, size in zip(FEATURES, sizes)]}
    head = json.dumps(head, allow_nan=True).encode()
    header = draw(st.none() | st.none() | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=8)
                  | st.integers(-5, 10**12).map(str))
    return head, raw, str(len(head)) if header is None else header


def test_no_binary_or_chunked_request_gets_a_5xx_and_readiness_stays_fast(server):
    url, proc = server
    port = int(url.rsplit(":", 1)[1])
    codes = []
    with ReadyWatch(url, proc.pid) as watch:
        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(binary_requests())
        def binary(req):
            head, raw, header = req
            resp = requests.post(f"{url}/v2/models/housing/infer", data=head + raw, timeout=30,
                                 headers={"Content-Type": "application/octet-stream",
                                          "Inference-Header-Content-Length": header})
            codes.append(resp.status_code)
            assert resp.status_code < 500, (req, resp.text)
            assert "NaN" not in resp.text and "null]" not in resp.text, (req, resp.text)

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(st.sampled_from(["v1/models/housing:predict", "v2/models/housing/infer"]), st.one_of(V1, V2),
               st.integers(1, 64))
        def chunked(route, body, size):
            data = json.dumps(body, allow_nan=True).encode()
            resp = requests.post(f"{url}/{route}", data=iter([data[i:i + size] for i in range(0, len(data), size)]),
                                 headers={"Content-Type": "application/json"}, timeout=30)  # no Content-Length
            codes.append(resp.status_code)
            assert resp.status_code < 500, (body, resp.text)

        binary()
        chunked()
        for _ in range(3):  # 40 MB streams against the 16 MiB limit
            answer, sent, _, _ = stream_chunked(port, "v2/models/housing/infer", 40 << 20)
            assert answer.startswith(b"HTTP/1.1 413") and sent < 32 << 20, answer[:200]
    assert 200 in codes and 400 in codes, "the generated requests held both good and bad ones"
    assert set(watch.codes) == {200} and max(watch.latencies_ms) < 100, (set(watch.codes), max(watch.latencies_ms))
    assert watch.rss_growth_mb < 200, watch.rss_growth_mb


# --- image bombs --------------------------------------------------------------------------------
def _png(size: tuple[int, int], mode: str = "1") -> str:
    """A PNG of ``size`` pixels; mode "1" (one bit a pixel, all black) makes a 12000×12000 image a few KB."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_image_bombs_get_413_and_decoding_leaves_readiness_alone(image_server):
    url, p, proc = image_server
    valid = _valid_images(p)
    bomb, big, fair = _png((12000, 12000)), _png((5000, 4000)), _png((2800, 2800), "RGB")
    item = st.sampled_from([*valid, bomb, big, fair])
    codes = []
    with ReadyWatch(url, proc.pid) as watch:
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(st.sampled_from(["v1", "v2"]), st.lists(item, min_size=1, max_size=6) | st.just([valid[0]] * 65))
        def check(route, items):
            if route == "v1":
                resp = requests.post(f"{url}/v1/models/digits:predict", json={"instances": items}, timeout=60)
            else:
                resp = requests.post(f"{url}/v2/models/digits/infer", timeout=60, json={"inputs": [
                    {"name": "image", "shape": [len(items)], "datatype": "BYTES", "data": items}]})
            codes.append(resp.status_code)
            assert resp.status_code < 500, resp.text[:300]
            if bomb in items or big in items or len(items) > 64 or items.count(fair) > 2:
                assert resp.status_code == 413, resp.text[:300]
                assert "--max_image" in resp.text or "--max_request_pixels" in resp.text, resp.text[:300]

        check()
        four = requests.post(f"{url}/v1/models/digits:predict", json={"instances": [bomb] * 4}, timeout=60)
        assert four.status_code == 413 and "12000x12000 = 144,000,000 pixels" in four.json()["error"], four.text
        # two 2800×2800 images (15.7 MP): under the limits, decoded in a worker thread
        decoded = requests.post(f"{url}/v1/models/digits:predict", json={"instances": [fair] * 2}, timeout=60)
        assert decoded.status_code == 200 and len(decoded.json()["predictions"]) == 2, decoded.text[:300]
    assert 200 in codes and 413 in codes
    assert set(watch.codes) == {200} and max(watch.latencies_ms) < 100, (set(watch.codes), max(watch.latencies_ms))
    assert watch.rss_growth_mb < 200, watch.rss_growth_mb
