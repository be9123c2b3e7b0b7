"""A faulty model and an impatient or greedy client against a real `omi serve`: every request is
answered with its protocol's error, and the server and the other models go on serving."""

from __future__ import annotations

import concurrent.futures
import struct
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from omi_adapters.protos import modzy_model_pb2, modzy_model_pb2_grpc
from tests.conftest import ROOT
from tests.servers import serve

pytestmark = pytest.mark.timeout(180)

MODELS = "tests/serving/fault_models.py"


def _x(value: float = 1.0) -> dict:
    return {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1], "data": [value]}]}


def _seconds(value: float) -> dict:
    return {"inputs": [{"name": "SECONDS", "datatype": "FP32", "shape": [1], "data": [value]}]}


def _grpc_infer(url: str, name: str, tensor: str, value: float, timeout: float = 30) -> service_pb2.ModelInferResponse:
    with grpc.insecure_channel(url) as channel:
        request = service_pb2.ModelInferRequest(model_name=name)
        request.inputs.add(name=tensor, datatype="FP32", shape=[1])
        request.raw_input_contents.append(struct.pack("<f", value))
        return service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=timeout)


def _grpc_error(url: str, name: str, tensor: str, value: float, timeout: float = 30) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        _grpc_infer(url, name, tensor, value, timeout)
    return raised.value


def test_base_exceptions_in_predict_fail_the_request_on_every_protocol_and_the_server_serves_on() -> None:
    with serve(f"{MODELS}:exits", f"{MODELS}:interrupts", f"{MODELS}:quick", protocols=("rest", "grpc", "omi")) as srv:
        for name, raised in (("exits", "SystemExit: the model called sys.exit"), ("interrupts", "KeyboardInterrupt")):
            response = httpx.post(f"http://{srv.http_url}/v2/models/{name}/infer", json=_x(), timeout=30)
            assert response.status_code == 500, response.text
            assert response.headers["content-type"] == "application/json"
            assert response.json() == {"error": f"model '{name}' failed: {raised}"}
            error = _grpc_error(srv.grpc_url, name, "X", 1.0)
            assert error.code() == grpc.StatusCode.INTERNAL and raised in (error.details() or "")
        with grpc.insecure_channel(srv.omi_url) as channel:  # OMI serves the first target: exits
            reply = modzy_model_pb2_grpc.ModzyModelStub(channel).Run(
                modzy_model_pb2.RunRequest(inputs=[modzy_model_pb2.InputItem(input={"X": b"[1]"})]), timeout=30
            )
        assert not reply.outputs[0].success and b"SystemExit" in reply.outputs[0].output["error"]
        assert srv.proc.poll() is None
        assert httpx.post(f"http://{srv.http_url}/v2/models/quick/infer", json=_x(2), timeout=30).json()["outputs"][0][
            "data"
        ] == [3.0]
        assert _grpc_infer(srv.grpc_url, "quick", "X", 4.0).raw_output_contents[0] == struct.pack("<f", 5.0)
        assert httpx.get(f"http://{srv.http_url}/v2/health/live").status_code == 200
        assert srv.terminate() == 0
        assert srv.output().count("predict of model 'exits' raised") == 3  # logged once per request
        assert "Traceback" in srv.output()


