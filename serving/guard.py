"""One pure ASGI middleware in front of KServe's app: refuse oversized bodies (413) before
reading them, answer versioned V2 paths 404 (KServe says 501: not implemented, but one server
holds one version, so another version is simply not here), and count and time every inference
request whatever status it ends with.

Pure ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware wraps every
response in a stream and costs a noticeable share of a one-row prediction.
"""
from __future__ import annotations

import json
import time

from . import metrics


class RequestGuard:
    def __init__(self, app, max_bytes: int, models: set[str]):
        self.app, self.max_bytes, self.models = app, max_bytes, models

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            return await _answer(send, 413, f"request body of {int(length):,} bytes exceeds the limit of "
                                            f"{self.max_bytes:,} bytes")
        path = scope["path"]
        if path.startswith("/v2/models/") and "/versions/" in path:
            name = path.split("/")[3]
            return await _answer(send, 404, f"model {name!r} is served without versions here; "
                                            f"use /v2/models/{name}/infer")
        route = _route(path)
        if route is None:
            return await self.app(scope, receive, send)
        protocol, model = route
        model = model if model in self.models else "unknown"  # clients cannot grow the label set
        status, start = 500, time.perf_counter()

        async def observe_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe_status)
        finally:
            metrics.LATENCY.labels(model, protocol).observe(time.perf_counter() - start)
            metrics.REQUESTS.labels(model, protocol, str(status)).inc()


def _route(path: str) -> tuple[str, str] | None:
    """(protocol, model) for /v1/models/<m>:predict and /v2/models/<m>[/versions/<v>]/infer, else None."""
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] in ("v1", "v2") and parts[1] == "models":
        model = parts[2].split(":")[0]
        if parts[0] == "v1" and path.endswith(":predict") or parts[0] == "v2" and parts[-1] == "infer":
            return parts[0], model
    return None


async def _answer(send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
