"""The direct V1 path: plain JSON predictions answered without the framework's layers, everything
else handed on to KServe's app unchanged (so KServe words what it handles)."""
import asyncio
import json

import pytest
from kserve import Model, ModelRepository
from kserve.errors import InvalidInput, invalid_input_handler

from serving.direct_v1 import DirectV1


class Doubler(Model):
    """A KServe model answering each instance with its double (a negative one is refused)."""

    def __init__(self, name):
        super().__init__(name)
        self.ready = True

    def predict(self, payload, headers=None):
        if any(x < 0 for x in payload["instances"]):
            raise InvalidInput("instances must be >= 0")
        return {"predictions": [2 * x for x in payload["instances"]], "content_type": headers["content-type"]}


class Inner:
    """Stands for KServe's app: records what reached it and answers 299 with the body it got."""

    def __init__(self):
        self.reached, self.exception_handlers = [], {InvalidInput: invalid_input_handler}

    async def __call__(self, scope, receive, send):
        body = (await receive())["body"]
        self.reached.append((scope["path"], body))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": body})


def call(app, inner, path, body: bytes, headers=(("content-type", "application/json"),), method="POST"):
    sent = []
    scope = {"type": "http", "method": method, "path": path, "app": inner,
             "headers": [(k.encode(), v.encode()) for k, v in headers]}

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


@pytest.fixture
def app():
    repository, inner = ModelRepository(), Inner()
    repository.update(Doubler("m"))
    return DirectV1(inner, repository), inner


def test_a_plain_json_prediction_is_answered_by_the_model_without_reaching_the_app(app):
    direct, inner = app
    status, headers, body = call(direct, inner, "/v1/models/m:predict", b'{"instances": [1, 2.5]}')
    assert status == 200 and headers[b"content-type"] == b"application/json"
    assert json.loads(body) == {"predictions": [2, 5.0], "content_type": "application/json"}
    assert int(headers[b"content-length"]) == len(body)
    assert inner.reached == []


@pytest.mark.parametrize("kind", ["application/json; charset=utf-8", "Application/JSON", "application/json ;charset=UTF-8"])
def test_json_with_parameters_or_capitals_is_json(app, kind):
    """KServe's own check compares the whole header, so ``application/json; charset=utf-8`` (many clients'
    default) got 400 there; media types are case-insensitive and may carry parameters."""
    direct, inner = app
    status, _, body = call(direct, inner, "/v1/models/m:predict", b'{"instances": [2]}', (("content-type", kind),))
    assert status == 200 and json.loads(body)["predictions"] == [4] and inner.reached == []


def test_the_models_response_headers_are_sent(app):
    direct, inner = app

    class WithHeader(Doubler):
        async def __call__(self, body, headers=None, verb=None):
            answer, _ = await super().__call__(body, headers)
            return answer, {"X-Model-Version": "7", "content-type": "text/plain"}

    direct.repository.update(WithHeader("m"))
    status, headers, _ = call(direct, inner, "/v1/models/m:predict", b'{"instances": [1]}')
    assert status == 200 and headers[b"x-model-version"] == b"7" and headers[b"content-type"] == b"application/json"


def test_an_error_is_answered_by_the_apps_own_handler(app):
    direct, inner = app
    status, _, body = call(direct, inner, "/v1/models/m:predict", b'{"instances": [-1]}')
    assert status == 400 and json.loads(body) == {"error": "instances must be >= 0"}
    assert inner.reached == []


@pytest.mark.parametrize("path,body,headers,method", [
    ("/v2/models/m/infer", b'{"inputs": []}', (("content-type", "application/json"),), "POST"),  # another route
    ("/v1/models/other:predict", b'{"instances": [1]}', (("content-type", "application/json"),), "POST"),  # not served
    ("/v1/models/m:predict", b'{"instances": [1]}', (("content-type", "text/plain"),), "POST"),  # not JSON
    ("/v1/models/m:predict", b'{"instances": [1]}', (("content-type", "application/jsonx"),), "POST"),
    ("/v1/models/m:predict", b'{"instances": [1]}', (("content-type", "application/ld+json"),), "POST"),
    ("/v1/models/m:predict", b'{"instances": [1]}', (("content-type", "application/json"), ("ce-id", "1")), "POST"),
    ("/v1/models/m:predict", b'not json {', (("content-type", "application/json"),), "POST"),  # KServe words it
    ("/v1/models/m:predict", b'[1, 2]', (("content-type", "application/json"),), "POST"),
    ("/v1/models/m:predict", b'{"specversion": "1.0", "data": {}}', (("content-type", "application/json"),), "POST"),
    ("/v1/models/m:predict", b'', (("content-type", "application/json"),), "GET"),
])
def test_everything_else_goes_on_to_kserve_with_its_body_intact(app, path, body, headers, method):
    direct, inner = app
    status, _, answered = call(direct, inner, path, body, headers, method)
    assert status == 299 and inner.reached == [(path, body)] and answered == body


def test_a_model_not_ready_goes_on_to_kserve_which_answers_503(app):
    direct, inner = app
    direct.repository.get_model("m").ready = False
    assert call(direct, inner, "/v1/models/m:predict", b'{"instances": [1]}')[0] == 299


def test_a_reloaded_model_answers_the_next_request(app):
    """The layer asks the repository on every request: a swapped-in model answers at once."""
    direct, inner = app

    class Tripler(Doubler):
        def predict(self, payload, headers=None):
            return {"predictions": [3 * x for x in payload["instances"]]}

    direct.repository.update(Tripler("m"))
    assert json.loads(call(direct, inner, "/v1/models/m:predict", b'{"instances": [2]}')[2]) == {"predictions": [6]}
