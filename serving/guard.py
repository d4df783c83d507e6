"""Guards in front of KServe's app, at two levels.

ASGI (``RequestGuard``), one pure middleware: refuse oversized bodies (413) whether they come with
a Content-Length or chunked (the bytes are counted as they stream in, and the connection is
closed at the limit), refuse a body that does not arrive within ``body_timeout_s`` (408), check
the V2 binary-data extension (``Inference-Header-Content-Length`` and each input's
``binary_data_size``) before KServe slices the body with it (400 naming the input), answer
versioned V2 paths 404 (KServe says 501: not implemented, but one server holds one version, so
another version is simply not here), and count and time every inference request whatever status
it ends with.

Transport (``header_timeout_protocol``): uvicorn closes idle keep-alive connections, but a
connection that never finishes its request headers (slowloris) is held forever, and its headers
grow without a bound. The protocol class given to uvicorn closes such a connection with 408 once
``timeout_s`` has passed without complete headers, and with 431 past ``max_header_bytes``.

Pure ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware wraps every
response in a stream and costs a noticeable share of a one-row prediction.
"""
from __future__ import annotations

import asyncio
import json
import math
import struct
import time

from . import metrics

BINARY_HEADER = b"inference-header-content-length"
_ITEMSIZE = {"BOOL": 1, "INT8": 1, "UINT8": 1, "INT16": 2, "UINT16": 2, "FP16": 2, "INT32": 4, "UINT32": 4,
             "FP32": 4, "INT64": 8, "UINT64": 8, "FP64": 8}


class _Refused(Exception):
    def __init__(self, status: int, error: str):
        super().__init__(error)
        self.status, self.error = status, error


class _Disconnected(Exception):
    pass


class RequestGuard:
    def __init__(self, app, max_bytes: int, models: set[str], body_timeout_s: float = 30.0):
        self.app, self.max_bytes, self.models, self.body_timeout_s = app, max_bytes, models, body_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            return await _answer(send, 413, f"request body of {int(length):,} bytes exceeds the limit of "
                                            f"{self.max_bytes:,} bytes", close=True)
        path = scope["path"]
        if path.startswith("/v2/models/") and "/versions/" in path:
            name = path.split("/")[3]
            return await _answer(send, 404, f"model {name!r} is served without versions here; "
                                            f"use /v2/models/{name}/infer")
        route = _route(path)
        if route is None:
            return await self._forward(scope, receive, send, headers, length, None)
        protocol, model = route
        model = model if model in self.models else "unknown"  # clients cannot grow the label set
        status, start = 500, time.perf_counter()

        async def observe_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._forward(scope, receive, observe_status, headers, length, protocol)
        finally:
            metrics.LATENCY.labels(model, protocol).observe(time.perf_counter() - start)
            metrics.REQUESTS.labels(model, protocol, str(status)).inc()

    async def _forward(self, scope, receive, send, headers: dict, length: bytes, protocol: str | None):
        """Read the whole body here (counted, within the deadline), check it, then hand it on."""
        binary = protocol == "v2" and BINARY_HEADER in headers
        if length in (b"", b"0") and b"transfer-encoding" not in headers and not binary:
            return await self.app(scope, receive, send)
        try:
            body = await self._read_body(receive)
        except _Disconnected:
            return
        except _Refused as refused:
            return await _answer(send, refused.status, refused.error, close=True)
        if binary:
            error = binary_request_error(headers[BINARY_HEADER], body)
            if error:
                return await _answer(send, 400, error)
        return await self.app(scope, replay_body(body, receive), send)

    async def _read_body(self, receive) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                raise _Refused(408, f"the request body did not arrive within {self.body_timeout_s:g} s "
                                    f"({size:,} bytes came)") from None
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _Refused(413, f"request body exceeds the limit of {self.max_bytes:,} bytes "
                                    "(counted as it streamed in)")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def replay_body(body: bytes, receive):
    """The body, read already, as one message; after it the connection's own events (disconnect)."""
    pending = True

    async def replay():
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def binary_request_error(header: bytes, body: bytes) -> str | None:
    """What is wrong with a V2 binary-data request (JSON part, then each input's raw bytes), or None.

    KServe slices the body with these numbers unchecked: a non-number, a short, negative or huge
    size, or bytes that cannot hold the declared shape end as a 500 there.
    """
    if not header.isdigit():
        return (f"Inference-Header-Content-Length must be the JSON part's length in bytes, a whole number; "
                f"got {header.decode(errors='replace')[:40]!r}")
    json_length = int(header)
    if not 0 < json_length <= len(body):
        return (f"Inference-Header-Content-Length is {json_length:,} but the body holds {len(body):,} bytes; "
                "expected the length of the JSON part at its start")
    try:
        request = json.loads(body[:json_length])
    except (ValueError, UnicodeDecodeError):
        return (f"the first {json_length:,} bytes (Inference-Header-Content-Length) are not JSON; expected the "
                "inference request object, then the inputs' raw bytes")
    inputs = request.get("inputs") if isinstance(request, dict) else None
    if not isinstance(inputs, list):
        return 'the JSON part must be an object with an "inputs" list'
    offset = json_length
    for n, item in enumerate(inputs):
        if not isinstance(item, dict):
            return f"inputs[{n}] must be an object with name, shape, datatype and data or parameters.binary_data_size"
        name = item.get("name")
        shape, datatype = item.get("shape"), item.get("datatype")
        if not isinstance(name, str):
            return f"inputs[{n}] needs a name (a string)"
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            return f"input {name!r}: shape must be a list of whole numbers >= 0, got {shape!r}"
        if datatype not in _ITEMSIZE and datatype != "BYTES":
            return f"input {name!r}: datatype {datatype!r} is not one of {sorted([*_ITEMSIZE, 'BYTES'])}"
        if item.get("data") is not None:
            continue
        params = item.get("parameters")
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            return f'input {name!r} has neither "data" nor parameters.binary_data_size'
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return f"input {name!r}: binary_data_size must be a whole number of bytes >= 0, got {size!r}"
        left = len(body) - offset
        if size > left:
            return f"input {name!r}: binary_data_size is {size:,} but only {left:,} bytes of the body are left"
        count = math.prod(shape)
        if datatype == "BYTES":
            error = _bytes_tensor_error(body[offset:offset + size], count)
            if error:
                return f"input {name!r}: {error}"
        elif size != count * _ITEMSIZE[datatype]:
            return (f"input {name!r}: {size:,} bytes of {datatype} cannot hold shape {shape}; expected "
                    f"{count * _ITEMSIZE[datatype]:,} bytes")
        offset += size
    if offset != len(body):
        return (f"{len(body) - offset:,} bytes follow the last binary input; the binary_data_size values must add "
                "up to the body after the JSON part")
    return None


