"""Dynamic batching over real front ends: concurrent REST, gRPC and OMI requests of one batching
model merge into shared predict calls, and each caller gets exactly its own rows and outputs."""

from __future__ import annotations

import concurrent.futures
import json
import time

import grpc
import httpx
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from omi_adapters.protos import modzy_model_pb2, modzy_model_pb2_grpc
from tests.servers import serve

pytestmark = pytest.mark.timeout(120)

MODEL = "tests/serving/batch_models.py:doubler"


def _rest(url: str, x: np.ndarray, outputs: list[str] | None = None) -> httpx.Response:
    body: dict = {"inputs": [{"name": "X", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1).tolist()}]}
    if outputs:
        body["outputs"] = [{"name": n} for n in outputs]
    return httpx.post(f"http://{url}/v2/models/doubler/infer", json=body, timeout=30)


def _grpc(url: str, x: np.ndarray, timeout: float = 30) -> service_pb2.ModelInferResponse:
    with grpc.insecure_channel(url) as channel:
        request = service_pb2.ModelInferRequest(model_name="doubler")
        request.inputs.add(name="X", datatype="FP32", shape=list(x.shape))
        request.raw_input_contents.append(x.astype("<f4").tobytes())
        return service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=timeout)


def _grpc_outputs(reply: service_pb2.ModelInferResponse) -> dict[str, np.ndarray]:
    dtypes = {"FP32": "<f4", "INT32": "<i4"}
    return {
        o.name: np.frombuffer(raw, dtype=dtypes[o.datatype]).reshape(o.shape)
        for o, raw in zip(reply.outputs, reply.raw_output_contents)
    }


def test_rest_and_grpc_requests_merge_and_each_gets_its_own_rows() -> None:
    with serve(MODEL, protocols=("rest", "grpc")) as srv:
        xs = [np.full((1 + i % 3, 2), i, dtype=np.float32) for i in range(12)]
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            futures = []
            for i, x in enumerate(xs):
                if i % 2:
                    futures.append(pool.submit(_grpc, srv.grpc_url, x))
                else:
                    futures.append(pool.submit(_rest, srv.http_url, x, ["Y"] if i % 4 == 0 else None))
                time.sleep(0.005)
            answers = [f.result() for f in futures]
        shared = []
        for i, (x, answer) in enumerate(zip(xs, answers)):
            if i % 2:
                outputs = _grpc_outputs(answer)
            else:
                assert answer.status_code == 200, answer.text
                outputs = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in answer.json()["outputs"]}
                # Only the outputs it asked for.
                assert set(outputs) == ({"Y"} if i % 4 == 0 else {"Y", "ROWS"})
            assert outputs["Y"].tolist() == (x * 2).tolist()
            if "ROWS" in outputs:
                shared.append(int(outputs["ROWS"][0]))
        assert max(shared) > 3  # requests of both protocols shared predict calls


def test_unmergeable_shapes_a_failing_request_and_a_deadline_in_the_queue() -> None:
    with serve(MODEL, protocols=("rest", "grpc")) as srv, concurrent.futures.ThreadPoolExecutor(8) as pool:
        busy = pool.submit(_rest, srv.http_url, np.full((1, 2), 99, dtype=np.float32))  # a 0.5 s call
        time.sleep(0.1)
        wide = pool.submit(_rest, srv.http_url, np.ones((2, 5), dtype=np.float32))
        narrow = [pool.submit(_rest, srv.http_url, np.full((1, 2), i, dtype=np.float32)) for i in range(3)]
        bad = pool.submit(_rest, srv.http_url, np.full((1, 2), -1, dtype=np.float32))
        late = pool.submit(_grpc, srv.grpc_url, np.ones((1, 2), dtype=np.float32), 0.2)
        assert busy.result().status_code == 200
        response = wide.result()
        assert response.status_code == 200
        assert {o["name"]: o["data"] for o in response.json()["outputs"]}["ROWS"] == [2, 2]  # alone
        for i, future in enumerate(narrow):
            outputs = {o["name"]: o["data"] for o in future.result().json()["outputs"]}
            assert outputs["Y"] == [2.0 * i, 2.0 * i]
        failed = bad.result()
        assert failed.status_code == 500 and "a row is negative" in failed.json()["error"]
        with pytest.raises(grpc.RpcError) as expired:
            late.result()
        assert expired.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_omi_items_merge_into_batches() -> None:
    # With max_batch_size an OMI item is one sample: ten items make a call of 8 and one of 2.
    with serve(MODEL, protocols=("omi",)) as srv, grpc.insecure_channel(srv.omi_url) as channel:
        items = [modzy_model_pb2.InputItem(input={"X": json.dumps([i, i]).encode()}) for i in range(10)]
        reply = modzy_model_pb2_grpc.ModzyModelStub(channel).Run(modzy_model_pb2.RunRequest(inputs=items), timeout=30)
        assert all(o.success for o in reply.outputs), reply
        assert [json.loads(o.output["Y"]) for o in reply.outputs] == [[2.0 * i, 2.0 * i] for i in range(10)]
        assert [json.loads(o.output["ROWS"]) for o in reply.outputs] == [8] * 8 + [2] * 2
