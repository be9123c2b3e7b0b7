"""The Open Inference Protocol over REST (the OIP's REST protocol, with Triton's binary tensor data extension).

:func:`build_app` returns one ASGI application. Inference and health, the routes that carry the
traffic, are answered by a small ASGI callable that decodes with orjson and numpy and sends
binary outputs as separate chunks; every other path (metadata, ``/docs``, ``/openapi.json``)
goes to a FastAPI application (:mod:`omi_adapters.rest_api`), which also documents the hot
routes. Both share one implementation of each endpoint, so the documented behaviour is the
served one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
import orjson

from omi_adapters import tracing
from omi_adapters.codecs import binary, compression, oip_json
from omi_adapters.contract import Model
from omi_adapters.dataplane import DataPlane, in_thread
from omi_adapters.errors import (
    ErrorCode,
    InvalidInputError,
    OmiError,
    PayloadTooLargeError,
    ServerStoppingError,
    UnsupportedEncodingError,
)
from omi_adapters.limits import Ticket
from omi_adapters.types import InferenceRequest

__all__ = ["DEFAULT_MAX_BODY_BYTES", "HTTP_STATUS", "build_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("omi_adapters.rest")

#: The one table from the error tree to HTTP (the OIP's status codes, as KServe maps them).
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.RESOURCE_EXHAUSTED: 413,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.OVERLOADED: 503,
    ErrorCode.DEADLINE_EXCEEDED: 504,
    ErrorCode.INTERNAL: 500,
}

#: The outcome labels of REST requests (metrics): the status, as text made once.
_STATUS_TEXT = {status: str(status) for status in (200, *HTTP_STATUS.values())}
METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

#: Bodies larger than this are refused with 413 before they are read (Triton's default).
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
#: Larger bodies are decoded (inflated, compressed) in a worker thread, so that other requests go on meanwhile.
DECODE_ON_LOOP_BYTES = 256 * 1024
#: A compressed body is inflated in a worker thread this much at a time, its bytes counted in between.
INFLATE_SLICE_BYTES = 4 * 1024 * 1024
#: Where the Swagger UI and ReDoc files of /docs and /redoc are served from.
DOCS_ASSETS = "/docs-assets"
#: The ASGI scope extension through which the HTTP protocol reports a client that went away.
ON_DISCONNECT = "omi.on_disconnect"
#: The ASGI scope extension through which an embedding server passes the client's time budget.
TIMEOUT = "omi.timeout"
#: The ASGI scope extension through which the HTTP protocol takes a whole small reply in one call
#: (``respond(send, status, headers, body, content_length) -> bool``; False: send it as ASGI messages
#: instead, as when ``send`` is not the protocol's own but a middleware's).
RESPOND = "omi.respond"
#: Replies up to this size go through :data:`RESPOND` as one joined buffer; larger ones as chunks.
RESPOND_BYTES = 64 * 1024
#: Where a large binary request's tensors start in the buffer its body is read into (bytes; a
#: cache line, more than any datatype needs).
BODY_ALIGNMENT = 64

_JSON = [(b"content-type", b"application/json")]
_BINARY = b"application/octet-stream"

#: Triton's generate extension (:mod:`omi_adapters.rest_generate`).
_GENERATE = ("generate", "generate_stream")
_POSTED = ("infer", *_GENERATE)

# (status, extra headers, body chunks)
Reply = tuple[int, list[tuple[bytes, bytes]], list[bytes | memoryview]]
# The protocol's whole-reply writer (:data:`RESPOND`): the application's send, status, headers,
# body (b"" for HEAD), content length.
Respond = Callable[[Send, int, list[tuple[bytes, bytes]], "bytes | memoryview", int], bool]


class _Endpoints:
    """The OIP endpoints as transport-light functions: a DataPlane in, status and body out."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    def live(self) -> Reply:
        if self.dataplane.live():
            return 200, list(_JSON), [b'{"live":true}']
        return 503, list(_JSON), [b'{"live":false}']

    def ready(self) -> Reply:
        if self.dataplane.ready():
            return 200, list(_JSON), [b'{"ready":true}']
        return 503, list(_JSON), [b'{"ready":false}']

    def model_ready(self, name: str, version: str | None) -> Reply:
        model = self.dataplane.get(name, version)
        ready = self.dataplane.model_ready(model)
        return (200 if ready else 503), list(_JSON), [orjson.dumps({"name": model.name, "ready": ready})]

    async def infer(
        self,
        name: str,
        version: str | None,
        header: bytes | None,
        body: bytes | memoryview,
        timeout: float | None = None,
    ) -> Reply:
        return await self.infer_model(self.dataplane.get(name, version), header, body, timeout)

    async def infer_model(
        self,
        model: Model,
        header: bytes | None,
        body: bytes | memoryview,
        timeout: float | None = None,
        ids: list[str | None] | None = None,
    ) -> Reply:
        """Run an infer body through ``model``; with ``ids``, the request's OIP id is appended to it."""
        trace = tracing.current() if tracing.active else None
        if trace is not None:
            began = time.perf_counter()
        if len(body) > DECODE_ON_LOOP_BYTES:
            request = await in_thread(self.dataplane.executor, _decode, model, header, body)
        else:
            request = _decode(model, header, body)
        if ids is not None:
            ids.append(request.id)
        if trace is not None:
            trace.child("decode", began, time.perf_counter())
        response = await self.dataplane.run(model, request, timeout=timeout)
        if trace is not None:
            began = time.perf_counter()
        chunks, header_length = binary.encode_response(response, binary.wants_binary(request))
        if trace is not None:
            trace.child("encode", began, time.perf_counter())
        if header_length is None:
            return 200, list(_JSON), chunks
        headers = [(b"content-type", _BINARY), (b"inference-header-content-length", str(header_length).encode())]
        return 200, headers, chunks


