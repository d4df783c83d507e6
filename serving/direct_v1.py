"""V1 predictions answered without the web framework's per-request layers.

Profiled at concurrency 8 with one-row requests, Starlette's and FastAPI's layers (exception
middleware, exit stack, two routers, the endpoint's dependency solving) and KServe's V1 handler took
about as much CPU as the model and its preprocessing. This ASGI layer answers the plain case itself:
``POST /v1/models/<served model>:predict`` with ``Content-Type: application/json`` (any case, with or
without parameters such as ``charset=utf-8``, which KServe's own check takes for another type) and a
JSON object body. It calls the model as KServe's handler does (``Model.__call__``: preprocess, predict and
postprocess, with KServe's latency metrics), encodes the answer as KServe's ORJSONResponse does, and
answers an error with the app's own exception handlers, so status codes and bodies are KServe's.
Everything else goes on to KServe unchanged: other routes, other content types, CloudEvents, a body
that is not JSON (KServe words that error), a model not loaded or not ready.
"""
from __future__ import annotations

import orjson
from kserve import ModelRepository

from .guard import replay_body

PREFIX, SUFFIX = "/v1/models/", ":predict"
JSON = b"application/json"


class DirectV1:
    def __init__(self, app, repository: ModelRepository):
        self.app, self.repository = app, repository  # the repository, not a model: a reload swaps the model

    async def __call__(self, scope, receive, send):
        model = self._model(scope)
        if model is None:
            return await self.app(scope, receive, send)
        chunks = []  # one message: the guard in front has read and counted the body already
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict) or "specversion" in payload:  # KServe's error, or a CloudEvent
            return await self.app(scope, replay_body(body, receive), send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            answer, response_headers = await model(payload, headers=headers)
        except Exception as exc:
            handler = _handler(scope["app"].exception_handlers, exc)
            if handler is None:
                raise
            from starlette.requests import Request

            response = await handler(Request(scope), exc)
            return await response(scope, receive, send)
        content = orjson.dumps(answer, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
        extra = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in (response_headers or {}).items()
                 if k.lower() not in ("content-type", "content-length")]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", JSON), (b"content-length", str(len(content)).encode()), *extra]})
        await send({"type": "http.response.body", "body": content})

    def _model(self, scope):
        """The served model this request is a plain V1 prediction for, or None."""
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "POST" or not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
            return None
        json_body = False
        for key, value in scope["headers"]:
            if key == b"content-type":
                json_body = value.split(b";")[0].strip().lower() == JSON
            elif key.startswith(b"ce-"):  # a binary CloudEvent: KServe answers in kind
                return None
        model = self.repository.get_model(path[len(PREFIX):-len(SUFFIX)]) if json_body else None
        return model if model is not None and model.ready else None


def _handler(handlers: dict, exc: Exception):
    """The app's handler for this exception, looked up along its class hierarchy as Starlette does."""
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None
