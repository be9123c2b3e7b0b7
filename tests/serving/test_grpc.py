"""OIP gRPC end to end: a real ``omi serve`` driven by ``tritonclient.grpc`` (raw contents),
Triton's own generated stubs (typed contents), the standard health service and reflection.

The project's own ``inference`` protobuf module is never imported here: tritonclient registers
the same package in the default descriptor pool.
"""

from __future__ import annotations

import queue

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from omi_adapters import DATATYPES
from tests.servers import Served
from tests.serving.test_rest import SAMPLES

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def client(server: Served) -> grpcclient.InferenceServerClient:
    c = grpcclient.InferenceServerClient(server.grpc_url)
    yield c
    c.close()


@pytest.fixture(scope="module")
def stub(server: Served) -> service_pb2_grpc.GRPCInferenceServiceStub:
    with grpc.insecure_channel(server.grpc_url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def test_health_and_metadata(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert client.is_model_ready("adder", "2")
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "omi-adapters"
    model = client.get_model_metadata("iris", as_json=True)
    assert model["inputs"] == [{"name": "features", "datatype": "FP64", "shape": ["-1", "4"]}]
    assert client.get_model_metadata("adder", "1", as_json=True)["versions"] == ["1", "2"]


def test_unknown_model_is_not_found(client: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("nobody")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert "unknown model 'nobody'" in info.value.message()


@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_round_trips_raw(client: grpcclient.InferenceServerClient, datatype: str) -> None:
    sample = SAMPLES[datatype]
    tensor = grpcclient.InferInput("IN", list(sample.shape), datatype)
    tensor.set_data_from_numpy(sample)
    result = client.infer(f"echo_{datatype.lower()}", [tensor], request_id=f"id-{datatype}")
    assert result.get_response().id == f"id-{datatype}"
    out = result.as_numpy("OUT")
    if datatype == "BYTES":
        assert list(out) == list(sample)
    else:
        np.testing.assert_array_equal(out.astype(sample.dtype), sample)


@pytest.mark.parametrize("datatype", ["UINT8", "FP32", "BYTES"])
def test_large_raw_requests_round_trip(client: grpcclient.InferenceServerClient, datatype: str) -> None:
    # Past 64 KiB the servicer slices raw contents out of the wire bytes instead of parsing them.
    rng = np.random.default_rng(3)
    if datatype == "BYTES":
        sample = np.array([bytes(rng.integers(0, 256, 300, dtype=np.uint8)) for _ in range(400)], dtype=object)
    else:
        sample = rng.integers(0, 100, 200_000).astype(np.uint8 if datatype == "UINT8" else np.float32)
    tensor = grpcclient.InferInput("IN", list(sample.shape), datatype)
    tensor.set_data_from_numpy(sample)
    result = client.infer(f"echo_{datatype.lower()}", [tensor], request_id="large")
    assert result.get_response().id == "large"
    out = result.as_numpy("OUT")
    if datatype == "BYTES":
        assert list(out) == list(sample)
    else:
        np.testing.assert_array_equal(out, sample)


@pytest.mark.parametrize("size", [3, 100_000], ids=["small", "large"])
def test_a_message_that_is_no_model_infer_request_is_invalid_argument(server: Served, size: int) -> None:
    garbage = b"\x0a\xff\xff" + b"\x00" * size  # a model_name longer than the message
    with grpc.insecure_channel(server.grpc_url) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as info:
            call(garbage, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a ModelInferRequest" in info.value.details()


TYPED = {
    "BOOL": ("bool_contents", [True, False]),
    "UINT8": ("uint_contents", [0, 255]),
    "UINT32": ("uint_contents", [0, 2**32 - 1]),
    "UINT64": ("uint64_contents", [0, 2**64 - 1]),
    "INT8": ("int_contents", [-128, 127]),
    "INT16": ("int_contents", [-(2**15), 2**15 - 1]),
    "INT64": ("int64_contents", [-(2**63), 2**63 - 1]),
    "FP32": ("fp32_contents", [1.5, -2.25]),
    "FP64": ("fp64_contents", [1.5, 1e300]),
    "BYTES": ("bytes_contents", [b"a", b"\xff\x00"]),
}


@pytest.mark.parametrize("datatype", sorted(TYPED))
def test_typed_contents_round_trip(stub: service_pb2_grpc.GRPCInferenceServiceStub, datatype: str) -> None:
    field, values = TYPED[datatype]
    request = service_pb2.ModelInferRequest(model_name=f"echo_{datatype.lower()}", id="typed")
    tensor = request.inputs.add(name="IN", datatype=datatype, shape=[len(values)])
    getattr(tensor.contents, field).extend(values)
    response = stub.ModelInfer(request, timeout=30)
    assert response.id == "typed"
    assert not response.raw_output_contents  # typed in, typed out
    assert list(getattr(response.outputs[0].contents, field)) == values


def test_stream_infer(client: grpcclient.InferenceServerClient) -> None:
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for i in range(3):
            tensor = grpcclient.InferInput("X", [1, 2], "FP32")
            tensor.set_data_from_numpy(np.array([[i, i]], dtype=np.float32))
            client.async_stream_infer("adder", [tensor], model_version="1", request_id=str(i))
        bad = grpcclient.InferInput("X", [1], "INT32")
        bad.set_data_from_numpy(np.array([1], dtype=np.int32))
        client.async_stream_infer("adder", [bad], model_version="1", request_id="bad")
        received = [results.get(timeout=30) for _ in range(4)]
    finally:
        client.stop_stream()
    for i, (result, error) in enumerate(received[:3]):
        assert error is None
        assert result.get_response().id == str(i)
        np.testing.assert_array_equal(result.as_numpy("Y"), [[i + 1, i + 1]])
    result, error = received[3]
    assert result is None
    assert "expected FP32" in error.message()


def test_error_codes(client: grpcclient.InferenceServerClient) -> None:
    tensor = grpcclient.InferInput("X", [1], "INT32")
    tensor.set_data_from_numpy(np.array([1], dtype=np.int32))
    with pytest.raises(InferenceServerException) as info:
        client.infer("failing", [tensor])
    assert info.value.status() == "StatusCode.INTERNAL"
    assert "ValueError: the model cannot take negative numbers" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.infer("adder", [tensor])
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException) as info:
        client.infer("adder", [tensor], model_version="7")
    assert info.value.status() == "StatusCode.NOT_FOUND"


def test_standard_health_and_reflection(server: Served) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert "inference.GRPCInferenceService" in services
        assert "grpc.health.v1.Health" in services
