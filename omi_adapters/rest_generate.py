"""Triton's generate extension over REST: ``/generate`` (one JSON reply) and ``/generate_stream`` (server-sent events).

``POST /v2/models/{name}[/versions/{version}]/generate`` answers one ``$generate_response``
object (:mod:`omi_adapters.codecs.generate_json`); for a streaming model it is the stream's
yields joined into one response (:func:`omi_adapters.streaming.collect`).

``.../generate_stream`` answers ``text/event-stream``: one ``data: {json}`` event per response,
each yield of a streaming model (a plain model's one response is its one event). An error
before the first event is a plain JSON error with its status, as ``infer`` answers it; an error
later (predict raising mid-stream, the deadline passing) is one last ``data: {"error": ...}``
event, since the status has been sent. A client that goes away stops the generator
(:meth:`DataPlane.responses`); a client that reads slowly holds the generator at its next yield
(the ASGI ``send`` waits for the socket), so the server buffers only a few events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from omi_adapters.codecs import generate_json, sse
from omi_adapters.contract import Model
from omi_adapters.errors import ErrorCode, OmiError, PayloadTooLargeError, ServerStoppingError
from omi_adapters.limits import Ticket
from omi_adapters.types import InferenceResponse

if TYPE_CHECKING:
    from omi_adapters.rest import OipApp, Receive, Reply, Scope, Send

__all__ = ["serve_generate"]

log = logging.getLogger("omi_adapters.rest")

_JSON = [(b"content-type", b"application/json")]
_STREAM_HEADERS = [(b"content-type", sse.CONTENT_TYPE), (b"cache-control", b"no-cache")]


async def serve_generate(
    app: OipApp, scope: Scope, receive: Receive, send: Send, name: str, version: str | None, stream: bool
) -> None:
    """Answer one generate (``stream=False``) or generate_stream request."""
    from omi_adapters.rest import ON_DISCONNECT, TIMEOUT, _error, _internal, _send

    began = time.perf_counter()
    dataplane = app.dataplane
    model: Model | None = None
    code: ErrorCode | None = None
    size = 0
    status = 200
    request_id: str | None = None
    extensions = scope.get("extensions") or {}
    task = asyncio.current_task()
    disconnected = False
    hooks = extensions.get(ON_DISCONNECT)
    if hooks is not None:

        def gone() -> None:
            # The client went away, before or during the stream: stop its generator now.
            nonlocal disconnected
            disconnected = True
            if task is not None:
                task.cancel()

        hooks.append(gone)
    declared = next((value for key, value in scope["headers"] if key == b"content-length"), None)
    ticket: Ticket | None = None
    progress = _Progress()
    reply: Reply | None = None
    with contextlib.suppress(OmiError):
        model = dataplane.get(name, version)
    try:
        try:
            size = int(declared) if declared is not None and declared.isdigit() else 0
            if size > app.max_body_bytes:
                raise PayloadTooLargeError(
                    f"request body of {size} bytes exceeds the limit of {app.max_body_bytes} bytes (--max-message-bytes)"
                )
            ticket = dataplane.admit(size)
            body = await app.read_body(receive, None if size else ticket)
            if body is None:
                return  # the client went away
            size = len(body)
            if model is None:
                model = dataplane.get(name, version)  # raises: no such model
            request = generate_json.decode_request(body, model.inputs)
            request_id = request.id
            timeout = extensions.get(TIMEOUT)
            if stream:
                code = await _stream(send, dataplane.responses(model, request, timeout=timeout), progress)
            else:
                response = await dataplane.run(model, request, timeout=timeout)
                reply = 200, list(_JSON), [generate_json.encode_response(response)]
        except OmiError as exc:  # before the stream began: a plain JSON error
            code = exc.code
            reply = _error(exc)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback on the wire
            code = ErrorCode.INTERNAL
            reply = _internal(exc)
        finally:
            if ticket is not None:
                ticket.close()
    except asyncio.CancelledError:
        if disconnected:
            app.answered(
                scope, model, name, version, 499, ErrorCode.UNAVAILABLE, began, size, progress.sent, request_id
            )
            return  # nobody is left to answer
        # The server stopped (uvicorn's grace period ended): say so, in the stream if it began.
        stopping = ServerStoppingError("the server stopped before this request finished")
        code = stopping.code
        if progress.started:
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": sse.error_event(stopping.message)})
        else:
            reply = _error(stopping)
    if reply is not None:
        status = reply[0]
        progress.sent = await _send(scope, send, reply)
    app.answered(scope, model, name, version, status, code, began, size, progress.sent, request_id)


class _Progress:
    """How far a stream got: whether its status was sent, and its bytes."""

    __slots__ = ("sent", "started")

    def __init__(self) -> None:
        self.started = False
        self.sent = 0


async def _stream(
    send: Send, responses: AsyncGenerator[InferenceResponse, None], progress: _Progress
) -> ErrorCode | None:
    """Send ``responses`` as events; the code of an error that ended it after it began.

    An error before the first response is raised as is (a plain JSON error then).
    """
    async with contextlib.aclosing(responses):
        first: InferenceResponse | None = None
        with contextlib.suppress(StopAsyncIteration):
            first = await anext(responses)
        await send({"type": "http.response.start", "status": 200, "headers": list(_STREAM_HEADERS)})
        progress.started = True
        try:
            if first is not None:
                chunk = sse.event(generate_json.encode_response(first))
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                progress.sent += len(chunk)
                async for response in responses:
                    chunk = sse.event(generate_json.encode_response(response))
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    progress.sent += len(chunk)
        except OmiError as exc:
            code: ErrorCode | None = exc.code
            chunk = sse.error_event(exc.message)
        except Exception as exc:
            log.exception("unexpected error while streaming a generate response")
            code = ErrorCode.INTERNAL
            chunk = sse.error_event(f"internal server error ({type(exc).__name__})")
        else:
            code, chunk = None, b""
        await send({"type": "http.response.body", "body": chunk})
        progress.sent += len(chunk)
        return code
