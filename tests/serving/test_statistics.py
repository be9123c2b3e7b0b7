"""Triton's statistics extension: ``tritonclient``'s ``get_inference_statistics`` over HTTP and gRPC
against a real ``omi serve``, with counts that match the traffic sent; and the statistics messages
of ``protos/`` are Triton's own (compared with tritonclient's descriptors, in separate processes,
since both register the ``inference`` package).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.conftest import EXAMPLES, ROOT
from tests.servers import Served, serve

pytestmark = pytest.mark.timeout(120)

MESSAGES = (
    "ModelStatisticsRequest", "StatisticDuration", "InferStatistics", "InferResponseStatistics",
    "InferBatchStatistics", "MemoryUsage", "ModelStatistics", "ModelStatisticsResponse",
)  # fmt: skip


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with serve(EXAMPLES / "adder.py", "tests/serving/models.py:failing", protocols=("rest", "grpc")) as srv:
        srv.wait_ready()
        yield srv


def _adder_http(values: list[float]) -> list[httpclient.InferInput]:
    tensor = httpclient.InferInput("X", [1, len(values)], "FP32")
    tensor.set_data_from_numpy(np.array([values], dtype=np.float32))
    return [tensor]


def _adder_grpc(values: list[float]) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("X", [1, len(values)], "FP32")
    tensor.set_data_from_numpy(np.array([values], dtype=np.float32))
    return [tensor]


def test_get_inference_statistics_over_http_and_grpc_counts_the_traffic(served: Served) -> None:
    http = httpclient.InferenceServerClient(served.http_url)
    rpc = grpcclient.InferenceServerClient(served.grpc_url)
    try:
        for values in ([1.0], [1.0, 2.0], [3.0]):
            http.infer("adder", _adder_http(values))
        for values in ([1.0], [2.0]):
            rpc.infer("adder", _adder_grpc(values))
        failing = httpclient.InferInput("X", [1], "INT32")
        failing.set_data_from_numpy(np.array([1], dtype=np.int32))
        with pytest.raises(InferenceServerException):
            http.infer("failing", [failing])

        by_http = http.get_inference_statistics("adder")["model_stats"]
        by_grpc = rpc.get_inference_statistics("adder", "1", as_json=True)["model_stats"]
        every = {s["name"] for s in http.get_inference_statistics()["model_stats"]}
        failed = rpc.get_inference_statistics("failing", as_json=True)["model_stats"][0]
    finally:
        http.close()
        rpc.close()

    assert every == {"adder", "failing"}
    assert len(by_http) == len(by_grpc) == 1
    stats = by_http[0]
    assert (stats["name"], stats["version"]) == ("adder", "1")
    assert stats["inference_count"] == stats["execution_count"] == 5
    inference = stats["inference_stats"]
    assert inference["success"]["count"] == 5 and inference["success"]["ns"] > 0
    assert inference["fail"] == {"count": 0, "ns": 0}
    assert inference["queue"]["count"] == 5
    assert inference["compute_infer"]["count"] == 5 and 0 < inference["compute_infer"]["ns"]
    assert inference["compute_infer"]["ns"] <= inference["success"]["ns"]
    assert stats["last_inference"] > 1.7e12  # milliseconds since the epoch
    # gRPC: the same figures (JSON of protobuf: uint64 as strings, zero fields left out).
    grpc_stats = by_grpc[0]
    assert int(grpc_stats["inference_count"]) == int(grpc_stats["execution_count"]) == 5
    assert int(grpc_stats["inference_stats"]["success"]["count"]) == 5
    assert int(grpc_stats["inference_stats"]["success"]["ns"]) == inference["success"]["ns"]
    assert "count" not in grpc_stats["inference_stats"]["fail"]
    assert int(failed["inference_stats"]["fail"]["count"]) == 1
    assert int(failed["execution_count"]) == 1  # its predict ran, and raised


def test_statistics_of_an_unknown_model_or_version_are_not_found(served: Served) -> None:
    http = httpclient.InferenceServerClient(served.http_url)
    rpc = grpcclient.InferenceServerClient(served.grpc_url)
    try:
        with pytest.raises(InferenceServerException, match="unknown model 'nobody'"):
            http.get_inference_statistics("nobody")
        with pytest.raises(InferenceServerException) as info:
            rpc.get_inference_statistics("adder", "7")
        assert info.value.status() == "StatusCode.NOT_FOUND"
    finally:
        http.close()
        rpc.close()


_DUMP = """
import json, sys
from google.protobuf import descriptor_pb2, json_format
if sys.argv[1] == "ours":
    from omi_adapters.protos import open_inference_grpc_pb2 as module
else:
    from tritonclient.grpc import service_pb2 as module
names = json.loads(sys.argv[2])
file = descriptor_pb2.FileDescriptorProto()
module.DESCRIPTOR.CopyToProto(file)
messages = {m.name: json_format.MessageToDict(m) for m in file.message_type if m.name in names}
methods = [json_format.MessageToDict(m) for s in file.service for m in s.method if m.name == "ModelStatistics"]
print(json.dumps({"package": file.package, "messages": messages, "methods": methods}, sort_keys=True))
"""


def test_the_statistics_messages_and_rpc_are_tritons() -> None:
    def dump(which: str) -> dict[str, object]:
        out = subprocess.run(
            [sys.executable, "-c", _DUMP, which, json.dumps(MESSAGES)],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    ours, tritons = dump("ours"), dump("triton")
    assert ours["package"] == tritons["package"] == "inference"
    assert set(ours["messages"]) == set(MESSAGES)  # type: ignore[arg-type]
    assert ours == tritons
