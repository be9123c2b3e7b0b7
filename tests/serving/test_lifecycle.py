"""Process life: readiness under each load policy, and graceful shutdown with requests in flight."""

from __future__ import annotations

import concurrent.futures
import struct
import time

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.conftest import EXAMPLES
from tests.servers import serve

pytestmark = pytest.mark.timeout(120)

MODELS = "tests/serving/models.py"


def _slow_request(seconds: float) -> dict:
    return {"id": "slow", "inputs": [{"name": "SECONDS", "datatype": "FP32", "shape": [1], "data": [seconds]}]}


def test_in_flight_requests_survive_sigterm_and_exit_is_0() -> None:
    with serve(f"{MODELS}:slow", protocols=("rest", "grpc")) as srv:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            rest = pool.submit(
                httpx.post, f"http://{srv.http_url}/v2/models/slow/infer", json=_slow_request(1.5), timeout=30
            )

            def grpc_call() -> service_pb2.ModelInferResponse:
                with grpc.insecure_channel(srv.grpc_url) as channel:
                    request = service_pb2.ModelInferRequest(model_name="slow", id="g")
                    request.inputs.add(name="SECONDS", datatype="FP32", shape=[1])
                    request.raw_input_contents.append(struct.pack("<f", 1.5))
                    return service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)

            rpc = pool.submit(grpc_call)
            time.sleep(0.7)  # both requests are inside predict now
            assert not rest.done() and not rpc.done()
            code = srv.terminate()
            response = rest.result()
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["data"] == [True]
            assert rpc.result().id == "g"
        assert code == 0, srv.output()
        assert "shutting down" in srv.output()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{srv.http_url}/v2/health/live")


def test_a_predict_still_running_after_the_grace_period_does_not_keep_the_process_alive() -> None:
    with serve(f"{MODELS}:slow", protocols=("rest",), args=("--graceful-timeout", "1")) as srv:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            stuck = pool.submit(
                httpx.post, f"http://{srv.http_url}/v2/models/slow/infer", json=_slow_request(60), timeout=90
            )
            time.sleep(0.5)  # inside predict now
            started = time.monotonic()
            code = srv.terminate(timeout=20)
            assert code == 0, srv.output()
            assert time.monotonic() - started < 15, srv.output()
            assert "1 predict call(s) still running after the 1.0s grace period" in srv.output()
            response = stuck.result()
            assert response.status_code == 503, response.text
            assert response.json() == {"error": "the server stopped before this request finished"}
        assert "Exception in ASGI application" not in srv.output()


def test_a_health_watch_ends_when_the_server_stops_and_does_not_hold_it_up() -> None:
    with (
        serve(f"{MODELS}:Loading", protocols=("grpc",), args=("--graceful-timeout", "20")) as srv,
        grpc.insecure_channel(srv.grpc_url) as channel,
    ):
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        started = time.monotonic()
        assert srv.terminate() == 0, srv.output()
        assert time.monotonic() - started < 10, srv.output()
        assert list(watch) == []  # the stream ended cleanly (an error status would raise)


def test_background_load_not_ready_then_503() -> None:
    with serve(f"{MODELS}:Loading", protocols=("rest", "grpc")) as srv:
        base = f"http://{srv.http_url}"
        assert httpx.get(f"{base}/v2/health/live").status_code == 200
        assert httpx.get(f"{base}/v2/health/ready").status_code == 503
        ready = httpx.get(f"{base}/v2/models/loading/ready")
        assert ready.status_code == 503 and ready.json() == {"name": "loading", "ready": False}
        body = {"inputs": [{"name": "X", "datatype": "INT32", "shape": [1], "data": [1]}]}
        response = httpx.post(f"{base}/v2/models/loading/infer", json=body, timeout=30)
        assert response.status_code == 503
        assert "still loading" in response.json()["error"]
        with grpc.insecure_channel(srv.grpc_url) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            assert not stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready
            request = service_pb2.ModelInferRequest(model_name="loading")
            request.inputs.add(name="X", datatype="INT32", shape=[1]).contents.int_contents.append(1)
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(request, timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_failed_load_is_reported_and_the_others_serve() -> None:
    with serve(f"{MODELS}:Broken", EXAMPLES / "adder.py", protocols=("rest",)) as srv:
        base = f"http://{srv.http_url}"
        assert httpx.get(f"{base}/v2/health/ready").status_code == 503
        body = {"inputs": [{"name": "X", "datatype": "INT32", "shape": [1], "data": [1]}]}
        response = httpx.post(f"{base}/v2/models/broken/infer", json=body)
        assert response.status_code == 503
        assert "failed to load: FileNotFoundError: weights.bin is missing" in response.json()["error"]
        adder = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 1], "data": [1]}]}
        assert httpx.post(f"{base}/v2/models/adder/infer", json=adder).status_code == 200
        assert "weights.bin is missing" in srv.output()


def test_lazy_model_loads_when_readiness_is_asked() -> None:
    with serve(EXAMPLES / "iris" / "model.py", protocols=("rest",)) as srv:
        base = f"http://{srv.http_url}"
        first = httpx.get(f"{base}/v2/models/iris/ready")
        assert first.status_code == 503  # not loaded yet: asking starts the load
        srv.wait_ready()
        assert httpx.get(f"{base}/v2/models/iris/ready").json() == {"name": "iris", "ready": True}


def test_message_size_limit_over_rest_and_grpc() -> None:
    with serve(EXAMPLES / "adder.py", protocols=("rest", "grpc"), args=["--max-message-bytes", "4096"]) as srv:
        big = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2000], "data": [1.0] * 2000}]}
        response = httpx.post(f"http://{srv.http_url}/v2/models/adder/infer", json=big)
        assert response.status_code == 413
        assert "exceeds the limit of 4096 bytes" in response.json()["error"]
        with grpc.insecure_channel(srv.grpc_url) as channel:
            request = service_pb2.ModelInferRequest(model_name="adder")
            request.inputs.add(name="X", datatype="FP32", shape=[1, 2000])
            request.raw_input_contents.append(bytes(8000))
            with pytest.raises(grpc.RpcError) as info:
                service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        small = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}]}
        assert httpx.post(f"http://{srv.http_url}/v2/models/adder/infer", json=small).status_code == 200
