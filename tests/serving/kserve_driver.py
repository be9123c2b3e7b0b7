"""Drives a running ``omi serve`` with KServe's own SDK clients; run by the interpreter of the kserve venv.

Not a test module: ``tests/serving/test_kserve.py`` runs it as a subprocess (kserve's pins clash
with the project's environment) and checks what it prints. It reads a JSON plan on stdin::

    {"rest": "http://127.0.0.1:PORT", "grpc": "127.0.0.1:PORT",
     "cases": [{"model", "input", "output", "datatype", "shape", "data"}, ...]}

(BYTES data as hex strings) and prints one JSON object: health and metadata as each client
reports them, and for every case, transport (``rest``, ``grpc``) and form (``binary`` true or
false: the binary tensor data extension over REST, raw contents over gRPC), the output it got
(``datatype``, ``shape``, flat ``data``, BYTES as hex; over REST, the reply's
``Content-Encoding``) or the error it raised.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import grpc
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.grpc.grpc_predict_v2_pb2 import ModelMetadataRequest
from kserve.protocol.infer_type import RequestedOutput

NUMPY = {"BOOL": np.bool_, "INT64": np.int64, "FP32": np.float32, "BYTES": np.object_}


def _array(case: dict[str, Any]) -> np.ndarray:
    if case["datatype"] == "BYTES":
        values = [bytes.fromhex(v) for v in case["data"]]
        return np.array(values, dtype=np.object_).reshape(case["shape"])
    return np.array(case["data"], dtype=NUMPY[case["datatype"]]).reshape(case["shape"])


def _request(case: dict[str, Any], binary: bool) -> InferRequest:
    tensor = InferInput(case["input"], list(case["shape"]), case["datatype"])
    tensor.set_data_from_numpy(_array(case), binary_data=binary)
    # REST: binary outputs are asked for per output (the binary tensor data extension's flag).
    outputs = [RequestedOutput(case["output"], parameters={"binary_data": binary})]
    return InferRequest(model_name=case["model"], infer_inputs=[tensor], request_outputs=outputs)


def _output(response: Any, name: str) -> dict[str, Any]:
    output = next(o for o in response.outputs if o.name == name)
    array = output.as_numpy()
    flat = array.reshape(-1).tolist()
    if output.datatype == "BYTES":
        flat = [(v.encode() if isinstance(v, str) else bytes(v)).hex() for v in flat]
    return {"datatype": output.datatype, "shape": list(output.shape), "data": flat, "id": response.id}


async def _rest(plan: dict[str, Any]) -> dict[str, Any]:
    url = plan["rest"]
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    try:
        found: dict[str, Any] = {
            "live": await client.is_server_live(url),
            "ready": await client.is_server_ready(url),
            "model_ready": await client.is_model_ready(url, "adder"),
            "unknown_model_ready": await client.is_model_ready(url, "nobody"),
        }
        # InferenceRESTClient has no metadata call: the same httpx client asks the OIP endpoint.
        found["metadata"] = (await client._client.get(f"{url}/v2/models/adder")).json()
        infers = []
        for case in plan["cases"]:
            for binary in (False, True):
                result: dict[str, Any] = {"model": case["model"], "binary": binary}
                headers: dict[str, str] = {}
                try:
                    response = await client.infer(
                        url, _request(case, binary), model_name=case["model"], response_headers=headers
                    )
                    result["output"] = _output(response, case["output"])
                    # httpx asks for gzip or deflate and inflates: how the reply came.
                    result["content_encoding"] = headers.get("content-encoding")
                except Exception as exc:  # noqa: BLE001 - reported to the test, which judges it
                    result["error"] = f"{type(exc).__name__}: {exc}"
                infers.append(result)
        found["infer"] = infers
        try:
            await client.infer(url, _request(plan["cases"][0], False), model_name="nobody")
        except Exception as exc:  # noqa: BLE001
            found["unknown_model_error"] = str(exc)
        return found
    finally:
        await client.close()


async def _grpc(plan: dict[str, Any]) -> dict[str, Any]:
    client = InferenceGRPCClient(plan["grpc"], timeout=60, retries=0)
    try:
        found: dict[str, Any] = {
            "live": await client.is_server_live(),
            "ready": await client.is_server_ready(),
            "model_ready": await client.is_model_ready("adder"),
        }
        # Nor has InferenceGRPCClient: its stub (KServe's own generated code) makes the call.
        metadata = await client._client_stub.ModelMetadata(ModelMetadataRequest(name="adder"), timeout=60)
        found["metadata"] = {
            "name": metadata.name,
            "versions": list(metadata.versions),
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in metadata.inputs],
            "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in metadata.outputs],
        }
        infers = []
        for case in plan["cases"]:
            for binary in (False, True):
                result: dict[str, Any] = {"model": case["model"], "binary": binary}
                try:
                    response = await client.infer(_request(case, binary))
                    result["output"] = _output(response, case["output"])
                except Exception as exc:  # noqa: BLE001
                    result["error"] = f"{type(exc).__name__}: {exc}"
                infers.append(result)
        found["infer"] = infers
        try:
            found["unknown_model_ready"] = await client.is_model_ready("nobody")
        except grpc.RpcError as exc:
            found["unknown_model_ready"] = exc.code().name
        return found
    finally:
        await client.close()


async def main() -> None:
    plan = json.load(sys.stdin)
    found = {"rest": await _rest(plan), "grpc": await _grpc(plan)}
    json.dump(found, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
