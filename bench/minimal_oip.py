"""The smallest correct OIP handler: a raw ASGI callable on uvicorn (httptools, uvloop) that
serves ``POST /v2/models/adder/infer`` for a Y = X + 1 FP32 model and nothing else.

It does the work every OIP server must do and no more: parse the body with orjson (a JSON body,
or the binary tensor data extension's JSON header and raw bytes), check the one FP32 input's
shape against its data, add 1 with numpy, and answer JSON (or binary data when the request asks
for ``binary_data_output``). No routing table, no metadata, no limits, no model registry: the
floor that ``omi serve`` is compared with, next to the bare transport of ``baseline.py``.

    python bench/minimal_oip.py PORT
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
import orjson
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PATH = "/v2/models/adder/infer"
JSON = [(b"content-type", b"application/json")]


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error(text: str) -> bytes:
    return orjson.dumps({"error": text})


def infer(body: bytes, header_length: int | None) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The reply body and headers for one request; ValueError (or KeyError...) when it is bad."""
    if header_length is None:
        request = orjson.loads(body)
        raw = None
    else:
        request = orjson.loads(body[:header_length])
        raw = memoryview(body)[header_length:]
    (tensor,) = request["inputs"]
    if tensor["name"] != "X" or tensor["datatype"] != "FP32":
        raise ValueError("expected one FP32 input X")
    shape = [int(d) for d in tensor["shape"]]
    if raw is not None:
        x = np.frombuffer(raw, dtype="<f4")
    else:
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(-1)
    y = (x.reshape(shape) + 1).astype(np.float32, copy=False)
    output: dict[str, Any] = {"name": "Y", "datatype": "FP32", "shape": shape}
    if (request.get("parameters") or {}).get("binary_data_output"):
        data = y.tobytes()
        output["parameters"] = {"binary_data_size": len(data)}
        head = orjson.dumps({"model_name": "adder", "model_version": "1", "outputs": [output]})
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"inference-header-content-length", str(len(head)).encode()),
        ]
        return head + data, headers
    output["data"] = y.reshape(-1)
    return orjson.dumps(
        {"model_name": "adder", "model_version": "1", "outputs": [output]}, option=orjson.OPT_SERIALIZE_NUMPY
    ), JSON


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] != PATH or scope["method"] != "POST":
        await _answer(send, 404, _error("not found"), JSON)
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    try:
        header_length = next(
            (int(value) for key, value in scope["headers"] if key == b"inference-header-content-length"), None
        )
        reply, headers = infer(body, header_length)
    except (ValueError, KeyError, TypeError) as exc:  # orjson's errors are ValueErrors
        await _answer(send, 400, _error(str(exc)), JSON)
        return
    await _answer(send, 200, reply, headers)


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        http="httptools",
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