def _decode(model: Any, header: bytes | None, body: bytes | memoryview) -> InferenceRequest:
    """Parse an infer body whatever its content type: JSON, or binary when the header says so (binary tensor data extension)."""
    if header is None:
        return oip_json.decode_request(body)
    length = binary.parse_header_length(header, len(body))
    if length > 0:
        return binary.decode_request(body, length)
    # Inference-Header-Content-Length: 0 is a raw binary request, only for one-input models.
    if len(model.inputs) != 1:
        raise InvalidInputError(
            f"a raw binary request (Inference-Header-Content-Length: 0) needs a model with one input; "
            f"model '{model.name}' has {len(model.inputs)}"
        )
    spec = model.inputs[0]
    return binary.decode_raw_request(body, spec.name, spec.datatype, spec.shape)


def _error(exc: OmiError) -> Reply:
    headers = list(_JSON)
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(exc.retry_after))).encode()))
    status = HTTP_STATUS[exc.code]
    if isinstance(exc, UnsupportedEncodingError):
        # RFC 9110 15.5.16 and RFC 7694: a coding the server does not read is 415, listing those it does.
        status = 415
        headers.append((b"accept-encoding", compression.ACCEPTED.encode()))
    return status, headers, [orjson.dumps({"error": exc.message})]


def _internal(exc: BaseException) -> Reply:
    # A bug of ours, not the user's predict (that is a PredictError): log it, never send the traceback.
    log.exception("unexpected error while serving a request")
    return 500, list(_JSON), [orjson.dumps({"error": f"internal server error ({type(exc).__name__})"})]


Route = tuple[str, str | None, str | None]
#: The hot routes matched so far, by path: a path is parsed once, not per request.
_ROUTES: dict[str, Route] = {}
#: At most this many are kept, each of a path of at most _CACHED_PATH characters: a client sending
#: ever new paths makes the table start again, never grow past ~100 KiB.
_MAX_ROUTES = 512
_CACHED_PATH = 200


def _route(path: str) -> Route | None:
    """Match the hot routes: ('live'|'ready'|'model_ready'|'infer'|'generate'|'generate_stream', model, version)."""
    route = _ROUTES.get(path)
    if route is None:
        route = _match(path)
        if route is not None and len(path) <= _CACHED_PATH:
            if len(_ROUTES) >= _MAX_ROUTES:
                _ROUTES.clear()
            _ROUTES[path] = route
    return route


def _match(path: str) -> Route | None:
    if path == "/v2/health/live":
        return "live", None, None
    if path == "/v2/health/ready":
        return "ready", None, None
    if not path.startswith("/v2/models/"):
        return None
    parts = path[len("/v2/models/") :].split("/")
    if len(parts) == 2 and parts[0]:
        name, version, action = parts[0], None, parts[1]
    elif len(parts) == 4 and parts[0] and parts[1] == "versions" and parts[2]:
        name, version, action = parts[0], parts[2], parts[3]
    else:
        return None
    if action in ("infer", "generate", "generate_stream"):
        return action, name, version
    if action == "ready":
        return "model_ready", name, version
    return None


