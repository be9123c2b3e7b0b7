"""Logs of a real ``omi serve``: ``--log-format json`` makes every line of omi, uvicorn and grpc one
JSON object; with ``--access-log`` each inference request on REST, gRPC and OMI has its access
line, with the OIP request id when the client sent one; ``--no-access-log`` writes none; a
failed load is logged once, with its traceback.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from omi_adapters.protos import modzy_model_pb2 as omi_pb
from omi_adapters.protos import modzy_model_pb2_grpc as omi_grpc
from tests.conftest import EXAMPLES
from tests.servers import Served, serve

pytestmark = pytest.mark.timeout(120)

BODY = {"id": "rest-42", "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}


def _lines(srv: Served) -> list[dict[str, Any]]:
    lines = [line for line in srv.output().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object


def test_json_logs_have_an_access_line_per_request_on_every_protocol() -> None:
    with serve(
        EXAMPLES / "adder.py", protocols=("rest", "grpc", "omi"), args=("--log-format", "json", "--access-log")
    ) as srv:
        srv.wait_ready()
        for model, status in (("adder", 200), ("nobody", 404)):
            url = f"http://{srv.http_url}/v2/models/{model}/infer"
            assert httpx.post(url, content=json.dumps(BODY).encode(), timeout=10).status_code == status
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        tensor = grpcclient.InferInput("X", [1, 1], "FP32")
        tensor.set_data_from_numpy(np.array([[1.0]], dtype=np.float32))
        client.infer("adder", [tensor], request_id="grpc-7")
        client.close()
        with grpc.insecure_channel(srv.omi_url) as channel:
            reply = omi_grpc.ModzyModelStub(channel).Run(
                omi_pb.RunRequest(inputs=[omi_pb.InputItem(input={"X": b"[[1.0]]"})]), timeout=30
            )
        assert reply.outputs[0].success
        srv.terminate()
        entries = _lines(srv)

    assert {e["logger"] for e in entries} >= {"omi_adapters", "omi_adapters.access", "uvicorn.error"}
    access = [e for e in entries if e["logger"] == "omi_adapters.access"]
    by_id = {e["request_id"]: e for e in access}
    rest = by_id["rest-42"]
    assert (rest["protocol"], rest["endpoint"], rest["model"], rest["version"], rest["status"]) == (
        "rest", "POST /v2/models/adder/infer", "adder", "1", "200",
    )  # fmt: skip
    assert rest["bytes_in"] == len(json.dumps(BODY).encode())
    assert rest["bytes_out"] > 0 and rest["duration_ms"] > 0 and rest["peer"].startswith("127.0.0.1:")
    grpc_line = by_id["grpc-7"]
    assert (grpc_line["protocol"], grpc_line["endpoint"], grpc_line["model"], grpc_line["status"]) == (
        "grpc", "ModelInfer", "adder", "OK",
    )  # fmt: skip
    assert "127.0.0.1" in grpc_line["peer"]
    missing = [e for e in access if e["model"] == "nobody"]
    assert len(missing) == 1 and missing[0]["status"] == "404" and missing[0]["request_id"]  # a generated id
    omi = [e for e in access if e["protocol"] == "omi"]
    assert len(omi) == 1 and omi[0]["endpoint"] == "Run" and omi[0]["status"] == "200"
    assert len(access) == 4


def test_no_access_log_and_a_failed_load_logged_once_with_its_traceback() -> None:
    targets = (EXAMPLES / "adder.py", "tests/serving/models.py:Broken")
    args = ("--log-format", "json", "--no-access-log")
    with serve(*targets, protocols=("rest",), args=args) as srv:
        body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 1], "data": [1]}]}
        assert httpx.post(f"http://{srv.http_url}/v2/models/adder/infer", json=body, timeout=10).status_code == 200
        srv.terminate()
        entries = _lines(srv)
    assert not [e for e in entries if e["logger"] == "omi_adapters.access"]
    failures = [e for e in entries if "weights.bin is missing" in json.dumps(e)]
    assert len(failures) == 1, failures
    assert "Traceback" in failures[0]["exception"] and "FileNotFoundError" in failures[0]["exception"]


def test_an_output_that_breaks_the_contract_is_logged_with_the_model_and_what_predict_returned() -> None:
    with serve("tests/serving/fault_models.py:misshapen", protocols=("rest",), args=("--log-format", "json")) as srv:
        body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1], "data": [1]}]}
        reply = httpx.post(f"http://{srv.http_url}/v2/models/misshapen/infer", json=body, timeout=10)
        srv.terminate()
        entries = _lines(srv)
    assert reply.status_code == 500 and "output 'Y'" in reply.json()["error"]
    (logged,) = [e for e in entries if "broke its output contract" in e["message"]]
    assert logged["level"] == "ERROR"
    assert "model 'misshapen' version 1" in logged["message"] and "output 'Y'" in logged["message"]
    assert "predict returned float64 [2, 3, 4]" in logged["message"]