def _bytes_tensor_error(raw: bytes, count: int) -> str | None:
    """A BYTES tensor is ``count`` elements, each a 4-byte little-endian length and that many bytes."""
    offset, seen = 0, 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            return f"element {seen} has a cut length prefix; each BYTES element is a 4-byte length and its bytes"
        (n,) = struct.unpack_from("<I", raw, offset)
        offset += 4 + n
        if offset > len(raw):
            return f"element {seen} says {n:,} bytes but fewer are left"
        seen += 1
    if seen != count:
        return f"{seen} BYTES element(s) for a shape of {count}"
    return None


def _route(path: str) -> tuple[str, str] | None:
    """(protocol, model) for /v1/models/<m>:predict and /v2/models/<m>[/versions/<v>]/infer, else None."""
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] in ("v1", "v2") and parts[1] == "models":
        model = parts[2].split(":")[0]
        if parts[0] == "v1" and path.endswith(":predict") or parts[0] == "v2" and parts[-1] == "infer":
            return parts[0], model
    return None


async def _answer(send, status: int, error: str, close: bool = False) -> None:
    """A JSON error; ``close`` when the body was not read to its end (the connection cannot be reused)."""
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status,
                "headers": (headers + [(b"connection", b"close")]) if close else headers})
    await send({"type": "http.response.body", "body": body})


def header_timeout_protocol(timeout_s: float, max_header_bytes: int = 64 << 10):
    """uvicorn's httptools protocol, plus a deadline and a size limit for each request's headers.

    The deadline runs from the connection's start (a client that connects and says nothing) and from
    the first byte of each later request on a kept-alive connection, until the headers are complete;
    idle kept-alive connections are uvicorn's own ``timeout_keep_alive``. Passed to uvicorn as its
    ``http`` protocol class.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _timer: asyncio.TimerHandle | None = None
        _awaiting_headers = True
        _header_bytes = 0

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._awaiting_headers:
                # counted before feeding: at most one read (256 KiB) beyond the limit is ever parsed
                if self._header_bytes > max_header_bytes:
                    return self._refuse(431, f"request headers exceed {max_header_bytes:,} bytes")
                self._header_bytes += len(data)
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._awaiting_headers = True
            self._arm()

        def on_headers_complete(self) -> None:
            self._awaiting_headers, self._header_bytes = False, 0
            self._disarm()
            super().on_headers_complete()

        def _arm(self) -> None:
            if self._timer is None:
                self._timer = self.loop.call_later(timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self) -> None:
            self._timer = None
            if self._awaiting_headers:
                self._refuse(408, f"request headers did not arrive within {timeout_s:g} s")

        def _refuse(self, status: int, error: str) -> None:
            self._disarm()
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete:  # never inside another response
                body = json.dumps({"error": error}).encode()
                reason = {408: "Request Timeout", 431: "Request Header Fields Too Large"}[status]
                self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                                     b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                                     % (status, reason.encode(), len(body), body))
            self.transport.close()

    return HeaderTimeoutProtocol