class OipApp:
    """The ASGI application: hot routes here, everything else to FastAPI."""

    def __init__(self, dataplane: DataPlane, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.dataplane = dataplane
        self.endpoints = _Endpoints(dataplane)
        self.max_body_bytes = max_body_bytes
        self._api: Any = None
        self._api_building: asyncio.Future[Any] | None = None
        self.observer = dataplane.observer
        self.access_log = dataplane.access_log
        #: The text of ``GET /metrics`` when metrics are recorded (prometheus-client installed).
        self.metrics: Callable[[], bytes] | None = getattr(dataplane.observer, "exposition", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = _route(scope["path"])
            if route is not None:
                kind, name, version = route
                method = scope["method"]
                if method == "POST" and (kind == "infer" or kind in _GENERATE):
                    if kind == "infer":
                        serving = self._infer(scope, receive, send, name, version)  # type: ignore[arg-type]
                    else:
                        from omi_adapters.rest_generate import serve_generate

                        stream = kind == "generate_stream"
                        serving = serve_generate(self, scope, receive, send, name, version, stream)  # type: ignore[arg-type]
                    await (_traced(serving, scope, kind, version) if tracing.active else serving)
                    return
                if kind not in _POSTED and method in ("GET", "HEAD"):
                    await _send(scope, send, self._health(kind, name, version), head=method == "HEAD")
                    return
            elif scope["path"] == "/metrics" and self.metrics is not None and scope["method"] in ("GET", "HEAD"):
                await _send(scope, send, self._scrape(), head=scope["method"] == "HEAD")
                return
        api = self._api if self._api is not None else await self.prepare()
        await api(scope, receive, send)

    def api(self) -> Any:
        """The FastAPI application (metadata, docs): built here, on the first call, if not yet."""
        if self._api is None:
            from omi_adapters.rest_api import build_api

            self._api = build_api(self.endpoints, self)
        return self._api

    async def prepare(self) -> Any:
        """Build the FastAPI application in a worker thread (once), so that the loop serves meanwhile."""
        if self._api is not None:
            return self._api
        if self._api_building is None:
            self._api_building = asyncio.ensure_future(in_thread(self.dataplane.executor, self.api))
        return await asyncio.shield(self._api_building)

    def _health(self, kind: str, name: str | None, version: str | None) -> Reply:
        try:
            if kind == "live":
                return self.endpoints.live()
            if kind == "ready":
                return self.endpoints.ready()
            return self.endpoints.model_ready(name or "", version)
        except OmiError as exc:
            return _error(exc)

    def _scrape(self) -> Reply:
        assert self.metrics is not None
        self.observer.refresh(self.dataplane)
        return 200, [(b"content-type", METRICS_CONTENT_TYPE)], [self.metrics()]

    async def _infer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        name: str,
        version: str | None,
    ) -> None:
        began = time.perf_counter()
        model: Model | None = None
        code: ErrorCode | None = None
        size = 0
        ids: list[str | None] | None = [] if self.access_log is not None else None
        # One dict made in C beats a Python loop over the few headers (the last of a repeated one wins).
        fields = dict(scope["headers"])
        header = fields.get(b"inference-header-content-length")
        declared = fields.get(b"content-length")
        encoding = fields.get(b"content-encoding")
        accept = fields.get(b"accept-encoding")
        extensions = scope.get("extensions") or {}
        disconnected = answering = False
        hooks = extensions.get(ON_DISCONNECT)
        if hooks is not None:
            task = asyncio.current_task()

            def gone() -> None:
                # The client went away: stop its work and free its place (queue slot, admission).
                nonlocal disconnected
                if not answering and task is not None:
                    disconnected = True
                    task.cancel()

            hooks.append(gone)
        ticket: Ticket | None = None
        try:  # for the metrics of a request refused before the lookup
            model = self.dataplane.get(name, version)
        except OmiError:
            pass  # raised again below, once the body is read
        try:
            size = int(declared) if declared is not None and declared.isdigit() else 0
            if size > self.max_body_bytes:
                raise PayloadTooLargeError(
                    f"request body of {size} bytes exceeds the limit of {self.max_body_bytes} bytes (--max-message-bytes)"
                )
            coding = compression.request_encoding(encoding) if encoding is not None else None
            ticket = self.dataplane.admit(size)
            align = int(header) if header is not None and coding is None and header.isdigit() else None
            body = await self.read_body(receive, None if size else ticket, declared=size, align=align)
            if body is None:
                return  # the client went away
            size = len(body)
            if coding is not None:
                body = await self._inflate(coding, body, ticket)
            if model is None:
                model = self.dataplane.get(name, version)  # raises: no such model
            reply = await self.endpoints.infer_model(model, header, body, extensions.get(TIMEOUT), ids)
            if accept is not None:
                reply = await self._compress(reply, accept)
        except OmiError as exc:
            code = exc.code
            reply = _error(exc)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback on the wire
            code = ErrorCode.INTERNAL
            reply = _internal(exc)
        except asyncio.CancelledError:
            if disconnected:
                return  # nobody is left to answer
            # uvicorn cancels the requests still running when the grace period after SIGTERM ends
            # (and only then): answer 503 rather than let it send a bare 500. The request ends
            # here either way, so the cancellation has done its work and is not raised again.
            stopping = ServerStoppingError("the server stopped before this request finished")
            code = stopping.code
            reply = _error(stopping)
        finally:
            if ticket is not None:
                ticket.close()
        answering = True
        sent = await _send(scope, send, reply)
        self.answered(scope, model, name, version, reply[0], code, began, size, sent, ids[0] if ids else None)

    def answered(
        self,
        scope: Scope,
        model: Model | None,
        name: str,
        version: str | None,
        status: int,
        code: ErrorCode | None,
        began: float,
        size: int,
        sent: int,
        request_id: str | None,
    ) -> None:
        """Record a request answered with ``status``: its metrics, its span (when traced) and its access line."""
        seconds = time.perf_counter() - began
        outcome = _STATUS_TEXT.get(status) or str(status)
        self.observer.request("rest", model, outcome, code, seconds, size, sent)
        trace = tracing.current() if tracing.active else None
        if trace is not None and not trace.ended:
            trace.span.set_attribute("http.response.status_code", status)
            trace.finish(model, version, outcome, code, began + seconds)
        if self.access_log is not None:
            client = scope.get("client")
            self.access_log(
                "rest", f"POST {scope['path']}", model.name if model else name,
                model.version if model else version or "", outcome, seconds, size, sent,
                request_id, f"{client[0]}:{client[1]}" if client else None,
            )  # fmt: skip

    async def _inflate(self, coding: str, body: bytes | memoryview, ticket: Ticket) -> bytes:
        """The body of a request sent with ``Content-Encoding``, inflated within the body limit.

        What it inflates to is held in flight as well (``--max-inflight-bytes``), counted a slice
        at a time; past the first slice it is inflated in a worker thread.
        """
        inflater = compression.Inflater(coding, body, self.max_body_bytes)
        inflater.inflate(DECODE_ON_LOOP_BYTES)
        ticket.grow(inflater.size)
        while not inflater.done:
            made = await in_thread(self.dataplane.executor, inflater.inflate, INFLATE_SLICE_BYTES)
            ticket.grow(made)
        return inflater.result()

    async def _compress(self, reply: Reply, accept: bytes) -> Reply:
        """``reply`` compressed as the request's ``Accept-Encoding`` prefers, when worth it.

        Only successful answers of at least :data:`~omi_adapters.codecs.compression.MIN_RESPONSE_BYTES`
        are compressed. ``Inference-Header-Content-Length`` keeps counting the uncompressed JSON
        header, as Triton's server writes it and tritonclient reads it.
        """
        status, headers, chunks = reply
        length = sum(len(chunk) for chunk in chunks)
        if status != 200 or length < compression.MIN_RESPONSE_BYTES:
            return reply  # most replies of most clients, which send Accept-Encoding: not parsed
        coding = compression.response_encoding(accept)
        if coding is None:
            return reply
        if length > DECODE_ON_LOOP_BYTES:
            body = await in_thread(self.dataplane.executor, compression.compress, chunks, coding)
        else:
            body = compression.compress(chunks, coding)
        headers += [(b"content-encoding", coding.encode()), (b"vary", b"accept-encoding")]
        return status, headers, [body]

    async def read_body(
        self, receive: Receive, ticket: Ticket | None = None, *, declared: int = 0, align: int | None = None
    ) -> bytes | memoryview | None:
        """Read the request body (its size checked before reading it), ``None`` if the client went away.

        A body of unknown length (chunked) is counted against the limit and, with ``ticket``,
        against the in-flight bytes, as it arrives. A body of ``declared`` bytes that arrives in
        several parts is gathered into one buffer placed so that its byte ``align`` (where a
        binary request's tensors start) is aligned for any datatype: numpy then computes on
        those tensors where they lie, rather than on copies of them (see
        :func:`~omi_adapters.codecs.tensors.from_raw`).
        """
        limit = self.max_body_bytes
        message = await receive()
        if not message.get("more_body", False) and message["type"] == "http.request":
            body: bytes = message.get("body", b"")  # the usual request: its whole body in one message
            if len(body) > limit:
                raise _too_large(limit)
            if ticket is not None:
                ticket.grow(len(body))
            return body
        chunks: list[bytes] = []
        size = 0
        while True:
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            # Only a declared length can be gathered in place (a chunked body declares none: 0).
            if more and not chunks and align is not None and 0 <= align <= declared and 0 < declared <= limit:
                return await _read_aligned(receive, chunk, declared, align)
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                if ticket is not None:
                    ticket.grow(len(chunk))
                chunks.append(chunk)
            if not more:
                break
            message = await receive()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"request body exceeds the limit of {limit} bytes (--max-message-bytes)")


