"""Malformed requests over REST and gRPC: each gets a 4xx / non-OK status naming the problem,
and the server keeps serving good requests afterwards (the OIP's error response)."""

from __future__ import annotations

import json
import struct

import grpc
import httpx
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.servers import Served

pytestmark = pytest.mark.timeout(120)

HEADER = "Inference-Header-Content-Length"


def _x(shape: list, data: list | None = None, datatype: str = "FP32", **extra: object) -> dict:
    tensor = {"name": "X", "datatype": datatype, "shape": shape, **extra}
    if data is not None:
        tensor["data"] = data
    return tensor


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _binary(header: dict, payload: bytes, declared: int | None = None) -> tuple[dict, bytes]:
    head = _json(header)
    length = len(head) if declared is None else declared
    return {HEADER: str(length)}, head + payload


GOOD = _json({"inputs": [_x([1, 2], [1, 2])]})

# (id, model path, headers, body, status, words the message must contain)
REST_CASES = [
    ("broken-json", "adder", {}, b'{"inputs": [', 400, "not valid JSON"),
    ("empty-body", "adder", {}, b"", 400, "JSON"),
    ("array-body", "adder", {}, b"[1, 2, 3]", 400, "must be a JSON object"),
    ("inputs-not-list", "adder", {}, _json({"inputs": {"X": 1}}), 400, "inputs"),
    ("input-not-object", "adder", {}, _json({"inputs": [1]}), 400, "inputs[0]"),
    ("datatype-unknown", "adder", {}, _json({"inputs": [_x([1], [1], "FLOAT")]}), 400, "unknown datatype 'FLOAT'"),
    ("datatype-wrong", "adder", {}, _json({"inputs": [_x([1, 1], [1], "INT64")]}), 400, "expected FP32"),
    ("shape-not-list", "adder", {}, _json({"inputs": [_x("2", [1, 2])]}), 400, "shape"),
    ("shape-float", "adder", {}, _json({"inputs": [_x([1.5, 2], [1, 2])]}), 400, "shape"),
    ("data-wrong-type", "adder", {}, _json({"inputs": [_x([1, 2], ["a", "b"])]}), 400, "input 'X'"),
    ("data-bool-in-float", "echo_int8", {}, _json({"inputs": [{"name": "IN", "datatype": "INT8", "shape": [1], "data": [300]}]}), 400, "out of range"),
    ("count-mismatch", "adder", {}, _json({"inputs": [_x([2, 2], [1, 2, 3])]}), 400, "input 'X'"),
    ("negative-dim", "adder", {}, _json({"inputs": [_x([-1, 2], [1, 2])]}), 400, "negative dimension"),
    ("huge-dims", "adder", {}, _json({"inputs": [_x([10**8, 10**8], [1])]}), 400, "input 'X'"),
    ("overflowing-dims", "adder", {}, _json({"inputs": [_x([2**62, 2**62], [1])]}), 400, "input 'X'"),
    ("missing-input", "adder", {}, _json({"inputs": []}), 400, "missing input 'X'"),
    ("unknown-input", "adder", {}, _json({"inputs": [_x([1, 1], [1]), {"name": "Q", "datatype": "FP32", "shape": [1], "data": [1]}]}), 400, "unknown input 'Q'"),
    ("unknown-output", "adder", {}, _json({"inputs": [_x([1, 1], [1])], "outputs": [{"name": "Z"}]}), 400, "unknown output 'Z'"),
    ("bad-utf8", "echo_bytes", {"content-type": "application/json"}, b'{"inputs": [{"name": "IN", "datatype": "BYTES", "shape": [1], "data": ["\xff"]}]}', 400, "UTF-8"),
    ("header-not-number", "adder", {HEADER: "ten"}, GOOD, 400, HEADER),
    ("header-negative", "adder", {HEADER: "-5"}, GOOD, 400, HEADER),
    ("header-too-long", "adder", {HEADER: str(len(GOOD) + 10)}, GOOD, 400, "exceeds"),
    ("truncated-binary", "adder", *_binary({"inputs": [_x([1, 4], parameters={"binary_data_size": 16})]}, b"\0" * 8), 400, "input 'X'"),
    ("binary-size-vs-shape", "adder", *_binary({"inputs": [_x([1, 4], parameters={"binary_data_size": 8})]}, b"\0" * 8), 400, "input 'X'"),
    ("binary-trailing-bytes", "adder", *_binary({"inputs": [_x([1, 1], parameters={"binary_data_size": 4})]}, b"\0" * 12), 400, "bytes"),
    ("binary-huge-size", "adder", *_binary({"inputs": [_x([1, 1], parameters={"binary_data_size": 2**60})]}, b"\0" * 4), 400, "input 'X'"),
    ("binary-bytes-length-lies", "echo_bytes", *_binary({"inputs": [{"name": "IN", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 8}}]}, struct.pack("<I", 10**9) + b"abcd"), 400, "input 'IN'"),
    ("unknown-model", "nobody", {}, GOOD, 404, "unknown model 'nobody'"),
    ("unknown-version", "adder/versions/42", {}, GOOD, 404, "no version '42'"),
]  # fmt: skip


