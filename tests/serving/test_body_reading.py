"""Request bodies that arrive in parts, through the REST application in process: a binary
request's tensors are gathered where numpy computes on them in place (aligned), the values are
the client's whatever the parts, and a body that breaks its ``Content-Length`` is refused."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omi_adapters import Tensor, model
from omi_adapters.dataplane import DataPlane
from omi_adapters.rest import BODY_ALIGNMENT, build_app

SEEN: list[np.ndarray] = []


@model(
    name="look",
    inputs=[Tensor("X", "FP32", [-1])],
    outputs=[Tensor("Y", "FP32", [-1])],
    run_in_thread=False,
)
def look(X: np.ndarray) -> np.ndarray:
    SEEN.append(X)
    return X + 1


PLANE = DataPlane([look])
PLANE.start()
APP = build_app(PLANE, lazy=True)
PATH = "/v2/models/look/infer"


def _binary_request(x: np.ndarray, request_id: str) -> tuple[bytes, int]:
    """A binary request of ``x``; the id's length moves where the tensor starts."""
    header = orjson.dumps(
        {
            "id": request_id,
            "inputs": [
                {"name": "X", "datatype": "FP32", "shape": [len(x)], "parameters": {"binary_data_size": x.nbytes}}
            ],
            "outputs": [{"name": "Y", "parameters": {"binary_data": True}}],
        }
    )
    return header + x.astype("<f4").tobytes(), len(header)


async def _post(parts: list[bytes], headers: list[tuple[bytes, bytes]], *, then_disconnect: bool = False) -> list[Any]:
    """Post a body arriving as ``parts`` (the last one ends it, unless the client then goes away)."""
    scope = {
        "type": "http", "method": "POST", "path": PATH, "raw_path": PATH.encode(), "headers": headers,
        "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
        "server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 1), "asgi": {"version": "3.0"},
    }  # fmt: skip
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1 or then_disconnect}
        for i, p in enumerate(parts)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await APP(scope, receive, send)
    return sent


def _split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(body)) for c in cuts})
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)])]


def _headers(body: bytes, header_length: int, *, length: bool = True) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"inference-header-content-length", b"%d" % header_length),
    ]
    return headers + [(b"content-length", b"%d" % len(body))] if length else headers


@settings(max_examples=150, deadline=None)
@given(
    x=st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=300).map(lambda v: np.array(v, np.float32)),
    request_id=st.text("abc", max_size=70),
    cuts=st.lists(st.integers(0, 1300), max_size=6),
    length=st.booleans(),
)
def test_a_binary_body_in_parts_is_decoded_in_place_aligned(
    x: np.ndarray, request_id: str, cuts: list[int], length: bool
) -> None:
    body, header_length = _binary_request(x, request_id)
    parts = _split(body, cuts)
    SEEN.clear()
    sent = asyncio.run(_post(parts, _headers(body, header_length, length=length)))
    assert sent[0]["status"] == 200
    reply = b"".join(m.get("body", b"") for m in sent[1:])
    reply_header = int(dict(sent[0]["headers"])[b"inference-header-content-length"])
    assert np.array_equal(np.frombuffer(reply[reply_header:], "<f4"), x + 1)
    (seen,) = SEEN
    assert seen.flags.aligned
    if len(parts) > 1 and length:  # gathered into the body's own buffer, the tensor where it lies
        assert seen.__array_interface__["data"][0] % BODY_ALIGNMENT == 0


def test_a_body_longer_than_its_content_length_is_400() -> None:
    body, header_length = _binary_request(np.ones(8, np.float32), "x")
    headers = [*_headers(body, header_length, length=False), (b"content-length", b"%d" % (len(body) - 4))]
    sent = asyncio.run(_post([body[:10], body[10:]], headers))
    assert sent[0]["status"] == 400
    error = orjson.loads(b"".join(m.get("body", b"") for m in sent[1:]))["error"]
    assert "longer than its Content-Length" in error


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
def test_a_client_gone_while_its_body_arrives_gets_no_answer(length: bool) -> None:
    body, header_length = _binary_request(np.ones(64, np.float32), "x")
    SEEN.clear()
    sent = asyncio.run(
        _post([body[:50], body[50:100]], _headers(body, header_length, length=length), then_disconnect=True)
    )
    assert sent == [] and SEEN == []


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
def test_a_raw_binary_body_in_parts_is_served(length: bool) -> None:
    """Inference-Header-Content-Length: 0 (the body is the one input's bytes), sent in parts."""
    x = np.arange(100, dtype="<f4")
    body = x.tobytes()
    SEEN.clear()
    sent = asyncio.run(_post([body[:7], body[7:250], body[250:]], _headers(body, 0, length=length)))
    assert sent[0]["status"] == 200, b"".join(m.get("body", b"") for m in sent[1:])
    reply = b"".join(m.get("body", b"") for m in sent[1:])
    reply_header = int(dict(sent[0]["headers"])[b"inference-header-content-length"])
    assert np.array_equal(np.frombuffer(reply[reply_header:], "<f4"), x + 1)
    assert SEEN[0].flags.aligned