async def _read_aligned(receive: Receive, first: bytes, declared: int, align: int) -> memoryview | None:
    """The rest of a body of ``declared`` bytes whose first part is ``first``, gathered into one
    buffer where byte ``align`` of the body falls on a :data:`BODY_ALIGNMENT` boundary.

    HTTP/1.1 servers deliver exactly the ``Content-Length`` bytes (more are the next request);
    fewer means the client went away.
    """
    buffer = np.empty(declared + BODY_ALIGNMENT, np.uint8)
    start = -(buffer.__array_interface__["data"][0] + align) % BODY_ALIGNMENT
    body = memoryview(buffer)[start : start + declared]  # type: ignore[arg-type] # numpy 2 arrays are buffers
    size = 0
    chunk, more = first, True
    while True:
        if chunk:
            end = size + len(chunk)
            if end > declared:
                raise InvalidInputError(f"request body is longer than its Content-Length of {declared} bytes")
            body[size:end] = chunk
            size = end
        if not more:
            break
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk, more = message.get("body", b""), message.get("more_body", False)
    return body[:size]


async def _traced(serving: Awaitable[None], scope: Scope, action: str, version: str | None) -> None:
    """Serve a POST to ``.../{action}`` under a server span, its parent the ``traceparent`` header's trace.

    :meth:`OipApp.answered` ends the span; one still open afterwards had no answer to record.
    """
    route = "/v2/models/{model_name}" + ("" if version is None else "/versions/{model_version}") + f"/{action}"
    attributes = {"http.request.method": "POST", "http.route": route, "url.path": scope["path"]}
    trace = tracing.start("rest", f"POST {route}", tracing.http_carrier(scope["headers"]), attributes)
    try:
        await serving
    finally:
        if not trace.ended:  # the client went away before its answer
            trace.finish(None, version, "client went away", None, time.perf_counter())


