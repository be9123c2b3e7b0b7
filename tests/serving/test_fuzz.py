"""Generated request bodies against the REST application, in process: whatever arrives, the
answer is a success or a 4xx with ``{"error": ...}`` naming the problem, never a 500
(the OIP's error response). The bodies follow the shape of an OIP request closely enough to reach the
codecs and the contract, with any field of any JSON type."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from omi_adapters.rest import build_app
from omi_adapters.types import DATATYPES
from tests.serving.fuzz_models import PLANE, TARGETS

APP = build_app(PLANE, max_body_bytes=1 << 20)

anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
numbers = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.booleans(), st.text(max_size=3))
shapes = st.lists(st.integers(-2, 5), max_size=4) | anything
data = st.recursive(st.lists(numbers, max_size=6), lambda inner: st.lists(inner, max_size=3), max_leaves=8) | anything
parameters = st.none() | st.dictionaries(
    st.sampled_from(["binary_data_size", "content_type", "binary_data", "binary_data_output", "x"]),
    st.one_of(st.integers(-2, 64), st.booleans(), st.sampled_from(["base64", "str"]), anything),
    max_size=2,
)


ELEMENTS = {
    "BOOL": st.booleans(),
    "BYTES": st.text(max_size=4),
    "FP16": st.floats(-7e4, 7e4),
    "FP32": st.floats(-1e39, 1e39),
    "BF16": st.floats(-1e39, 1e39),
    "FP64": st.floats(allow_nan=False),
}


@st.composite
def near_valid(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A path and a well-formed request for its model, sometimes with one field replaced."""
    model, name, datatype, rank = draw(st.sampled_from(TARGETS))
    if draw(st.booleans()):
        datatype = draw(st.sampled_from(DATATYPES))
    shape = draw(st.lists(st.integers(0, 3), min_size=rank, max_size=rank))
    count = math.prod(shape)
    elements = ELEMENTS.get(datatype, st.integers(-(2**64), 2**64))
    tensor: dict[str, Any] = {
        "name": name,
        "datatype": datatype,
        "shape": shape,
        "data": draw(st.lists(elements, min_size=count, max_size=count)),
    }
    if draw(st.booleans()):
        tensor[draw(st.sampled_from(["name", "datatype", "shape", "data", "parameters"]))] = draw(anything)
    body: dict[str, Any] = {"inputs": [tensor]}
    if draw(st.booleans()):
        body["parameters"] = draw(parameters)
    return f"/v2/models/{model}/infer", body


tensor = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["X", "IN", "Y", ""]) | anything,
        "datatype": st.sampled_from(DATATYPES) | anything,
        "shape": shapes,
        "data": data,
        "parameters": parameters,
    },
)
request = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=4) | anything,
        "inputs": st.lists(tensor, max_size=3) | anything,
        "outputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["Y", "OUT", "Z"]) | anything}), max_size=2)
        | anything,
        "parameters": parameters,
    },
)
paths = st.sampled_from(
    [f"/v2/models/{model}/infer" for model, *_ in TARGETS]
    + ["/v2/models/adder/versions/1/infer", "/v2/models/nope/infer"]
)


async def _call(
    method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b""
) -> tuple[int, bytes]:
    """One request through the ASGI app: the status and the body it answered."""
    scope = {
        "type": "http", "method": method, "path": path, "raw_path": path.encode("utf-8", "surrogatepass"),
        "headers": headers or [], "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
        "server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 1), "asgi": {"version": "3.0"},
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await APP(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def _check(status: int, body: bytes) -> None:
    event(f"HTTP {status}")  # --hypothesis-show-statistics: how many requests got how far
    assert status == 200 or 400 <= status < 500, (status, body)
    if status != 200:
        error = orjson.loads(body)["error"]
        assert isinstance(error, str) and error


@pytest.mark.timeout(300)
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.tuples(paths, request) | near_valid())
def test_generated_json_requests_never_get_a_500(case: tuple[str, dict[str, Any]]) -> None:
    path, body = case
    _check(*asyncio.run(_call("POST", path, [(b"content-type", b"application/json")], json.dumps(body).encode())))


@pytest.mark.timeout(300)
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=paths, header=request, payload=st.binary(max_size=40), length=st.integers(-1, 200) | st.just(None))
def test_generated_binary_requests_never_get_a_500(
    path: str, header: dict[str, Any], payload: bytes, length: int | None
) -> None:
    head = json.dumps(header).encode()
    declared = str(len(head) if length is None else length).encode()
    headers = [(b"content-type", b"application/octet-stream"), (b"inference-header-content-length", declared)]
    _check(*asyncio.run(_call("POST", path, headers, head + payload)))


segments = st.sampled_from(["v2", "models", "adder", "echo_bytes", "versions", "1", "2", "infer", "ready", "health"])
segments |= st.sampled_from(["live", "", ".", "..", "docs", "openapi.json"]) | st.text(max_size=5)


@pytest.mark.timeout(300)
@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]),
    parts=st.lists(segments, max_size=6)
    | st.tuples(
        st.just("v2/models"),
        segments,
        st.sampled_from(["", "/versions/1", "/versions/9"]) | segments.map(lambda v: f"/versions/{v}"),
        st.sampled_from(["", "/ready", "/infer"]) | segments.map(lambda a: f"/{a}"),
    ).map(lambda t: ["".join(t[:1]) + "/" + t[1] + t[2] + t[3]]),
)
def test_generated_paths_and_methods_never_get_a_500(method: str, parts: list[str]) -> None:
    status, body = asyncio.run(_call(method, "/" + "/".join(parts)))
    event(f"HTTP {status}")
    assert status < 500, (status, body)
    if status >= 400 and method != "HEAD":
        assert orjson.loads(body)["error"]