def test_hung_predicts_are_answered_at_the_deadline_while_another_model_answers_in_time(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    args = ("--request-timeout", "1", "--stall-timeout", "2")
    env = {"OMI_TEST_MARKS": str(marks)}
    targets = (f"{MODELS}:hangs", f"{MODELS}:async_hangs", f"{MODELS}:quick")
    with serve(*targets, protocols=("rest", "grpc"), args=args, env=env) as srv:
        base = f"http://{srv.http_url}/v2/models"
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            started = time.monotonic()
            hung = [pool.submit(httpx.post, f"{base}/hangs/infer", json=_seconds(60), timeout=30) for _ in range(2)]
            cancelled = pool.submit(httpx.post, f"{base}/async_hangs/infer", json=_seconds(60), timeout=30)
            time.sleep(0.2)
            # Meanwhile the other model answers at once, over both protocols.
            quick = httpx.post(f"{base}/quick/infer", json=_x(1), timeout=5)
            assert quick.status_code == 200 and time.monotonic() - started < 1
            assert _grpc_infer(srv.grpc_url, "quick", "X", 1.0, timeout=5).model_name == "quick"
            for future in [*hung, cancelled]:
                response = future.result()
                assert response.status_code == 504, response.text
                assert "did not answer within the server's request timeout (1s)" in response.json()["error"]
            assert time.monotonic() - started < 3
        assert marks.read_text() == "cancelled 60.0\n"  # the async predict was cancelled at its deadline

        # Both slots of 'hangs' are stuck past their deadline: a fast 503, and it is not ready.
        started = time.monotonic()
        stalled = httpx.post(f"{base}/hangs/infer", json=_seconds(0), timeout=5)
        assert time.monotonic() - started < 0.5
        assert stalled.status_code == 503 and stalled.headers["retry-after"] == "10"
        assert "model 'hangs' is stalled" in stalled.json()["error"]
        error = _grpc_error(srv.grpc_url, "hangs", "SECONDS", 0.0, timeout=5)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert httpx.get(f"{base}/hangs/ready").status_code == 503
        assert httpx.get(f"{base}/quick/ready").status_code == 200
        assert httpx.get(f"{base}/async_hangs/ready").status_code == 200  # its slot was freed
        # Past --stall-timeout liveness says so: the platform restarts the process.
        time.sleep(2.2)
        assert httpx.get(f"http://{srv.http_url}/v2/health/live").json() == {"live": False}
        with grpc.insecure_channel(srv.grpc_url) as channel:
            live = service_pb2_grpc.GRPCInferenceServiceStub(channel).ServerLive(service_pb2.ServerLiveRequest())
        assert live.live is False


def test_a_grpc_deadline_is_the_requests_deadline() -> None:
    with serve(f"{MODELS}:hangs", f"{MODELS}:async_hangs", protocols=("grpc",)) as srv:
        for name in ("hangs", "async_hangs"):
            started = time.monotonic()
            error = _grpc_error(srv.grpc_url, name, "SECONDS", 30.0, timeout=0.5)
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started < 1.5


def test_omi_run_items_fail_at_the_deadline_naming_it() -> None:
    with (
        serve(f"{MODELS}:hangs", protocols=("omi",), args=("--request-timeout", "0.5")) as srv,
        grpc.insecure_channel(srv.omi_url) as channel,
    ):
        items = [modzy_model_pb2.InputItem(input={"SECONDS": b"[30]"})]
        reply = modzy_model_pb2_grpc.ModzyModelStub(channel).Run(modzy_model_pb2.RunRequest(inputs=items), timeout=30)
        assert not reply.outputs[0].success
        assert (
            reply.outputs[0].output["error"]
            == b"model 'hangs' did not answer within the server's request timeout (0.5s)"
        )


def test_a_client_that_goes_away_cancels_its_async_predict(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    with serve(f"{MODELS}:async_hangs", protocols=("rest",), env={"OMI_TEST_MARKS": str(marks)}) as srv:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"http://{srv.http_url}/v2/models/async_hangs/infer", json=_seconds(30), timeout=0.5)
        deadline = time.monotonic() + 5
        while not marks.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marks.read_text() == "cancelled 30.0\n"
        assert "Exception in ASGI application" not in srv.output()


def test_requests_past_the_in_flight_bounds_are_refused_at_once() -> None:
    args = ("--max-inflight", "2", "--max-inflight-bytes", "100000", "--max-queue", "8")
    with serve(f"{MODELS}:hangs", protocols=("rest", "grpc"), args=args) as srv:
        url = f"http://{srv.http_url}/v2/models/hangs/infer"
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            busy = [pool.submit(httpx.post, url, json=_seconds(1.5), timeout=30) for _ in range(2)]
            time.sleep(0.5)
            refused = httpx.post(url, json=_seconds(0), timeout=5)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert "2 requests in flight, its limit (--max-inflight)" in refused.json()["error"]
            error = _grpc_error(srv.grpc_url, "hangs", "SECONDS", 0.0, timeout=5)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert ("grpc-retry-pushback-ms", "1000") in (error.trailing_metadata() or ())
            assert [f.result().status_code for f in busy] == [200, 200]
        big = {"inputs": [{**_seconds(0)["inputs"][0], "parameters": {"pad": "x" * 200_000}}]}
        refused = httpx.post(url, json=big, timeout=5)
        assert refused.status_code == 503 and "--max-inflight-bytes" in refused.json()["error"]
        assert httpx.post(url, json=_seconds(0), timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("protocol", "flag"), [("rest", "--http-port"), ("grpc", "--grpc-port"), ("omi", "--omi-port")]
)
def test_a_second_server_on_a_used_port_exits_with_one_line(protocol: str, flag: str) -> None:
    with serve(f"{MODELS}:quick", protocols=(protocol,)) as first:
        port = {"rest": first.http_port, "grpc": first.grpc_port, "omi": first.omi_port}[protocol]
        second = subprocess.run(
            [sys.executable, "-m", "omi_adapters.cli", "serve", f"{MODELS}:quick", "--host", "127.0.0.1",
             "--protocols", protocol, flag, str(port)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"omi: port {port} ({flag}) is in use on 127.0.0.1: is another server running?"
        ]
        # The first server still owns its port.
        if protocol == "rest":
            assert httpx.post(f"http://{first.http_url}/v2/models/quick/infer", json=_x(), timeout=5).status_code == 200
        elif protocol == "grpc":
            assert _grpc_infer(first.grpc_url, "quick", "X", 1.0, timeout=5).model_name == "quick"


def test_grpc_calls_past_the_concurrent_rpc_bound_are_refused() -> None:
    args = ("--grpc-max-concurrent-rpcs", "2")
    with serve(f"{MODELS}:hangs", f"{MODELS}:quick", protocols=("grpc",), args=args) as srv:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            busy = [pool.submit(_grpc_infer, srv.grpc_url, "hangs", "SECONDS", 1.0) for _ in range(2)]
            time.sleep(0.5)
            error = _grpc_error(srv.grpc_url, "quick", "X", 1.0, timeout=5)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert [f.result().model_name for f in busy] == ["hangs", "hangs"]
        assert _grpc_infer(srv.grpc_url, "quick", "X", 1.0, timeout=5).model_name == "quick"