async def _send(scope: Scope, send: Send, reply: Reply, *, head: bool = False) -> int:
    """Send ``reply`` to the request of ``scope``; the length of its body.

    Where the HTTP protocol offers :data:`RESPOND`, a small reply is written whole, in one call,
    instead of as two or more ASGI messages: the same bytes on the wire, for a fraction of the
    work per request.
    """
    status, headers, chunks = reply
    length = len(chunks[0]) if len(chunks) == 1 else sum(map(len, chunks))
    respond: Respond | None = (scope.get("extensions") or {}).get(RESPOND)
    if respond is not None and length <= RESPOND_BYTES:
        body = b"" if head else chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if respond(send, status, headers, body, length):
            return 0 if head else length
    headers.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if head or not chunks:
        await send({"type": "http.response.body", "body": b""})
        return 0
    # Each binary output goes out as its own chunk: large tensors are never joined or copied.
    last = len(chunks) - 1
    for i, chunk in enumerate(chunks):
        await send({"type": "http.response.body", "body": chunk, "more_body": i < last})
    return length


def build_app(dataplane: DataPlane, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, lazy: bool = False) -> OipApp:
    """The OIP REST application for a started (or lazily started) :class:`DataPlane`.

    ``lazy``: the FastAPI half (metadata, docs) is built when first needed or by
    :meth:`OipApp.prepare`, not now; inference and health are served without it.
    """
    app = OipApp(dataplane, max_body_bytes=max_body_bytes)
    if not lazy:
        app.api()
    return app