@pytest.fixture(scope="module")
def http(server: Served) -> httpx.Client:
    with httpx.Client(base_url=f"http://{server.http_url}", timeout=60) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "words"), [c[1:] for c in REST_CASES], ids=[c[0] for c in REST_CASES]
)
def test_rest_rejects(http: httpx.Client, path: str, headers: dict, body: bytes, status: int, words: str) -> None:
    response = http.post(f"/v2/models/{path}/infer", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert words.lower() in error.lower(), error
    # ...and the next good request is served.
    good = http.post("/v2/models/adder/versions/1/infer", content=GOOD)
    assert good.status_code == 200
    assert good.json()["outputs"][0]["data"] == [2.0, 3.0]


def test_rest_unknown_paths_and_methods_use_the_error_shape(http: httpx.Client) -> None:
    assert http.get("/v2/models/adder/infer").status_code == 405
    assert "error" in http.get("/v2/models/adder/infer").json()
    response = http.get("/v3/anything")
    assert response.status_code == 404
    assert "no such endpoint" in response.json()["error"]


def _request(model: str = "adder", version: str = "1", **tensor: object) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    if tensor:
        request.inputs.add(**tensor)
    return request


def _with_raw(request: service_pb2.ModelInferRequest, *raw: bytes) -> service_pb2.ModelInferRequest:
    request.raw_input_contents.extend(raw)
    return request


def _typed_and_raw() -> service_pb2.ModelInferRequest:
    request = _request(name="X", datatype="FP32", shape=[1, 1])
    request.inputs[0].contents.fp32_contents.append(1.0)
    return _with_raw(request, b"\0" * 4)


OK, INVALID, NOT_FOUND = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND

GRPC_CASES = [
    ("missing-input", _request(), INVALID, "missing input 'X'"),
    ("datatype-unknown", _with_raw(_request(name="X", datatype="F32", shape=[1, 1]), b"\0" * 4), INVALID, "unknown datatype"),
    ("datatype-wrong", _with_raw(_request(name="X", datatype="INT32", shape=[1, 1]), b"\0" * 4), INVALID, "expected FP32"),
    ("negative-dim", _with_raw(_request(name="X", datatype="FP32", shape=[-1, 1]), b"\0" * 4), INVALID, "negative dimension"),
    ("huge-dims", _with_raw(_request(name="X", datatype="FP32", shape=[10**8, 10**8]), b"\0" * 4), INVALID, "input 'X'"),
    ("overflowing-dims", _with_raw(_request(name="X", datatype="FP32", shape=[2**62, 2**62]), b"\0" * 4), INVALID, "input 'X'"),
    ("raw-too-short", _with_raw(_request(name="X", datatype="FP32", shape=[2, 2]), b"\0" * 4), INVALID, "input 'X'"),
    ("raw-count", _with_raw(_request(name="X", datatype="FP32", shape=[1, 1]), b"\0" * 4, b"\0" * 4), INVALID, "raw_input_contents"),
    ("typed-count", _request(name="X", datatype="FP32", shape=[1, 2]), INVALID, "fp32_contents"),
    ("typed-and-raw", _typed_and_raw(), INVALID, "both"),
    ("unknown-input", _with_raw(_request(name="Q", datatype="FP32", shape=[1, 1]), b"\0" * 4), INVALID, "unknown input 'Q'"),
    ("bytes-length-lies", _with_raw(_request("echo_bytes", "", name="IN", datatype="BYTES", shape=[1]), struct.pack("<I", 10**9) + b"ab"), INVALID, "input 'IN'"),
    ("unknown-model", _request("nobody", ""), NOT_FOUND, "unknown model 'nobody'"),
    ("unknown-version", _request("adder", "42"), NOT_FOUND, "no version '42'"),
]  # fmt: skip


@pytest.fixture(scope="module")
def stub(server: Served) -> service_pb2_grpc.GRPCInferenceServiceStub:
    with grpc.insecure_channel(server.grpc_url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.mark.parametrize(("request_", "code", "words"), [c[1:] for c in GRPC_CASES], ids=[c[0] for c in GRPC_CASES])
def test_grpc_rejects(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    request_: service_pb2.ModelInferRequest,
    code: grpc.StatusCode,
    words: str,
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request_, timeout=30)
    assert info.value.code() == code
    assert words.lower() in info.value.details().lower(), info.value.details()
    good = _with_raw(_request(name="X", datatype="FP32", shape=[1, 2]), struct.pack("<2f", 1, 2))
    reply = stub.ModelInfer(good, timeout=30)
    assert struct.unpack("<2f", reply.raw_output_contents[0]) == (2.0, 3.0)
