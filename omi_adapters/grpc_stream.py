"""Triton's ``ModelStreamInfer`` (its gRPC protocol's bidirectional stream), for plain and streaming models.

Each request on the stream runs as soon as it arrives, beside the others (as Triton runs them),
and each of its responses is its own ``ModelStreamInferResponse``, carrying the request's id:
every yield of a streaming model, the one response of a plain model. Triton's reserved
parameters say where a request's responses end:

- every response carries ``triton_final_response``, true on the request's last one;
- a request with ``triton_enable_empty_final_response: true`` gets each response as soon as it
  is yielded, all marked not final, then one empty response (no outputs) marked final, which is
  what ``tritonclient``'s ``async_stream_infer(..., enable_empty_final_response=True)`` waits for.
  Without it, a response is sent once the next one (or the end) is known, so that the last can
  be marked: a token reaches the client one yield late. Ask for the empty final response to
  see each token as it is made.

A request that fails, before or during its responses, gets one ``error_message`` reply whose
``infer_response`` carries the request's id, model, version and ``triton_final_response: true``
(an async stream client tells by the id which request failed); the stream goes on with the
others. A message that is not a ``ModelInferRequest`` gets such a reply too, without an id.
Each reply is written as it is made (``context.write``), and the write waits while the client
does not read: a slow reader holds the generators at their next yield. When the client cancels
the stream, or its deadline passes, every running generator is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from omi_adapters import tracing
from omi_adapters.codecs.oip_grpc import FINAL, decode_request, parse_request, serialize_response, stream_reply
from omi_adapters.errors import ErrorCode, OmiError
from omi_adapters.grpc_oip import SERVICE_NAME
from omi_adapters.protos import open_inference_grpc_pb2 as pb

if TYPE_CHECKING:
    from omi_adapters.grpc_oip import Context, InferenceServicer

__all__ = ["EMPTY_FINAL", "FINAL", "stream_infer"]

log = logging.getLogger("omi_adapters.grpc")

#: Triton's reserved request parameter: end the request's responses with an empty final one.
EMPTY_FINAL = "triton_enable_empty_final_response"


#: The request of a message that did not parse, for its error reply and its metrics (no id, no model).
_UNPARSED = pb.ModelInferRequest()


class _Gone(Exception):
    """The call ended under a write (the client cancelled or went away): stop quietly."""


async def stream_infer(servicer: InferenceServicer, requests: AsyncIterator[bytes], context: Context) -> None:
    """Answer one ``ModelStreamInfer`` call: each request as it arrives, beside the others.

    Requests come as their bytes and are parsed here, as ``ModelInfer``'s are
    (:func:`~omi_adapters.codecs.oip_grpc.parse_request`: large raw contents stay where they
    arrived, a request's size is its message's, and a message that does not parse fails alone).

    Replies are written with ``context.write``, one at a time (a lock keeps the requests'
    writes whole); a write waits while the client does not read, and so does the generator.
    Each reply is written as its bytes (:func:`~omi_adapters.codecs.oip_grpc.stream_reply`),
    which the method's serializer passes on as they are (:func:`omi_adapters.grpc_oip.add_to_server`).
    """
    lock = asyncio.Lock()
    running: set[asyncio.Task[None]] = set()
    try:
        async for data in requests:
            task = asyncio.ensure_future(_answer(servicer, data, context, lock))
            running.add(task)
            task.add_done_callback(running.discard)
        while running:
            await asyncio.wait(set(running))
    finally:
        # The client went away, cancelled, or its deadline passed: stop every generator.
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)


async def _answer(servicer: InferenceServicer, data: bytes, context: Context, lock: asyncio.Lock) -> None:
    """Write every reply to the request serialized as ``data``; its error too."""
    dataplane = servicer.dataplane
    began = time.perf_counter()
    size = len(data)
    sent = 0
    request = _UNPARSED
    model = None
    code: ErrorCode | None = None
    held: bytes | None = None  # the last response (a ModelInferResponse), until the next shows it is not
    # Each request runs in a task of its own: its span is current there until _observe ends it.
    trace = (
        tracing.start_rpc("grpc", SERVICE_NAME, "ModelStreamInfer", context.invocation_metadata())
        if tracing.active
        else None
    )

    async def write(reply: bytes) -> None:
        try:
            async with lock:
                await context.write(reply)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - grpc's way of saying the call is over
            raise _Gone from None

    try:
        request, raw = parse_request(data)
        empty_final = _flag(request, EMPTY_FINAL)
        model = dataplane.get(request.model_name, request.model_version or None)
        with dataplane.admit(size):
            decoding = time.perf_counter()
            decoded = decode_request(request, raw)
            if trace is not None:
                trace.child("decode", decoding, time.perf_counter())
            typed = not (request.raw_input_contents if raw is None else raw) and bool(request.inputs)
            responses = dataplane.responses(model, decoded, timeout=context.time_remaining())
            async with contextlib.aclosing(responses):
                async for response in responses:
                    body = serialize_response(response, typed=typed)
                    sent += len(body)
                    if empty_final:
                        await write(stream_reply(body, final=False))
                    else:
                        if held is not None:
                            await write(stream_reply(held, final=False))
                        held = body
        if held is not None:
            await write(stream_reply(held, final=True))
        else:  # asked for, or nothing was yielded: the request still ends with a final response
            await write(_ending(request, model.name, model.version).SerializeToString())
    except (asyncio.CancelledError, _Gone):
        code = ErrorCode.UNAVAILABLE  # the call ended under it (the client went away, the server stops)
        return
    except OmiError as exc:
        code = exc.code
        with contextlib.suppress(_Gone):
            await _fail(write, held, _failure(request, model, exc.message))
    except Exception as exc:
        code = ErrorCode.INTERNAL
        log.exception("unexpected error in ModelStreamInfer")
        with contextlib.suppress(_Gone):
            await _fail(write, held, _failure(request, model, f"internal server error ({type(exc).__name__})"))
    finally:
        servicer._observe(model, code, began, size, sent, request, context, "ModelStreamInfer")


async def _fail(write: Any, held: bytes | None, failure: pb.ModelStreamInferResponse) -> None:
    """Send the response held back (not final: the error is the end), then the error."""
    if held is not None:
        await write(stream_reply(held, final=False))
    await write(failure.SerializeToString())


def _flag(request: pb.ModelInferRequest, name: str) -> bool:
    value = request.parameters.get(name)
    return value is not None and value.WhichOneof("parameter_choice") == "bool_param" and value.bool_param


def _ending(request: pb.ModelInferRequest, name: str, version: str) -> pb.ModelStreamInferResponse:
    reply = pb.ModelStreamInferResponse()
    response = reply.infer_response
    response.model_name = name
    response.model_version = version
    response.id = request.id
    response.parameters[FINAL].bool_param = True
    return reply


def _failure(request: pb.ModelInferRequest, model: Any, message: str) -> pb.ModelStreamInferResponse:
    reply = _ending(
        request, model.name if model else request.model_name, model.version if model else request.model_version
    )
    reply.error_message = message
    return reply
